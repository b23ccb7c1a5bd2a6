"""The sweep's progress line: what it says, and when it is printed (a real sweep's console is
checked in test_sweep.py and test_interrupts.py)."""
from __future__ import annotations

from pipeline.progress import Progress, duration


def progress(interval_s: float, **known) -> Progress:
    planned = {"aaaa": 4, "bbbb": 4}
    return Progress("unused", "fp", planned, known, metric="val_acc", mode="max", asha=True, interval_s=interval_s)


def test_line_counts_replayed_trials_as_done():
    p = progress(10.0, aaaa=("completed", 4), bbbb=("stopped_early", 2))
    assert p.line() == "progress: 2/2 trials done (1 completed, 1 stopped_early) | epochs 6/6"


def test_a_forced_line_is_printed_only_when_it_changed(capsys):
    p = progress(3600.0, aaaa=("completed", 4))
    for _ in range(3):  # three trials replayed from the store end with nothing new to say
        p._print(force=True)
    p.trials["bbbb"].status, p.trials["bbbb"].epochs = "running", 1
    p._print(force=True)
    p._print(force=False)  # within interval_s of the last line
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["progress: 1/2 trials done (1 completed), 1 pending | epochs 4/8 | ETA after the first epoch trained",
                     "progress: 1/2 trials done (1 completed), 1 running | epochs 5/8 | ETA after the first epoch trained"]


def test_the_timed_line_repeats_as_a_heartbeat(capsys):
    p = progress(0.0, aaaa=("completed", 4))
    p._print(force=False)
    p._print(force=False)
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_duration():
    assert [duration(s) for s in (0.4, 59, 61, 3600, 3725)] == ["0s", "59s", "1m01s", "1h00m", "1h02m"]
