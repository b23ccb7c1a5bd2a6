"""The results tables (docs/TABLES.md): trials.parquet and epochs.parquet, pandas-friendly.

Rows come from each trial's epoch history in the run store (pipeline.run_store) and its status in
the sweep's view (pipeline.sweep_view), never from Tune's files. Files are written to a temporary
name and renamed, so a crash at any moment leaves the previous complete table. This module does not
import Ray.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from hiddennets.algorithms import ALGORITHMS, total_epochs
from hiddennets.config import RunConfig, flatten
from hiddennets.history import at, summarise
from hiddennets.identity import applicable, config_hash, default_config
from pipeline.storage import filesystem

# The columns of every epoch row (docs/TABLES.md). The engine's `density` (measured: the fraction the
# masks keep) is `measured_density` here, so that it never clashes with the trials table's `density`
# (the config's). Each algorithm's own metrics follow, for the algorithms the sweep has.
COMMON_EPOCH_COLUMNS = ["trial_id", "epoch", "phase", "train_loss", "train_acc", "train_top5", "val_loss", "val_acc",
                        "val_top5", "test_loss", "test_acc", "test_top5", "measured_density", "params_kept", "flops_effective",
                        "lr", "seconds",
                        "node_id", "pid", "end_time", "trained_by"]
EPOCH_RENAMES = {"density": "measured_density"}


def epoch_columns(algos: Iterable[str]) -> list[str]:
    """The epochs table's columns for a sweep of these algorithms: the common ones, then each
    algorithm's declared metrics (an algorithm no longer registered contributes none)."""
    extra = [m for a in dict.fromkeys(algos) if a in ALGORITHMS for m in ALGORITHMS[a].metrics]
    return COMMON_EPOCH_COLUMNS + list(dict.fromkeys(m for m in extra if m not in COMMON_EPOCH_COLUMNS))


STATUSES = ("completed", "stopped_early", "errored", "running", "interrupted", "pending", "damaged")


@dataclass
class TrialRecord:
    """What the tables need to know about one trial (pipeline.sweep_view builds these)."""
    trial_id: str
    config: RunConfig
    status: str                      # one of STATUSES
    history: list[dict[str, Any]]    # its epoch rows, in order
    reason: str = ""                 # stop_reason: the scheduler, the error, the damage
    checkpoint: str = ""             # where its newest checkpoint is
    reused: bool = False             # some epochs were trained for another sweep (or an earlier version)
    decision: dict[str, Any] | None = None  # the scheduler's decision to stop it (rung, value, cutoff)


def column_name(dotted: str) -> str:
    """A config key's column: dots become underscores (`optimizer.lr` -> `optimizer_lr`)."""
    return dotted.replace(".", "_")


def config_columns(cfg: RunConfig) -> dict[str, Any]:
    """A trial's config as columns: the common keys and its own algorithm's section (other
    algorithms' sections do not apply to it), plus `sparsity` = 1 - density."""
    cols = {column_name(k): v for k, v in applicable(cfg).items()}
    cols["sparsity"] = round(1.0 - cfg.density, 12)
    return cols


def config_column_names() -> list[str]:
    """Every config column a trials table can have, in table order (all sections' included)."""
    return [column_name(k) for k in flatten(default_config())] + ["sparsity"]


def epoch_rows(record: TrialRecord, columns: list[str] | None = None) -> pd.DataFrame:
    columns = columns or epoch_columns([record.config.algo])
    renamed = [{EPOCH_RENAMES.get(k, k): v for k, v in r.items()} for r in record.history]
    frame = pd.DataFrame([{c: r.get(c) for c in columns} | {"trial_id": record.trial_id} for r in renamed],
                         columns=columns)
    if not frame.empty:
        frame["phase"] = frame["phase"].fillna("train")
    return frame


