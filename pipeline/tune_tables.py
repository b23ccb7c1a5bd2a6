"""Keeps the Parquet tables current while Tune runs, from Tune's own trial state and result files."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from pipeline.spec import SweepSpec
from pipeline.storage import storage_failure
from pipeline.tables import TrialRecord, write_tables

RESULT_FILE = "result.json"  # written by Tune's JsonLoggerCallback, one line per report, flushed


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def record_from_trial(trial, spec: SweepSpec) -> TrialRecord:
    error = ""
    if trial.status == "ERROR" and trial.error_file and Path(trial.error_file).is_file():
        error = _last_line(Path(trial.error_file).read_text())
    checkpoint = trial.checkpoint.path if trial.checkpoint else trial.last_result.get("checkpoint_path", "")
    return TrialRecord(trial.trial_id, spec.config_for(trial.config), trial.status,
                       str(Path(trial.local_path) / RESULT_FILE) if trial.local_path else None, error,
                       checkpoint or "", stopped_by=spec.scheduler.name)


def record_from_result(result, spec: SweepSpec) -> TrialRecord:
    """From a finished Tuner's ResultGrid entry (works whether or not this process ran the trial)."""
    metrics: dict[str, Any] = result.metrics or {}
    checkpoint = result.checkpoint.path if result.checkpoint else metrics.get("checkpoint_path", "")
    return TrialRecord(metrics.get("trial_id") or Path(result.path).name.removeprefix("trial_"),
                       spec.config_for(result.config), "ERROR" if result.error else "TERMINATED",
                       f"{result.path}/{RESULT_FILE}", _last_line(str(result.error)) if result.error else "",
                       checkpoint or "", stopped_by=spec.scheduler.name)


class TablesCallback(tune.Callback):
    """Rewrites trials.parquet and epochs.parquet as results arrive (at most every `interval_s`) and
    whenever a trial ends, so a crash leaves readable tables that lag by seconds at most."""

    def __init__(self, spec: SweepSpec, sweep_uri: str, interval_s: float = 10.0):
        self.spec, self.sweep_uri, self.interval_s = spec, sweep_uri, interval_s
        self._last_write = 0.0
        self.storage_problem: str | None = None

    def _write(self, trials) -> None:
        try:
            write_tables(self.sweep_uri, self.spec.name, [record_from_trial(t, self.spec) for t in trials])
        except OSError as exc:
            # storage full or read-only: keep the sweep going (the tables on disk are the last good
            # ones, written atomically); the driver reports the failure when the sweep ends
            problem = storage_failure(exc) or str(exc)
            if problem != self.storage_problem:
                print(f"warning: tables not updated in {self.sweep_uri}: {problem}", file=sys.stderr, flush=True)
            self.storage_problem = problem
        else:
            self.storage_problem = None
        self._last_write = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if time.monotonic() - self._last_write >= self.interval_s:
            self._write(trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._write(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trials)

    def on_experiment_end(self, trials, **info):
        self._write(trials)
