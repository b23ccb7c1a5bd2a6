"""Peek-a-Boo (Chen, Zhang & Wang 2022): prune at init, then find the subnetwork by flipping signs.

Stage 1, when the run starts: a pruner at init (SynFlow by default: iterative, global, float64) fixes
the mask of every masked layer to exactly ceil(density * n) kept weights (`hiddennets.pruners`).
Stage 2: the Bop optimiser flips the signs of the kept weights of every masked layer except the
classifier (magnitudes never change, pruned weights never flip); the classifier (under its mask) and
affine BN train with the run's optimizer (SGD in the seed). Bop's adaptivity decays by
`pab.adaptivity_decay` every `pab.decay_epochs`. With `pab.psg` the masked layers' weight gradients
come from the low-precision PSG branch (`hiddennets.psg`).

The mask is a buffer, so it is in the checkpoint with the weights; Bop's moving averages and
per-weight flip counts are optimiser state, so they are too, and a resume flips exactly as an
uninterrupted run. The epoch rows carry `flips` (total so far) and Bop's current `adaptivity`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from hiddennets.algorithms.base import Algorithm
from hiddennets.bop import Bop
from hiddennets.config import check_choice
from hiddennets.data import DATASETS, build_datasets
from hiddennets.errors import ConfigError
from hiddennets.layers import FixedMask, SubnetConv2d, SubnetLinear
from hiddennets.optim import build_optimizer, schedule_factor
from hiddennets.psg import PsgConv2dFunction, PsgLinearFunction, PsgSettings
from hiddennets.pruners import PRUNERS, prune


@dataclass
class PabOptions:
    pruner: str = "synflow"          # the mask at init: synflow | snip | grasp | magnitude | random
    scope: str = "global"            # global: one threshold over all layers; layer: density per layer
    prune_iterations: int = 100      # synflow's iterations (exponential schedule)
    adaptivity: float = 1.0e-3       # Bop's gamma (the seed's --ar)
    threshold: float = 1.0e-6        # Bop's tau
    adaptivity_decay: float = 0.15   # gamma *= this every decay_epochs (the seed's --ar-decay-ratio)
    decay_epochs: int = 45           # (the seed's --ar-decay-freq)
    psg: bool = False                # weight gradients from the low-precision PSG branch
    psg_threshold: float = 1.0e-7    # PSG sparsify: zero entries below this * max|g|
    psg_sign: bool = False           # PSG: keep only the sign of the kept entries
    psg_input_bits: int = 8
    psg_grad_bits: int = 16

    def check(self) -> None:
        check_choice("pab.pruner", self.pruner, sorted(PRUNERS))
        check_choice("pab.scope", self.scope, ["global", "layer"])
        if not 0 < self.adaptivity <= 1:
            raise ConfigError(f"pab.adaptivity: must be in (0, 1], got {self.adaptivity}")
        if self.threshold < 0 or self.psg_threshold < 0:
            raise ConfigError("pab.threshold and pab.psg_threshold: must be >= 0")
        if not 0 < self.adaptivity_decay <= 1 or self.decay_epochs < 1 or self.prune_iterations < 1:
            raise ConfigError("pab: adaptivity_decay in (0, 1], decay_epochs >= 1 and prune_iterations >= 1")
        if not (2 <= self.psg_input_bits <= 32 and 2 <= self.psg_grad_bits <= 32):
            raise ConfigError("pab.psg_input_bits and pab.psg_grad_bits: must be between 2 and 32")


class Pab(FixedMask):
    """The mask is set by the pruner when the run starts; every weight takes gradients (Bop or SGD)."""

    def __init__(self, *args, psg: PsgSettings | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.psg = psg


class PabConv2d(Pab, SubnetConv2d):
    def forward(self, x):
        if self.psg is None or not self.training:
            return super().forward(x)
        return PsgConv2dFunction.apply(x, self.effective_weight(), self.stride, self.padding, self.dilation,
                                       self.groups, self.psg)


class PabLinear(Pab, SubnetLinear):
    def forward(self, x):
        if self.psg is None or not self.training:
            return super().forward(x)
        return PsgLinearFunction.apply(x, self.effective_weight(), self.psg)


def _pab_layers(model) -> dict[str, Pab]:
    return {name: m for name, m in model.named_modules() if isinstance(m, Pab)}


def _pruning_batch(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """One seeded training batch for the data-dependent pruners (SNIP, GraSP)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(build_datasets(cfg)[0], batch_size=cfg.batch_size, shuffle=True, generator=generator)
    return next(iter(loader))


class PeekABoo(Algorithm):
    def layer_options(self, options):
        if not options.psg:
            return {}
        return {"psg": PsgSettings(options.psg_threshold, options.psg_sign, options.psg_input_bits,
                                   options.psg_grad_bits)}

    def start_phase(self, model, cfg, phase, fresh):
        if fresh:
            self.prune_at_init(model, cfg)
        self.prepare(model, cfg)

    @torch.no_grad()
    def prune_at_init(self, model, cfg) -> None:
        layers = {name: m for name, m in _pab_layers(model).items() if not m.kept_dense}
        if not layers:
            return
        info = DATASETS[cfg.dataset].info
        batch = None
        if cfg.pab.pruner in ("snip", "grasp"):
            device = next(model.parameters()).device
            batch = tuple(t.to(device) for t in _pruning_batch(cfg))
        with torch.enable_grad():
            masks = prune(model, cfg.pab.pruner, cfg.density, scope=cfg.pab.scope, batch=batch, seed=cfg.seed,
                          input_shape=(info.in_channels, info.image_size, info.image_size),
                          iterations=cfg.pab.prune_iterations, layers=list(layers))
        for name, layer in layers.items():
            layer.fixed_mask.copy_(masks[name])

    def optimizers(self, model, cfg, phase):
        flipped = [m for m in _pab_layers(model).values() if not m.is_output]
        bop = Bop([m.weight for m in flipped], adaptivity=cfg.pab.adaptivity, threshold=cfg.pab.threshold,
                  masks=[m.fixed_mask for m in flipped])
        decay, every = cfg.pab.adaptivity_decay, cfg.pab.decay_epochs
        pairs = [(bop, lambda epoch: decay ** (epoch // every))]
        flipped_ids = {id(m.weight) for m in flipped}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in flipped_ids]
        if rest:
            pairs.append((build_optimizer(rest, phase.optimizer), schedule_factor(phase.schedule, phase.epochs)))
        return pairs

    def logged_lr(self, optimizers):
        # Bop comes first (its "lr" is the adaptivity, a metric of its own); the SGD runs the phase's config
        return optimizers[1].param_groups[0]["lr"] if len(optimizers) > 1 else None

    def epoch_metrics(self, optimizers):
        if not optimizers:
            return {}
        bop = optimizers[0]
        return {"flips": float(bop.total_flips()), "adaptivity": bop.param_groups[0]["lr"]}


ALGORITHM = PeekABoo("pab", PabConv2d, PabLinear,
                     "Peek-a-Boo: a pruner at init (SynFlow), then Bop sign flips; classifier and BN by SGD",
                     options=PabOptions,
                     metrics={"flips": "Bop's sign flips so far (all layers, since the run began)",
                              "adaptivity": "Bop's adaptivity (gamma) in this epoch"})
