"""Top-k masks: exact kept counts, the straight-through gradient, and deterministic ties."""
import math

import pytest
import torch

from hiddennets.masks import MASK_METHODS, kept_count, topk_mask


@pytest.mark.parametrize("density,n,expected", [
    (0.5, 10, 5), (0.3, 10, 3),          # 0.3*10 is 3.0000000000000004 in floats: still 3
    (0.05, 1728, 87), (0.2, 9, 2),       # ceil(86.4)=87, ceil(1.8)=2
    (0.001, 100, 1), (1.0, 7, 7), (0.0059, 1000, 6), (0.7, 10, 7), (0.1, 30, 3),
])
def test_kept_count_is_ceil_of_density_times_n_at_least_one(density, n, expected):
    assert kept_count(density, n) == expected


@pytest.mark.parametrize("shape", [(64, 3, 3, 3), (10, 256), (128, 128, 3, 3), (1, 1), (7, 5), (3, 17, 1, 1)])
@pytest.mark.parametrize("density", [0.01, 0.05, 0.2, 0.3, 0.5, 0.77, 1.0])
def test_topk_mask_keeps_exactly_k_of_the_largest(shape, density):
    scores = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    n = scores.numel()
    k = kept_count(density, n)
    mask = topk_mask(scores.abs(), k)
    assert mask.shape == scores.shape
    assert int(mask.sum()) == k == max(1, math.ceil(round(density * n, 9)))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    if k < n:  # every kept score is at least every dropped one
        assert scores.abs()[mask.bool()].min() >= scores.abs()[~mask.bool()].max()


def test_all_mask_methods_agree_on_tie_free_scores():
    scores = torch.rand(40, 30, generator=torch.Generator().manual_seed(2))
    k = kept_count(0.3, scores.numel())
    masks = [fn(scores, k) for fn in MASK_METHODS.values()]
    for m in masks[1:]:
        assert torch.equal(m, masks[0])


def test_ties_keep_exactly_k_and_break_the_same_way_every_time():
    scores = torch.tensor([0.5, 0.2, 0.5, 0.5, 0.9, 0.5, 0.1, 0.5])
    mask = topk_mask(scores, 4)
    assert int(mask.sum()) == 4 and mask[4] == 1 and mask[1] == 0 and mask[6] == 0
    for _ in range(5):
        assert torch.equal(topk_mask(scores.clone(), 4), mask)
    assert int(topk_mask(torch.ones(10), 4).sum()) == 4


def test_straight_through_gradient_matches_hand_computation():
    # W = w * topk(|s|); with loss = sum(W * c), g = dL/dW = c, so dL/ds = sign(s) * w * c.
    s = torch.tensor([[0.3, -0.9], [0.1, -0.2]], requires_grad=True)
    w = torch.tensor([[2.0, -1.0], [0.5, 4.0]])
    c = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    W = w * topk_mask(s.abs(), 2)            # keeps |s| = 0.9 and 0.3
    assert W.tolist() == [[2.0, -1.0], [0.0, 0.0]]
    (W * c).sum().backward()
    # sign(s)*w*c = [[+1*2*1, -1*-1*2], [+1*0.5*3, -1*4*-1]]
    assert s.grad.tolist() == [[2.0, 2.0], [1.5, 4.0]]
