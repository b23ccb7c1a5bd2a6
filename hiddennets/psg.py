"""Low-precision weight gradients for Peek-a-Boo's optional PSG branch (DESIGN.md section 4).

The weight gradient is computed from 8-bit inputs and weights and a 16-bit output gradient (uniform
min-max quantisers), then entries below `threshold` * max|g| are zeroed ("sparsify"), and optionally
only their sign is kept. Only the sign of the gradient matters to Bop, which is why this is enough.
"""
from __future__ import annotations

import torch


def quantize_minmax(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round x onto 2**bits evenly spaced levels between its min and max (a constant tensor stays).
    Ties round to even, as torch.round does."""
    low, high = x.min(), x.max()
    if high == low:
        return x.clone()
    step = (high - low) / (2 ** bits - 1)
    return torch.round((x - low) / step) * step + low


def sparsify(grad: torch.Tensor, threshold: float, sign: bool = False) -> torch.Tensor:
    """Zero the entries below threshold * max|grad|; keep only their sign if `sign`."""
    kept = grad.abs() >= threshold * grad.abs().max()
    out = torch.where(kept, grad, torch.zeros_like(grad))
    return torch.sign(out) if sign else out


class PsgLinearFunction(torch.autograd.Function):
    """y = x W^T; the input gradient is exact, the weight gradient comes from the PSG branch."""

    @staticmethod
    def forward(ctx, x, weight, threshold, sign, input_bits=8, weight_bits=8, grad_bits=16):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.settings = (threshold, sign, input_bits, weight_bits, grad_bits)
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        threshold, sign, input_bits, weight_bits, grad_bits = ctx.settings
        grad_x = grad_out @ weight
        grad_w = quantize_minmax(grad_out, grad_bits).t() @ quantize_minmax(x, input_bits)
        return grad_x, sparsify(grad_w, threshold, sign), None, None, None, None, None
