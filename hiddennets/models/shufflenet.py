"""ShuffleNet V2 (Ma et al. 2018) at x0.5, x1.0, x1.5 and x2.0, the layout of torchvision's
`shufflenet_v2_x*` built from the layer factory (no biases but the classifier's; DNW's table cites
its x0.5 and x1 as dense baselines)."""
from __future__ import annotations

import torch
import torch.nn as nn

from hiddennets.errors import ConfigError
from hiddennets.layers import LayerFactory

STAGE_REPEATS = (4, 8, 4)
CHANNELS = {0.5: (24, 48, 96, 192, 1024), 1.0: (24, 116, 232, 464, 1024), 1.5: (24, 176, 352, 704, 1024),
            2.0: (24, 244, 488, 976, 2048)}


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, f: LayerFactory, inp: int, oup: int, stride: int):
        super().__init__()
        self.stride = stride
        half = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(f.conv(inp, inp, 3, stride, 1, groups=inp), f.bn(inp),
                                         f.conv(inp, half, 1), f.bn(half), f.act())
        self.branch2 = nn.Sequential(
            f.conv(inp if stride > 1 else half, half, 1), f.bn(half), f.act(),
            f.conv(half, half, 3, stride, 1, groups=half), f.bn(half),
            f.conv(half, half, 1), f.bn(half), f.act())

    def forward(self, x):
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)
            out = torch.cat((left, self.branch2(right)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, f: LayerFactory, num_classes: int, in_channels: int, image_size: int, width: float = 1.0):
        super().__init__()
        if width not in CHANNELS:
            raise ConfigError(f"width: shufflenet_v2 is defined at {', '.join(map(str, CHANNELS))}, got {width}")
        ch = CHANNELS[width]
        stride = 2 if image_size > 64 else 1  # small inputs keep their resolution
        self.stem = nn.Sequential(f.conv(in_channels, ch[0], 3, stride, 1, first=True), f.bn(ch[0]), f.act(),
                                  nn.MaxPool2d(3, stride, 1))
        units, inp = [], ch[0]
        for repeats, oup in zip(STAGE_REPEATS, ch[1:4]):
            units += [ShuffleUnit(f, inp, oup, 2)] + [ShuffleUnit(f, oup, oup, 1) for _ in range(repeats - 1)]
            inp = oup
        self.stages = nn.Sequential(*units)
        self.conv5 = nn.Sequential(f.conv(inp, ch[4], 1), f.bn(ch[4]), f.act())
        self.fc = f.linear(ch[4], num_classes, last=True, bias=True)

    def forward(self, x):
        return self.fc(self.conv5(self.stages(self.stem(x))).mean(dim=(2, 3)))


def shufflenet_v2(f, num_classes, in_channels, image_size, width=1.0):
    return ShuffleNetV2(f, num_classes, in_channels, image_size, width)
