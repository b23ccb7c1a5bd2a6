"""The run store and the sweep's view over it, without Ray: records, checkpoint generations and
their fallback, damage, the per-run lease across processes, spec versions, trial expansion, statuses."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from hiddennets.errors import CheckpointError
from hiddennets.identity import config_hash
from hiddennets.validation import config_from_dict
from pipeline.run_lease import hold_run, run_holder
from pipeline.run_store import RunStore
from pipeline.spec import SweepSpec
from pipeline.sweep_view import (SweepTrial, expand_trials, read_outcomes, record_version, trial_records, versions,
                                 write_outcome, write_view)
from tests.conftest import REPO

BASE = {"dataset": "digits", "arch": "conv_digits", "algo": "ep", "density": 0.5, "epochs": 3, "name": "s"}


def ckpt(epoch: int, fill: float = 0.0) -> bytes:
    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "model": {"w": torch.full((4,), fill)}}, buffer)
    return buffer.getvalue()


def row(epoch: int, val: float = 50.0) -> dict:
    return {"epoch": epoch, "phase": "train", "val_acc": val, "test_acc": val, "train_loss": 1.0, "val_loss": 1.0,
            "density": 0.5, "seconds": 0.1, "trained_by": "s@v1", "pid": 1, "end_time": 1.0e9 + epoch}


def trained(store: RunStore, cfg, epochs: int):
    record = store.start(cfg)
    for e in range(1, epochs + 1):
        record = store.commit_epoch(record, row(e), ckpt(e))
    return record


def test_a_partial_run_keeps_its_two_newest_checkpoints_a_complete_run_its_last_only(tmp_path):
    cfg = config_from_dict(BASE, {"epochs": 4})
    store = RunStore(str(tmp_path))
    record = trained(store, cfg, 3)
    folder = tmp_path / "runs" / config_hash(cfg)
    on_disk = lambda: sorted(p.name.split("-")[0] for p in (folder / "ckpt").iterdir())  # noqa: E731
    assert on_disk() == ["00002", "00003"] and not record.complete  # the fallback a resume may need
    assert [c["epoch"] for c in store.read(config_hash(cfg)).record.checkpoints] == [3, 2]
    record = store.commit_epoch(record, row(4), ckpt(4))
    assert on_disk() == ["00004"]  # never resumed again: one copy, for analysis
    again = store.read(config_hash(cfg)).record
    assert again.history == record.history and again.complete and again.epochs_planned == 4
    assert [c["epoch"] for c in again.checkpoints] == [4]
    assert store.load_checkpoint(again, print)[1]["epoch"] == 4
    assert not list(folder.rglob(".*tmp*"))  # every write went through a temporary and a rename
    with pytest.raises(ValueError, match="epoch 6 does not follow 4"):
        store.commit_epoch(again, row(6), ckpt(6))


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_and_cuts_the_record_back(tmp_path):
    cfg = config_from_dict(BASE)
    store = RunStore(str(tmp_path))
    record = trained(store, cfg, 2)
    newest = tmp_path / "runs" / record.hash / record.checkpoints[0]["file"]
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as by a crash of the disk
    warnings = []
    blob, state, epoch = store.load_checkpoint(record, warnings.append)
    assert epoch == 1 and state["epoch"] == 1 and blob == ckpt(1)
    assert "SHA-256 does not match the record" in warnings[0] and "resuming from ckpt/00001-" in warnings[0]
    cut = store.truncate(record, epoch)
    assert len(cut.history) == 1 and [c["epoch"] for c in cut.checkpoints] == [1]
    assert newest.with_name(newest.name + ".corrupt").is_file()  # kept for inspection, out of the way
    assert len(store.read(record.hash).record.history) == 1
    (tmp_path / "runs" / record.hash / cut.checkpoints[0]["file"]).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        store.load_checkpoint(cut, warnings.append)


@pytest.mark.parametrize("damage, reason", [
    (lambda text: text[: len(text) // 2], "JSONDecodeError"),
    (lambda text: text.replace('"epochs_planned": 3', '"epochs_planned": "x"'), "ValueError"),
    (lambda text: json.dumps({**json.loads(text), "history": json.loads(text)["history"][::-1]}), "not 1..3 in order"),
    (lambda text: json.dumps({**json.loads(text), "config": {**json.loads(text)["config"], "density": 0.1}}),
     "does not have the hash it is filed under"),
])
def test_a_damaged_record_is_reported_as_damaged_with_its_reason_never_relabelled(tmp_path, damage, reason):
    cfg = config_from_dict(BASE)
    store = RunStore(str(tmp_path))
    record = trained(store, cfg, 3)
    path = tmp_path / "runs" / record.hash / "record.json"
    path.write_text(damage(path.read_text()))
    found = store.read(record.hash)
    assert found.record is None and reason in found.damaged and str(path) in found.damaged
    trial = SweepTrial(record.hash, {}, cfg)
    [shown] = trial_records(str(tmp_path / "s"), store, [trial], "fp", "s@v1")
    assert shown.status == "damaged" and reason in shown.reason and shown.history == []
    with pytest.raises(CheckpointError, match="is damaged"):
        store.start(cfg)  # a trial refuses to train over it


def test_statuses_in_the_view_and_a_stopped_trial_shows_only_the_epochs_its_sweep_saw(tmp_path):
    store, sweep = RunStore(str(tmp_path)), str(tmp_path / "s")
    cfgs = [config_from_dict(BASE, {"seed": s}) for s in range(5)]
    trained(store, cfgs[0], 3)                      # complete
    trained(store, cfgs[1], 3)                      # complete elsewhere, but this sweep's ASHA stopped it at 1
    trained(store, cfgs[2], 2)                      # partial, nobody training: interrupted
    trained(store, cfgs[3], 1)                      # errored in this sweep
    trials = [SweepTrial(config_hash(c), {"seed": i}, c) for i, c in enumerate(cfgs)]
    store_full = store.read(trials[1].id).record
    write_outcome(sweep, trials[1].id, {"status": "stopped_early", "reason": "asha", "epoch": 1,
                                        "version_fingerprint": "fp", "decision": {"rung": 1, "value": 9.0, "cutoff": 20.0}})
    write_outcome(sweep, trials[3].id, {"status": "errored", "reason": "boom", "version_fingerprint": "fp"})
    write_outcome(sweep, trials[2].id, {"status": "errored", "reason": "old", "version_fingerprint": "another"})
    records = trial_records(sweep, store, trials, "fp", "s@v2")
    # a complete run wins over an older decision; the stop applies to the view, not to the run
    assert [r.status for r in records] == ["completed", "completed", "interrupted", "errored", "pending"]
    assert records[0].reused  # trained under s@v1, shown in s@v2
    store.truncate(store_full, 2)  # now partial: the sweep's decision to stop it is what the view shows
    records = trial_records(sweep, store, trials, "fp", "s@v1")
    assert records[1].status == "stopped_early" and len(records[1].history) == 1
    assert records[1].decision == {"rung": 1, "value": 9.0, "cutoff": 20.0} and not records[1].reused
    assert set(read_outcomes(sweep, "fp")) == {trials[1].id, trials[3].id}


def test_the_run_lease_makes_a_second_process_wait_until_the_first_lets_go(tmp_path):
    store = RunStore(str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pipeline.run_store import RunStore; from pipeline.run_lease import hold_run\n"
        f"with hold_run(RunStore({str(tmp_path)!r}), 'abc'):\n"
        "    print('held', flush=True); time.sleep(3)")], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    assert run_holder(store, "abc")["pid"] == holder.pid
    said, started = [], time.monotonic()
    with hold_run(store, "abc", notify=said.append):
        waited = time.monotonic() - started
        assert waited > 2  # it only got the lease once the holder let go (after its 3 s)
        assert run_holder(store, "abc") is None or run_holder(store, "abc")["pid"] == os.getpid()
    assert holder.wait(timeout=30) == 0
    assert len(said) == 1 and said[0].startswith(f"run abc is being trained by pid {holder.pid} on ")
    assert said[0].endswith("; waiting for it")
    assert run_holder(store, "abc") is None


def test_the_object_store_lease_waits_while_its_heartbeat_is_fresh(tmp_path):
    store = RunStore(f"file://{tmp_path}")
    store.local = False  # the object-store code path, on a local folder
    lease = tmp_path / "runs" / "abc" / "lease.json"
    lease.parent.mkdir(parents=True)
    lease.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then", "heartbeat": time.time() - 88}))
    said, started = [], time.monotonic()
    with hold_run(store, "abc", notify=said.append):
        assert json.loads(lease.read_text())["pid"] == os.getpid()
    assert time.monotonic() - started >= 1.5 and "pid 1 on elsewhere" in said[0]  # waited for it to expire
    assert not lease.exists()


def spec_of(**kwargs) -> SweepSpec:
    return SweepSpec(name="s", base={**BASE, **kwargs.pop("base", {})}, **kwargs)


def test_growing_a_sweep_keeps_every_earlier_trial_and_draw(tmp_path):
    small = expand_trials(spec_of(grid={"density": [0.1, 0.5], "optimizer.lr": {"loguniform": [0.01, 0.2]}}))
    grown = expand_trials(spec_of(grid={"density": [0.1, 0.3, 0.5], "optimizer.lr": {"loguniform": [0.01, 0.2]}},
                                  num_samples=2))
    assert len(small) == 2 and len(grown) == 6
    assert {t.id for t in small} <= {t.id for t in grown}  # the same draws: the same runs
    assert all(0.01 <= t.overrides["optimizer.lr"] <= 0.2 for t in grown)
    assert len({t.overrides["optimizer.lr"] for t in grown}) == 6
    # repeats without a sampled axis are the same run, trained once
    assert len(expand_trials(spec_of(grid={"seed": [0, 1]}, num_samples=3))) == 2


def test_spec_versions_are_appended_with_the_keys_that_changed(tmp_path):
    sweep = str(tmp_path / "s")
    one = spec_of(grid={"density": [0.1, 0.5]})
    v1, prev = record_version(sweep, one, expand_trials(one))
    assert v1.number == 1 and prev is None
    again, prev = record_version(sweep, one, expand_trials(one))
    assert again.number == 1 and prev is again  # same spec: a resume, no new version
    two = spec_of(grid={"density": [0.1, 0.3, 0.5]}, base={"epochs": 4})
    v2, prev = record_version(sweep, two, expand_trials(two))
    assert v2.number == 2 and prev.number == 1
    assert v2.data["changed"] == {"base.epochs": [3, 4], "grid.density": [[0.1, 0.5], [0.1, 0.3, 0.5]]}
    first = (tmp_path / "s" / "versions" / "0001.json").read_text()
    record_version(sweep, one, expand_trials(one))  # back to the first spec: a third version, the first untouched
    assert [v.number for v in versions(sweep)] == [1, 2, 3]
    assert (tmp_path / "s" / "versions" / "0001.json").read_text() == first


def test_the_tables_built_incrementally_equal_the_tables_built_from_scratch(tmp_path):
    """The driver's callback keeps each trial's rows between calls and rebuilds only the trials that
    changed; its tables must be exactly what a fresh build gives after every change."""
    store, sweep = RunStore(str(tmp_path)), tmp_path / "s"
    sweep.mkdir()
    cfgs = [config_from_dict(BASE, {"seed": s}) for s in range(6)]
    trials = [SweepTrial(config_hash(c), {"seed": i}, c) for i, c in enumerate(cfgs)]
    partial = [trained(store, c, 3 if i < 4 else 1) for i, c in enumerate(cfgs)]
    cache: dict = {}

    names = ("trials.parquet", "epochs.parquet", "layers.parquet")

    def both():
        write_view(str(sweep), "s", store, trials, "fp", "s@v1", cache)
        ours = [pd.read_parquet(sweep / name) for name in names]
        write_view(str(sweep), "s", store, trials, "fp", "s@v1")  # no cache: everything anew
        for name, frame in zip(names, ours):
            pd.testing.assert_frame_equal(frame, pd.read_parquet(sweep / name))
        return ours

    first = both()
    assert len(first[1]) == 4 * 3 + 2
    kept = {t.id: cache["built"][t.id][2] for t in trials}
    store.commit_epoch(partial[4], row(2, 60.0), ckpt(2))          # one trial trains an epoch
    write_outcome(str(sweep), trials[5].id, {"status": "errored", "reason": "boom", "version_fingerprint": "fp"})
    second = both()
    assert len(second[1]) == len(first[1]) + 1
    assert list(second[0]["status"]) == ["completed"] * 4 + ["interrupted", "errored"]
    rebuilt = [t.id for t in trials if cache["built"][t.id][2] is not kept[t.id]]
    assert rebuilt == [trials[4].id, trials[5].id]  # only what changed was built again
