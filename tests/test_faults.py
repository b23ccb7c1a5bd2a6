"""Faults in a single run: SIGKILL at 25 points, torn and corrupted checkpoints, divergence, tampering.

tests/fault_harness.py forks one real training process per attempt and kills it with SIGKILL at
planned points (during a step, during evaluation, while a checkpoint is being written or rotated, ...)
and at random moments; every restart must resume from the newest complete checkpoint and the final
metrics and weights must equal those of a run that was never interrupted.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hiddennets.checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from hiddennets.validation import config_from_dict
from hiddennets.engine import train
from hiddennets.errors import CheckpointError, DivergedError
from tests.conftest import REPO, run_cli

EPOCHS = 20
CONFIG = {"dataset": "digits", "arch": "conv_digits", "width": 0.25, "algo": "ep", "density": 0.5,
          "init": "signed_constant", "epochs": EPOCHS, "batch_size": 128, "seed": 0,
          "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
          "schedule": {"name": "cosine"}}
# (kind, n): the n-th occurrence in that process's life; see fault_harness.py. 27 kills in all.
KILLS = ([("step", n) for n in (1, 5, 11, 17, 3, 26, 9, 14)] + [("eval", n) for n in (1, 2, 3, 4)]
         + [("torn_write", n) for n in (1, 2, 1)] + [("digests", n) for n in (1, 2)]
         + [("rotate", n) for n in (1, 2, 1)] + [("landed", n) for n in (1, 2)]
         + [("metrics", n) for n in (2, 2)])
TIMER_KILLS = 3


def plan() -> list[dict]:
    rng = random.Random(7)  # a fixed shuffle: the same kill order on every machine
    attempts = [{"kind": kind, "n": n} for kind, n in KILLS]
    rng.shuffle(attempts)
    for _ in range(TIMER_KILLS):  # and at random moments from outside
        attempts.insert(rng.randrange(len(attempts)), {"kind": "timer", "n": rng.randrange(200, 700)})
    # Damage the newest checkpoint before the restart that follows each "metrics" kill (that child
    # wrote two checkpoints, so a previous generation exists): the previous one must be used.
    out = []
    for attempt in attempts:
        out.append(attempt)
        if attempt["kind"] == "metrics":
            out.append({"kind": "step", "n": 4, "corrupt": "flip" if any(a.get("corrupt") for a in out)
                        else "truncate"})
    return out + [{}]  # and a last attempt that runs to the end


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("faults")
    (work / "plan.json").write_text(json.dumps({"config": CONFIG, "work_dir": str(work), "attempts": plan()}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "tests" / "fault_harness.py"), str(work / "plan.json"),
                           str(work / "report.json")], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((work / "report.json").read_text())


def _resumed_from(log: str) -> int:
    found = re.findall(r"resuming .* from epoch (\d+)", log)
    return int(found[0]) if found else 0


def test_every_kill_lands_and_every_restart_resumes_from_the_newest_complete_checkpoint(killed_run):
    attempts = killed_run["attempts"]
    kills = [a for a in attempts if a.get("kind")]
    assert len(kills) >= 20 + 2 and all(a["killed"] for a in kills), [(a, a["log"][-500:]) for a in kills
                                                                    if not a["killed"]]
    assert {a["kind"] for a in kills} == {"step", "eval", "torn_write", "digests", "rotate", "landed", "metrics",
                                          "timer"}
    for attempt in attempts:
        if attempt.get("kind") == "timer" and not attempt["log"]:
            # killed from outside before it had restored (fsync stalls on a busy disk can delay that past
            # 0.5 s): nothing to check here; the next attempt must still resume from the same checkpoint
            continue
        assert _resumed_from(attempt["log"]) == attempt["complete_epoch_before"], attempt
        assert "Traceback" not in attempt["log"], attempt["log"]
    resumed = [a["complete_epoch_before"] for a in attempts]
    assert resumed[-1] < EPOCHS and max(resumed) > EPOCHS // 2  # the kills were spread over the run
    last = attempts[-1]
    assert last["status"] == 0 and f"epoch  {EPOCHS}/{EPOCHS}" in last["log"]


def test_a_damaged_newest_checkpoint_is_reported_and_the_previous_one_used(killed_run):
    damaged = [a for a in killed_run["attempts"] if a.get("corrupt")]
    assert [a["corrupt"] for a in damaged] == ["truncate", "flip"]
    for attempt in damaged:
        assert "checkpoint.pt: SHA-256 does not match" in attempt["log"]
        assert f"(moved aside as .corrupt); resuming from checkpoint.prev.pt (epoch " \
               f"{attempt['complete_epoch_before']})" in attempt["log"]


def test_the_killed_run_ends_exactly_where_an_uninterrupted_run_ends(killed_run):
    assert killed_run["reference"]["status"] == 0
    reference, killed = Path(killed_run["reference"]["run_dir"]), Path(killed_run["run_dir"])

    def rows(run_dir: Path) -> list[dict]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]
    assert len(rows(killed)) == EPOCHS and rows(killed) == rows(reference)
    a, b = load_checkpoint(reference / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert not list(killed.glob(".checkpoint.pt.tmp-*"))  # torn temporaries were cleaned up


def test_when_no_checkpoint_is_usable_the_run_refuses_instead_of_starting_over(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({**CONFIG, "epochs": 1}))
    run_dir = tmp_path / "run"
    train(config_from_dict({**CONFIG, "epochs": 1}), run_dir, log=None)
    (run_dir / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes()[:1000])
    # the folder's .lock only records who holds it last (pid, time); everything else must stay as it was
    files = lambda: {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}  # noqa: E731
    before = files()
    proc = run_cli("pipeline.run", str(spec), "--out", str(run_dir))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.search(r"^error: .*run: no usable checkpoint \(checkpoint.pt: SHA-256 does not match", proc.stderr,
                     re.M), proc.stderr
    assert files() == before  # nothing overwritten


class Payload:
    """Unpickling this runs a shell command: what a tampered checkpoint would carry."""
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_checkpoint_cannot_run_code_even_with_a_matching_digest(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "model": {"w": torch.ones(2)}}, path)
    save_checkpoint({"epoch": 2, "model": {"w": torch.ones(2)}}, path)  # now epoch 2, previous epoch 1
    # the attacker rewrites the checkpoint AND its digest, so only the safe loader stands in the way
    evil = io.BytesIO()
    torch.save({"epoch": 3, "model": {"w": torch.ones(2)}, "evil": Payload(marker)}, evil)
    path.write_bytes(evil.getvalue())
    manifest_path = tmp_path / "checkpoint.sha256.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "current": hashlib.sha256(evil.getvalue()).hexdigest()}))
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    state = load_latest_checkpoint(path)  # rejected, reported, and the previous generation is used
    assert state["epoch"] == 1
    assert not path.exists() and (tmp_path / "checkpoint.pt.corrupt").is_file()  # moved aside, kept
    (tmp_path / "checkpoint.pt.corrupt").replace(path)
    (tmp_path / "checkpoint.prev.pt").unlink()
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_latest_checkpoint(path)
    assert not marker.exists()


def test_a_scratch_folder_keeps_one_checkpoint_generation_with_its_digest(tmp_path):
    # A Ray trial's run folder is scratch (the run store keeps the fallback): one file, still checked.
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "model": {"w": torch.ones(2)}}, path)
    save_checkpoint({"epoch": 2, "model": {"w": torch.ones(2)}}, path)
    assert (tmp_path / "checkpoint.prev.pt").is_file()
    save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}}, path, keep_previous=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "checkpoint.sha256.json"]
    manifest = json.loads((tmp_path / "checkpoint.sha256.json").read_text())
    assert manifest == {"current": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert load_latest_checkpoint(path)["epoch"] == 3
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError):  # no previous generation to fall back to: refused, not restarted
        load_latest_checkpoint(path)


def test_a_loss_that_becomes_nan_stops_the_run_as_diverged_and_keeps_the_last_good_checkpoint(tmp_path):
    # lr 0.1 for epoch 1, then x1e13: dense training blows up in epoch 2
    cfg = config_from_dict({**CONFIG, "algo": "dense", "epochs": 3,
                            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                            "schedule": {"name": "multistep", "milestones": [1], "gamma": 1.0e13}})
    with pytest.raises(DivergedError, match=r"^diverged: train_loss is (nan|inf) at epoch 2 \(lr 1e\+12\)"):
        train(cfg, tmp_path / "run", log=None)
    assert load_latest_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1  # the good one, untouched
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
