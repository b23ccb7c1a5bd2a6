"""Architecture registry: name -> builder(factory, num_classes, in_channels, image_size, width)."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch.nn as nn

from hiddennets.models import conv, graphs, mobilenet, resnet, shufflenet

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "conv_digits": conv.conv_digits,
    "conv2": partial(conv.conv_n, 2),
    "conv4": partial(conv.conv_n, 4),
    "conv6": partial(conv.conv_n, 6),
    "conv8": partial(conv.conv_n, 8),
    "vgg_small": conv.vgg_small,
    "vgg_small_seed": conv.vgg_small_seed,  # biprop's own layer order (3 BN, 2 ReLU)
    "resnet18_cifar": resnet.resnet_cifar(resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34_cifar": resnet.resnet_cifar(resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50_cifar": resnet.resnet_cifar(resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet20": resnet.resnet_cifar_a(20),
    "resnet32": resnet.resnet_cifar_a(32),
    "resnet56": resnet.resnet_cifar_a(56),
    "resnet18": resnet.resnet_imagenet(resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet50": resnet.resnet_imagenet(resnet.Bottleneck, [3, 4, 6, 3]),
    "resnet101": resnet.resnet_imagenet(resnet.Bottleneck, [3, 4, 23, 3]),
    "wide_resnet50_2": resnet.resnet_imagenet(resnet.Bottleneck, [3, 4, 6, 3], base_width=128),
    # biprop's WideResNet-34-2 (models/resnet_BinAct.py:483-577): basic blocks [3,4,6,3] at 64, 192, 384, 768
    "wide_resnet34_2": resnet.resnet_imagenet(resnet.BasicBlock, [3, 4, 6, 3], stage_widths=(64, 192, 384, 768)),
    # MobileNet V1 (x width), and DNW's full-width MobileNet V1-like graph with MobileNet x width's edges
    "mobilenet_v1": mobilenet.mobilenet_v1,
    "mobilenet_v1_graph": mobilenet.mobilenet_v1_graph,
    "mobilenet_v1_graph_small": mobilenet.mobilenet_v1_graph_small,
    "shufflenet_v2": shufflenet.shufflenet_v2,  # x width in 0.5, 1, 1.5, 2 (DNW's table cites x0.5 and x1)
    # the tiny graph classifiers of DNW (800 one-channel nodes; only the edges are sparse)
    "dnw_static": graphs.static,
    "dnw_discrete": graphs.discrete,
    "dnw_continuous": graphs.continuous,
    # MPT-1/1: binary activations after each BN (Conv-n gain BN layers for it)
    **{f"conv{d}_binact": conv.binary_activations(partial(conv.conv_n, d, bn=True)) for d in (2, 4, 6, 8)},
    "vgg_small_binact": conv.binary_activations(conv.vgg_small),
    "vgg_small_binact_seed": conv.binary_activations(conv.vgg_small_binact_seed),  # biprop's Wide_VGG_Small
    "resnet18_cifar_binact": conv.binary_activations(resnet.resnet_cifar(resnet.BasicBlock, [2, 2, 2, 2])),
    "conv_digits_binact": conv.binary_activations(conv.conv_digits),
    "wide_resnet34_2_binact": conv.binary_activations(
        resnet.resnet_imagenet(resnet.BasicBlock, [3, 4, 6, 3], stage_widths=(64, 192, 384, 768))),
}

__all__ = ["ARCHITECTURES"]
