"""Real Ray sweeps over the run store: a grown sweep and another sweep reuse runs, Tune's files
destroyed or crafted change nothing, kills at random moments, ASHA's decisions after resumes."""
from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.sweep_driver import (assert_epochs_whole, epochs_in_store, kill_session, outcome, run, start, tables)
from tests.test_sweep import write_spec

FIFO = {"name": "fifo"}


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow  # 2 minutes: three real Ray sweeps
def test_a_grown_sweep_trains_only_new_points_another_sweep_reuses_them_and_status_shows_both(tmp_path):
    out = tmp_path / "out"
    spec = write_spec(tmp_path, "grow", base={"epochs": 2}, grid={"density": [0.1, 0.5]}, scheduler=FIFO)
    ok(run(spec, out))
    first_trials, first_epochs = tables(out, "grow")
    assert len(first_trials) == 2 and (first_trials.status == "completed").all()

    spec = write_spec(tmp_path, "grow", base={"epochs": 2}, grid={"density": [0.1, 0.3, 0.5, 0.7]}, scheduler=FIFO)
    text = ok(run(spec, out))
    assert "resuming sweep grow from" in text and "as spec version 2 (changed: grid.density: [0.1, 0.5] -> " \
        "[0.1, 0.3, 0.5, 0.7])" in text
    assert "2 of 4 trial(s) have epochs in the run store" in text
    trials, epochs = tables(out, "grow")
    assert len(trials) == 4 and (trials.status == "completed").all()
    assert_epochs_whole(trials, epochs)
    # the two old points were not trained again: their rows are the original ones, pid and times included
    old = epochs[epochs.trial_id.isin(first_trials.trial_id)].sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(old, first_epochs.sort_values(["trial_id", "epoch"]).reset_index(drop=True))
    assert set(old.trained_by) == {"grow@v1"}
    assert set(epochs[~epochs.trial_id.isin(first_trials.trial_id)].trained_by) == {"grow@v2"}
    assert trials.set_index("trial_id").reused.to_dict() == {t: t in set(first_trials.trial_id) for t in trials.trial_id}
    attempts = sorted((out / "grow" / "tune").iterdir())
    assert len(attempts) == 2 and len(list(attempts[1].glob("trial_*"))) == 2  # Tune ran the two new trials only
    versions = sorted((out / "grow" / "versions").iterdir())
    assert [json.loads(v.read_text())["version"] for v in versions] == [1, 2]

    # another sweep containing one of those points (and one new) reuses it
    other = write_spec(tmp_path, "other", base={"epochs": 2}, grid={"density": [0.5, 0.9]}, scheduler=FIFO)
    ok(run(other, out))
    o_trials, o_epochs = tables(out, "other")
    reused = o_trials[o_trials.density == 0.5].iloc[0]
    assert reused.status == "completed" and reused.reused
    pd.testing.assert_frame_equal(o_epochs[o_epochs.trial_id == reused.trial_id].reset_index(drop=True),
                                  epochs[epochs.trial_id == reused.trial_id].reset_index(drop=True))
    # the grown spec under --name: every run is in the store, so nothing trains and Ray is not even started
    text = ok(run(spec, out, "--name", "other"))
    assert "every trial is complete in the run store; nothing to train" in text
    assert len(tables(out, "other")[0]) == 4
    orphan = o_trials[o_trials.density == 0.9].trial_id.iloc[0]  # no sweep's latest version names it now

    proc = run_cli("pipeline.status", str(out))
    lines = ok(proc).splitlines()
    assert lines[0].split() == ["sweep", "version", "trials", "completed", "last_ran"]
    assert lines[1].split()[:4] == ["grow", "2", "4", "4"] and lines[2].split()[:4] == ["other", "2", "4", "4"]
    proc = run_cli("pipeline.status", f"{out}/grow")
    text = ok(proc)
    assert text.startswith("sweep grow (spec version 2, ") and "): 4 completed\n" in text
    rows = [line.split() for line in text.splitlines()[2:]]
    assert [r[1] for r in rows] == ["0.1", "0.3", "0.5", "0.7"] and all(r[3] == "2/2" for r in rows)
    assert [r[5] for r in rows] == ["True", "False", "True", "False"]  # reused: trained by version 1
    status = json.loads(ok(run_cli("pipeline.status", f"file://{out}/other", "--json")))
    assert status["counts"] == {"completed": 4} and {t["trial"] for t in status["trials"]} == set(trials.trial_id)
    assert all(t["reused"] for t in status["trials"])  # all trained for grow, or by other's version 1
    listed = json.loads(ok(run_cli("pipeline.status", f"file://{out}", "--json")))
    assert [(s["sweep"], s["trials"]) for s in listed] == [("grow", 4), ("other", 4)]

    text = ok(run_cli("pipeline.status", str(out), "--orphans"))
    assert orphan in text and "1 orphan run(s)" in text and re.search(rf"{orphan}  \d+\.\d (KB|MB)", text)
    refused = run_cli("pipeline.status", str(out), "--orphans", "--delete", trials.trial_id.iloc[0])
    assert refused.returncode == 2 and "is not an orphan run" in refused.stderr and "a sweep refers to it" in refused.stderr
    assert (out / "runs" / trials.trial_id.iloc[0]).is_dir()
    assert f"deleted 1 orphan run(s): {orphan}" in ok(run_cli("pipeline.status", str(out), "--orphans", "--delete", orphan))
    assert not (out / "runs" / orphan).exists() and len(list((out / "runs").iterdir())) == 4


