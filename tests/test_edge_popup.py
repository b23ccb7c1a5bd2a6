"""edge-popup layers and what trains: scores move, random weights stay bit-identical."""
import math

import torch

from hiddennets import build_model, config_from_dict
from hiddennets.algorithms.edge_popup import EdgePopupConv2d, EdgePopupLinear
from hiddennets.layers import LayerFactory, measured_density, subnet_layers
from hiddennets.optim import build_optimizer


def test_layer_score_gradient_is_sign_s_times_w_times_g():
    layer = EdgePopupLinear(3, 2, density=0.5)  # a layer on its own: no config
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [3.0, 1.0, -1.0]]))
        layer.scores.copy_(torch.tensor([[0.9, -0.1, 0.4], [-0.8, 0.2, -0.3]]))
    layer.set_trainable()
    x = torch.tensor([[1.0, 2.0, 3.0]])
    y = layer(x)                                   # kept: |s| = 0.9, 0.8, 0.4 (k = 3 of 6)
    assert y.tolist() == [[1.0 + 0.5 * 3, 3.0]]
    y.sum().backward()
    # g = dL/dW = x for each output row; dL/ds = sign(s) * w * g
    g = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    expected = torch.sign(layer.scores.detach()) * layer.weight * g
    assert torch.equal(layer.scores.grad, expected)
    assert layer.weight.grad is None and not layer.weight.requires_grad


def test_first_and_last_layer_dense_option():
    cfg = config_from_dict({"density": 0.2, "first_layer_dense": True, "last_layer_dense": True})
    model = build_model(cfg)
    layers = subnet_layers(model)
    assert [layer.density for layer in layers] == [1.0] + [0.2] * (len(layers) - 2) + [1.0]
    assert layers[0].k == layers[0].weight.numel()
    masked = build_model(config_from_dict({"density": 0.2}))
    assert all(layer.density == 0.2 for layer in subnet_layers(masked))


def test_scaled_init_uses_each_layers_density():
    cfg = config_from_dict({"density": 0.25, "init": "sc", "first_layer_dense": True})
    layers = subnet_layers(build_model(cfg))
    fan = layers[1].weight[0].numel()
    assert torch.allclose(layers[1].weight.abs(), torch.tensor(math.sqrt(2 / (fan * 0.25))))
    fan0 = layers[0].weight[0].numel()
    assert torch.allclose(layers[0].weight.abs(), torch.tensor(math.sqrt(2 / fan0)))  # dense layer: density 1


def test_training_changes_scores_but_weights_stay_bit_identical():
    cfg = config_from_dict({"density": 0.5, "optimizer": {"lr": 0.1, "weight_decay": 1e-4}})
    model = build_model(cfg)
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("weight")}
    scores = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("scores")}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == len(scores)  # only the scores train
    opt = build_optimizer(trainable, cfg.optimizer)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, y = torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in weights:
            assert torch.equal(p, weights[n]), n
        else:
            assert not torch.equal(p, scores[n]), n
    assert measured_density(model) == 0.5


def test_weight_decay_applies_to_scores():
    # with no task gradient, SGD weight decay alone shrinks the scores: s <- s * (1 - lr * wd)
    cfg = config_from_dict({"optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.0, "weight_decay": 0.1}})
    factory = LayerFactory(EdgePopupConv2d, EdgePopupLinear, cfg)
    layer = factory.conv(2, 2, 1)
    layer.set_trainable()
    before = layer.scores.detach().clone()
    opt = build_optimizer([layer.scores], cfg.optimizer)
    layer.scores.grad = torch.zeros_like(layer.scores)
    opt.step()
    assert torch.allclose(layer.scores, before * (1 - 0.5 * 0.1))
