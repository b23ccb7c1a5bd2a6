"""Conv2/4/6/8 of the hidden-networks and lottery-ticket papers, and a small net for 8x8 digits.

Conv-n widths (x `width`): 64,64,P | 128,128,P | 256,256,P | 512,512,P, then FC 256, 256, classes.
Like the seeds, the Conv-n nets have no BatchNorm and no biases.
"""
from __future__ import annotations

import torch.nn as nn

from hiddennets.layers import LayerFactory

_CONV_STAGES = {2: [64], 4: [64, 128], 6: [64, 128, 256], 8: [64, 128, 256, 512]}


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def conv_n(depth: int, f: LayerFactory, num_classes: int, in_channels: int, image_size: int,
           width: float = 1.0, bn: bool = False) -> nn.Module:
    """`bn=True` puts a BN after every hidden layer (the binary-activation variants need one there)."""
    norm2d = (lambda c: [f.bn(c)]) if bn else (lambda c: [])
    norm1d = (lambda c: [f.bn1d(c)]) if bn else (lambda c: [])
    layers: list[nn.Module] = []
    ch, size, first = in_channels, image_size, True
    for stage in _CONV_STAGES[depth]:
        out = _scaled(stage, width)
        layers += [f.conv(ch, out, 3, padding=1, first=first), *norm2d(out), f.act(),
                   f.conv(out, out, 3, padding=1), nn.MaxPool2d(2), *norm2d(out), f.act()]
        ch, size, first = out, size // 2, False
    hidden = _scaled(256, width)
    layers += [nn.Flatten(),
               f.linear(ch * size * size, hidden), *norm1d(hidden), f.act(),
               f.linear(hidden, hidden), *norm1d(hidden), f.act(),
               f.linear(hidden, num_classes, last=True)]
    return nn.Sequential(*layers)


def binary_activations(builder):
    """The `_binact` variant of an architecture (MPT-1/1): same layers, binary activations."""
    def build(f: LayerFactory, num_classes: int, in_channels: int, image_size: int, width: float = 1.0):
        return builder(f.with_binary_activations(), num_classes, in_channels, image_size, width)
    return build


def conv_digits(f: LayerFactory, num_classes: int, in_channels: int, image_size: int,
                width: float = 1.0) -> nn.Module:
    """For 8x8 inputs: 64,64,P,128,128,P (4x4 -> 2x2), FC 256, classes; non-affine BN after each layer."""
    c1, c2, h = _scaled(64, width), _scaled(128, width), _scaled(256, width)
    size = image_size // 4
    return nn.Sequential(
        f.conv(in_channels, c1, 3, padding=1, first=True), f.bn(c1), f.act(),
        f.conv(c1, c1, 3, padding=1), f.bn(c1), f.act(), nn.MaxPool2d(2),
        f.conv(c1, c2, 3, padding=1), f.bn(c2), f.act(),
        f.conv(c2, c2, 3, padding=1), f.bn(c2), f.act(), nn.MaxPool2d(2),
        nn.Flatten(),
        f.linear(c2 * size * size, h), f.bn1d(h), f.act(),
        f.linear(h, num_classes, last=True),
    )


def vgg_small(f: LayerFactory, num_classes: int, in_channels: int, image_size: int,
              width: float = 1.0) -> nn.Module:
    """VGG-Small of LQ-Nets / biprop: 128,128,P,256,256,P,512,512,P then one FC (x width: 1.25 for MPT-1/1)."""
    widths = [_scaled(c, width) for c in (128, 128, 256, 256, 512, 512)]
    layers: list[nn.Module] = []
    ch = in_channels
    for i, out in enumerate(widths):
        layers.append(f.conv(ch, out, 3, padding=1, first=(i == 0)))
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))  # biprop pools before BN on the second conv of a pair
        layers += [f.bn(out), f.act()]
        ch = out
    size = image_size // 8
    layers += [nn.Flatten(), f.linear(ch * size * size, num_classes, last=True)]
    return nn.Sequential(*layers)


def vgg_small_seed(f: LayerFactory, num_classes: int, in_channels: int, image_size: int,
                   width: float = 1.0) -> nn.Module:
    """biprop's own `VGG_Small` (chrundle/biprop models/frankle.py:772-805), layer for layer: an
    activation after the first conv and after the last BN only, and a BN after each max-pool, so
    conv3 -> conv4 and conv5 -> conv6 compose with nothing between them. Its MPT-1/32 row was trained
    on this network, not on the conv-BN-ReLU VGG-Small of LQ-Nets (`vgg_small`)."""
    c = [_scaled(ch, width) for ch in (128, 128, 256, 256, 512, 512)]
    size = image_size // 8
    return nn.Sequential(
        f.conv(in_channels, c[0], 3, padding=1, first=True), f.act(),
        f.conv(c[0], c[1], 3, padding=1), nn.MaxPool2d(2), f.bn(c[1]),
        f.conv(c[1], c[2], 3, padding=1),
        f.conv(c[2], c[3], 3, padding=1), nn.MaxPool2d(2), f.bn(c[3]),
        f.conv(c[3], c[4], 3, padding=1),
        f.conv(c[4], c[5], 3, padding=1), nn.MaxPool2d(2), f.bn(c[5]), nn.ReLU(inplace=True),
        nn.Flatten(), f.linear(c[5] * size * size, num_classes, last=True))


def vgg_small_binact_seed(f: LayerFactory, num_classes: int, in_channels: int, image_size: int,
                          width: float = 1.0) -> nn.Module:
    """biprop's `Wide_VGG_Small` (models/frankle.py:931-968; its MPT-1/1 rows at 1.25 width): our
    `vgg_small_binact` but with a ReLU, not a sign, before the classifier (the seed comments its
    binary activation out there). Build it with binary activations (the registry does)."""
    net = vgg_small(f, num_classes, in_channels, image_size, width)
    activations = [i for i, m in enumerate(net) if not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d,
                                                                        nn.Flatten, nn.Linear))]
    net[activations[-1]] = nn.ReLU(inplace=True)
    return net
