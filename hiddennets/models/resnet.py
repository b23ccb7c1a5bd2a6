"""ResNets built from the layer factory.

- CIFAR ResNet-18/34/50: 3x3 stem, stages 64-128-256-512, 1x1-conv shortcuts (the seeds' version).
- CIFAR ResNet-20/32/56 (He et al.): stages 16-32-64 with parameter-free option-A shortcuts.
- ImageNet ResNet-18/50/101 and WideResNet-50-2: torchvision's layout (stride on the 3x3 conv).
- biprop's WideResNet-34-2: basic blocks [3, 4, 6, 3] at 64, 192, 384, 768 channels (its widen factor 2
  gives planes x 3 from the second stage on); with binary activations, its MPT-1/1 ImageNet network
  (the seed pools before the stem's sign: the same, as sign is monotone).
No biases anywhere (the seeds' masked layers have none), so counts are torchvision's minus the fc bias.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hiddennets.layers import LayerFactory


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, f: LayerFactory, in_ch: int, ch: int, stride: int = 1, base_width: int = 64):
        super().__init__()
        self.conv1, self.bn1 = f.conv(in_ch, ch, 3, stride, 1), f.bn(ch)
        self.conv2, self.bn2 = f.conv(ch, ch, 3, 1, 1), f.bn(ch)
        self.relu = f.act()
        self.shortcut = _projection(f, in_ch, ch, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, f: LayerFactory, in_ch: int, ch: int, stride: int = 1, base_width: int = 64):
        super().__init__()
        mid = int(ch * base_width / 64)  # WideResNet-50-2 doubles the inner width
        out = ch * self.expansion
        self.conv1, self.bn1 = f.conv(in_ch, mid, 1), f.bn(mid)
        self.conv2, self.bn2 = f.conv(mid, mid, 3, stride, 1), f.bn(mid)
        self.conv3, self.bn3 = f.conv(mid, out, 1), f.bn(out)
        self.relu = f.act()
        self.shortcut = _projection(f, in_ch, out, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _projection(f: LayerFactory, in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(f.conv(in_ch, out_ch, 1, stride), f.bn(out_ch))


class ResNet(nn.Module):
    def __init__(self, f: LayerFactory, block, blocks: list[int], num_classes: int, in_channels: int,
                 imagenet_stem: bool, width: float = 1.0, base_width: int = 64,
                 stage_widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        widths = [max(1, int(round(c * width))) for c in stage_widths]
        if imagenet_stem:
            self.stem = nn.Sequential(f.conv(in_channels, widths[0], 7, 2, 3, first=True), f.bn(widths[0]),
                                      f.act(), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(f.conv(in_channels, widths[0], 3, 1, 1, first=True), f.bn(widths[0]), f.act())
        stages, in_ch = [], widths[0]
        for i, (ch, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                stages.append(block(f, in_ch, ch, 2 if (i > 0 and j == 0) else 1, base_width))
                in_ch = ch * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = f.linear(in_ch, num_classes, last=True)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class _ShortcutA(nn.Module):
    """Option A: subsample and zero-pad channels (no parameters)."""

    def __init__(self, out_ch: int, in_ch: int):
        super().__init__()
        self.pad = (out_ch - in_ch) // 2

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BlockA(nn.Module):
    def __init__(self, f: LayerFactory, in_ch: int, ch: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = f.conv(in_ch, ch, 3, stride, 1), f.bn(ch)
        self.conv2, self.bn2 = f.conv(ch, ch, 3, 1, 1), f.bn(ch)
        self.relu = f.act()
        self.shortcut = nn.Identity() if stride == 1 and in_ch == ch else _ShortcutA(ch, in_ch)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCifarA(nn.Module):
    def __init__(self, f: LayerFactory, depth: int, num_classes: int, in_channels: int, width: float = 1.0):
        super().__init__()
        n = (depth - 2) // 6
        widths = [max(1, int(round(c * width))) for c in (16, 32, 64)]
        self.stem = nn.Sequential(f.conv(in_channels, widths[0], 3, 1, 1, first=True), f.bn(widths[0]), f.act())
        blocks, in_ch = [], widths[0]
        for i, ch in enumerate(widths):
            for j in range(n):
                blocks.append(BlockA(f, in_ch, ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = ch
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = f.linear(in_ch, num_classes, last=True)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def resnet_cifar(block, blocks):
    def build(f, num_classes, in_channels, image_size, width=1.0):
        return ResNet(f, block, blocks, num_classes, in_channels, imagenet_stem=False, width=width)
    return build


def resnet_imagenet(block, blocks, base_width=64, stage_widths=(64, 128, 256, 512)):
    def build(f, num_classes, in_channels, image_size, width=1.0):
        return ResNet(f, block, blocks, num_classes, in_channels, imagenet_stem=True, width=width,
                      base_width=base_width, stage_widths=stage_widths)
    return build


def resnet_cifar_a(depth):
    def build(f, num_classes, in_channels, image_size, width=1.0):
        return ResNetCifarA(f, depth, num_classes, in_channels, width)
    return build
