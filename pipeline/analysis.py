"""The pandas API over a sweep's tables: load them, aggregate over seeds, count what ASHA saved.

    from pipeline.analysis import load, over_seeds
    trials, epochs = load("results/quickstart")          # or "s3://bucket/prefix/quickstart"
    over_seeds(trials)                                   # mean, std and count per setting

A *setting* is one point of the grid without its seed: the config columns that take more than one
value in the sweep (plus dataset, arch, algo, density and init, always), minus `seed`. Aggregates over
seeds group trials by their setting.
"""
from __future__ import annotations

import io
import os
from typing import Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hiddennets.algorithms import ALGORITHMS, TwoPhaseReport
from hiddennets.errors import ConfigError
from hiddennets.history import at, present, summarise
from pipeline.storage import filesystem, is_uri
from pipeline.tables import config_column_names

HEADLINE = ["dataset", "arch", "algo", "density", "init"]
# Columns that tell trials apart without being part of what was studied.
NOT_A_SETTING = {"seed", "name", "data_dir", "num_workers", "device", "download", "eval_batch_size"}
DEFAULT_METRICS = ["test_acc_at_best_val", "best_val_acc", "last_test_acc"]


REQUIRED = {"trials.parquet": ("trial_id", "status", "algo", "density"),
            "epochs.parquet": ("trial_id", "epoch", "val_acc", "test_acc"),
            "layers.parquet": ("trial_id", "epoch", "layer", "kept", "total")}


def _read_parquet(uri: str) -> pd.DataFrame:
    fs, path = filesystem(uri)
    try:
        with fs.open_input_file(path) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{uri}: no such file; a sweep folder holds trials.parquet and epochs.parquet "
                          "(python -m pipeline.sweep writes them)") from None
    except (OSError, pa.ArrowException) as exc:  # a folder where the table should be, unreadable storage
        raise ConfigError(f"{uri}: cannot read ({' '.join(str(exc).split())[:200]})") from None
    try:
        frame = pq.read_table(io.BytesIO(data)).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ConfigError(f"{uri}: not a readable Parquet table ({' '.join(str(exc).split())[:200]}); it may be cut "
                          "short: rerun the sweep command to rewrite it") from None
    missing = [c for c in REQUIRED.get(uri.rsplit("/", 1)[-1], ()) if c not in frame.columns]
    if missing and not frame.empty:
        raise ConfigError(f"{uri}: not a hiddennets results table (no column {missing[0]!r})")
    return frame


def upgrade_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Epoch tables written before the measured density had its own name called it `density`."""
    if "measured_density" not in epochs and "density" in epochs:
        return epochs.rename(columns={"density": "measured_density"})
    return epochs


def load(sweep_path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) of the sweep at `sweep_path`: a local folder or a URI (s3://, file://)."""
    base = sweep_path.rstrip("/")
    if not is_uri(base) and os.path.isfile(base):
        raise ConfigError(f"{base}: is a file; give the sweep folder holding trials.parquet and epochs.parquet")
    return _read_parquet(f"{base}/trials.parquet"), upgrade_epochs(_read_parquet(f"{base}/epochs.parquet"))


def load_layers(sweep_path: str) -> pd.DataFrame:
    """layers.parquet of the sweep: each masked layer's kept weights per trial and epoch (empty for a
    sweep written before the table existed)."""
    fs, path = filesystem(f"{sweep_path.rstrip('/')}/layers.parquet")
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return pd.DataFrame(columns=["trial_id", "epoch", "phase", "layer", "shape", "total", "kept", "kept_fraction",
                                     "flops_dense"])
    return _read_parquet(f"{sweep_path.rstrip('/')}/layers.parquet")


