"""The driver's Tune callback: records errored trials in the sweep's view and keeps the Parquet
tables current, rebuilt from the run store (pipeline.sweep_view), never from Tune's files."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ray import tune

from pipeline.run_store import RunStore
from pipeline.storage import storage_failure
from pipeline.sweep_view import SweepTrial, clear_outcome, read_outcome, write_outcome, write_view
from pipeline.tables import error_reason
from pipeline.text import bounded


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return bounded(lines[-1]) if lines else ""


def trial_error(trial) -> str:
    if trial.error_file and Path(trial.error_file).is_file():
        return _last_line(Path(trial.error_file).read_text())
    return _last_line(str(getattr(trial, "error_msg", "") or "")) or "error"


class TablesCallback(tune.Callback):
    """Rewrites trials.parquet and epochs.parquet as results arrive (at most every `interval_s`) and
    whenever a trial ends, so a crash leaves readable tables that lag by seconds at most."""

    def __init__(self, sweep_uri: str, sweep: str, storage: str, trials: list[SweepTrial], fingerprint: str,
                 label: str, interval_s: float = 10.0, interrupted=lambda: False):
        self.sweep_uri, self.sweep, self.storage = sweep_uri, sweep, storage
        self.trials, self.fingerprint, self.label, self.interval_s = trials, fingerprint, label, interval_s
        self._last_write = 0.0
        self.interrupted = interrupted  # trials that die while the driver stops are interrupted, not errored
        self._cache: dict = {}
        self.storage_problem: str | None = None

    def write(self) -> None:
        try:
            write_view(self.sweep_uri, self.sweep, RunStore(self.storage), self.trials, self.fingerprint, self.label,
                       self._cache)
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

    def on_trial_start(self, iteration, trials, trial, **info):
        run_hash = trial.config["trial"]["id"]
        if read_outcome(self.sweep_uri, run_hash, self.fingerprint).get("status") == "errored":
            clear_outcome(self.sweep_uri, run_hash)  # tried again: its status is its own again

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if time.monotonic() - self._last_write >= self.interval_s:
            self.write()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.write()

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.interrupted():
            return
        try:
            write_outcome(self.sweep_uri, trial.config["trial"]["id"],
                          {"status": "errored", "reason": error_reason(trial_error(trial)), "at": time.time(),
                           "version_fingerprint": self.fingerprint})
        except OSError as exc:  # the storage failing: the driver reports it when the sweep ends
            print(f"warning: outcome of trial {trial.config['trial']['id']} not recorded in {self.sweep_uri}: "
                  f"{storage_failure(exc) or exc}", file=sys.stderr, flush=True)
        self.write()

    def on_experiment_end(self, trials, **info):
        self.write()
