"""Speed, shown as ratios measured in one run (never as timed asserts).

    python -m pipeline.bench [--device cpu|cuda] [--repeats N] [--json FILE]

1. Mask methods: time to build one exact top-k mask with topk / stable sort / kthvalue threshold,
   per layer size, as a ratio to the method the library uses.
2. Training step, masked vs dense: one SGD step of edge-popup divided by one step of the same
   network trained densely (same batch).
3. Ours vs a plain baseline: our edge-popup step divided by a step with the hidden-networks seed's
   mask (a kthvalue percentile read back with .item(), one host sync per layer per step).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from hiddennets import build_model, config_from_dict
from hiddennets.algorithms import ALGORITHMS
from hiddennets.algorithms.edge_popup import EdgePopup
from hiddennets.masks import MASK_METHODS, kept_count
from hiddennets.optim import build_optimizer
from pipeline.cli import run_main

LIBRARY_METHOD = "topk"  # what TopKMaskSTE uses; see the mask-methods table


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_masks(device: torch.device, repeats: int) -> list[dict]:
    rows = []
    for shape in [(64, 64, 3, 3), (256, 256, 3, 3), (512, 512, 3, 3), (2048, 512, 1, 1)]:
        scores = torch.randn(shape, device=device)
        k = kept_count(0.3, scores.numel())
        times = {name: timed(lambda fn=fn: fn(scores, k), device, repeats) for name, fn in MASK_METHODS.items()}
        rows.append({"shape": "x".join(map(str, shape)), "numel": scores.numel(),
                     **{f"{name}_ms": t * 1e3 for name, t in times.items()},
                     **{f"{name}_vs_{LIBRARY_METHOD}": t / times[LIBRARY_METHOD]
                        for name, t in times.items() if name != LIBRARY_METHOD}})
    return rows


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


def _step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 0.1) -> Callable[[], None]:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, config_from_dict({}).optimizer)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def bench_steps(device: torch.device, repeats: int) -> list[dict]:
    rows = []
    setups = [("conv_digits", "digits", 1, 8, 128), ("conv4", "cifar10", 3, 32, 64), ("resnet20", "cifar10", 3, 32, 64)]
    if device.type == "cuda":
        setups.append(("resnet18_cifar", "cifar10", 3, 32, 256))
    for arch, dataset, ch, size, batch in setups:
        x = torch.randn(batch, ch, size, size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        times = {}
        for label, algo in (("dense", "dense"), ("ep", "ep"), ("ep_seed_mask", "ep")):
            model = build_model(config_from_dict({"arch": arch, "dataset": dataset, "algo": algo,
                                                  "density": 0.5})).to(device).train()
            if label == "ep_seed_mask":
                _use_seed_style_mask(model)
            times[label] = timed(_step_fn(model, x, y), device, repeats)
        rows.append({"arch": arch, "batch": batch, **{f"{k}_ms": v * 1e3 for k, v in times.items()},
                     "ep_vs_dense": times["ep"] / times["dense"],
                     "ep_vs_seed_mask": times["ep"] / times["ep_seed_mask"]})
    return rows


def algorithm_step_fn(model: nn.Module, cfg, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One training step with the algorithm's own optimisers (Peek-a-Boo: Bop and SGD)."""
    algorithm = ALGORITHMS[cfg.algo]
    phase = algorithm.phases(cfg)[0]
    algorithm.start_phase(model, cfg, phase, fresh=True)
    optimizers = [opt for opt, _ in algorithm.optimizers(model, cfg, phase)]

    def step():
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for opt in optimizers:
            opt.step()
        algorithm.after_step(model, cfg)
    return step


def bench_algorithms(device: torch.device, repeats: int) -> list[dict]:
    """A training step of DNW, Peek-a-Boo (with and without PSG) and IMP against a dense step, and
    SynFlow's 100 iterations at init against one dense step."""
    rows = []
    setups = [("conv_digits", "digits", 1, 8, 128), ("resnet20", "cifar10", 3, 32, 64)]
    if device.type == "cuda":
        setups.append(("resnet18_cifar", "cifar10", 3, 32, 256))
    variants = {"dense": {"algo": "dense"}, "dnw": {"algo": "dnw"}, "pab": {"algo": "pab", "learn_bn": True},
                "pab_psg": {"algo": "pab", "learn_bn": True, "pab": {"psg": True}}, "imp": {"algo": "imp"}}
    for arch, dataset, ch, size, batch in setups:
        x = torch.randn(batch, ch, size, size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        times = {}
        for label, overrides in variants.items():
            cfg = config_from_dict({"arch": arch, "dataset": dataset, "density": 0.3, "device": device.type,
                                    "pab": {"prune_iterations": 1}, **overrides})
            model = build_model(cfg).to(device).train()
            times[label] = timed(algorithm_step_fn(model, cfg, x, y), device, repeats)
        cfg = config_from_dict({"arch": arch, "dataset": dataset, "algo": "pab", "density": 0.3})
        model = build_model(cfg).to(device)
        synflow = timed(lambda: ALGORITHMS["pab"].prune_at_init(model, cfg), device, max(1, repeats // 10), warmup=1)
        row = {"arch": arch, "batch": batch, "dense_ms": times["dense"] * 1e3}
        row.update({f"{k}_vs_dense": times[k] / times["dense"] for k in variants if k != "dense"})
        row["synflow100_vs_dense_step"] = synflow / times["dense"]
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    widths = [max(len(k), *(len(fmt(r[k])) for r in rows)) for k in keys]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(fmt(r[k]).rjust(w) for k, w in zip(keys, widths)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", help="also write the measurements to this file")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"hiddennets bench on {name}, torch {torch.__version__}, median of {args.repeats}\n")
    masks = bench_masks(device, args.repeats)
    print(f"1. exact top-k mask, density 0.3 (ratio = time / time of {LIBRARY_METHOD}, the library's method)")
    print(_table(masks), "\n")
    steps = bench_steps(device, args.repeats)
    print("2./3. one SGD step at density 0.5: edge-popup vs dense, and ours vs the seed's .item() mask")
    print(_table(steps), "\n")
    algorithms = bench_algorithms(device, args.repeats)
    print("4. one training step at density 0.3 with each algorithm's own optimisers, vs a dense SGD step;")
    print("   SynFlow's 100 float64 iterations at init vs one dense step")
    print(_table(algorithms))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "torch": torch.__version__, "masks": masks, "steps": steps,
                       "algorithms": algorithms}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
