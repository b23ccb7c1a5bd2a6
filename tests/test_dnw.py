"""DNW by hand: the forward uses the top-|w| edges, the gradient reaches the pruned ones too."""
from __future__ import annotations

import torch

from hiddennets.algorithms.dnw import DnwLinear
from hiddennets.config import RunConfig


def test_pruned_weights_get_the_dense_gradient_and_can_grow_back():
    layer = DnwLinear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, -3.0, 2.0, 0.5]]))
    layer.setup(0.5, RunConfig())
    layer.set_trainable(RunConfig())
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    y = layer(x)
    assert y.item() == -3.0 * 2.0 + 2.0 * 3.0  # only |-3| and |2| are kept: the forward is 0
    y.backward()
    assert layer.weight.grad.tolist() == [[1.0, 2.0, 3.0, 4.0]]  # identity: x for every weight, pruned too
    assert layer.mask().tolist() == [[0.0, 1.0, 1.0, 0.0]]
    with torch.no_grad():  # an SGD step that makes a pruned weight large brings its edge back
        layer.weight -= 1.0 * layer.weight.grad
    assert layer.mask().tolist() == [[0.0, 1.0, 0.0, 1.0]]  # w = [-0.9, -5, -1, -3.5]
