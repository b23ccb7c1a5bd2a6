"""The DNW tiny graph classifiers: sizes, the DAG, the solver, and which layers are sparse."""
from __future__ import annotations

import math

import torch

from hiddennets.build import build_model
from hiddennets.validation import config_from_dict
from hiddennets.layers import subnet_layers
from hiddennets.models.graphs import DynamicGraph, StaticGraph, rk4


def _model(arch: str, **kw):
    cfg = config_from_dict({"arch": arch, "algo": "dnw", "density": 0.05, "dataset": "cifar10",
                            "first_layer_dense": True, "last_layer_dense": True, **kw})
    return build_model(cfg)


def _kept(model) -> int:
    return sum(int(layer.mask().count_nonzero()) for layer in subnet_layers(model))


def test_discrete_graph_keeps_about_41k_parameters_and_only_the_edges_are_sparse():
    model = _model("dnw_discrete")
    dense = {id(layer) for layer in subnet_layers(model) if layer.kept_dense}
    sparse = [layer for layer in subnet_layers(model) if id(layer) not in dense]
    assert [tuple(layer.weight.shape) for layer in sparse] == [(800, 800, 1, 1)]  # the edges, nothing else
    # 5% of 800 x 800 edges + 800 depthwise 3x3 + stem 3 -> 32 (3x3) + head 192 -> 10
    assert _kept(model) == 32000 + 7200 + 864 + 1920 == 41984


def test_static_graph_is_a_dag_over_blocks():
    model = _model("dnw_static")
    assert isinstance(model, StaticGraph)
    # block b takes edges from every node of the blocks before it: 32, 224, 416, 608 inputs
    assert [tuple(e.weight.shape[:2]) for e in model.edges] == [(192, 32), (192, 224), (192, 416), (192, 608)]
    # 5% of each block's possible edges (ceil), the depthwise convs, stem and head
    edges = sum(math.ceil(0.05 * 192 * n) for n in (32, 224, 416, 608))
    assert _kept(model) == edges + 768 * 9 + 864 + 1920


def test_rk4_matches_the_hand_computed_step_on_linear_decay():
    x0 = torch.tensor([1.0, -2.0])
    out = rk4(lambda z, i: -z, x0, 5)
    h = 0.2
    growth = (1 - h + h ** 2 / 2 - h ** 3 / 6 + h ** 4 / 24) ** 5  # RK4 is the 4th-order Taylor step here
    assert torch.allclose(out, x0 * growth)
    assert abs(growth - math.exp(-1)) < 1e-5


def test_continuous_and_discrete_graphs_share_the_dynamics_and_train(tmp_path):
    torch.manual_seed(0)
    discrete, continuous = _model("dnw_discrete", width=0.1), _model("dnw_continuous", width=0.1)
    assert isinstance(continuous, DynamicGraph) and continuous.continuous and not discrete.continuous
    missing, unexpected = continuous.load_state_dict(discrete.state_dict(), strict=False)
    assert not unexpected and all(".norms." in k for k in missing)  # only the extra RK4 stages' norms
    x = torch.randn(2, 3, 32, 32)
    y_d, y_c = discrete(x), continuous(x)
    assert y_d.shape == y_c.shape == (2, 10) and not torch.allclose(y_d, y_c)
    y_c.sum().backward()
    edges = continuous.dynamics.edges
    assert edges.weight.grad is not None and (edges.weight.grad * (1 - edges.mask())).abs().sum() > 0  # DNW: pruned edges get gradient
