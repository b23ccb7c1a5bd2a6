"""Low-precision weight gradients for Peek-a-Boo's optional PSG branch (docs/ALGORITHMS.md).

The weight gradient is computed from 8-bit inputs and a 16-bit output gradient (uniform min-max
quantisers), then entries below `threshold` * max|g| are zeroed ("sparsify"), and optionally
only their sign is kept. Only the sign of the gradient matters to Bop, which is why this is enough.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def quantize_minmax(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round x onto 2**bits evenly spaced levels between its min and max (a constant tensor stays).
    Ties round to even, as torch.round does."""
    low, high = x.min(), x.max()
    spread = high > low  # decided on the device: no host sync (an `if` here synced twice per layer per step)
    step = torch.where(spread, (high - low) / (2 ** bits - 1), torch.ones_like(high))
    return torch.where(spread, torch.round((x - low) / step) * step + low, x)


def sparsify(grad: torch.Tensor, threshold: float, sign: bool = False) -> torch.Tensor:
    """Zero the entries below threshold * max|grad|; keep only their sign if `sign`."""
    kept = grad.abs() >= threshold * grad.abs().max()
    out = torch.where(kept, grad, torch.zeros_like(grad))
    return torch.sign(out) if sign else out


@dataclass(frozen=True)
class PsgSettings:
    threshold: float = 1e-7   # relative to max|g|; 0 keeps every entry
    sign: bool = False        # keep only the sign of the kept entries
    input_bits: int = 8
    grad_bits: int = 16


def psg_weight_gradient(exact_weight_grad: Callable[..., torch.Tensor], x: torch.Tensor, grad_out: torch.Tensor,
                        settings: PsgSettings) -> torch.Tensor:
    """The PSG weight gradient: the layer's ordinary weight-gradient formula on quantised operands,
    then sparsified. (The weights themselves do not appear in a layer's weight gradient, which is
    why only the inputs and the output gradient are quantised here; the input gradient stays exact.)"""
    grad_w = exact_weight_grad(quantize_minmax(x, settings.input_bits), quantize_minmax(grad_out, settings.grad_bits))
    return sparsify(grad_w, settings.threshold, settings.sign)


class PsgLinearFunction(torch.autograd.Function):
    """y = x W^T; the input gradient is exact, the weight gradient comes from the PSG branch."""

    @staticmethod
    def forward(ctx, x, weight, settings: PsgSettings):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.settings = settings
        return x @ weight.t()

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_w = psg_weight_gradient(lambda xq, gq: gq.reshape(-1, gq.shape[-1]).t() @ xq.reshape(-1, xq.shape[-1]),
                                     x, grad_out, ctx.settings)
        return grad_out @ weight, grad_w, None


class PsgConv2dFunction(torch.autograd.Function):
    """conv2d(x, W); the input gradient is exact, the weight gradient comes from the PSG branch."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation, groups, settings: PsgSettings):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.settings = settings
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        conv = ctx.conv
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_out, *conv)
        grad_w = psg_weight_gradient(lambda xq, gq: torch.nn.grad.conv2d_weight(xq, weight.shape, gq, *conv),
                                     x, grad_out, ctx.settings)
        return grad_x, grad_w, None, None, None, None, None
