"""PSG quantisers and sparsifier on small tensors, by hand."""
from __future__ import annotations

import pytest
import torch

from hiddennets.psg import PsgConv2dFunction, PsgLinearFunction, PsgSettings, quantize_minmax, sparsify


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
    y = PsgLinearFunction.apply(x, w, PsgSettings(threshold=0.25, sign=True))
    assert torch.allclose(y, x.detach() @ w.detach().t())
    grad_out = torch.tensor([[1.0, 0.0, -1.0], [0.1, 2.0, 0.0]])
    y.backward(grad_out)
    assert torch.allclose(x.grad, grad_out @ w.detach())  # the input gradient stays exact
    # full precision: [[1.05, -0.8], [1, 4], [-1, 1]]; quantised (0.5 -> 0.5059 at 8 bits) about
    # [[1.05, -0.8], [1.01, 4], [-1, 1]]; kept where |g| >= 0.25 * 4 = 1, then signs
    assert w.grad.tolist() == [[1.0, 0.0], [1.0, 1.0], [-1.0, 1.0]]


def test_psg_conv_matches_the_exact_gradient_up_to_quantisation_and_sparsifies():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    grad_out = torch.randn(2, 4, 5, 5)
    torch.nn.functional.conv2d(x, w, padding=1).backward(grad_out)
    exact_x, exact_w = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    y = PsgConv2dFunction.apply(x, w, 1, 1, 1, 1, PsgSettings(threshold=0.0))
    assert torch.allclose(y, torch.nn.functional.conv2d(x, w, padding=1))
    y.backward(grad_out)
    assert torch.allclose(x.grad, exact_x, atol=1e-5)  # input gradient exact
    # 8-bit inputs: each x moves by at most half a step (range/255/2), so the error is small but not zero
    error = (w.grad - exact_w).abs().max()
    assert 0 < error < 0.05 * exact_w.abs().max()
    x.grad = w.grad = None
    PsgConv2dFunction.apply(x, w, 1, 1, 1, 1, PsgSettings(threshold=0.5, sign=True)).backward(grad_out)
    kept = w.grad != 0
    assert set(w.grad[kept].tolist()) <= {-1.0, 1.0}
    assert (exact_w.abs()[kept].min() > 0.4 * exact_w.abs().max()) and kept.sum() < kept.numel() / 2