EVIL = "import pathlib; pathlib.Path({marker!r}).write_text('ran')"


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (EVIL.format(marker=self.marker),))


def _wait_for(condition, driver, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"the sweep did not get to {what}: {driver.poll()=}")


@pytest.mark.slow
def test_tune_state_destroyed_crafted_or_cut_and_a_damaged_checkpoint_change_nothing(tmp_path):
    """Killed mid-run twice; after the first kill Tune's experiment state is deleted, after the second
    every Tune file is truncated to 0 bytes, a trial folder deleted, pickles that would run code are
    planted, and the interrupted run's newest checkpoint is damaged. The resumed sweep retrains no
    finished run, continues the partial one (from the previous checkpoint), runs no planted code, and
    ends with exactly the results of an uninterrupted sweep."""
    spec = write_spec(tmp_path, "pre", base={"epochs": 5}, grid={"seed": [0, 1, 2]}, scheduler=FIFO)
    ok(run(spec, tmp_path / "ref", "--max-concurrent", "1"))
    out, log = tmp_path / "out", tmp_path / "driver.log"

    driver = start(spec, out, "--max-concurrent", "1", log=log)
    _wait_for(lambda: sorted(epochs_in_store(out).values()) in ([2, 5], [3, 5], [4, 5]), driver, "1.5 trials")
    kill_session(driver)
    after_first = epochs_in_store(out)
    finished = [h for h, n in after_first.items() if n == 5]
    assert len(finished) == 1
    finished_record = (out / "runs" / finished[0] / "record.json").read_bytes()
    for state in (out / "pre" / "tune").rglob("experiment_state*.json"):
        state.unlink()

    driver = start(spec, out, "--max-concurrent", "1", log=log)
    # two epochs of the third trial in: it has a previous checkpoint to fall back to
    _wait_for(lambda: len(epochs_in_store(out)) == 3 and 2 <= min(epochs_in_store(out).values()) <= 4,
              driver, "the third trial")
    kill_session(driver)
    partial = [h for h, n in epochs_in_store(out).items() if n < 5]
    assert len(partial) == 1
    for path in (out / "pre" / "tune").rglob("*"):
        if path.is_file():
            path.write_bytes(b"")
    shutil.rmtree(next((out / "pre" / "tune").rglob("trial_*")))
    marker = tmp_path / "planted-code-ran"
    for folder in (out / "pre", next((out / "pre" / "tune").iterdir()), out / "runs" / partial[0]):
        for name in ("tuner.pkl", "trainable.pkl", "experiment_state-2026-01-01_00-00-00.json"):
            (folder / name).write_bytes(pickle.dumps(_Evil(str(marker))))
    record = json.loads((out / "runs" / partial[0] / "record.json").read_text())
    newest = out / "runs" / partial[0] / record["checkpoints"][0]["file"]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    proc = run(spec, out, "--max-concurrent", "1")
    text = ok(proc)
    assert "resuming sweep pre from" in text
    assert "checkpoint problem in" in text + proc.stderr and "SHA-256 does not match the record" in text + proc.stderr
    assert not marker.exists()
    assert (out / "runs" / finished[0] / "record.json").read_bytes() == finished_record  # not trained again
    trials, epochs = tables(out, "pre")
    assert (trials.status == "completed").all() and len(epochs) == 15
    assert_epochs_whole(trials, epochs)
    for got, want in zip(outcome(out, "pre"), outcome(tmp_path / "ref", "pre")):
        pd.testing.assert_frame_equal(got, want)


def test_a_copied_storage_root_resumed_elsewhere_leaves_the_original_untouched(tmp_path):
    spec = write_spec(tmp_path, "cp", base={"epochs": 2}, grid={"seed": [0, 1]}, scheduler=FIFO)
    ok(run(spec, tmp_path / "a"))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    before = snapshot(tmp_path / "a")
    spec = write_spec(tmp_path, "cp", base={"epochs": 2}, grid={"seed": [0, 1, 2]}, scheduler=FIFO)
    ok(run(spec, tmp_path / "b"))  # grown and resumed in the copy: one new trial trains there
    assert snapshot(tmp_path / "a") == before
    trials, _ = tables(tmp_path / "b", "cp")
    assert len(trials) == 3 and all(str(tmp_path / "b" / "runs") in c for c in trials.checkpoint)


