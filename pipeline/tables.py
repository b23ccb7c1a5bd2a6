"""The results tables (docs/TABLES.md): trials.parquet and epochs.parquet, pandas-friendly.

Rows come from each trial's result.json (the JSON lines Ray Tune itself writes, one per report) and
the trial's status. A resumed trial reports some epochs again, so rows are de-duplicated on
(trial_id, epoch, phase), keeping the latest. Files are written to a temporary name and renamed, so a
crash at any moment leaves the previous complete table. This module does not import Ray.
"""
from __future__ import annotations

import json
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
from hiddennets.history import summarise
from hiddennets.identity import applicable, config_hash, default_config
from pipeline.storage import filesystem, read_text

# The columns of every epoch row (docs/TABLES.md). The engine's `density` (measured: the fraction the
# masks keep) is `measured_density` here, so that it never clashes with the trials table's `density`
# (the config's). Each algorithm's own metrics follow, for the algorithms the sweep has.
COMMON_EPOCH_COLUMNS = ["trial_id", "epoch", "phase", "train_loss", "train_acc", "train_top5", "val_loss", "val_acc",
                        "val_top5", "test_loss", "test_acc", "test_top5", "measured_density", "lr", "seconds",
                        "node_id", "pid"]
EPOCH_RENAMES = {"density": "measured_density"}


def epoch_columns(algos: Iterable[str]) -> list[str]:
    """The epochs table's columns for a sweep of these algorithms: the common ones, then each
    algorithm's declared metrics (an algorithm no longer registered contributes none)."""
    extra = [m for a in dict.fromkeys(algos) if a in ALGORITHMS for m in ALGORITHMS[a].metrics]
    return COMMON_EPOCH_COLUMNS + list(dict.fromkeys(m for m in extra if m not in COMMON_EPOCH_COLUMNS))


@dataclass
class TrialRecord:
    """What the tables need to know about one trial, whoever tracks it (Tune, a test)."""
    trial_id: str
    config: RunConfig
    status: str              # Tune's: PENDING, RUNNING, TERMINATED, ERROR, PAUSED
    result_file: str | None   # JSON lines, one reported result per line (a path or a URI)
    error: str = ""
    checkpoint: str = ""
    stopped_by: str = "asha"  # what stops a TERMINATED trial short of its epochs


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


def read_results(location: str | None) -> list[dict[str, Any]]:
    text = read_text(location) if location else None
    if text is None:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
    return rows


def epoch_rows(record: TrialRecord, results: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    columns = columns or epoch_columns([record.config.algo])
    # a resent epoch (pipeline.trial.resend_resumed_epoch) only fills a gap: the original row wins
    rows = sorted((r for r in results if "epoch" in r and "val_acc" in r), key=lambda r: not r.get("resent"))
    renamed = [{EPOCH_RENAMES.get(k, k): v for k, v in r.items()} for r in rows]
    frame = pd.DataFrame([{c: r.get(c) for c in columns} | {"trial_id": record.trial_id} for r in renamed],
                         columns=columns)
    if frame.empty:
        return frame
    frame["phase"] = frame["phase"].fillna("train")
    frame = frame.drop_duplicates(["trial_id", "epoch", "phase"], keep="last")
    return frame.sort_values(["epoch", "phase"], kind="stable").reset_index(drop=True)


def error_reason(error: str) -> str:
    """A trial's error as the tables show it; a divergence reads "diverged: <loss> is nan at epoch N"."""
    if "DivergedError" in error and "diverged:" in error:
        return "diverged:" + error.split("diverged:", 1)[1].rstrip()
    return error or "error"


def _status(record: TrialRecord, epochs_done: int) -> tuple[str, str]:
    if record.status == "ERROR":
        return "errored", error_reason(record.error)
    if record.status == "TERMINATED":
        if epochs_done >= total_epochs(record.config):
            return "completed", ""
        return "stopped_early", record.stopped_by
    return record.status.lower(), ""


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version
    parts = []
    for pkg in ("hiddennets", "torch", "ray"):
        try:
            parts.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            pass
    return " ".join(parts) + f" python={platform.python_version()}"


def trial_row(sweep: str, record: TrialRecord, results: list[dict[str, Any]], epochs: pd.DataFrame,
              versions: str) -> dict[str, Any]:
    status, reason = _status(record, len(epochs))
    row: dict[str, Any] = {"sweep": sweep, "trial_id": record.trial_id, "config_hash": config_hash(record.config)}
    row.update(config_columns(record.config))
    row.update({"status": status, "stop_reason": reason, "epochs_completed": int(len(epochs)),
                "epochs_planned": total_epochs(record.config)})
    if len(epochs):
        s = summarise(epochs.to_dict("records"))
        best, last = s.best_val, s.last
        row.update({"best_val_acc": best["val_acc"], "best_epoch": int(best["epoch"]),
                    "test_acc_at_best_val": best["test_acc"], "best_test_acc": s.best_test_acc,
                    "last_val_acc": last["val_acc"], "last_test_acc": last["test_acc"],
                    "last_val_loss": last["val_loss"], "last_train_loss": last["train_loss"],
                    "last_density": last["measured_density"], "wall_time_s": s.seconds,
                    "nodes": ",".join(sorted({str(n) for n in epochs["node_id"].dropna()}))})
        for phase in s.phases[:-1]:  # multi-phase algorithms: where each earlier phase ended
            row.update({f"{phase.name}_last_val_acc": phase.end["val_acc"],
                        f"{phase.name}_last_test_acc": phase.end["test_acc"],
                        f"{phase.name}_last_density": phase.end["measured_density"]})
    # the device the trial ran on (the config's `device` column says what was asked for: auto, cpu, cuda)
    row["device_name"] = next((r["device"] for r in reversed(results) if r.get("device")), "")
    row.update({"checkpoint": record.checkpoint, "versions": versions})
    return row


def build_tables(sweep: str, records: Iterable[TrialRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    versions = _versions()
    records = list(records)
    columns = epoch_columns(r.config.algo for r in records)
    trial_rows, epoch_frames = [], []
    for record in records:
        results = read_results(record.result_file)
        epochs = epoch_rows(record, results, columns)
        trial_rows.append(trial_row(sweep, record, results, epochs, versions))
        if len(epochs):
            epoch_frames.append(epochs)
    trials = pd.DataFrame(trial_rows)
    epochs = pd.concat(epoch_frames, ignore_index=True) if epoch_frames else pd.DataFrame(columns=columns)
    return trials, epochs


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


def write_tables(sweep_uri: str, sweep: str, records: Iterable[TrialRecord]) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials, epochs = build_tables(sweep, records)
    base = sweep_uri.rstrip("/")
    write_parquet(trials, f"{base}/trials.parquet")
    write_parquet(epochs, f"{base}/epochs.parquet")
    return trials, epochs
