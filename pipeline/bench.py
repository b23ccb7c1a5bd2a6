"""Speed, shown as ratios measured in one run (never as timed asserts).

    python -m pipeline.bench [--device cpu|cuda] [--rounds N] [--archs conv4,resnet20] [--compile]
                             [--packed] [--json FILE]

Every section times its variants round by round, interleaved (variant A, B, C, then A, B, C again),
and reports the min and the median over rounds, so a load change on a shared machine lands on every
variant alike instead of faking a ratio.

1. Data path: images/s of one training epoch (CIFAR-10 format, written to a temporary folder) on the
   device path against torchvision's DataLoader at 0, 1, 2 and auto workers.
2. Training: images/s of one step per algorithm, and its time over the dense step's (conv4, resnet20,
   resnet18 at batch 256; with --compile also compiled), plus edge-popup with the hidden-networks
   seed's mask (a kthvalue read back with .item() per layer) as the plain baseline; peak memory on CUDA.
3. Ops and host syncs per training step (torch's dispatcher, pipeline/op_count.py), Bop's update
   against SGD's.
4. Exact top-k mask methods, per layer size.
5. Fixed costs: import time, a digits run's start-up (wall time minus its epoch), an edge-popup
   ResNet-18 checkpoint's model state, the driver's tables callback at 1,000 simulated trials.
   With --packed (the default on CUDA): N = 1, 2, 4 processes training at once on one GPU, total images/s.
6. With --trial-epochs N (3 by default on CUDA): a whole edge-popup ResNet-18 CIFAR-10 trial through
   pipeline.run on 50,000 CIFAR-10-format images, its epoch time and training images/s.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from hiddennets import build_model, config_from_dict
from hiddennets.algorithms import ALGORITHMS
from hiddennets.algorithms.edge_popup import EdgePopup
from hiddennets.masks import MASK_METHODS, kept_count
from pipeline.cli import run_main
from pipeline.op_count import count_ops

LIBRARY_METHOD = "topk"  # what TopKMaskSTE uses; see the mask-methods table
REPO = Path(__file__).resolve().parents[1]
# the training variants: name -> config overrides (every algorithm, Peek-a-Boo with and without PSG)
VARIANTS = {"dense": {}, "ep": {}, "dnw": {}, "gem_miner": {}, "biprop": {},
            "biprop_global": {"algo": "biprop", "biprop": {"global_threshold": True}}, "hc": {},
            "pab": {"learn_bn": True}, "pab_psg": {"algo": "pab", "learn_bn": True, "pab": {"psg": True}},
            "imp": {"imp": {"rewind_iter": 5}}, "random_mask": {"random_mask": {"train_weights": True}}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                warmup: int = 2) -> dict[str, tuple[float, float]]:
    """{name: (min, median) seconds per call}, timing one call of each variant per round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: (min(s), statistics.median(s)) for name, s in samples.items()}


# ---------------------------------------------------------------------------------------------
# 1. data path

def write_cifar_like(root: Path, n_train: int, n_test: int = 100) -> None:
    """Random images in CIFAR-10's python-pickle batches (the real format torchvision reads)."""
    import numpy as np

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per = n_train // 5
    for name, n in [(f"data_batch_{i}", per) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(data, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))


def bench_data(device: torch.device, rounds: int, n_train: int) -> list[dict]:
    from hiddennets.data import build_datasets
    from hiddennets.data.loaders import loader_workers, make_loaders, on_device
    from hiddennets.distributed import DistInfo
    from hiddennets.loops import seed_epoch, to_device

    with tempfile.TemporaryDirectory() as tmp:
        write_cifar_like(Path(tmp), n_train)
        variants = {"device": {"loader": "device"}}
        variants.update({f"torchvision_{w}w": {"loader": "torchvision", "num_workers": w} for w in (0, 1, 2)})
        variants["torchvision_auto"] = {"loader": "torchvision", "num_workers": "auto"}
        epochs: dict[str, Callable[[], None]] = {}
        for name, kw in variants.items():
            cfg = config_from_dict({"dataset": "cifar10", "data_dir": tmp, "arch": "conv4", "batch_size": 256,
                                    "val_fraction": 0, **kw})
            datasets = build_datasets(cfg)
            loaders = make_loaders(cfg, DistInfo(), datasets, on_device(cfg, datasets), device)
            counter = iter(range(10**9))

            def epoch(cfg=cfg, loaders=loaders, counter=counter):
                seed_epoch(cfg, next(counter), DistInfo(), loaders[1], loaders[0])
                for x, y in loaders[0]:  # the batch as training sees it: on the device
                    to_device(x, device), y.to(device)
            epochs[name] = epoch
        times = interleaved(epochs, device, rounds, warmup=1)
        auto = loader_workers(config_from_dict({"num_workers": "auto"}))
    best_loader = min(t[1] for name, t in times.items() if name != "device")
    return [{"loader": name + (f" ({auto})" if name.endswith("auto") else ""),
             "images_per_s_median": n_train / t[1], "images_per_s_best": n_train / t[0],
             "vs_best_dataloader": best_loader / t[1]} for name, t in times.items()]


