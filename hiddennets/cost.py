"""What a sparse network costs: parameters and FLOPs per forward pass, dense and with the masks
applied, and each masked layer's kept fraction (the per-layer view of a global density).

FLOPs are counted by torch's own counter (`torch.utils.flop_counter.FlopCounterMode`) on a one-image
forward pass, per module, once per run (a layer's dense FLOPs never change). It counts 2 FLOPs per
multiply-add, as torch does; papers that print "multiply-adds" or "MACs" give half of it. A masked
layer's effective FLOPs are its dense FLOPs times its kept fraction: an unstructured mask removes that
share of its multiply-adds exactly (each weight is used once per output position).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from hiddennets.layers import SubnetMixin


@dataclass(frozen=True)
class LayerCount:
    name: str
    kept: int
    total: int
    shape: tuple[int, ...]
    # the entries the forward pass reads (all of them, but for DNW's graph stages, whose edge matrix
    # has positions no layer uses): a kept edge there costs no FLOP
    kept_in_use: int
    total_in_use: int


def layer_counts(model: nn.Module) -> list[LayerCount]:
    """Each masked layer's kept and total weights, in module order (one host sync for all)."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, SubnetMixin)]
    if not layers:
        return []
    with torch.no_grad():
        counts = []
        for _, m in layers:
            in_use = getattr(m, "in_use", None)
            mask = m.mask() != 0
            counts += [mask.sum(), (mask & in_use).sum() if in_use is not None else mask.sum(),
                       in_use.sum() if in_use is not None else torch.tensor(m.weight.numel(), device=mask.device)]
        values = torch.stack(counts).tolist()
    return [LayerCount(name, int(values[3 * i]), m.weight.numel(), tuple(m.weight.shape), int(values[3 * i + 1]),
                       int(values[3 * i + 2])) for i, (name, m) in enumerate(layers)]


def _own_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def parameter_counts(model: nn.Module, layers: list[LayerCount]) -> tuple[int, int]:
    """(total, kept) parameters of the network itself: every masked layer's weight (kept: what its mask
    keeps) and bias, and the other modules' parameters (batch-norm affine, unmasked layers). An
    algorithm's own tensors (scores, signs' latent weights) are not the network's, and not counted."""
    by_name = {layer.name: layer for layer in layers}
    total = kept = 0
    for name, module in model.named_modules():
        if name in by_name:
            bias = module.bias.numel() if getattr(module, "bias", None) is not None else 0
            total += by_name[name].total + bias
            kept += by_name[name].kept + bias
        elif not isinstance(module, SubnetMixin):
            own = _own_parameters(module)
            total, kept = total + own, kept + own
    return total, kept


def module_flops(model: nn.Module, in_channels: int, image_size: int) -> dict[str, int]:
    """Dense FLOPs of one image's forward pass per leaf module name ('' for what no module owns).
    Runs in eval mode under no_grad, so batch-norm statistics and the RNG are untouched."""
    device = next(model.parameters()).device
    was_training = model.training
    counter = FlopCounterMode(display=False)
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, in_channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    root = type(model).__name__
    counts = counter.get_flop_counts()
    leaves: dict[str, int] = {}
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            key = f"{root}.{name}"
            if key in counts:
                leaves[name] = int(sum(counts[key].values()))
    leaves[""] = int(sum(counts.get("Global", {}).values())) - sum(leaves.values())
    return leaves


def flop_counts(flops: dict[str, int], layers: list[LayerCount]) -> tuple[int, int]:
    """(dense, effective) FLOPs per forward: each masked layer's FLOPs scaled by its kept fraction."""
    dense = sum(flops.values())
    removed = sum(flops.get(layer.name, 0) * (layer.total_in_use - layer.kept_in_use) / layer.total_in_use
                  for layer in layers if layer.total_in_use)
    return dense, int(round(dense - removed))


class CostMeter:
    """A run's cost row for each epoch: parameters and FLOPs (dense and kept) and the per-layer kept
    fractions. The dense FLOPs are counted once, on the first call."""

    def __init__(self, in_channels: int, image_size: int):
        self.in_channels, self.image_size = in_channels, image_size
        self.flops: dict[str, int] | None = None

    def measure(self, model: nn.Module) -> dict:
        if self.flops is None:
            self.flops = module_flops(model, self.in_channels, self.image_size)
        layers = layer_counts(model)
        params, kept_params = parameter_counts(model, layers)
        flops, kept_flops = flop_counts(self.flops, layers)
        total = sum(layer.total for layer in layers)
        return {"density": sum(layer.kept for layer in layers) / total if total else 1.0,
                "params_total": params, "params_kept": kept_params, "flops_dense": flops, "flops_effective": kept_flops,
                "layers": [{"layer": layer.name, "kept": layer.kept, "total": layer.total,
                            "shape": "x".join(map(str, layer.shape)), "flops_dense": self.flops.get(layer.name, 0)}
                           for layer in layers]}
