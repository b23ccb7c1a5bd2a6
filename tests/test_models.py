"""Architectures: parameter counts against the published totals, and every arch with every algorithm."""
import pytest
import torch
import torchvision

from hiddennets import build_model, config_from_dict
from hiddennets.algorithms import ALGORITHMS
from hiddennets.layers import SubnetMixin, subnet_layers
from hiddennets.models import ARCHITECTURES


def dense_weight_count(model):
    """Parameters of the dense network (weights, affine BN), leaving out the algorithm's scores."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.endswith("scores"))


# Our masked layers carry no bias (as in the seeds), so ImageNet nets are torchvision's minus the fc bias.
@pytest.mark.parametrize("arch,tv_name", [("resnet18", "resnet18"), ("resnet50", "resnet50"),
                                          ("resnet101", "resnet101"), ("wide_resnet50_2", "wide_resnet50_2")])
def test_imagenet_counts_equal_torchvision_minus_fc_bias(arch, tv_name):
    ours = build_model(config_from_dict({"arch": arch, "dataset": "imagenet", "algo": "dense", "learn_bn": True}))
    reference = sum(p.numel() for p in getattr(torchvision.models, tv_name)().parameters())
    assert dense_weight_count(ours) == reference - 1000
    assert reference == {"resnet18": 11_689_512, "resnet50": 25_557_032, "resnet101": 44_549_160,
                         "wide_resnet50_2": 68_883_240}[tv_name]


@pytest.mark.parametrize("arch,expected", [
    ("resnet18_cifar", 11_173_962 - 10), ("resnet34_cifar", 21_282_122 - 10), ("resnet50_cifar", 23_520_842 - 10),
    ("resnet20", 269_722 - 10), ("resnet32", 464_154 - 10), ("resnet56", 853_018 - 10),  # He et al. option A
    # VGG-Small: convs 3456+147456+294912+589824+1179648+2359296, fc 8192*10, affine BN 2*1792
    ("vgg_small", 4_656_512 + 3_584),
    # Conv-n of the edge-popup paper (Table 1: 4.3M, 2.4M, 2.3M, 5.3M)
    ("conv2", 4_300_992), ("conv4", 2_425_024), ("conv6", 2_261_184), ("conv8", 5_275_840),
])
def test_cifar_counts(arch, expected):
    model = build_model(config_from_dict({"arch": arch, "dataset": "cifar10", "algo": "dense", "learn_bn": True}))
    assert dense_weight_count(model) == expected


def test_width_multiplier_scales_channels():
    base = build_model(config_from_dict({"arch": "vgg_small", "dataset": "cifar10", "algo": "dense"}))
    wide = build_model(config_from_dict({"arch": "vgg_small", "dataset": "cifar10", "algo": "dense", "width": 1.25}))
    assert [m.out_channels for m in subnet_layers(wide)[:6]] == [160, 160, 320, 320, 640, 640]
    assert dense_weight_count(wide) > 1.5 * dense_weight_count(base)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
@pytest.mark.parametrize("arch,dataset,size", [
    ("conv_digits", "digits", 8), ("conv2", "cifar10", 32), ("conv8", "cifar10", 32), ("vgg_small", "cifar10", 32),
    ("resnet18_cifar", "cifar10", 32), ("resnet50_cifar", "cifar100", 32), ("resnet20", "cifar10", 32),
    ("resnet18", "tinyimagenet", 64), ("resnet50", "imagenet", 64),
    ("vgg_small_seed", "cifar10", 32), ("vgg_small_binact_seed", "cifar10", 32), ("mobilenet_v1", "cifar10", 32),
    ("mobilenet_v1_graph", "cifar10", 32), ("mobilenet_v1_graph_small", "cifar10", 32), ("shufflenet_v2", "cifar10", 32),
])
def test_every_arch_runs_with_every_algorithm(arch, dataset, size, algo):
    cfg = config_from_dict({"arch": arch, "dataset": dataset, "algo": algo, "density": 0.3, "width": 0.25
                            if arch.startswith("resnet50") else 1.0})
    model = build_model(cfg)
    layers = subnet_layers(model)
    assert layers and all(isinstance(layer, ALGORITHMS[algo].conv_type) or
                          isinstance(layer, ALGORITHMS[algo].linear_type) for layer in layers)
    channels = 1 if dataset == "digits" else 3
    out = model.train()(torch.randn(2, channels, size, size))
    classes = {"digits": 10, "cifar10": 10, "cifar100": 100, "tinyimagenet": 200, "imagenet": 1000}[dataset]
    assert out.shape == (2, classes)


def test_bn_is_non_affine_unless_learn_bn():
    plain = build_model(config_from_dict({"arch": "resnet20", "dataset": "cifar10"}))
    bns = [m for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not bn.affine and bn.track_running_stats for bn in bns)
    learned = build_model(config_from_dict({"arch": "resnet20", "dataset": "cifar10", "learn_bn": True}))
    bn_params = [p for m in learned.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert bn_params and all(p.requires_grad for p in bn_params)


def test_registries_have_the_promised_entries():
    assert {"conv2", "conv4", "conv6", "conv8", "vgg_small", "resnet18_cifar", "resnet34_cifar", "resnet50_cifar",
            "resnet20", "resnet32", "resnet56", "resnet18", "resnet50", "resnet101", "wide_resnet50_2",
            "conv_digits"} <= set(ARCHITECTURES)
    assert issubclass(ALGORITHMS["ep"].conv_type, SubnetMixin)