# ---------------------------------------------------------------------------------------------
# 2./3. training steps

def variant_config(name: str, arch: str, **kw):
    overrides = {"algo": name, **VARIANTS[name]}
    return config_from_dict({"arch": arch, "dataset": "cifar10", "density": 0.3,
                             "pab": {"prune_iterations": 1, **overrides.pop("pab", {})}, **overrides, **kw})


def algorithm_step_fn(model: nn.Module, cfg, x: torch.Tensor, y: torch.Tensor,
                      net: nn.Module | None = None) -> Callable[[], None]:
    """One training step with the algorithm's own optimisers (Peek-a-Boo: Bop and SGD), as
    hiddennets.loops.train_epoch takes it; `net` is the network to run (a compiled model)."""
    algorithm = ALGORITHMS[cfg.algo]
    phase = algorithm.phases(cfg)[0]
    algorithm.start_phase(model, cfg, phase, fresh=True)
    optimizers = [opt for opt, _ in algorithm.optimizers(model, cfg, phase)]
    net = net or model

    def step():
        algorithm.refresh(model, cfg, 0)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        penalty = algorithm.regularizer(model, cfg)
        (loss if penalty is None else loss + penalty).backward()
        for opt in optimizers:
            opt.step()
        algorithm.after_step(model, cfg)
    step.optimizers = optimizers
    return step


