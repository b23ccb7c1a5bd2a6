"""One summary of an epoch history, used by result.json, trials.parquet and `phase_results`.

A history is the list of epoch rows in order (dicts with at least epoch, phase, test_acc, and
val_acc unless the run holds out no validation split: `val_fraction: 0`). The best-validation epoch
is the first one with the highest val_acc; a run without validation has none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

Row = Mapping[str, Any]


@dataclass(frozen=True)
class PhaseSummary:
    name: str
    end: Row        # the phase's last epoch
    best_val: Row | None   # the phase's best-validation epoch (None: no validation split)


@dataclass(frozen=True)
class HistorySummary:
    epochs_completed: int
    last: Row
    best_val: Row | None  # None: the run has no validation split
    best_test_acc: float | None  # over the epochs the test set was evaluated (every one at test_every 1)
    seconds: float
    phases: list[PhaseSummary]  # in the order the phases ran


def present(value: Any) -> bool:
    """A metric that was measured: tables carry a missing one as None or NaN."""
    return value is not None and value == value


def _best_val(rows: Sequence[Row]) -> Row | None:
    scored = [r for r in rows if present(r.get("val_acc"))]
    return max(scored, key=lambda r: r["val_acc"]) if scored else None  # max keeps the first of equal values


def at(row: Row | None, key: str) -> Any:
    """`row[key]`, or None where there is no such epoch (no best-validation epoch without validation)."""
    return None if row is None else row.get(key)


def summarise(history: Sequence[Row]) -> HistorySummary:
    if not history:
        raise ValueError("an empty history has no summary")
    by_phase: dict[str, list[Row]] = {}
    for row in history:
        by_phase.setdefault(row.get("phase") or "train", []).append(row)
    return HistorySummary(
        epochs_completed=len(history), last=history[-1], best_val=_best_val(history),
        best_test_acc=max((r["test_acc"] for r in history if present(r.get("test_acc"))), default=None),
        seconds=float(sum(r.get("seconds") or 0.0 for r in history)),
        phases=[PhaseSummary(name, rows[-1], _best_val(rows)) for name, rows in by_phase.items()])


def result_json(history: Sequence[Row], run_dir: str) -> dict[str, Any]:
    """The result of a run (result.json, what `train` returns): last epoch, best-val epoch, phase ends."""
    s = summarise(history)
    return {"run_dir": run_dir, "epochs_completed": s.epochs_completed, "final": dict(s.last),
            "best_val_acc": at(s.best_val, "val_acc"), "best_epoch": at(s.best_val, "epoch"),
            "test_acc_at_best_val": at(s.best_val, "test_acc"), "best_test_acc": s.best_test_acc,
            "last_test_acc": s.last["test_acc"],
            "phases": {p.name: {"epoch": p.end["epoch"], "val_acc": p.end.get("val_acc"), "test_acc": p.end["test_acc"]}
                       for p in s.phases}}
