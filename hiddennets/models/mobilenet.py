"""MobileNet V1 (Howard et al. 2017) and DNW's MobileNet V1-like graph (Wortsman et al. 2019, table 2).

- `mobilenet_v1` (x `width`): the dense network of the MobileNet paper: a 3x3 stride-2 conv to 32
  channels, 13 depthwise-separable layers (3x3 depthwise, BN, ReLU, 1x1 pointwise, BN, ReLU) to 1024
  channels, average pooling and a linear classifier. Channels are narrowed by `width` (its "x d").
- `mobilenet_v1_graph` (x `width` = d): DNW's graph. The channels stay FULL width; what d sets is each
  stage's budget of pointwise edges, equal to MobileNet x d's (allenai/dnw
  models/graphs/mobilenetv1like.py). A stage of `blocks` depthwise-separable layers from `inp` to
  `oup` channels is one graph: its `oup * blocks` nodes take edges from the stage's input and from
  the nodes of earlier layers (one edge matrix of (oup*blocks) x (inp + oup*(blocks-1)), of which the
  forward pass reads the block-lower part). The matrix keeps (inp*d)(oup*d) + (blocks-1)(oup*d)^2
  edges, MobileNet x d's count, chosen over the WHOLE matrix as the seed does. Only these edges are
  sparse (plus, for `mobilenet_v1_graph_small`, the classifier, at density d): the first conv and the
  depthwise convs are dense. The run's `density` key does not apply to either net.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hiddennets.layers import LayerFactory

# MobileNet V1's 13 depthwise-separable layers: (output channels, stride)
LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)]
# The same layers as DNW's five stages: (inp, oup, stride, layers)
STAGES = [(32, 64, 1, 1), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 2, 6), (512, 1024, 2, 2)]


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _stem_stride(image_size: int) -> int:
    return 2 if image_size > 64 else 1  # small inputs (CIFAR, Tiny-ImageNet fixtures) keep their resolution


class MobileNetV1(nn.Module):
    def __init__(self, f: LayerFactory, num_classes: int, in_channels: int, image_size: int, width: float = 1.0):
        super().__init__()
        ch = _scaled(32, width)
        layers: list[nn.Module] = [f.conv(in_channels, ch, 3, _stem_stride(image_size), 1, first=True), f.bn(ch), f.act()]
        for out, stride in LAYERS:
            out = _scaled(out, width)
            layers += [f.conv(ch, ch, 3, stride, 1, groups=ch), f.bn(ch), f.act(), f.conv(ch, out, 1), f.bn(out), f.act()]
            ch = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = f.linear(ch, num_classes, last=True)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def stage_edge_budget(inp: int, oup: int, layers: int, d: float) -> tuple[int, float]:
    """(edges in the stage's matrix, the kept fraction giving MobileNet x d's pointwise edges)."""
    size = (inp + oup * (layers - 1)) * oup * layers
    edges = inp * oup * d * d + (layers - 1) * oup * oup * d * d
    return size, edges / size


class GraphEdges:
    """The forward of a stage's edge matrix (mixed into the algorithm's 1x1 conv type, so its mask is
    the algorithm's, chosen over every entry, and torch's FLOP counter charges these convolutions to
    it). Called once per layer of the stage: `group` g's input is the edges from the stage input and
    from the nodes of layers < g. `in_use` marks the entries the forward pass reads."""

    def configure(self, inp: int, oup: int, layers: int) -> None:
        self.inp, self.oup, self.layers = inp, oup, layers
        in_use = torch.zeros_like(self.weight, dtype=torch.bool)
        for group in range(layers):
            in_use[group * oup:(group + 1) * oup, :inp + group * oup] = True
        self.register_buffer("in_use", in_use, persistent=False)
        if hasattr(self, "restrict_to"):  # a random graph (random_mask): its edges among those in use, as the seed's
            self.restrict_to(in_use)

    def forward(self, group: int, sources: list[torch.Tensor]) -> torch.Tensor:
        if group == 0:  # once per forward pass: every group reads the same mask
            self._current = self.effective_weight()
        rows = slice(group * self.oup, (group + 1) * self.oup)
        return F.conv2d(torch.cat(sources, 1), self._current[rows, :self.inp + group * self.oup])


class GraphStage(nn.Module):
    def __init__(self, f: LayerFactory, inp: int, oup: int, stride: int, layers: int, d: float):
        super().__init__()
        _, density = stage_edge_budget(inp, oup, layers, d)
        self.edges = f.conv(inp + oup * (layers - 1), oup * layers, 1, density=density, forward=GraphEdges)
        self.edges.configure(inp, oup, layers)
        self.entry = nn.Sequential(f.bn(inp), f.act(), f.conv(inp, inp, 3, stride, 1, groups=inp, dense=True))
        self.nodes = nn.ModuleList(nn.Sequential(f.bn(oup), f.act(), f.conv(oup, oup, 3, 1, 1, groups=oup, dense=True))
                                   for _ in range(layers - 1))

    def forward(self, x):
        sources = [self.entry(x)]
        for group, node in enumerate(self.nodes):
            sources.append(node(self.edges(group, sources)))
        return self.edges(len(self.nodes), sources)


class MobileNetV1Graph(nn.Module):
    def __init__(self, f: LayerFactory, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
                 small: bool = False):
        super().__init__()
        self.stem = f.conv(in_channels, 32, 3, _stem_stride(image_size), 1, dense=True)  # no BN: the stage opens with one
        self.stages = nn.Sequential(*(GraphStage(f, inp, oup, stride, n, width) for inp, oup, stride, n in STAGES))
        self.head = nn.Sequential(f.bn(1024), f.act(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        # "Small": the classifier is a graph too, with MobileNet x d's FC edges (1024 d x 1000 of 1024 x 1000)
        self.fc = (f.linear(1024, num_classes, density=width) if small
                   else f.linear(1024, num_classes, dense=True, bias=True))

    def forward(self, x):
        return self.fc(self.head(self.stages(self.stem(x))))


def mobilenet_v1(f, num_classes, in_channels, image_size, width=1.0):
    return MobileNetV1(f, num_classes, in_channels, image_size, width)


def mobilenet_v1_graph(f, num_classes, in_channels, image_size, width=1.0):
    return MobileNetV1Graph(f, num_classes, in_channels, image_size, width)


def mobilenet_v1_graph_small(f, num_classes, in_channels, image_size, width=1.0):
    return MobileNetV1Graph(f, num_classes, in_channels, image_size, width, small=True)