class _SeedStyleMask(torch.autograd.Function):
    """The seed's GetSubnetFaster: a percentile threshold read to the host with .item()."""

    @staticmethod
    def forward(ctx, scores, k):
        flat = scores.reshape(-1)
        threshold = flat.kthvalue(flat.numel() - k + 1).values.item()
        return (scores >= threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _use_seed_style_mask(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, EdgePopup):
            m.mask = lambda m=m: _SeedStyleMask.apply(m.scores.abs(), m.k)


def _model(cfg, device: torch.device) -> nn.Module:
    model = build_model(cfg).to(device).train()
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def _batch(device: torch.device, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 3, 32, 32, device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (batch,), device=device)


def bench_training(device: torch.device, rounds: int, archs: list[str], batch: int, compile_too: bool) -> list[dict]:
    rows = []
    for arch in archs:
        x, y = _batch(device, batch)
        fns, peaks = {}, {}
        for name in VARIANTS:
            for compiled in (False, True) if compile_too else (False,):
                cfg = variant_config(name, arch, device=device.type)
                model = _model(cfg, device)
                if name == "ep" and not compiled:  # the plain baseline beside ours
                    seed = _model(cfg, device)
                    _use_seed_style_mask(seed)
                    fns["ep_seed_mask"] = algorithm_step_fn(seed, cfg, x, y)
                net = torch.compile(model) if compiled else None
                fns[name + ("_compiled" if compiled else "")] = algorithm_step_fn(model, cfg, x, y, net)
        if device.type == "cuda":
            for name, fn in fns.items():
                torch.cuda.reset_peak_memory_stats(device)
                fn()
                torch.cuda.synchronize()
                peaks[name] = torch.cuda.max_memory_allocated(device) / 2**20
        times = interleaved(fns, device, rounds)
        dense = times["dense"][1]
        for name, (best, median) in times.items():
            base = times["dense_compiled"][1] if name.endswith("_compiled") else dense
            rows.append({"arch": arch, "variant": name, "batch": batch, "step_ms": median * 1e3,
                         "step_ms_min": best * 1e3, "images_per_s": batch / median,
                         "vs_dense": median / base, "peak_mib": peaks.get(name, float("nan"))})
    return rows


def bench_ops(device: torch.device, archs: list[str]) -> list[dict]:
    rows = []
    for arch in archs:
        x, y = _batch(device, 8)
        counts = {}
        for name in VARIANTS:
            cfg = variant_config(name, arch, device=device.type)
            step = algorithm_step_fn(_model(cfg, device), cfg, x, y)
            step()
            counts[name] = count_ops(step)
        for name, c in counts.items():
            rows.append({"arch": arch, "variant": name, "ops": c.ops, "views": c.views, "host_syncs": c.syncs,
                         "ops_vs_dense": c.ops / counts["dense"].ops})
    return rows


def bench_optimizer_ops(device: torch.device) -> list[dict]:
    """Bop's update alone against SGD's (momentum, weight decay) over ResNet-18's masked conv weights."""
    from hiddennets.bop import Bop
    from hiddennets.optim import build_optimizer

    cfg = variant_config("pab", "resnet18_cifar", device=device.type)
    weights = [m.weight for m in build_model(cfg).to(device).modules() if isinstance(m, nn.Conv2d)]
    rows = []
    for name, opt in (("sgd", build_optimizer(weights, cfg.optimizer)),
                      ("bop", Bop(weights, masks=[torch.ones_like(w, dtype=torch.bool) for w in weights]))):
        for w in weights:
            w.grad = torch.randn_like(w)
        opt.step()
        c = count_ops(opt.step)
        rows.append({"optimizer": name, "tensors": len(weights), "ops": c.ops, "host_syncs": c.syncs})
    for row in rows:
        row["ops_vs_sgd"] = row["ops"] / rows[0]["ops"]
    return rows


# ---------------------------------------------------------------------------------------------
# 4. masks

def bench_masks(device: torch.device, rounds: int) -> list[dict]:
    rows = []
    for shape in [(64, 64, 3, 3), (256, 256, 3, 3), (512, 512, 3, 3), (2048, 512, 1, 1)]:
        scores = torch.randn(shape, device=device)
        k = kept_count(0.3, scores.numel())
        times = interleaved({name: (lambda fn=fn: fn(scores, k)) for name, fn in MASK_METHODS.items()}, device, rounds)
        rows.append({"shape": "x".join(map(str, shape)), "numel": scores.numel(),
                     **{f"{name}_ms": t[1] * 1e3 for name, t in times.items()},
                     **{f"{name}_vs_{LIBRARY_METHOD}": t[1] / times[LIBRARY_METHOD][1]
                        for name, t in times.items() if name != LIBRARY_METHOD}})
    return rows


# ---------------------------------------------------------------------------------------------
# 5. fixed costs and packing

def _python(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, **kw)


def bench_fixed_costs(device: torch.device) -> list[dict]:
    rows = []
    start = time.perf_counter()
    _python("-c", "import hiddennets.engine, pipeline.run")
    rows.append({"cost": "import hiddennets.engine + pipeline.run (s)", "value": time.perf_counter() - start})
    # torch's own floor under every run: its import, and the first optimiser, whose add_param_group
    # (wrapped by torch._disable_dynamo) imports torch._dynamo
    start = time.perf_counter()
    _python("-c", "import torch; torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)")
    rows.append({"cost": "import torch + its first optimiser (s)", "value": time.perf_counter() - start})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = _python("-m", "pipeline.run", "sweeps/quickstart.yaml", "epochs=1", f"device={device.type}",
                       "--out", str(Path(tmp) / "run"))
        wall = time.perf_counter() - start
        rows_epoch = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()] \
            if done.returncode == 0 else []
        epoch = sum(r["seconds"] for r in rows_epoch)
        rows.append({"cost": "pipeline.run digits start-up: wall minus its epoch (s)",
                     "value": wall - epoch if rows_epoch else float("nan")})
    from hiddennets.frozen_weights import FrozenWeights

    cfg = variant_config("ep", "resnet18_cifar", density=0.5)
    model = build_model(cfg)
    frozen = FrozenWeights(model)
    step = algorithm_step_fn(model, cfg, *_batch(torch.device("cpu"), 2))
    step()
    optimizers = [opt.state_dict() for opt in step.optimizers]  # SGD's momentum of the scores: not regenerable
    for label, state in (("model state, all of it", {"model": model.state_dict()}),
                         ("model state, frozen weights rebuilt", {"model": frozen.model_state(model)[0]}),
                         ("checkpoint before (all weights + optimizer)", {"model": model.state_dict(), "optimizer": optimizers}),
                         ("checkpoint as written (+ optimizer)", {"model": frozen.model_state(model)[0], "optimizer": optimizers})):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        rows.append({"cost": f"resnet18 edge-popup d0.5 {label} (MB)", "value": buffer.tell() / 1e6})
    return rows


