"""Safety of single runs and of what a run reads back: divergence of any trained tensor, one process
per run folder, a checkpoint resumed only by its own run, finished runs on read-only storage, names
that cannot escape their storage, alias bombs, unreadable tables, and Ray's token file."""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hiddennets.config import read_yaml
from hiddennets.engine import train
from hiddennets.errors import ConfigError, DivergedError
from hiddennets.validation import config_from_dict
from pipeline.cli import run_main
from pipeline.cluster import token_permission_problem
from pipeline.report import main as report_command
from pipeline.run import main as run_command
from tests.conftest import REPO, run_cli
from tests.test_storage_faults import small_disk  # noqa: F401 - the real read-only tmpfs fixture

RUN = {"dataset": "digits", "arch": "conv_digits", "width": 0.25, "algo": "ep", "density": 0.5,
       "init": "signed_constant", "epochs": 2, "batch_size": 64}


def write_run_spec(folder: Path, **changes) -> Path:
    path = folder / f"run{len(list(folder.glob('run*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({**RUN, **changes}))
    return path


def test_scores_that_become_nan_stop_the_run_at_epoch_1_although_the_loss_stays_finite(tmp_path):
    # lr 1e30 is a valid number; edge-popup's loss stays finite while its scores overflow to NaN
    proc = run_cli("pipeline.run", str(write_run_spec(tmp_path)), "optimizer.lr=1e30", "--out", str(tmp_path / "big"))
    assert proc.returncode == 1, proc.stdout[-1000:] + proc.stderr[-1000:]
    assert proc.stderr.strip().splitlines() == ["error: diverged: 0.scores is nan at epoch 1 (lr 1e+30)"]
    assert not (tmp_path / "big" / "checkpoint.pt").exists()  # the broken state is never checkpointed
    # lr NaN never gets that far from a command line: it is refused before anything starts ...
    proc = run_cli("pipeline.run", str(write_run_spec(tmp_path)), "optimizer.lr=nan", "--out", str(tmp_path / "nan"))
    assert proc.returncode == 2 and proc.stderr.strip() == "error: optimizer.lr: expected a finite number, got nan"
    assert not (tmp_path / "nan").exists()
    # ... and a config built around validation in a notebook diverges at epoch 1 too
    cfg = config_from_dict(RUN)
    cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, lr=math.nan))
    with pytest.raises(DivergedError, match=r"^diverged: \S+ is nan at epoch 1 \(lr nan\)$"):
        train(cfg, tmp_path / "lib", log=None)


