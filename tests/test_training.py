"""Real short trainings on CPU: accuracy, exact resume after kill -9, and real DDP with gloo."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hiddennets.frozen_weights import model_from_checkpoint
from hiddennets import load_config, train
from hiddennets.checkpoint import load_checkpoint
from hiddennets.data import build_datasets
from hiddennets.distributed import DistInfo
from hiddennets.loops import evaluate
from tests.conftest import REPO, run_cli


def test_edge_popup_finds_a_95_percent_subnetwork_where_a_random_mask_stays_at_chance(quickstart, tmp_path):
    ep = train(load_config(quickstart), tmp_path / "ep", log=None)
    rm = train(load_config(quickstart, algo="random_mask"), tmp_path / "rm", log=None)
    assert ep["final"]["test_acc"] >= 95.0, ep["final"]
    assert ep["final"]["density"] == 0.5 and rm["final"]["density"] == 0.5
    assert rm["final"]["test_acc"] <= 30.0, rm["final"]
    history = [json.loads(line) for line in (tmp_path / "ep" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in history] == list(range(1, 16))
    assert {"train_loss", "train_top5", "val_loss", "val_acc", "val_top5", "test_loss", "test_acc", "test_top5",
            "density", "lr", "seconds", "phase"} <= set(history[0])
    assert list((tmp_path / "ep" / "tb").glob("events.out.tfevents.*"))


def _metrics_without_time(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_run_killed_mid_epoch_resumes_and_ends_with_identical_metrics(quickstart, tmp_path):
    args = [str(quickstart), "epochs=4"]
    straight = run_cli("pipeline.run", *args, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.run", *args, "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    time.sleep(0.4)  # well into epoch 3 (an epoch takes about 2 s here)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = len(metrics.read_text().splitlines())
    assert 2 <= done < 4, f"the kill landed after {done} epochs"
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == done

    resumed = run_cli("pipeline.run", *args, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} from epoch {done}" in resumed.stdout
    progress = [line.split()[1] for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert progress == [f"{e}/4" for e in range(done + 1, 5)]  # only the missing epochs ran
    assert _metrics_without_time(out) == _metrics_without_time(tmp_path / "straight")
    assert torch.equal(load_checkpoint(out / "checkpoint.pt")["model"]["0.scores"],
                       load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]["0.scores"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, spec, run_dir, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        results[rank] = train(load_config(spec, epochs=2), run_dir, log=None)
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_workers_shard_data_and_all_reduce_metrics(quickstart, tmp_path):
    run_dir = tmp_path / "ddp"
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(2, _free_port(), str(quickstart), str(run_dir), results), nprocs=2)
        results = dict(results)
    untimed = [{k: v for k, v in results[r]["final"].items() if k != "seconds"} for r in (0, 1)]
    assert untimed[0] == untimed[1]  # every rank sees the all-reduced metrics
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # one writer
    # the all-reduced validation accuracy equals a single-process evaluation of the saved model
    cfg = load_config(quickstart, epochs=2)
    model = model_from_checkpoint(load_checkpoint(run_dir / "checkpoint.pt"))
    _, val, _ = build_datasets(cfg)
    loader = torch.utils.data.DataLoader(val, batch_size=512)
    single = evaluate(model, loader, cfg, torch.device("cpu"), DistInfo(), "val")
    assert single["val_acc"] == pytest.approx(results[0]["final"]["val_acc"])
    assert single["val_acc"] > 80.0