def bench_tables(n_trials: int, epochs: int = 10) -> list[dict]:
    """The driver's tables callback (write_view) over a local store of `n_trials` finished runs of
    `epochs` epochs each (rows of a real digits run), one of them still training: a cold call, then
    warm calls after that run adds an epoch (what every trial result costs the driver)."""
    from hiddennets import train
    from hiddennets.identity import config_hash
    from pipeline.run_store import RECORD, RunRecord, RunStore
    from pipeline.sweep_view import SweepTrial, write_view

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train(config_from_dict({"epochs": 1}), root / "template", log=None, tensorboard=False)
        template = json.loads((root / "template" / "metrics.jsonl").read_text().splitlines()[0])
        store, trials = RunStore(str(root / "store")), []
        for i in range(n_trials):
            cfg = config_from_dict({"epochs": epochs, "seed": i})
            done = epochs if i else epochs - 1
            history = [dict(template, epoch=e + 1, end_time=float(e), trained_by="bench@v1") for e in range(done)]
            record = RunRecord(config_hash(cfg), cfg.to_dict(), epochs, history, [], 0.0)
            store.write_atomic(store.path_of(record.hash, RECORD), record.to_json().encode())
            trials.append(SweepTrial(record.hash, {"seed": i}, cfg))
        sweep = root / "sweep"
        sweep.mkdir()
        cache: dict = {}
        times = []
        for call in range(4):
            if call:  # the running trial reports one more epoch
                record = store.read(trials[0].id).record
                record.history.append(dict(template, epoch=len(record.history) + 1, end_time=100.0 + call))
                store.write_atomic(store.path_of(record.hash, RECORD), record.to_json().encode())
            start = time.perf_counter()
            write_view(str(sweep), "bench", store, trials, "fp", "bench@v1", cache)
            times.append(time.perf_counter() - start)
    return [{"cost": f"tables callback, {n_trials} trials x {epochs} epochs: first call (s)", "value": times[0]},
            {"cost": f"tables callback, {n_trials} trials: a later call, median (s)", "value": statistics.median(times[1:])}]


