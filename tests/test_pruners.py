"""Pruners at initialisation: SynFlow against its closed form, exact kept counts for every method."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn

from hiddennets.pruners import PRUNERS, keep_top, prune, synflow_scores_once


def two_layer() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1., -2., 0.5, 1.], [0., 3., -1., 2.], [-0.5, 0.5, 0.5, -0.5]]))
        net[1].weight.copy_(torch.tensor([[2., -1., 1.], [-1., 0.5, 3.]]))
    return net


def test_synflow_scores_on_a_two_layer_linear_net_equal_the_closed_form():
    # R = 1' |W2| |W1| 1, so dR/dW1[j,i] = sum_k |W2[k,j]| and dR/dW2[k,j] = sum_i |W1[j,i]|
    net = two_layer()
    w1, w2 = net[0].weight.detach().abs().double(), net[1].weight.detach().abs().double()
    work = copy.deepcopy(net).double()
    with torch.no_grad():
        work[0].weight.abs_()
        work[1].weight.abs_()
    scores = synflow_scores_once(work, (4,))
    assert torch.allclose(scores["0"], w1 * w2.sum(0)[:, None])
    assert torch.allclose(scores["1"], w2 * w1.sum(1)[None, :])
    # by hand for two entries: W1[1,1] = 3, column 1 of |W2| sums to 1 + 0.5; W2[1,2] = 3, row 2 of |W1| sums to 2
    assert scores["0"][1, 1].item() == pytest.approx(3 * 1.5)
    assert scores["1"][1, 2].item() == pytest.approx(3 * 2.0)


def test_one_synflow_iteration_keeps_the_top_closed_form_scores_and_leaves_the_model_alone():
    net = two_layer()
    before = copy.deepcopy(net.state_dict())
    net.train()
    masks = prune(net, "synflow", density=0.25, input_shape=(4,), iterations=1)
    w1, w2 = net[0].weight.detach().abs().double(), net[1].weight.detach().abs().double()
    expected = keep_top({"0": w1 * w2.sum(0)[:, None], "1": w2 * w1.sum(1)[None, :]}, 0.25, "global")
    assert all(torch.equal(masks[k], expected[k]) for k in masks)
    assert sum(int(m.sum()) for m in masks.values()) == math.ceil(0.25 * 18)
    assert all(torch.equal(net.state_dict()[k], before[k]) for k in before)  # signs and values kept
    assert net.training


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


@pytest.mark.parametrize("method", PRUNERS)
@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 1.0])
def test_every_pruner_keeps_exactly_the_target_count(method, scope, density):
    net = small_cnn()
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    masks = prune(net, method, density, scope=scope, batch=batch, input_shape=(1, 8, 8), iterations=5)
    sizes = {"0": 36, "3": 288, "8": 80}
    assert {k: tuple(m.shape) for k, m in masks.items()} == {"0": (4, 1, 3, 3), "3": (8, 4, 3, 3), "8": (10, 8)}
    if scope == "global":
        assert sum(int(m.sum()) for m in masks.values()) == math.ceil(density * sum(sizes.values()))
    else:
        assert {k: int(m.sum()) for k, m in masks.items()} == {k: math.ceil(density * n) for k, n in sizes.items()}


def test_ties_still_keep_exactly_k_and_magnitude_keeps_the_largest():
    net = nn.Sequential(nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1., -5., 1., 1., 1.], [1., 1., 4., 1., -1.]]))
    masks = prune(net, "magnitude", density=0.3)  # ceil(3) = 3: 5 and 4, then one of the eight tied ones
    assert int(masks["0"].sum()) == 3 and masks["0"][0, 1] and masks["0"][1, 2]
    with pytest.raises(ValueError, match="unknown pruner 'synflw'"):
        prune(net, "synflw", 0.5)
    with pytest.raises(ValueError, match="snip needs a batch"):
        prune(net, "snip", 0.5)


def test_imp_prunes_20_percent_of_the_remaining_weights_per_level_by_global_magnitude():
    from hiddennets.pruners import imp_densities, imp_step
    weights = {"a": torch.tensor([0.1, -0.9, 0.5, 0.3, -0.7]), "b": torch.tensor([0.2, 0.8, -0.6, 0.4, 1.0])}
    masks = {k: torch.ones(5, dtype=torch.bool) for k in weights}
    kept = []
    for _ in range(3):
        masks = imp_step(weights, masks)
        kept.append(sorted(round(v, 1) for k in weights for v in weights[k][masks[k]].abs().tolist()))
    # 10 -> ceil(8) = 8 (drops 0.1, 0.2) -> ceil(6.4) = 7 (drops 0.3) -> ceil(5.6) = 6 (drops 0.4)
    assert kept[0] == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert kept[1] == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert kept[2] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert imp_densities(3, total=10) == [1.0, 0.8, 0.7, 0.6]
    assert imp_densities(2) == pytest.approx([1.0, 0.8, 0.64])
