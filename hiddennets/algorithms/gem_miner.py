"""Gem-Miner / Rare Gems (Sreenivasan et al. 2022), and its plain relaxation `hc`.

Search phase: scores p in [0, 1] per frozen weight and a permanent 0/1 `flag`. Forward W = w * m with
m = 1[p > 0.5] * flag and a straight-through gradient (`hc`: W = w * p * flag, no rounding). The loss
gets lambda * sum(p^2); p is clamped to [0, 1] after every step. Every `iter_period` epochs (not
epoch 0) the globally lowest active scores are un-flagged; round j of R = floor((E-1)/iter_period)
leaves ceil(n * density^(j/R)) flagged, i.e. a rate of about r = 1 - density^(1/R) per round and
exactly ceil(n * density) after the last. Each epoch is evaluated after rounding (the subnetwork) and
before it (`*_unrounded`: W = w * p * flag).

Fine-tune phase (`finetune_epochs` > 0): "unflag" (the mask becomes the flags, so density is exactly
the target), optionally re-initialise the weights or shuffle the mask within each layer (sanity
checks), then train the weights under the fixed mask: SGD lr 0.01, momentum 0.9, wd 1e-4, lr x0.1 at
53% and 80% of the phase.
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from hiddennets.algorithms.base import Algorithm, Phase, TwoPhaseReport, eval_metric_names
from hiddennets.config import OptimizerConfig, ScheduleConfig
from hiddennets.errors import ConfigError
from hiddennets.init import init_scores, init_weight
from hiddennets.layers import SubnetConv2d, SubnetLinear, SubnetMixin, subnet_layers
from hiddennets.masks import kept_count


@dataclass
class GemMinerOptions:
    iter_period: int = 5             # epochs between global pruning rounds (none at epoch 0)
    l2_lambda: float = 1.0e-4        # loss + l2_lambda * sum(p^2)
    finetune_epochs: int = 0         # fine-tune the weights under the final mask afterwards
    finetune_lr: float = 0.01
    finetune_weight_decay: float = 1.0e-4
    reinit_weights: bool = False     # sanity check: new random weights before fine-tuning
    shuffle_mask: bool = False       # sanity check: permute the mask within each layer before fine-tuning

    def check(self) -> None:
        if self.iter_period < 1 or self.finetune_epochs < 0 or self.l2_lambda < 0 or self.finetune_lr <= 0 \
                or self.finetune_weight_decay < 0:
            raise ConfigError("gem_miner: iter_period >= 1, finetune_epochs >= 0, l2_lambda >= 0, finetune_lr > 0 and "
                              "finetune_weight_decay >= 0")


class RoundSTE(torch.autograd.Function):
    """Forward 1[p > 0.5]; backward the identity."""

    @staticmethod
    def forward(ctx, p: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (p > 0.5).to(p.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad


class GemMiner(SubnetMixin):
    relax_in_training = False  # hc: train on W = w * p * flag (evaluation still rounds)
    force_relaxed = False      # the "before rounding" evaluation
    finetuning = False         # the mask is fixed to the flags and the weights train

    def __init__(self, *args, score_init: str = "uniform", **kwargs):
        super().__init__(*args, **kwargs)  # the weight is drawn first, then the scores
        self.scores = nn.Parameter(init_scores(torch.empty_like(self.weight), score_init))
        self.register_buffer("flag", torch.ones_like(self.weight))

    @property
    def searched(self) -> bool:
        """Layers kept dense (first/last_layer_dense) are not searched: their weights are used whole."""
        return self.density < 1.0

    def mask(self):
        if self.finetuning or not self.searched:
            return self.flag
        return (self.scores.detach() > 0.5).to(self.weight.dtype) * self.flag

    def effective_weight(self):
        if not self.searched:
            return self.weight
        if self.finetuning:
            return self.weight * self.flag
        if self.force_relaxed or (self.relax_in_training and self.training):
            return self.weight * self.scores * self.flag
        return self.weight * RoundSTE.apply(self.scores) * self.flag

    def set_trainable(self):
        self.weight.requires_grad_(self.finetuning)
        self.scores.requires_grad_(self.searched and not self.finetuning)


class GemMinerConv2d(GemMiner, SubnetConv2d):
    pass


class GemMinerLinear(GemMiner, SubnetLinear):
    pass


def rounds(cfg) -> int:
    """R = floor((E - 1) / iter_period): pruning rounds in a search of E epochs."""
    return (cfg.epochs - 1) // cfg.gem_miner.iter_period


def flagged_after_round(n: int, density: float, j: int, total_rounds: int) -> int:
    """How many of n weights stay flagged after round j of R: ceil(n * density^(j/R)), exact at j = R."""
    if j >= total_rounds:
        return kept_count(density, n)
    return max(kept_count(density, n), math.ceil(n * density ** (j / total_rounds) - 1e-9))


def _searched(model: nn.Module) -> list[GemMiner]:
    return [layer for layer in subnet_layers(model) if isinstance(layer, GemMiner) and layer.searched]


@torch.no_grad()
def prune_round(model: nn.Module, density: float, j: int, total_rounds: int) -> int:
    """Un-flag the globally lowest active scores so that round j's count stays flagged. Idempotent."""
    layers = _searched(model)
    if not layers:  # density 1: nothing to prune
        return 0
    flags = torch.cat([layer.flag.reshape(-1) for layer in layers])
    scores = torch.cat([layer.scores.detach().reshape(-1) for layer in layers])
    target = flagged_after_round(flags.numel(), density, j, total_rounds)
    excess = int(flags.sum().item()) - target
    if excess <= 0:
        return 0
    candidates = torch.where(flags > 0, scores, torch.full_like(scores, math.inf))
    drop = candidates.topk(excess, largest=False).indices
    flags[drop] = 0.0
    offset = 0
    for layer in layers:
        n = layer.flag.numel()
        layer.flag.copy_(flags[offset:offset + n].view_as(layer.flag))
        offset += n
    return excess


