"""The tiny graph classifiers of Discovering Neural Wirings (Wortsman et al. 2019, section 4.1).

800 one-channel nodes (x `width`) on an 8x8 grid. A node's operation is a 3x3 depthwise conv; the
edges between nodes are 1x1 convs, the only sparse layers (the run's `density`: 0.05 in the paper).
With `algo: dnw` the wiring is learned; with `algo: random_mask` (weights trained) it is the fixed
random graph of the same density, the paper's baseline.

- static: a DAG over node blocks [32, 192, 192, 192, 192]. Block 0 is the stem's output; block b
  takes edges from every node of blocks < b (one masked 1x1 conv per block), then ReLU, depthwise
  conv and BN. The last block is read out.
- discrete: 5 steps of x <- BN_t(G dw(ReLU(x))) with shared weights, G one masked 800x800 1x1 conv;
  the stem writes the first 32 nodes of x(0), the last 192 nodes are read out.
- continuous: dx/dt = BN(G dw(ReLU(x))) - x over t in [0, 1], integrated with a fixed-step RK4 of
  our own (5 steps of 0.2). Its Euler step of size 1 is exactly the discrete update.

The norm is BatchNorm (non-affine unless learn_bn), one per evaluation of the dynamics. We measured
instance norm (the paper's "IN") first: on digits a dense static graph reached 43% with it and 96%
with BN (8 epochs, width 0.25), since a per-node instance norm removes each node's mean activation,
which is what the pooled read-out classifies.

Stem: a 3x3 conv to 32 channels (stride 2 for inputs of 16 pixels or more), BN, then average pooling
to 8x8; head: ReLU, global average pooling and a linear classifier. With `first_layer_dense` and
`last_layer_dense` (the specs set both) only the edges are sparse. The depthwise convs are always
dense: a node's own operation is not part of the wiring.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from hiddennets.layers import LayerFactory

BLOCKS = (32, 192, 192, 192, 192)
STEPS = 5


def _blocks(width: float) -> list[int]:
    return [max(1, int(round(b * width))) for b in BLOCKS]


class Stem(nn.Module):
    def __init__(self, f: LayerFactory, in_channels: int, channels: int, image_size: int):
        super().__init__()
        self.conv = f.conv(in_channels, channels, 3, stride=2 if image_size >= 16 else 1, padding=1, first=True)
        self.bn = f.bn(channels)
        self.pool = nn.AdaptiveAvgPool2d(8)

    def forward(self, x):
        return self.pool(self.bn(self.conv(x)))


class Head(nn.Module):
    def __init__(self, f: LayerFactory, nodes: int, num_classes: int):
        super().__init__()
        self.fc = f.linear(nodes, num_classes, last=True)

    def forward(self, x):
        # ReLU first: instance-normalised node outputs average to exactly zero over the grid
        return self.fc(torch.relu(x).mean(dim=(2, 3)))


class StaticGraph(nn.Module):
    def __init__(self, f: LayerFactory, num_classes: int, in_channels: int, image_size: int, width: float = 1.0):
        super().__init__()
        sizes = _blocks(width)
        self.stem = Stem(f, in_channels, sizes[0], image_size)
        self.edges = nn.ModuleList()
        self.nodes = nn.ModuleList()
        earlier = sizes[0]
        for size in sizes[1:]:
            self.edges.append(f.conv(earlier, size, 1))
            self.nodes.append(nn.Sequential(nn.ReLU(), f.conv(size, size, 3, padding=1, groups=size, dense=True),
                                            f.bn(size)))
            earlier += size
        self.head = Head(f, sizes[-1], num_classes)

    def forward(self, x):
        outputs = [self.stem(x)]
        for edges, node in zip(self.edges, self.nodes):
            outputs.append(node(edges(torch.cat(outputs, dim=1))))
        return self.head(outputs[-1])


class GraphDynamics(nn.Module):
    """f_i(x) = BN_i(G dw(ReLU(x))) over all nodes. G and dw are shared by every evaluation; each
    evaluation i has its own (parameter-free unless learn_bn) BN, because the statistics of the state
    change along the trajectory and one running average over all of them would not fit any."""

    def __init__(self, f: LayerFactory, nodes: int, evaluations: int):
        super().__init__()
        self.dw = f.conv(nodes, nodes, 3, padding=1, groups=nodes, dense=True)
        self.edges = f.conv(nodes, nodes, 1)
        self.norms = nn.ModuleList(f.bn(nodes) for _ in range(evaluations))

    def forward(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return self.norms[i](self.edges(self.dw(torch.relu(x))))


def rk4(field: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate dx/dt = field(x, i) over [0, 1] with `steps` classical Runge-Kutta steps; i counts the
    field's evaluations (4 per step)."""
    h = 1.0 / steps
    for step in range(steps):
        i = 4 * step
        k1 = field(x, i)
        k2 = field(x + 0.5 * h * k1, i + 1)
        k3 = field(x + 0.5 * h * k2, i + 2)
        k4 = field(x + h * k3, i + 3)
        x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


class DynamicGraph(nn.Module):
    def __init__(self, f: LayerFactory, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
                 continuous: bool = False):
        super().__init__()
        sizes = _blocks(width)
        self.nodes, self.inputs, self.outputs = sum(sizes), sizes[0], sizes[-1]
        self.continuous = continuous
        self.stem = Stem(f, in_channels, self.inputs, image_size)
        self.dynamics = GraphDynamics(f, self.nodes, 4 * STEPS if continuous else STEPS)
        self.head = Head(f, self.outputs, num_classes)

    def forward(self, x):
        s = self.stem(x)
        state = torch.cat([s, s.new_zeros(s.shape[0], self.nodes - self.inputs, *s.shape[2:])], dim=1)
        if self.continuous:
            state = rk4(lambda z, i: self.dynamics(z, i) - z, state, STEPS)
        else:
            for step in range(STEPS):
                state = self.dynamics(state, step)
        return self.head(state[:, -self.outputs:])


def static(f, num_classes, in_channels, image_size, width=1.0):
    return StaticGraph(f, num_classes, in_channels, image_size, width)


def discrete(f, num_classes, in_channels, image_size, width=1.0):
    return DynamicGraph(f, num_classes, in_channels, image_size, width, continuous=False)


def continuous(f, num_classes, in_channels, image_size, width=1.0):
    return DynamicGraph(f, num_classes, in_channels, image_size, width, continuous=True)
