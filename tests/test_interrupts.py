"""Real signals to a real sweep (Ray on CPU): Ctrl-C and SIGTERM stop it cleanly with exit 130/143,
statuses `interrupted` and `pending`, the tables and the report written and the resume hint last; a
second Ctrl-C stops at once; the same command then completes it exactly as an uninterrupted run.
Also: a Ray that cannot stop (the deadline), ASHA running each trial to its own epochs, progress
lines, and a healthy sweep printing no ERROR. All in the slow tier; the fast tier's ASHA sweep in
test_sweep.py checks the progress lines and the clean console too."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.interrupts import RESUME_HINT
from pipeline.spec import load_sweep
from pipeline.sweep_view import expand_trials
from tests.sweep_driver import (assert_epochs_whole, epochs_in_store, kill_session, outcome, run, session_members,
                                start, tables)
from tests.test_sweep import write_spec

ASHA = {"name": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1, "reduction_factor": 2}
GRID = {"algo": ["ep", "random_mask"], "density": [0.1, 0.5]}
PROGRESS = re.compile(r"^progress: \d+/4 trials done.* \| epochs \d+/\d+ \| (ETA \d+(m\d\ds|s) at [0-9.]+ epochs/s|"
                      r"ETA after the first epoch trained)", re.M)


def wait_for(condition, driver: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert driver.poll() is None, f"the driver ended (rc {driver.returncode}) before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


def training_sweep(tmp_path: Path, name: str) -> tuple[Path, Path, Path, subprocess.Popen]:
    """A 4-trial ASHA sweep's driver, returned once two epochs are in the run store."""
    spec = write_spec(tmp_path, name, base={"epochs": 6}, grid=GRID, scheduler=ASHA)
    out, log = tmp_path / "out", tmp_path / f"{name}.log"
    driver = start(spec, out, log=log)
    wait_for(lambda: sum(epochs_in_store(out).values()) >= 2, driver, "two epochs")
    return spec, out, log, driver


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def assert_interrupted_cleanly(storage: Path, name: str, log: str) -> pd.DataFrame:
    """The tables after an interruption: every trial listed, nothing errored, and only trials ASHA
    decided to stop are stopped_early (with ASHA's decision)."""
    trials, epochs = tables(storage, name)
    assert len(trials) == 4, trials
    assert set(trials.status) <= {"completed", "stopped_early", "interrupted", "pending"}, trials.status
    assert (trials[trials.status == "pending"].epochs_completed == 0).all()
    assert (trials[trials.status == "interrupted"].epochs_completed > 0).all()
    for trial in trials[trials.status == "stopped_early"].itertuples():
        assert trial.asha_rung == trial.epochs_completed and trial.asha_value < trial.asha_cutoff, trial
    assert_epochs_whole(trials, epochs)
    # the report counts what ASHA saved from the trials it stopped only, and says the sweep is unfinished
    report = (storage / name / "report" / "report.md").read_text()
    counts = trials.status.value_counts()
    unfinished = "".join(f", {counts[s]} {s}" for s in sorted(counts.index)
                         if s not in ("completed", "stopped_early", "errored"))
    assert (f"4 trials: {counts.get('completed', 0)} completed, {counts.get('stopped_early', 0)} stopped early, "
            f"0 errored{unfinished}. They ran {trials.epochs_completed.sum()} of the") in report, report
    saved = sum(trials.epochs_planned[trials.status == "stopped_early"]
                - trials.epochs_completed[trials.status == "stopped_early"])
    assert (f"early stopping saved {saved} epochs" in report) if saved else ("no trial was stopped early" in report)
    assert ("The sweep is not finished" in report) == bool(unfinished)
    assert last_line(log) == RESUME_HINT, log[-2000:]
    assert "Traceback" not in log and "Tuner.restore" not in log, log[-4000:]
    return trials