def finetune_schedule(epochs: int) -> ScheduleConfig:
    """lr x0.1 at 53% and at 80% of the fine-tune (never at its first epoch, never twice at once)."""
    milestones = sorted({max(1, round(0.53 * epochs)), max(1, round(0.8 * epochs))})
    return ScheduleConfig(name="multistep", milestones=milestones, gamma=0.1)


@dataclass(frozen=True)
class GemMinerAlgorithm(Algorithm):
    relaxed_search: bool = False  # hc: the search trains on W = w * p * flag (no rounding)

    def check(self, cfg):
        if cfg.density < 1 and cfg.epochs <= cfg.gem_miner.iter_period:
            raise ConfigError(f"gem_miner.iter_period: with epochs={cfg.epochs} no pruning round would run "
                              f"(rounds happen every {cfg.gem_miner.iter_period} epochs after epoch 0); use more "
                              "epochs or a shorter period")

    def phases(self, cfg):
        # The search uses no weight decay (its regulariser is the L2 term): a grid can mix gem_miner
        # with algorithms that do use optimizer.weight_decay.
        search = [Phase("search", cfg.epochs, dataclasses.replace(cfg.optimizer, weight_decay=0.0), cfg.schedule)]
        g = cfg.gem_miner
        if g.finetune_epochs <= 0:
            return search
        tune = OptimizerConfig(name="sgd", lr=g.finetune_lr, momentum=0.9, weight_decay=g.finetune_weight_decay)
        return search + [Phase("finetune", g.finetune_epochs, tune, finetune_schedule(g.finetune_epochs))]

    def start_phase(self, model, cfg, phase, fresh):
        if phase.name == "finetune":
            if fresh:
                self._fix_mask(model, cfg)
            for layer in subnet_layers(model):
                layer.finetuning = True
        for layer in subnet_layers(model):
            layer.relax_in_training = self.relaxed_search and phase.name == "search"
        self.prepare(model, cfg)

    @torch.no_grad()
    def _fix_mask(self, model, cfg):
        """End of search: "unflag" so the mask is the flags, then the optional sanity checks."""
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        for layer in subnet_layers(model):
            if cfg.gem_miner.shuffle_mask and layer.searched:
                perm = torch.randperm(layer.flag.numel(), generator=gen)
                layer.flag.copy_(layer.flag.reshape(-1)[perm].view_as(layer.flag))
            if cfg.gem_miner.reinit_weights:
                init_weight(layer.weight, cfg.init, cfg.scaled, layer.density, gen, cfg.scale_fan_by)

    def on_epoch_start(self, model, cfg, epoch):
        period, total_rounds = cfg.gem_miner.iter_period, rounds(cfg)
        if 0 < epoch < cfg.epochs and epoch % period == 0 and epoch // period <= total_rounds:
            prune_round(model, cfg.density, epoch // period, total_rounds)

    def regularizer(self, model, cfg):
        layers = [layer for layer in _searched(model) if not layer.finetuning]
        if not layers or cfg.gem_miner.l2_lambda == 0:
            return None
        return cfg.gem_miner.l2_lambda * sum((layer.scores ** 2).sum() for layer in layers)

    @torch.no_grad()
    def after_step(self, model, cfg):
        for layer in _searched(model):
            if not layer.finetuning:
                layer.scores.clamp_(0.0, 1.0)

    def evaluation_modes(self, model, cfg, phase):
        if phase.name != "search":
            return {}
        return {"unrounded": _relaxed(model)}


@contextmanager
def _relaxed(model: nn.Module):
    layers = subnet_layers(model)
    for layer in layers:
        layer.force_relaxed = True
    try:
        yield
    finally:
        for layer in layers:
            layer.force_relaxed = False


# what both variants declare: the section, the evaluation before rounding, the two phases
_SHARED = dict(
    options=GemMinerOptions, section_name="gem_miner", score_init="uniform",
    metrics={name: "the search phase's relaxed network W = w * p * flag, before rounding"
             for name in eval_metric_names("unrounded")},
    two_phase=TwoPhaseReport("search", "finetune", "end of search", "after fine-tune",
                             "search (before/after rounding) and fine-tune", "search, after rounding", "fine-tune",
                             relaxed_suffix="unrounded", relaxed_series="search, before rounding"))
GEM_MINER = GemMinerAlgorithm(
    "gem_miner", GemMinerConv2d, GemMinerLinear,
    "Gem-Miner: relaxed scores in [0,1] rounded at 0.5, iterative global pruning, fine-tune", **_SHARED)
HC = GemMinerAlgorithm("hc", GemMinerConv2d, GemMinerLinear,
                       "Gem-Miner's plain relaxation: W = w * p * flag while searching", relaxed_search=True,
                       **_SHARED)
