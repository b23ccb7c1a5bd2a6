"""One progress line while a sweep runs: trials by status, epochs done of planned, an ETA from the
measured pace and the best value of the scheduler's metric so far.

    progress: 3/8 trials done (2 completed, 1 stopped_early), 2 running, 3 pending | epochs 52/120 |
              ETA 1m10s at 0.95 epochs/s (at most: ASHA stops some early) | best val_acc 97.22 (7b43647b49)

Printed at most every `interval_s` while results arrive, and whenever a trial's end changes it. Epochs replayed
from the run store count as done but not in the pace, which is epochs trained here per second since
the first trial started (all trials together, so it includes their start-up).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ray import tune

from pipeline.sweep_view import read_outcome

DONE = ("completed", "stopped_early", "errored")


@dataclass
class _Trial:
    planned: int
    status: str = "pending"
    epochs: int = 0


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress(tune.Callback):
    def __init__(self, sweep_uri: str, fingerprint: str, planned: dict[str, int], known: dict[str, tuple[str, int]],
                 metric: str, mode: str, asha: bool, interval_s: float = 10.0, on_step=None,
                 interrupted=lambda: False):
        """`planned`: every trial of the view and its epochs; `known`: status and epochs of each trial as
        the view showed them before Tune started (trials Tune will not run keep these)."""
        self.sweep_uri, self.fingerprint = sweep_uri, fingerprint
        self.trials = {h: _Trial(n) for h, n in planned.items()}
        for run_hash, (status, epochs) in known.items():
            if run_hash in self.trials:
                self.trials[run_hash].status = status if status in DONE else "pending"
                self.trials[run_hash].epochs = epochs
        self.metric, self.sign, self.asha = metric, 1.0 if mode == "max" else -1.0, asha
        self.best: tuple[float, str] | None = None
        self.interval_s, self.on_step, self.interrupted = interval_s, on_step, interrupted
        self._trained, self._started_at, self._last_line_at, self._last_line = 0, None, 0.0, ""

    def line(self) -> str:
        counts: dict[str, int] = {}
        for t in self.trials.values():
            counts[t.status] = counts.get(t.status, 0) + 1
        done = sum(counts.get(s, 0) for s in DONE)
        parts = [f"{done}/{len(self.trials)} trials done"
                 + (" (" + ", ".join(f"{counts[s]} {s}" for s in DONE if counts.get(s)) + ")" if done else "")
                 + "".join(f", {counts[s]} {s}" for s in ("running", "interrupted", "pending") if counts.get(s))]
        epochs = sum(t.epochs for t in self.trials.values())
        planned = sum(t.epochs if t.status in DONE else t.planned for t in self.trials.values())
        parts.append(f"epochs {epochs}/{planned}")
        left = planned - epochs
        if left <= 0:
            pass
        elif self._trained:
            pace = self._trained / (time.monotonic() - self._started_at)
            parts.append(f"ETA {duration(left / pace)} at {pace:.2f} epochs/s"
                         + (" (at most: ASHA stops some early)" if self.asha else ""))
        else:
            parts.append("ETA after the first epoch trained")
        if self.best is not None:
            parts.append(f"best {self.metric} {self.best[0]:.2f} ({self.best[1]})")
        return "progress: " + " | ".join(parts)

    def _print(self, force: bool) -> None:
        now = time.monotonic()
        timed = now - self._last_line_at >= self.interval_s
        if not (force or timed):  # most results: no line built, so a result costs nothing per trial
            return
        line = self.line()
        # A trial's end forces a line; trials replayed from the store end in a burst with nothing
        # changed, so a forced line equal to the last one says nothing. The timed line still repeats:
        # it is the heartbeat of a slow epoch.
        if timed or line != self._last_line:
            print(line, flush=True)
            self._last_line, self._last_line_at = line, now

    def on_step_begin(self, iteration, trials, **info):
        if self.on_step is not None:
            self.on_step()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.trials[trial.config["trial"]["id"]].status = "running"
        if self._started_at is None:
            self._started_at = time.monotonic()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        t = self.trials[trial.config["trial"]["id"]]
        t.epochs = max(t.epochs, int(result.get("epoch", 0)))
        if not result.get("replayed"):
            self._trained += 1
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and value == value and (
                self.best is None or self.sign * value > self.sign * self.best[0]):
            self.best = (float(value), trial.config["trial"]["id"])
        self._print(force=False)

    def _ended(self, trial, errored: bool) -> None:
        run_hash = trial.config["trial"]["id"]
        t = self.trials[run_hash]
        if self.interrupted():  # Tune stopping the trials it was running: the driver reports them
            t.status = "interrupted" if t.epochs else "pending"
            return
        outcome = {} if errored else read_outcome(self.sweep_uri, run_hash, self.fingerprint)
        if errored or outcome.get("status") == "errored":
            t.status = "errored"
        else:
            t.status = "completed" if t.epochs >= t.planned else "stopped_early"
        self._print(force=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, errored=True)