def results_view(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """The trials as results. A trial of an algorithm whose phases are results of their own (IMP's
    levels) becomes one row per phase it reached: at the density that phase measured, with that
    phase's accuracies and cost, `completed` once the phase ran all its epochs; `level` names the
    phase (empty for every other trial). Other trials are as they are."""
    own = [name for name, algorithm in ALGORITHMS.items() if algorithm.results_per_phase]
    chosen = trials["algo"].isin(own) if "algo" in trials else pd.Series(False, index=trials.index)
    if not chosen.any():
        return trials
    epochs = upgrade_epochs(epochs)
    rows = []
    for _, trial in trials[chosen].iterrows():
        mine = epochs[epochs["trial_id"] == trial["trial_id"]].sort_values("epoch", kind="stable").to_dict("records")
        if not mine:
            continue  # nothing trained yet: no level has a density to show
        for phase in summarise(mine).phases:
            part = [r for r in mine if (r.get("phase") or "train") == phase.name]
            density = round(float(phase.end["measured_density"]), 6)
            row = trial.to_dict()
            row.update({"level": phase.name, "density": density, "sparsity": round(1.0 - density, 12),
                        "status": "completed" if len(part) == int(trial["epochs"]) else trial["status"],
                        "epochs_completed": len(part), "best_val_acc": at(phase.best_val, "val_acc"),
                        "test_acc_at_best_val": at(phase.best_val, "test_acc"),
                        "best_test_acc": max((r["test_acc"] for r in part if present(r.get("test_acc"))), default=None),
                        "last_test_acc": phase.end["test_acc"],
                        "last_val_acc": phase.end.get("val_acc"), "last_density": phase.end["measured_density"],
                        "params_kept": phase.end.get("params_kept"), "flops_effective": phase.end.get("flops_effective")})
            rows.append(row)
    levels = pd.DataFrame(rows)
    return pd.concat([trials[~chosen].assign(level=""), levels], ignore_index=True)


def two_phase_algorithms() -> dict[str, TwoPhaseReport]:
    """The algorithms that declare a search phase followed by another (Algorithm.two_phase)."""
    return {name: a.two_phase for name, a in ALGORITHMS.items() if a.two_phase is not None}


def _config_columns(trials: pd.DataFrame) -> list[str]:
    """The config columns a trials table can hold: every registered section's, and for an algorithm
    this process has not registered (a plugin it did not import) its `<algo>_...` columns."""
    unknown = [str(a) for a in trials["algo"].dropna().unique() if a not in ALGORITHMS] if "algo" in trials else []
    return config_column_names() + [c for c in trials.columns if any(c.startswith(f"{a}_") for a in unknown)]


def setting_columns(trials: pd.DataFrame) -> list[str]:
    """The config columns that define a setting in this sweep (see the module docstring), in table order."""
    names = _config_columns(trials)
    varying = {c for c in names if c in trials.columns and c not in NOT_A_SETTING and trials[c].astype(str).nunique() > 1}
    varying.discard("sparsity")  # always 1 - density
    return [c for c in names if c in HEADLINE or c in varying]


def over_seeds(trials: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS, by: Sequence[str] | None = None,
               statuses: Iterable[str] = ("completed", "stopped_early")) -> pd.DataFrame:
    """One row per setting: for each metric its mean, std (sample, ddof=1; NaN for one seed) and count,
    plus how many of the setting's trials completed, were stopped early and errored. Trials whose status
    is not in `statuses` (by default: errored ones) are left out of the metrics but counted."""
    by = list(by) if by is not None else setting_columns(trials)
    keys = trials[by].astype(object).where(trials[by].notna(), "")  # NaN keys would drop the group
    chosen = trials["status"].isin(list(statuses))
    rows = []
    for key, group in trials.groupby([keys[c] for c in by], sort=True):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update({"trials": len(group),
                    "seeds": group["seed"].nunique() if "seed" in group else len(group),
                    "completed": int((group["status"] == "completed").sum()),
                    "stopped_early": int((group["status"] == "stopped_early").sum()),
                    "errored": int((group["status"] == "errored").sum())})
        used = group[chosen.loc[group.index]]
        for metric in metrics:
            values = pd.to_numeric(used[metric], errors="coerce").dropna() if metric in used else pd.Series([])
            row.update({f"{metric}_mean": values.mean() if len(values) else float("nan"),
                        f"{metric}_std": values.std(ddof=1) if len(values) > 1 else float("nan"),
                        f"{metric}_count": len(values)})
        rows.append(row)
    return pd.DataFrame(rows)


def planned_epochs(trials: pd.DataFrame) -> pd.Series:
    """Epochs each trial would have run to the end, all phases included (tables written before
    `epochs_planned` existed: the config's `epochs`)."""
    return trials["epochs_planned" if "epochs_planned" in trials else "epochs"].astype(int)


def early_stopping_savings(trials: pd.DataFrame) -> dict[str, float]:
    """What early stopping saved: epochs not run by the trials the scheduler stopped (status
    stopped_early; never an interrupted or pending trial), against the full budget. Seconds saved are estimated from each stopped trial's own mean seconds per epoch."""
    planned = planned_epochs(trials)
    done = trials["epochs_completed"].fillna(0).astype(int)
    stopped = trials["status"] == "stopped_early"
    saved = (planned - done).where(stopped, 0).clip(lower=0)
    per_epoch = (trials["wall_time_s"] / done.where(done > 0)).fillna(0) if "wall_time_s" in trials else 0 * done
    return {"trials": len(trials), "completed": int((trials["status"] == "completed").sum()),
            "stopped_early": int(stopped.sum()), "errored": int((trials["status"] == "errored").sum()),
            # not finished: interrupted (some epochs), pending (none yet), running, damaged
            "unfinished": {status: int(n) for status, n in trials["status"].value_counts().items()
                           if status not in ("completed", "stopped_early", "errored")},
            "epochs_planned": int(planned.sum()), "epochs_run": int(done.sum()), "epochs_saved": int(saved.sum()),
            "fraction_saved": float(saved.sum() / planned.sum()) if planned.sum() else 0.0,
            "seconds_run": float(trials["wall_time_s"].fillna(0).sum()) if "wall_time_s" in trials else 0.0,
            "seconds_saved_estimate": float((saved * per_epoch).sum())}


def curves(trials: pd.DataFrame, epochs: pd.DataFrame, metric: str = "val_acc",
           by: Sequence[str] | None = None) -> pd.DataFrame:
    """Per setting, epoch and phase: the metric's mean, std and count over the seeds that reached it."""
    by = list(by) if by is not None else setting_columns(trials)
    values = epochs[["trial_id", "epoch", "phase", metric]].rename(columns={metric: "_value"})
    keyed = values.merge(trials[["trial_id"] + by], on="trial_id", how="inner")
    keyed[by] = keyed[by].astype(object).where(keyed[by].notna(), "")
    grouped = keyed.groupby(by + ["epoch", "phase"], sort=True)["_value"]
    return grouped.agg(mean="mean", std="std", count="count").reset_index()


def phase_results(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per trial and phase: where the phase ended (epoch, measured density, val/test accuracy)
    and its best val_acc with the test accuracy there. IMP's levels are phases, so this is the
    table of accuracy per pruning level; Gem-Miner's are search and fine-tune."""
    if epochs.empty:
        return pd.DataFrame()
    rows = []
    for trial_id, group in upgrade_epochs(epochs).groupby("trial_id", sort=False):
        for phase in summarise(group.sort_values("epoch", kind="stable").to_dict("records")).phases:
            rows.append({"trial_id": trial_id, "phase": phase.name, "phase_end_epoch": int(phase.end["epoch"]),
                         "phase_density": phase.end["measured_density"], "phase_last_val_acc": phase.end["val_acc"],
                         "phase_last_test_acc": phase.end["test_acc"], "phase_best_val_acc": at(phase.best_val, "val_acc"),
                         "phase_test_acc_at_best_val": at(phase.best_val, "test_acc")})
    ends = pd.DataFrame(rows).sort_values(["trial_id", "phase_end_epoch"], kind="stable")
    settings = [c for c in setting_columns(trials) + ["seed", "status"] if c in trials.columns]
    return ends.merge(trials[["trial_id", *settings]], on="trial_id", how="left").reset_index(drop=True)
