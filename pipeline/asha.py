"""Ray Tune's ASHA, with each decision to stop a trial early recorded in the sweep's view.

The decision (the rung's epoch, the trial's metric there, the cut-off it fell below) is written
before Tune acts on it, so the tables say why a trial stopped even if the driver dies right after.
After a resume ASHA is rebuilt fresh and every recorded epoch is replayed to it in the original
order (pipeline.trial), so it reaches the same decisions without any of its state being restored.
"""
from __future__ import annotations

import time
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from pipeline.sweep_view import write_outcome


class RecordedASHA(ASHAScheduler):
    def __init__(self, *, sweep_uri: str, fingerprint: str, planned: dict[str, int], **kwargs: Any):
        super().__init__(**kwargs)
        self._sweep_uri, self._fingerprint, self._planned = sweep_uri, fingerprint, planned

    def _rung(self, trial, result: dict[str, Any]) -> tuple[float | None, float | None]:
        """The rung this result is judged at and that rung's cut-off, as ASHA's bracket will see
        them (read from Ray's _Bracket, which has no public accessor)."""
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None:
            return None, None
        now = result[self._time_attr]
        for milestone, recorded in bracket._rungs:
            if now >= milestone and trial.trial_id not in recorded:
                cutoff = bracket.cutoff(recorded)
                return milestone, None if cutoff is None else float(cutoff) * self._metric_op
        return None, None

    def on_trial_result(self, tune_controller, trial, result: dict[str, Any]) -> str:
        if self._time_attr not in result or self._metric not in result:
            return super().on_trial_result(tune_controller, trial, result)
        rung, cutoff = self._rung(trial, result)
        action = super().on_trial_result(tune_controller, trial, result)
        run_hash = trial.config["trial"]["id"]
        epoch = int(result[self._time_attr])
        if action == TrialScheduler.STOP and epoch < self._planned.get(run_hash, epoch + 1):
            write_outcome(self._sweep_uri, run_hash, {
                "status": "stopped_early", "reason": "asha", "epoch": epoch, "at": time.time(),
                "version_fingerprint": self._fingerprint,
                "decision": {"rung": rung, "metric": self._metric, "value": result[self._metric], "cutoff": cutoff}})
        return action
