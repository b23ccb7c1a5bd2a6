"""Pruning at initialisation (docs/ALGORITHMS.md, Peek-a-Boo stage 1): one interface, exact density.

    masks = prune(model, "synflow", density=0.3)                 # {layer name: 0/1 tensor}
    masks = prune(model, "snip", density=0.3, batch=(x, y), scope="layer")

Every method gives each prunable weight (conv and linear layers) a score and keeps the highest:
`scope="global"` keeps ceil(density * N) over all N weights, `scope="layer"` keeps ceil(density * n)
in each layer; torch.topk picks exactly that many even when scores tie. The model is left as it was.

- magnitude: |w|.
- random: uniform noise from `seed`.
- snip: |w * dL/dw| on one batch.
- grasp: w * (H g) on one batch (H the loss Hessian, g the gradient): weights whose removal would
  most reduce gradient flow have the largest scores and are kept.
- synflow: data-free and iterative. In float64 and eval mode, with every weight replaced by |w| and
  one all-ones input, R = sum(output) and the score is |w * dR/dw|; repeated `iterations` times with
  the kept fraction shrinking as density**((i+1)/iterations), pruned weights zeroed in between.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from hiddennets.masks import kept_count

PRUNERS = ("magnitude", "random", "snip", "grasp", "synflow")


def prunable(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """The layers whose weights are pruned: every conv and linear layer (or those of `names`)."""
    chosen = None if names is None else set(names)
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and (chosen is None or name in chosen)}


def keep_top(scores: dict[str, torch.Tensor], density: float, scope: str) -> dict[str, torch.Tensor]:
    """0/1 masks keeping exactly the highest-scoring ceil(density * n) entries (globally or per layer)."""
    if scope == "layer":
        masks = {}
        for name, s in scores.items():
            flat = torch.zeros(s.numel(), dtype=torch.bool, device=s.device)
            flat[torch.topk(s.flatten(), kept_count(density, s.numel())).indices] = True
            masks[name] = flat.view_as(s)
        return masks
    if scope != "global":
        raise ValueError(f"scope: expected 'global' or 'layer', got {scope!r}")
    return keep_top_global(scores, kept_count(density, sum(s.numel() for s in scores.values())))


def keep_top_global(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """0/1 masks keeping exactly the k highest scores over all layers together."""
    flat = torch.cat([s.flatten().to(torch.float64) for s in scores.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.topk(flat, k).indices] = True
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].view_as(s)
        start += s.numel()
    return masks


def _batch_grads(model: nn.Module, batch, names=None, create_graph: bool = False) -> dict[str, torch.Tensor]:
    x, y = batch
    layers = prunable(model, names)
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [m.weight for m in layers.values()], create_graph=create_graph)
    return dict(zip(layers, grads))


def magnitude_scores(model: nn.Module, names=None, **_) -> dict[str, torch.Tensor]:
    return {name: m.weight.detach().abs() for name, m in prunable(model, names).items()}


def random_scores(model: nn.Module, names=None, seed: int = 0, **_) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(m.weight.shape, generator=generator).to(m.weight.device)
            for name, m in prunable(model, names).items()}


def snip_scores(model: nn.Module, names=None, batch=None, **_) -> dict[str, torch.Tensor]:
    if batch is None:
        raise ValueError("snip needs a batch of data: prune(model, 'snip', density, batch=(x, y))")
    grads = _batch_grads(model, batch, names)
    return {name: (m.weight.detach() * grads[name]).abs() for name, m in prunable(model, names).items()}


def grasp_scores(model: nn.Module, names=None, batch=None, **_) -> dict[str, torch.Tensor]:
    if batch is None:
        raise ValueError("grasp needs a batch of data: prune(model, 'grasp', density, batch=(x, y))")
    layers = prunable(model, names)
    weights = [m.weight for m in layers.values()]
    grads = list(_batch_grads(model, batch, names, create_graph=True).values())
    # H g by differentiating g . stop_gradient(g)
    dot = sum((g * g.detach()).sum() for g in grads)
    hessian_grad = torch.autograd.grad(dot, weights)
    return {name: (w.detach() * hg) for name, w, hg in zip(layers, weights, hessian_grad)}


def synflow_scores_once(model: nn.Module, input_shape: tuple[int, ...], names=None) -> dict[str, torch.Tensor]:
    """One SynFlow pass on a float64 copy whose weights are already |w| (masked)."""
    layers = prunable(model, names)
    model.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    output = model(torch.ones((1, *input_shape), dtype=torch.float64, device=device))
    torch.sum(output).backward()
    return {name: (m.weight.detach() * m.weight.grad).abs() for name, m in layers.items()}


def synflow_masks(model: nn.Module, density: float, scope: str, input_shape: tuple[int, ...],
                  iterations: int = 100, names=None) -> dict[str, torch.Tensor]:
    work = copy.deepcopy(model).double().eval()  # the caller's model keeps its weights, signs and mode
    for p in work.parameters():
        p.requires_grad_(False)
        p.abs_()  # every parameter positive (layers not pruned too), so no path cancels another
    layers = prunable(work, names)
    originals = {name: m.weight.detach().abs().clone() for name, m in layers.items()}
    masks = {name: torch.ones_like(w, dtype=torch.bool) for name, w in originals.items()}
    for i in range(iterations):
        for name, m in layers.items():
            m.weight.copy_(originals[name] * masks[name])
            m.weight.requires_grad_(True)
        scores = synflow_scores_once(work, input_shape, names)
        masks = keep_top(scores, density ** ((i + 1) / iterations), scope)
        for m in layers.values():
            m.weight.requires_grad_(False)
    return masks


SCORERS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "magnitude": magnitude_scores, "random": random_scores, "snip": snip_scores, "grasp": grasp_scores}


def prune(model: nn.Module, method: str, density: float, scope: str = "global", batch=None, seed: int = 0,
          input_shape: tuple[int, ...] | None = None, iterations: int = 100,
          layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Masks (bool tensors shaped like each conv/linear weight) keeping exactly `density` of them;
    `layers` (module names) limits the pruning to those layers, the others take part unpruned."""
    if not 0 < density <= 1:
        raise ValueError(f"density: must be in (0, 1], got {density}")
    if method == "synflow":
        if input_shape is None:
            raise ValueError("synflow needs the input shape (channels, height, width) or (features,)")
        return synflow_masks(model, density, scope, input_shape, iterations, layers)
    if method not in SCORERS:
        raise ValueError(f"unknown pruner {method!r}; valid: {', '.join(PRUNERS)}")
    return keep_top(SCORERS[method](model, names=layers, batch=batch, seed=seed), density, scope)


def imp_step(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], rate: float = 0.2
             ) -> dict[str, torch.Tensor]:
    """One level of iterative magnitude pruning: of the weights still kept (globally), keep the
    ceil((1 - rate) * kept) largest |w|; pruned ones stay pruned."""
    if not 0 < rate < 1:
        raise ValueError(f"rate: must be in (0, 1), got {rate}")
    remaining = sum(int(m.sum()) for m in masks.values())
    keep = kept_count(1 - rate, remaining)
    scores = {name: torch.where(masks[name].bool(), w.detach().abs().double(), torch.tensor(-1.0, dtype=torch.float64))
              for name, w in weights.items()}
    return keep_top_global(scores, keep)  # pruned entries score -1: never chosen while keep <= remaining


def imp_densities(levels: int, rate: float = 0.2, total: int | None = None) -> list[float]:
    """The density after each level (level 0 = dense): (1 - rate)**level, or exact counts for `total`."""
    if total is None:
        return [(1 - rate) ** level for level in range(levels + 1)]
    counts = [total]
    for _ in range(levels):
        counts.append(kept_count(1 - rate, counts[-1]))
    return [c / total for c in counts]
