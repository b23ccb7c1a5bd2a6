"""One summary of an epoch history, used by result.json, trials.parquet and `phase_results`.

A history is the list of epoch rows in order (dicts with at least epoch, phase, val_acc, test_acc).
The best-validation epoch is the first one with the highest val_acc.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

Row = Mapping[str, Any]


@dataclass(frozen=True)
class PhaseSummary:
    name: str
    end: Row        # the phase's last epoch
    best_val: Row   # the phase's best-validation epoch


@dataclass(frozen=True)
class HistorySummary:
    epochs_completed: int
    last: Row
    best_val: Row
    best_test_acc: float
    seconds: float
    phases: list[PhaseSummary]  # in the order the phases ran


def _best_val(rows: Sequence[Row]) -> Row:
    return max(rows, key=lambda r: r["val_acc"])  # max keeps the first of equal values


def summarise(history: Sequence[Row]) -> HistorySummary:
    if not history:
        raise ValueError("an empty history has no summary")
    by_phase: dict[str, list[Row]] = {}
    for row in history:
        by_phase.setdefault(row.get("phase") or "train", []).append(row)
    return HistorySummary(
        epochs_completed=len(history), last=history[-1], best_val=_best_val(history),
        best_test_acc=max(r["test_acc"] for r in history),
        seconds=float(sum(r.get("seconds") or 0.0 for r in history)),
        phases=[PhaseSummary(name, rows[-1], _best_val(rows)) for name, rows in by_phase.items()])


def result_json(history: Sequence[Row], run_dir: str) -> dict[str, Any]:
    """The result of a run (result.json, what `train` returns): last epoch, best-val epoch, phase ends."""
    s = summarise(history)
    return {"run_dir": run_dir, "epochs_completed": s.epochs_completed, "final": dict(s.last),
            "best_val_acc": s.best_val["val_acc"], "best_epoch": s.best_val["epoch"],
            "test_acc_at_best_val": s.best_val["test_acc"],
            "phases": {p.name: {"epoch": p.end["epoch"], "val_acc": p.end["val_acc"], "test_acc": p.end["test_acc"]}
                       for p in s.phases}}
