"""Every algorithm's layers are built from explicit arguments and work on their own, without a config."""
from __future__ import annotations

import pytest
import torch

from hiddennets.algorithms import ALGORITHMS
from hiddennets.init import WeightInit
from hiddennets.masks import kept_count

TOP_K = {"ep", "biprop", "dnw", "random_mask"}  # exactly ceil(density * n) kept from construction on


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_each_algorithms_layers_stand_alone(algo):
    torch.manual_seed(0)
    algorithm = ALGORITHMS[algo]
    linear = algorithm.linear_type(5, 3, density=0.4)
    conv = algorithm.conv_type(2, 4, 3, padding=1, density=0.4, weight_init=WeightInit("signed_constant"))
    for layer, x in ((linear, torch.randn(2, 5)), (conv, torch.randn(2, 2, 6, 6))):
        assert layer.bias is None and layer.density == 0.4 and not layer.kept_dense and not layer.is_output
        layer.set_trainable()
        out = layer(x)
        assert out.shape[0] == 2 and torch.isfinite(out).all()
        trained = [p for p in layer.parameters() if p.requires_grad]
        if trained:
            out.square().sum().backward()
            assert all(p.grad is not None for p in trained)
        kept, n = layer.kept()
        if algo in TOP_K:
            assert int(kept) == kept_count(0.4, n)
    # the weight init is applied: signed constant weights have one magnitude
    assert conv.weight.abs().unique().numel() == 1


def test_layer_options_come_from_the_constructor():
    frozen = ALGORITHMS["random_mask"].linear_type(4, 4, density=0.5)
    trained = ALGORITHMS["random_mask"].linear_type(4, 4, density=0.5, train_weights=True)
    frozen.set_trainable(), trained.set_trainable()
    assert not frozen.weight.requires_grad and trained.weight.requires_grad
    bn_only = ALGORITHMS["biprop"].linear_type(4, 4, density=0.5, train_scores=False)
    bn_only.set_trainable()
    assert not bn_only.scores.requires_grad
    half = ALGORITHMS["gem_miner"].linear_type(4, 4, density=0.5, score_init="half")
    assert torch.equal(half.scores, torch.full((4, 4), 0.5))