def bench_trial(device: torch.device, epochs: int, n_train: int, arch: str) -> list[dict]:
    """A whole edge-popup trial as README's ResNet-18 CIFAR-10 spec runs it (sweeps/edgepopup_resnet18_cifar10.yaml,
    its 100-epoch recipe cut to `epochs`: an epoch costs the same), through pipeline.run on `n_train`
    CIFAR-10-format images: each epoch's seconds (training, val and test) and training images/s."""
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar_like(Path(tmp) / "data", n_train, n_test=max(n_train // 5, 10))
        done = _python("-m", "pipeline.run", "sweeps/edgepopup_resnet18_cifar10.yaml", f"arch={arch}",
                       f"epochs={epochs}", f"data_dir={Path(tmp) / 'data'}", f"device={device.type}",
                       "--out", str(Path(tmp) / "run"))
        if done.returncode != 0:
            raise RuntimeError(f"the trial failed: {done.stderr.strip().splitlines()[-1:]}")
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = n_train - round(n_train * 0.1)  # the spec holds out val_fraction 0.1
    return [{"epoch": r["epoch"], "arch": arch, "seconds": r["seconds"], "train_images": trained,
             "images_per_s": trained / r["seconds"]} for r in rows]


_PACKED_WORKER = """
import sys, time, torch
from pipeline.bench import algorithm_step_fn, variant_config, _model, _batch, _sync
arch, batch, seconds, device = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), torch.device(sys.argv[4])
cfg = variant_config("ep", arch, device=device.type)
x, y = _batch(device, batch)
step = algorithm_step_fn(_model(cfg, device), cfg, x, y)
for _ in range(3): step()
_sync(device); start = time.perf_counter(); n = 0
while time.perf_counter() - start < seconds:
    step(); n += 1
_sync(device)
print(n * x.shape[0] / (time.perf_counter() - start))
"""


def bench_packed(device: torch.device, arch: str, batch: int, seconds: float) -> list[dict]:
    """N processes training edge-popup at once on one device (on CUDA: N trials at 1/N GPU each), total
    images/s. (On a CPU the processes share its cores, so this shows only the contention.)"""
    rows = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for n in (1, 2, 4):
        procs = [subprocess.Popen([sys.executable, "-c", _PACKED_WORKER, arch, str(batch), str(seconds), str(device)],
                                  cwd=REPO, env=env, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        rates = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        rows.append({"arch": arch, "processes": n, "images_per_s_total": sum(rates)})
    for row in rows:
        row["vs_one"] = row["images_per_s_total"] / rows[0]["images_per_s_total"]
    return rows


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(k), *(len(fmt(r[k])) for r in rows)) for k in keys]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(fmt(r[k]).rjust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    p.add_argument("--device", default="cuda" if cuda else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per section (default 5 on CPU, 20 on CUDA)")
    p.add_argument("--archs", default=None, help="comma-separated (default conv4,resnet20 on CPU; + resnet18_cifar on CUDA)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--data-images", type=int, default=10_000, help="training images in the data-path benchmark")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time compiled steps (default: on CUDA only; a compile takes a minute on a CPU)")
    p.add_argument("--packed", action=argparse.BooleanOptionalAction, default=None,
                   help="N = 1, 2, 4 processes on one GPU (default: on CUDA)")
    p.add_argument("--packed-seconds", type=float, default=20.0, help="how long each packed process trains")
    p.add_argument("--trial-epochs", type=int, default=None,
                   help="epochs of a whole edge-popup ResNet-18 CIFAR-10 trial (default 3 on CUDA, 0 = off on CPU)")
    p.add_argument("--trial-images", type=int, default=50_000, help="CIFAR-10-format training images of that trial")
    p.add_argument("--trial-arch", default="resnet18_cifar")
    p.add_argument("--tables-trials", type=int, default=1000, help="simulated trials for the tables callback")
    p.add_argument("--json", help="also write the measurements to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    rounds = args.rounds or (20 if on_cuda else 5)
    archs = (args.archs or ("conv4,resnet20,resnet18_cifar" if on_cuda else "conv4,resnet20")).split(",")
    compile_too = on_cuda if args.compile is None else args.compile
    name = torch.cuda.get_device_name(device) if on_cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"hiddennets bench on {name}, torch {torch.__version__}; {rounds} interleaved rounds, min and median\n",
          flush=True)
    results: dict[str, object] = {"device": name, "torch": torch.__version__, "rounds": rounds}

    def section(key: str, title: str, rows: list[dict]) -> None:
        results[key] = rows
        print(title)
        print(_table(rows), "\n", flush=True)

    section("data", f"1. data path: one training epoch of {args.data_images} CIFAR-10-format images, batch 256, "
            "to the device (vs_best_dataloader: the best torchvision DataLoader's time over this one's)",
            bench_data(device, rounds, args.data_images))
    section("training", f"2. one training step per algorithm at density 0.3, batch {args.batch} (vs_dense: time over "
            "the dense step's; ep_seed_mask: the hidden-networks seed's .item() mask, the plain baseline)",
            bench_training(device, rounds, archs, args.batch, compile_too))
    section("ops", "3. ops (non-view, a kernel launch each on a GPU) and host syncs per training step",
            bench_ops(device, archs))
    section("optimizer_ops", "   the update alone: Bop (one foreach update) vs SGD over ResNet-18's conv weights",
            bench_optimizer_ops(device))
    section("masks", f"4. exact top-k mask, density 0.3 (ratio = time / time of {LIBRARY_METHOD}, the library's method)",
            bench_masks(device, rounds))
    section("fixed_costs", "5. fixed costs", bench_fixed_costs(device) + bench_tables(args.tables_trials))
    if (on_cuda if args.packed is None else args.packed):
        section("packed", "   trials packed on one device: N processes training edge-popup at once",
                bench_packed(device, archs[-1], args.batch, seconds=args.packed_seconds))
    trial_epochs = (3 if on_cuda else 0) if args.trial_epochs is None else args.trial_epochs
    if trial_epochs:
        section("trial", f"6. a whole edge-popup trial: sweeps/edgepopup_resnet18_cifar10.yaml through pipeline.run, "
                f"{trial_epochs} epochs of {args.trial_images} CIFAR-10-format images (seconds: train + val + test)",
                bench_trial(device, trial_epochs, args.trial_images, args.trial_arch))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