@pytest.mark.slow
def test_two_sweeps_started_together_that_share_a_run_train_it_once(tmp_path):
    out = tmp_path / "out"
    # 10 epochs: the run must still be training when the later of the two drivers has started Ray
    a = write_spec(tmp_path, "a", base={"epochs": 10}, grid={"seed": [0]}, scheduler=FIFO)
    b = write_spec(tmp_path, "b", base={"epochs": 10}, grid={"seed": [0]}, scheduler=FIFO)
    drivers = [start(a, out, log=tmp_path / "a.log"), start(b, out, log=tmp_path / "b.log")]
    for driver in drivers:
        assert driver.wait(timeout=600) == 0, (tmp_path / "a.log").read_text()[-2000:] + (tmp_path / "b.log").read_text()[-2000:]
    [run_hash] = epochs_in_store(out)
    history = json.loads((out / "runs" / run_hash / "record.json").read_text())["history"]
    assert [r["epoch"] for r in history] == list(range(1, 11)) and len({r["pid"] for r in history}) == 1
    assert len({r["trained_by"] for r in history}) == 1
    for name in ("a", "b"):
        trials, epochs = tables(out, name)
        assert list(trials.status) == ["completed"] and list(epochs.pid) == [history[0]["pid"]] * 10
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert f"run {run_hash} is being trained by pid {history[0]['pid']}" in logs  # the second one waited


@pytest.mark.slow
def test_the_driver_killed_at_random_moments_never_trains_a_finished_run_twice_and_ends_complete(tmp_path):
    # 8 epochs a trial: enough work that ten kills 4-16 s apart land before the sweep is done, on an idle
    # 2-core machine or a loaded one (each restart spends seconds starting Ray before it trains)
    per_trial = 8
    spec = write_spec(tmp_path, "kills", base={"epochs": per_trial}, grid={"seed": [0, 1, 2]}, scheduler=FIFO)
    ok(run(spec, tmp_path / "ref", "--max-concurrent", "1"))
    out, rng, kills = tmp_path / "out", random.Random(13), 0
    finished: dict[str, bytes] = {}
    while kills < 10:
        driver = start(spec, out, "--max-concurrent", "1", log=tmp_path / "driver.log")
        time.sleep(rng.uniform(4.0, 16.0))
        if driver.poll() is not None:
            break  # it finished before this kill
        kill_session(driver)
        kills += 1
        for run_hash, n in epochs_in_store(out).items():  # a finished run's record never changes again
            record = (out / "runs" / run_hash / "record.json").read_bytes()
            if run_hash in finished:
                assert record == finished[run_hash], f"finished run {run_hash} was written again after kill {kills}"
            elif n == per_trial:
                finished[run_hash] = record
        if (out / "kills" / "trials.parquet").is_file():  # the tables read between kills are right
            trials, epochs = tables(out, "kills")
            assert_epochs_whole(trials, epochs)
            assert set(trials.status) <= {"completed", "running", "interrupted", "pending"}
            assert (trials[trials.status == "completed"].epochs_completed == per_trial).all()
    assert kills >= 10, f"the sweep finished after only {kills} kills"
    ok(run(spec, out, "--max-concurrent", "1"))
    for got, want in zip(outcome(out, "kills"), outcome(tmp_path / "ref", "kills")):
        pd.testing.assert_frame_equal(got, want)
    for run_hash, record in finished.items():
        assert (out / "runs" / run_hash / "record.json").read_bytes() == record


@pytest.mark.slow
def test_an_asha_sweep_interrupted_and_resumed_five_times_decides_exactly_as_an_uninterrupted_one(tmp_path):
    asha = {"name": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1, "reduction_factor": 2}
    spec = write_spec(tmp_path, "det", base={"epochs": 4},
                      grid={"algo": ["ep", "random_mask"], "density": [0.05, 0.5], "seed": [0, 1]}, scheduler=asha)
    ok(run(spec, tmp_path / "ref", "--max-concurrent", "1"))
    want = outcome(tmp_path / "ref", "det")
    assert (want[0].status == "stopped_early").any() and (want[0].status == "completed").any()
    out, rng = tmp_path / "out", random.Random(7)
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL, signal.SIGINT]
    for sig in signals:
        before = sum(epochs_in_store(out).values())
        driver = start(spec, out, "--max-concurrent", "1", log=tmp_path / "driver.log")
        _wait_for(lambda: sum(epochs_in_store(out).values()) > before, driver, "one more epoch")
        time.sleep(rng.uniform(0.0, 4.0))
        kill_session(driver, sig)
    ok(run(spec, out, "--max-concurrent", "1"))
    for got, expected in zip(outcome(out, "det"), want):
        pd.testing.assert_frame_equal(got, expected)