def test_a_second_process_on_the_same_run_folder_refuses_and_names_the_holder(tmp_path):
    spec = write_run_spec(tmp_path, epochs=30)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([sys.executable, "-m", "pipeline.run", str(spec), "--out", str(out)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:  # the first is training
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()
        second = run_cli("pipeline.run", str(spec), "--out", str(out))
        assert second.returncode == 2, second.stdout[-1000:] + second.stderr[-1000:]
        line = second.stderr.strip()
        assert line.startswith(f"error: {out}: this run is already being trained (pid {first.pid} on ") and \
            "running the same command afterwards resumes the run" in line and "\n" not in line, line
    finally:
        first.kill()
        first.wait()
    # the lock died with its holder (SIGKILL): the same command now resumes (seen, then stopped)
    again = subprocess.Popen([sys.executable, "-m", "pipeline.run", str(spec), "--out", str(out)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = [again.stdout.readline() for _ in range(3)]
        assert any(f"resuming {out} from epoch" in line for line in seen), seen
    finally:
        again.kill()
        again.wait()


def _finished(tmp_path: Path, name: str, **changes) -> Path:
    out = tmp_path / name
    train(config_from_dict({**RUN, "epochs": 1, **changes}), out, log=None)
    return out


def refused_run(capsys, spec: Path, *args: str) -> str:
    """pipeline.run in this process: it must refuse with exit 2 and one line; returns that line."""
    capsys.readouterr()
    assert run_main(run_command, [str(spec), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_a_checkpoint_is_used_only_by_the_run_that_wrote_it(tmp_path, capsys):
    spec = write_run_spec(tmp_path)
    # 1. config.yaml edited by hand (density 0.5 -> 0.1) and the command given density=0.1
    edited = _finished(tmp_path, "edited")
    (edited / "config.yaml").write_text((edited / "config.yaml").read_text().replace("density: 0.5", "density: 0.1"))
    before = (edited / "checkpoint.pt").read_bytes()
    line = refused_run(capsys, spec, "epochs=1", "density=0.1", "--out", str(edited))
    assert line.startswith(f"error: {edited}/checkpoint.pt: holds a checkpoint of another run") and \
        "density 0.5 -> 0.1" in line, line
    assert (edited / "checkpoint.pt").read_bytes() == before
    # 2. a seed-0 checkpoint copied into a seed-1 run folder
    seed0 = _finished(tmp_path, "seed0")
    line = refused_run(capsys, spec, "epochs=1", "seed=1", "--out", str(_copy_with_config(seed0, tmp_path / "s1", seed=1)))
    assert "seed 0 -> 1" in line, line
    # 3. a checkpoint of another width (its tensors would not even load), and of another algorithm
    line = refused_run(capsys, spec, "epochs=1", "width=0.5", "--out",
                       str(_copy_with_config(seed0, tmp_path / "wide", width=0.5)))
    assert "width 0.25 -> 0.5" in line, line
    line = refused_run(capsys, spec, "epochs=1", "algo=biprop", "--out",
                       str(_copy_with_config(seed0, tmp_path / "biprop", algo="biprop")))
    assert "algo 'ep' -> 'biprop'" in line or "algo" in line, line


def _copy_with_config(source: Path, target: Path, **changes) -> Path:
    target.mkdir()
    (target / "config.yaml").write_text(yaml.safe_dump(config_from_dict({**RUN, "epochs": 1, **changes}).to_dict()))
    for name in ("checkpoint.pt", "checkpoint.sha256.json"):
        shutil.copy2(source / name, target / name)
    return target


def test_a_finished_run_on_read_only_storage_prints_its_result(small_disk, tmp_path):  # noqa: F811
    disk, remount = small_disk
    spec = write_run_spec(tmp_path, epochs=1)
    first = run_cli("pipeline.run", str(spec), "--out", str(disk / "run"))
    assert first.returncode == 0, first.stderr[-2000:]
    remount("ro")
    again = run_cli("pipeline.run", str(spec), "--out", str(disk / "run"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.splitlines()[-2].split("(best")[0] == first.stdout.splitlines()[-2].split("(best")[0]
    unfinished = run_cli("pipeline.run", str(spec), "epochs=2", "--out", str(disk / "other"))
    assert unfinished.returncode == 1 and "Read-only file system" in unfinished.stderr, unfinished.stderr[-2000:]


def test_names_cannot_lead_outside_the_storage(tmp_path, capsys):
    storage = tmp_path / "storage"
    storage.mkdir()
    spec = write_run_spec(tmp_path)
    for name in ("../escaped", "../../escaped", "..", ".", "/tmp/escaped", "a/../../escaped"):
        line = refused_run(capsys, spec, f"name={name}", "--storage", str(storage))
        assert line.startswith("error: name: expected a folder name"), line
    # a symlink inside the storage that points outside it is caught on the resolved path
    (storage / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    line = refused_run(capsys, spec, "name=linked", "--storage", str(storage))
    assert "would be outside the storage" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["storage", spec.name])
    assert not Path("/tmp/escaped").exists()


def test_an_alias_bomb_is_refused_at_once_with_bounded_memory(tmp_path):
    levels = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 8))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + levels + "base: {description: *l7}\n")
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="YAML aliases expand to more than 20000 values"):
        read_yaml(bomb)
    seconds, peak = time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 5 * 2**20, (seconds, peak)  # 9^8 values would need gigabytes
    proc = run_cli("pipeline.sweep", str(bomb), "--dry-run")
    assert proc.returncode == 2 and proc.stderr.strip() == \
        f"error: {bomb}: YAML aliases expand to more than 20000 values; write the values out or use fewer aliases"


@pytest.mark.parametrize("damage", ["file", "truncated", "garbage", "foreign"])
def test_a_report_on_a_damaged_or_foreign_table_is_one_line(tmp_path, capsys, damage):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    good = pd.DataFrame({"trial_id": ["a"], "status": ["completed"], "algo": ["ep"], "density": [0.5]})
    good.to_parquet(sweep / "trials.parquet")
    pd.DataFrame({"trial_id": ["a"], "epoch": [1], "val_acc": [1.0], "test_acc": [1.0]}).to_parquet(sweep / "epochs.parquet")
    target = sweep
    if damage == "file":
        target = sweep / "trials.parquet"
    elif damage == "truncated":
        data = (sweep / "trials.parquet").read_bytes()
        (sweep / "trials.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        (sweep / "epochs.parquet").write_bytes(os.urandom(300))
    else:
        pd.DataFrame({"x": [1]}).to_parquet(sweep / "trials.parquet")
    before = sorted(p.name for p in sweep.iterdir())
    capsys.readouterr()
    assert run_main(report_command, [str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {target if damage == 'file' else sweep}"), err
    assert sorted(p.name for p in sweep.iterdir()) == before  # no report folder written


def test_a_token_file_readable_by_others_is_named_with_the_fix(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)
    problem = token_permission_problem(str(token))
    assert problem == (f"warning: {token} is readable by other users (mode 0644): anyone here can then control the "
                       f"cluster; run chmod 600 {token}")
    token.chmod(0o600)
    assert token_permission_problem(str(token)) is None
    assert token_permission_problem(str(tmp_path / "absent")) is None
