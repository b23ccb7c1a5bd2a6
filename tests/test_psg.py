"""PSG quantisers and sparsifier on small tensors, by hand."""
from __future__ import annotations

import pytest
import torch

from hiddennets.psg import PsgLinearFunction, quantize_minmax, sparsify


def test_minmax_quantiser_rounds_onto_evenly_spaced_levels():
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    # 2 bits: 4 levels -1, -1/3, 1/3, 1; 0 -> 1.5 steps -> 2 -> 1/3; 0.5 -> 2.25 -> 2 -> 1/3
    assert quantize_minmax(x, 2).tolist() == pytest.approx([-1.0, 1 / 3, 1 / 3, 1.0])
    assert quantize_minmax(x, 1).tolist() == [-1.0, -1.0, 1.0, 1.0]  # 0 is half way: ties go to even
    assert torch.equal(quantize_minmax(torch.full((3,), 0.7), 8), torch.full((3,), 0.7))
    fine = torch.linspace(-2, 3, 1001)
    assert (quantize_minmax(fine, 8) - fine).abs().max() <= (5 / 255) / 2 + 1e-6  # half a step at most


def test_sparsify_zeros_small_entries_relative_to_the_largest_and_can_keep_signs():
    g = torch.tensor([0.05, -0.5, 1.0, -0.09, 0.1])
    assert sparsify(g, 0.1).tolist() == pytest.approx([0.0, -0.5, 1.0, 0.0, 0.1])
    assert sparsify(g, 0.1, sign=True).tolist() == [0.0, -1.0, 1.0, 0.0, 1.0]


def test_psg_linear_weight_gradient_is_the_quantised_sparsified_product():
    x = torch.tensor([[1.0, -1.0], [0.5, 2.0]], requires_grad=True)
    w = torch.tensor([[0.3, -0.2], [1.0, 0.4], [-0.6, 0.1]], requires_grad=True)
    y = PsgLinearFunction.apply(x, w, 0.25, True, 8, 8, 16)
    assert torch.allclose(y, x.detach() @ w.detach().t())
    grad_out = torch.tensor([[1.0, 0.0, -1.0], [0.1, 2.0, 0.0]])
    y.backward(grad_out)
    assert torch.allclose(x.grad, grad_out @ w.detach())  # the input gradient stays exact
    # full precision: [[1.05, -0.8], [1, 4], [-1, 1]]; quantised (0.5 -> 0.5059 at 8 bits) about
    # [[1.05, -0.8], [1.01, 4], [-1, 1]]; kept where |g| >= 0.25 * 4 = 1, then signs
    assert w.grad.tolist() == [[1.0, 0.0], [1.0, 1.0], [-1.0, 1.0]]
