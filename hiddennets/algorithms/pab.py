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

import torch
from torch.utils.data import DataLoader

from hiddennets.algorithms.base import Algorithm
from hiddennets.bop import Bop
from hiddennets.layers import FixedMask, SubnetConv2d, SubnetLinear
from hiddennets.optim import build_optimizer, schedule_factor
from hiddennets.psg import PsgConv2dFunction, PsgLinearFunction, PsgSettings
from hiddennets.pruners import prune


class Pab(FixedMask):
    """The mask is set by the pruner when the run starts; every weight takes gradients (Bop or SGD)."""
    psg: PsgSettings | None = None

    def setup(self, density, cfg):
        super().setup(density, cfg)
        if cfg.pab.psg:
            self.psg = PsgSettings(cfg.pab.psg_threshold, cfg.pab.psg_sign, cfg.pab.psg_input_bits,
                                   cfg.pab.psg_grad_bits)


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
    from hiddennets.data import build_datasets  # only these pruners need data
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(build_datasets(cfg)[0], batch_size=cfg.batch_size, shuffle=True, generator=generator)
    return next(iter(loader))


class PeekABoo(Algorithm):
    def start_phase(self, model, cfg, phase, fresh):
        if fresh:
            self.prune_at_init(model, cfg)
        self.prepare(model, cfg)

    @torch.no_grad()
    def prune_at_init(self, model, cfg) -> None:
        from hiddennets.data import DATASETS
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

    def epoch_metrics(self, optimizers):
        if not optimizers:
            return {}
        bop = optimizers[0]
        return {"flips": float(bop.total_flips()), "adaptivity": bop.param_groups[0]["lr"]}


ALGORITHM = PeekABoo("pab", PabConv2d, PabLinear,
                     "Peek-a-Boo: a pruner at init (SynFlow), then Bop sign flips; classifier and BN by SGD")