@pytest.mark.slow
def test_sigterm_stops_a_sweep_cleanly_and_the_same_command_completes_it(tmp_path):
    spec, out, log, driver = training_sweep(tmp_path, "term")
    os.kill(driver.pid, signal.SIGTERM)  # as `kill PID` or a preemption notice would
    assert driver.wait(timeout=60) == 143
    trials = assert_interrupted_cleanly(out, "term", log.read_text())
    assert (trials.status == "interrupted").any() and (trials.status == "pending").any(), trials
    assert "SIGTERM received: stopping the sweep" in log.read_text()
    assert not session_members(driver.pid)  # the Ray it started is gone with it
    # the same command resumes and completes it; a healthy sweep's console holds no ERROR and no traceback
    proc = run(spec, out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert "ERROR" not in console and "Traceback" not in console, console[-4000:]
    assert len(PROGRESS.findall(console)) >= 2, console[-4000:]
    assert re.search(r"^progress: 4/4 trials done \(\d+ completed(, \d+ stopped_early)?\) \| epochs (\d+)/\2 \| "
                     r"best val_acc \d+\.\d\d \([0-9a-f]{10}\)$", console, re.M), console[-3000:]
    trials, _ = tables(out, "term")
    assert set(trials.status) <= {"completed", "stopped_early"} and (trials.status == "completed").any()


@pytest.mark.slow
def test_sigint_and_sigterm_at_random_moments_then_the_same_command_gives_the_uninterrupted_result(tmp_path):
    spec = write_spec(tmp_path, "rand", base={"epochs": 5}, grid=GRID, scheduler=ASHA)
    ref = run(spec, tmp_path / "ref", "--max-concurrent", "1")
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    out, rng = tmp_path / "out", random.Random(14)
    # Ctrl-C as a terminal sends it (the whole foreground group: Ray's processes block SIGINT);
    # SIGTERM as `kill PID` does; moments from Ray starting to mid-training
    plan = [(signal.SIGINT, True), (signal.SIGTERM, False)] * 3
    interrupted = 0
    for i, (sig, group) in enumerate(plan):
        log = tmp_path / f"driver{i}.log"
        driver = start(spec, out, "--max-concurrent", "1", log=log)
        time.sleep(rng.uniform(1.0, 14.0))
        if driver.poll() is not None:
            break
        (os.killpg if group else os.kill)(driver.pid, sig)
        rc = driver.wait(timeout=60)
        if rc == 0:
            break  # it finished as the signal came
        interrupted += 1
        assert rc == 128 + sig, (rc, log.read_text()[-3000:])
        if (out / "rand" / "trials.parquet").is_file():
            assert_interrupted_cleanly(out, "rand", log.read_text())
        else:  # stopped before the spec version was recorded: nothing written, still the hint last
            assert last_line(log.read_text()) == RESUME_HINT
        assert not session_members(driver.pid)
    assert interrupted >= 4, f"the sweep finished after {interrupted} interruptions"
    # a second Ctrl-C stops at once, leaving the last complete tables
    log = tmp_path / "twice.log"
    driver = start(spec, out, "--max-concurrent", "1", log=log)
    before = sum(epochs_in_store(out).values())
    wait_for(lambda: sum(epochs_in_store(out).values()) > before, driver, "one more epoch")
    os.killpg(driver.pid, signal.SIGINT)
    time.sleep(0.3)
    sent = time.time()
    os.killpg(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=30) == 130
    assert time.time() - sent < 10
    assert "SIGINT again: stopping at once" in log.read_text() and last_line(log.read_text()) == RESUME_HINT
    kill_session(driver)  # nothing may be left; this only proves it
    tables(out, "rand")  # readable
    proc = run(spec, out, "--max-concurrent", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for got, want in zip(outcome(out, "rand"), outcome(tmp_path / "ref", "rand")):
        pd.testing.assert_frame_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("base,axis", [
    ({"epochs": 2}, {"epochs": {"choice": [2, 4]}}),
    # two phases: the rung at epoch 2 is the search's last epoch in every trial
    ({"algo": "gem_miner", "epochs": 2, "gem_miner": {"iter_period": 1}},
     {"gem_miner.finetune_epochs": {"choice": [0, 2]}}),
], ids=["sampled_epochs", "gem_miner_finetune"])
def test_asha_runs_each_trial_to_its_own_epochs(tmp_path, base, axis):
    asha = {**ASHA, "grace_period": 2}
    spec = write_spec(tmp_path, "own", base=base, grid={**axis, "density": [0.4, 0.6]}, num_samples=2,
                      scheduler=asha)
    trials_in_order = expand_trials(load_sweep(str(spec)))
    planned = {t.id: (t.config.epochs + (t.config.gem_miner.finetune_epochs if t.config.algo == "gem_miner" else 0))
               for t in trials_in_order}
    # the first trial reaches the only rung (epoch 2) alone, so ASHA lets it go on: it is a long one
    assert planned[trials_in_order[0].id] == 4 and sorted(set(planned.values())) == [2, 4], planned
    proc = run(spec, tmp_path / "out", "--max-concurrent", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, epochs = tables(tmp_path / "out", "own")
    assert_epochs_whole(trials, epochs)
    for trial in trials.itertuples():
        if trial.status == "completed":
            assert trial.epochs_completed == planned[trial.trial_id]
        else:  # stopped by ASHA at its rung, with the decision recorded; never cut at the base's epochs
            assert trial.status == "stopped_early" and trial.epochs_completed == trial.asha_rung == 2, trial
            assert planned[trial.trial_id] == 4 and trial.asha_value < trial.asha_cutoff
    first = trials.set_index("trial_id").loc[trials_in_order[0].id]
    assert first.status == "completed" and first.epochs_completed == 4


@pytest.mark.slow
def test_a_ray_that_does_not_stop_after_sigterm_still_leaves_the_tables_and_the_exit_code(tmp_path):
    # Ray's GCS and raylet frozen (SIGSTOP), as if a preemption had taken them first: Tune cannot stop
    # its trials nor Ray shut down, so after the deadline the tables come from the run store alone
    from pipeline.interrupts import DEADLINE_S
    _, out, log, driver = training_sweep(tmp_path, "frozen")
    frozen = [pid for pid in session_members(driver.pid)
              if any(name in Path(f"/proc/{pid}/cmdline").read_bytes() for name in (b"gcs_server", b"raylet"))]
    assert len(frozen) >= 2, frozen
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    sent = time.time()
    os.kill(driver.pid, signal.SIGTERM)
    try:
        assert driver.wait(timeout=DEADLINE_S + 40) == 143
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        kill_session(driver)
    assert time.time() - sent < DEADLINE_S + 30
    text = log.read_text()
    assert f"Ray did not stop within {DEADLINE_S:.0f} s of the signal" in text, text[-3000:]
    assert last_line(text) == RESUME_HINT
    trials, epochs = tables(out, "frozen")
    assert len(trials) == 4 and set(trials.status) <= {"completed", "stopped_early", "interrupted", "pending"}
    assert_epochs_whole(trials, epochs)
    assert sum(epochs_in_store(out).values()) == len(epochs)  # every committed epoch is in the tables