def error_reason(error: str) -> str:
    """A trial's error as the tables show it; a divergence reads "diverged: <loss> is nan at epoch N"."""
    if "DivergedError" in error and "diverged:" in error:
        return "diverged:" + error.split("diverged:", 1)[1].rstrip()
    return error or "error"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version
    parts = []
    for pkg in ("hiddennets", "torch", "ray"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            pass
    return " ".join(parts) + f" python={platform.python_version()}"


COST_COLUMNS = ["params_total", "params_kept", "flops_dense", "flops_effective"]
LAYER_COLUMNS = ["trial_id", "epoch", "phase", "layer", "shape", "total", "kept", "kept_fraction", "flops_dense"]


def _count(value) -> int | None:
    return None if value is None or value != value else int(value)


def layer_rows(record: TrialRecord) -> list[dict[str, Any]]:
    """layers.parquet's rows of one trial: each masked layer's kept weights at every epoch."""
    return [{"trial_id": record.trial_id, "epoch": row["epoch"], "phase": row.get("phase") or "train",
             "layer": layer["layer"], "shape": layer["shape"], "total": layer["total"], "kept": layer["kept"],
             "kept_fraction": layer["kept"] / layer["total"], "flops_dense": layer["flops_dense"]}
            for row in record.history for layer in row.get("layers") or []]


def trial_row(sweep: str, record: TrialRecord, epochs: pd.DataFrame, versions: str) -> dict[str, Any]:
    row: dict[str, Any] = {"sweep": sweep, "trial_id": record.trial_id, "config_hash": config_hash(record.config)}
    row.update(config_columns(record.config))
    decision = record.decision or {}
    row.update({"status": record.status, "stop_reason": record.reason, "epochs_completed": int(len(epochs)),
                "epochs_planned": total_epochs(record.config), "reused": record.reused,
                "asha_rung": decision.get("rung"), "asha_value": decision.get("value"),
                "asha_cutoff": decision.get("cutoff")})
    if len(epochs):
        s = summarise(epochs.to_dict("records"))
        best, last = s.best_val, s.last
        # without a validation split (val_fraction: 0) the val columns stay empty, never zero
        row.update({"best_val_acc": at(best, "val_acc"), "best_epoch": None if best is None else int(best["epoch"]),
                    "test_acc_at_best_val": at(best, "test_acc"), "best_test_acc": s.best_test_acc,
                    "last_val_acc": last["val_acc"], "last_test_acc": last["test_acc"],
                    "last_val_loss": last["val_loss"], "last_train_loss": last["train_loss"],
                    "last_density": last["measured_density"], "wall_time_s": s.seconds,
                    # what the network costs at its last epoch (empty for epochs recorded before costs were)
                    **{c: _count(record.history[-1].get(c)) for c in COST_COLUMNS},
                    "nodes": ",".join(sorted({str(n) for n in epochs["node_id"].dropna()}))})
        for phase in s.phases[:-1]:  # multi-phase algorithms: where each earlier phase ended
            row.update({f"{phase.name}_last_val_acc": phase.end["val_acc"],
                        f"{phase.name}_last_test_acc": phase.end["test_acc"],
                        f"{phase.name}_last_density": phase.end["measured_density"]})
    # the device the trial ran on (the config's `device` column says what was asked for: auto, cpu, cuda)
    row["device_name"] = next((r["device"] for r in reversed(record.history) if r.get("device")), "")
    row.update({"checkpoint": record.checkpoint, "versions": versions})
    return row


def _signature(record: TrialRecord, columns: list[str]) -> tuple:
    """What a trial's rows are built from: the same signature, the same rows (a history only grows or is
    cut, and each row's end_time tells a re-trained epoch from the one before)."""
    last = record.history[-1].get("end_time") if record.history else None
    return (record.status, len(record.history), last, record.reason, record.checkpoint, record.reused,
            repr(record.decision), tuple(columns))


def build_tables(sweep: str, records: Iterable[TrialRecord], built: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs); the per-layer table is `layer_table`. `built` keeps each trial's rows between
    calls (the driver's tables callback), so a call rebuilds only the trials that changed: building
    every row anew took 4-5 s a call at 1,000 trials, on every trial's result."""
    built = {} if built is None else built
    versions = built.get("versions") or built.setdefault("versions", _versions())
    records = list(records)
    columns = epoch_columns(r.config.algo for r in records)
    trial_rows, epoch_tuples = [], []
    for record in records:
        signature = _signature(record, columns)
        cached = built.get(record.trial_id)
        if cached is None or cached[0] != signature:
            epochs = epoch_rows(record, columns)
            # the epoch rows kept as plain tuples: one frame from all of them is ~50x faster than
            # concatenating a thousand small frames
            cached = built[record.trial_id] = (signature, trial_row(sweep, record, epochs, versions),
                                               list(epochs.itertuples(index=False, name=None)), layer_rows(record))
        trial_rows.append(cached[1])
        epoch_tuples.extend(cached[2])
    trials = pd.DataFrame(trial_rows)
    epochs = pd.DataFrame.from_records(epoch_tuples, columns=columns) if epoch_tuples else pd.DataFrame(columns=columns)
    return trials, epochs


def layer_table(records: Iterable[TrialRecord], built: dict | None = None) -> pd.DataFrame:
    """layers.parquet; with `built` (filled by build_tables) each trial's rows as built there."""
    built = built or {}
    rows = []
    for record in records:
        cached = built.get(record.trial_id)
        rows.extend(cached[3] if cached is not None else layer_rows(record))
    return pd.DataFrame(rows, columns=LAYER_COLUMNS)


def write_parquet(frame: pd.DataFrame, uri: str) -> None:
    """Write atomically: a temporary object then a rename (local) or a single PUT (object stores)."""
    fs, path = filesystem(uri)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.tmp-{os.getpid()}"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:  # a full disk leaves a partial temporary behind: it would only take more space
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        pq.write_table(table, path, filesystem=fs)


def write_tables(sweep_uri: str, sweep: str, records: Iterable[TrialRecord],
                 built: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    records = list(records)
    built = {} if built is None else built
    trials, epochs = build_tables(sweep, records, built)
    base = sweep_uri.rstrip("/")
    write_parquet(trials, f"{base}/trials.parquet")
    write_parquet(epochs, f"{base}/epochs.parquet")
    write_parquet(layer_table(records, built), f"{base}/layers.parquet")
    return trials, epochs
