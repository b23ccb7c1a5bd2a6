"""biprop against hand-computed values: alpha, the ternary weights, the score gradient, binary
activations, the global threshold and the ramp."""
import math

import pytest
import torch

from hiddennets import build_model, config_from_dict, load_config, train
from hiddennets.algorithms.biprop import (BipropLinear, ramp_density,
                                          set_global_threshold)
from hiddennets.layers import BinaryActivation, subnet_layers

W = torch.tensor([[0.5, -2.0, 1.0], [-0.25, 3.0, -1.5]])
S = torch.tensor([[0.9, -0.1, 0.4], [-0.8, 0.2, -0.3]])


def layer(density):
    lin = BipropLinear(3, 2, density=density)
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.scores.copy_(S)
    lin.set_trainable()
    return lin


def test_alpha_is_the_mean_magnitude_of_the_kept_weights_and_weights_are_ternary():
    lin = layer(0.5)                          # k = 3: |s| = 0.9, 0.8, 0.4 -> w = 0.5, -0.25, 1.0
    mask = lin.mask()
    assert mask.tolist() == [[1, 0, 1], [1, 0, 0]]
    eff = lin.effective_weight()
    a = (0.5 + 0.25 + 1.0) / 3
    assert torch.allclose(eff, torch.tensor([[a, 0.0, a], [-a, 0.0, 0.0]]))
    assert torch.allclose(eff.unique(), torch.tensor([-a, 0.0, a]))  # W in {-alpha, 0, +alpha}


def test_alpha_uses_the_true_kept_count_not_int_density_times_n():
    # density 0.3 of 6 weights keeps ceil(1.8) = 2; the seed would divide by int(1.8) = 1
    lin = layer(0.3)
    assert lin.k == 2
    assert lin.effective_weight().abs().max().item() == pytest.approx((0.5 + 0.25) / 2)  # not 0.75 / 1


def test_score_gradient_is_magnitude_aware_g_times_w_then_sign_of_s():
    lin = layer(0.5)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    lin(x).sum().backward()
    g = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])   # dL/dW for each output row
    assert torch.allclose(lin.scores.grad, torch.sign(S) * W * g)
    assert lin.weight.grad is None


def test_binary_activation_forward_and_bireal_backward():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.25, 0.9, 2.0], requires_grad=True)
    y = BinaryActivation()(x)
    assert y.tolist() == [-1, -1, 1, 1, 1, 1]
    y.backward(torch.ones_like(x))
    assert x.grad.tolist() == pytest.approx([0.0, 1.0, 2.0, 1.5, 0.2, 0.0])  # 2(1-|x|) inside |x|<1


def test_global_threshold_keeps_the_global_top_fraction():
    model = build_model(config_from_dict({"algo": "biprop", "density": 0.2, "biprop": {"global_threshold": True}}))
    set_global_threshold(model, 0.2)
    layers = subnet_layers(model)
    kept = sum(int(l.mask().sum()) for l in layers)
    total = sum(l.weight.numel() for l in layers)
    assert kept == math.ceil(0.2 * total)          # scores are continuous: no ties
    per_layer = [float(l.mask().mean()) for l in layers]
    assert max(per_layer) - min(per_layer) > 0.01  # one threshold, so layers differ in density


def test_ramp_from_half_to_target_is_cubic():
    # density 0.1 (sparsity 0.9) over 10 epochs: sparsity(e) = 0.9 + (0.5 - 0.9)(1 - e/10)^3
    assert ramp_density(0.1, 0, 10) == pytest.approx(0.5)
    assert ramp_density(0.1, 5, 10) == pytest.approx(1 - (0.9 - 0.4 * 0.125))  # 0.15
    assert ramp_density(0.1, 9, 10) == pytest.approx(1 - (0.9 - 0.4 * 0.001))
    assert ramp_density(0.1, 10, 10) == 0.1 and ramp_density(0.1, 30, 10) == 0.1
    assert ramp_density(0.7, 0, 10) == 0.7             # no ramp above 0.5


def test_binact_architectures_binarise_hidden_activations_only():
    model = build_model(config_from_dict({"algo": "biprop", "arch": "conv_digits_binact", "density": 0.5}))
    acts = [m for m in model.modules() if isinstance(m, BinaryActivation)]
    assert len(acts) == 5 and not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    first = subnet_layers(model)[0]
    captured = {}
    first.register_forward_pre_hook(lambda mod, inp: captured.setdefault("x", inp[0]))
    out = model.eval()(torch.randn(4, 1, 8, 8))
    assert len(torch.unique(captured["x"])) > 2      # the image input stays real
    assert len(torch.unique(out)) > 2                # and so do the logits


def test_biprop_mpt_1_32_and_1_1_beat_a_random_mask_on_digits(quickstart, tmp_path):
    w32 = train(load_config(quickstart, {"algo": "biprop", "init": "kaiming_normal", "epochs": 6}), tmp_path / "a",
                log=None)
    w1a1 = train(load_config(quickstart, {"algo": "biprop", "init": "kaiming_normal", "epochs": 6,
                                          "arch": "conv_digits_binact"}), tmp_path / "b", log=None)
    # frozen random mask: nothing trains, so one epoch shows where it stands
    baseline = train(load_config(quickstart, {"algo": "random_mask", "epochs": 1}), tmp_path / "c", log=None)
    assert w32["final"]["test_acc"] >= 90.0, w32["final"]
    assert w1a1["final"]["test_acc"] >= 70.0, w1a1["final"]
    assert baseline["final"]["test_acc"] <= 30.0, baseline["final"]
    assert w32["final"]["density"] == w1a1["final"]["density"] == baseline["final"]["density"] == 0.5


def test_the_seed_compatible_alpha_divides_by_int_density_times_n():
    # chrundle/biprop utils/conv_type.py:75: num_unpruned = int(k * n); 0.3 * 6 = 1.8 keeps 2, divides by 1
    lin = BipropLinear(3, 2, density=0.3, alpha_divisor="int_kn")
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.scores.copy_(S)
    assert lin.effective_weight().abs().max().item() == pytest.approx((0.5 + 0.25) / 1)
    # where k*n is whole the two agree: 0.5 * 6 = 3
    half = BipropLinear(3, 2, density=0.5, alpha_divisor="int_kn")
    with torch.no_grad():
        half.weight.copy_(W)
        half.scores.copy_(S)
    assert torch.equal(half.effective_weight(), layer(0.5).effective_weight())
    # and the switch is a config key, refused when misspelt
    from hiddennets.errors import ConfigError
    with pytest.raises(ConfigError, match="biprop.alpha_divisor: unknown alpha_divisor 'seed'; valid: kept, int_kn"):
        config_from_dict({"algo": "biprop", "biprop": {"alpha_divisor": "seed"}})
