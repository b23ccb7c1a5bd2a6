"""Kill a real training process with SIGKILL at chosen points, restart it, and record what it resumed from.

    python tests/fault_harness.py PLAN.json REPORT.json

The harness imports torch and hiddennets once and then forks one child process per attempt (cheap:
no interpreter start per kill). A child trains with `hiddennets.train` into the run folder until it
is killed; nothing in the code under test changes except that, at the planned moment, the child
sends itself SIGKILL (or the harness kills it from outside after a random delay). Between attempts
the harness records which complete checkpoint is on disk; each restart's "resuming from epoch N"
line is captured so the test can check it resumed from exactly that one.

Kill points (kind, n): "step" before the n-th optimiser step applies; "eval" on entering the n-th
evaluation; "torn_write" half-way through writing the n-th checkpoint's bytes; "digests" after the
n-th manifest write (each save writes it twice: before and after); "rotate" between moving the n-th old
checkpoint to checkpoint.prev.pt and renaming the new one in; "landed" after the n-th new checkpoint is renamed in,
before the manifest is rewritten; "metrics" after the n-th checkpoint,
before metrics.jsonl is rewritten; "timer" from outside after n milliseconds.
Corruptions ("truncate" / "flip", applied between attempts) damage checkpoint.pt on disk.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import torch

import hiddennets.checkpoint as checkpoint_module
import hiddennets.engine as engine
import hiddennets.loops as loops
import hiddennets.outputs as outputs
from hiddennets.validation import config_from_dict


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill_point(kind: str, n: int) -> None:
    """Arrange for this (child) process to SIGKILL itself at the n-th occurrence of `kind`."""
    count = {"value": 0}

    def reached() -> bool:
        count["value"] += 1
        return count["value"] == n

    if kind == "step":
        real_step = torch.optim.SGD.step

        def step(self, *args, **kwargs):
            if reached():
                _die()
            return real_step(self, *args, **kwargs)
        torch.optim.SGD.step = step
    elif kind == "eval":
        real_evaluate = loops.evaluate

        def evaluate(*args, **kwargs):
            if reached():
                _die()
            return real_evaluate(*args, **kwargs)
        loops.evaluate = evaluate
    elif kind in ("torn_write", "digests", "rotate", "landed"):
        real_replace_atomically, real_os_replace = checkpoint_module._replace_atomically, os.replace

        def replace_atomically(path, write):
            name = Path(path).name
            if kind == "torn_write" and name == "checkpoint.pt" and reached():
                class Half:  # the bytes go to the real temporary file, then the process dies mid-write
                    def __init__(self, fh):
                        self.fh = fh

                    def write(self, data):
                        self.fh.write(data[: len(data) // 2])
                        self.fh.flush()
                        os.fsync(self.fh.fileno())
                        _die()
                return real_replace_atomically(path, lambda fh: write(Half(fh)))
            result = real_replace_atomically(path, write)
            if kind == "digests" and name == "checkpoint.sha256.json" and reached():
                _die()
            if kind == "landed" and name == "checkpoint.pt" and reached():
                _die()  # the new checkpoint is in place, the manifest not yet rewritten
            return result

        def os_replace(src, dst, *args, **kwargs):
            result = real_os_replace(src, dst, *args, **kwargs)
            if kind == "rotate" and Path(dst).name == "checkpoint.prev.pt" and reached():
                _die()
            return result
        checkpoint_module._replace_atomically = replace_atomically
        checkpoint_module.os.replace = os_replace
    elif kind == "metrics":
        real_write_jsonl = outputs.write_jsonl

        def write_jsonl(rows, path):
            if reached():
                _die()
            return real_write_jsonl(rows, path)
        outputs.write_jsonl = write_jsonl
    elif kind != "timer":
        raise ValueError(f"unknown kill point {kind}")


def run_child(cfg, run_dir: Path, kind: str | None, n: int, log_file: Path) -> int:
    """Fork a child that trains until done or killed; return its raw wait status."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            torch.set_num_threads(1)  # the same arithmetic in every child, whatever the machine
            logging.basicConfig(filename=log_file, level=logging.WARNING, force=True)
            if kind:
                install_kill_point(kind, n)
            with open(log_file, "a") as out:
                engine.train(cfg, run_dir, log=lambda line: print(line, file=out, flush=True))
        except BaseException:  # noqa: BLE001 - report and exit nonzero, never return into the harness
            with open(log_file, "a") as out:
                traceback.print_exc(file=out)
            code = 3
        os._exit(code)
    if kind == "timer":
        time.sleep(n / 1000)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return status


def newest_complete_epoch(run_dir: Path) -> int:
    """The epoch of the newest checkpoint file that is whole (its digest is among those recorded)."""
    import hashlib
    try:
        manifest = json.loads((run_dir / "checkpoint.sha256.json").read_text())
    except OSError:
        return 0
    known = {manifest.get("current"), manifest.get("previous"), *manifest.get("pending", [])}
    epochs = [0]
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        path = run_dir / name
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() in known:
            try:
                epochs.append(int(checkpoint_module.load_checkpoint(path)["epoch"]))
            except RuntimeError:
                pass  # whole as recorded yet unloadable: not a complete checkpoint either
    return max(epochs)


def corrupt(run_dir: Path, how: str) -> None:
    path = run_dir / "checkpoint.pt"
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":  # one byte in the middle, length unchanged
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    else:
        raise ValueError(how)


def main(plan_path: str, report_path: str) -> None:
    import sklearn.datasets
    import tensorboardX
    del sklearn, tensorboardX  # imported once here rather than in every child
    plan = json.loads(Path(plan_path).read_text())
    cfg = config_from_dict(plan["config"])
    work = Path(plan["work_dir"])
    report = {"reference": None, "attempts": []}

    reference_dir = work / "uninterrupted"
    started = time.monotonic()
    status = run_child(cfg, reference_dir, None, 0, work / "uninterrupted.log")
    report["reference"] = {"status": status, "run_dir": str(reference_dir),
                           "seconds": round(time.monotonic() - started, 2)}

    run_dir = work / "interrupted"
    for i, step in enumerate(plan["attempts"]):
        if step.get("corrupt"):
            corrupt(run_dir, step["corrupt"])
        before = newest_complete_epoch(run_dir) if run_dir.exists() else 0
        log_file = work / f"attempt{i:02d}.log"
        started = time.monotonic()
        status = run_child(cfg, run_dir, step.get("kind"), step.get("n", 0), log_file)
        step = {**step, "seconds": round(time.monotonic() - started, 2)}
        report["attempts"].append({**step, "status": status, "killed": os.WIFSIGNALED(status)
                                   and os.WTERMSIG(status) == signal.SIGKILL,
                                   "complete_epoch_before": before, "log": log_file.read_text()})
    report["run_dir"] = str(run_dir)
    Path(report_path).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
