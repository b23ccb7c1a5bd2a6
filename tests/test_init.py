"""Weight initialisations against their formulas, with scaling by density and the seeds' aliases."""
import math

import pytest
import torch

from hiddennets.errors import ConfigError
from hiddennets.init import init_scores, init_weight, resolve_init


def weight():
    return torch.empty(256, 128, 3, 3)  # fan_in = 1152


@pytest.mark.parametrize("scaled,density", [(False, 0.5), (True, 0.5), (True, 0.1)])
def test_kaiming_normal_std(scaled, density):
    w = init_weight(weight(), "kaiming_normal", scaled, density, torch.Generator().manual_seed(0))
    expected = math.sqrt(2.0) / math.sqrt(1152 * (density if scaled else 1.0))
    assert w.std().item() == pytest.approx(expected, rel=0.01)
    assert w.mean().item() == pytest.approx(0.0, abs=expected * 0.01)


@pytest.mark.parametrize("scaled,density", [(False, 0.3), (True, 0.3)])
def test_signed_constant_takes_two_values(scaled, density):
    w = init_weight(weight(), "signed_constant", scaled, density, torch.Generator().manual_seed(0))
    c = math.sqrt(2.0 / (1152 * (density if scaled else 1.0)))
    assert torch.allclose(w.abs(), torch.full_like(w, c))
    assert 0.49 < (w > 0).float().mean().item() < 0.51


def test_unsigned_constant_kaiming_uniform_and_xavier():
    w = init_weight(weight(), "unsigned_constant", True, 0.25)
    assert torch.allclose(w, torch.full_like(w, math.sqrt(2.0 / (1152 * 0.25))))
    w = init_weight(weight(), "kaiming_uniform", False, 1.0, torch.Generator().manual_seed(0))
    bound = math.sqrt(2.0) * math.sqrt(3.0 / 1152)
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.99 * bound
    w = init_weight(weight(), "xavier_normal", False, 1.0, torch.Generator().manual_seed(0))
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (1152 + 256 * 9)), rel=0.01)


@pytest.mark.parametrize("alias,name,scaled", [("kn", "kaiming_normal", True), ("ukn", "kaiming_normal", False),
                                               ("sc", "signed_constant", True), ("usc", "signed_constant", False),
                                               ("uc", "unsigned_constant", True), ("uuc", "unsigned_constant", False)])
def test_seed_aliases(alias, name, scaled):
    assert resolve_init(alias, not scaled) == (name, scaled)


def test_unknown_init_lists_valid_names():
    with pytest.raises(ConfigError, match="init: unknown init 'gaussian'.*kaiming_normal.*usc"):
        resolve_init("gaussian", False)


def test_edge_popup_score_init_is_kaiming_uniform_a_sqrt5():
    s = init_scores(torch.empty(64, 32, 3, 3), "kaiming_uniform", torch.Generator().manual_seed(0))
    assert s.abs().max().item() <= 1 / math.sqrt(288)
    assert s.abs().max().item() > 0.99 / math.sqrt(288)
    u = init_scores(torch.empty(1000), "uniform", torch.Generator().manual_seed(0))
    assert 0.0 <= u.min().item() and u.max().item() <= 1.0


@pytest.mark.parametrize("density", [0.05, 0.2, 0.7])
def test_the_seeds_code_scales_the_fan_by_the_sparsity(density):
    # hidden-networks / biprop utils/builder.py: fan * (1 - prune_rate), --prune-rate being the fraction kept
    w = init_weight(weight(), "signed_constant", True, density, torch.Generator().manual_seed(0), scale_fan_by="sparsity")
    assert torch.allclose(w.abs(), torch.full_like(w, math.sqrt(2.0 / (1152 * (1 - density)))))
    paper = init_weight(weight(), "signed_constant", True, density, torch.Generator().manual_seed(0))
    # the ratio of the two stds is sqrt((1 - d) / d): 4.36 at density 0.05, 1 only at 0.5
    assert (paper.abs() / w.abs()).mean().item() == pytest.approx(math.sqrt((1 - density) / density))


def test_a_layer_kept_dense_is_never_scaled_and_the_key_is_checked():
    from hiddennets import config_from_dict
    w = init_weight(weight(), "unsigned_constant", True, 1.0, scale_fan_by="sparsity")
    assert torch.allclose(w, torch.full_like(w, math.sqrt(2.0 / 1152)))  # not 2 / (1152 * 0)
    with pytest.raises(ConfigError, match="scale_fan_by: unknown scale_fan_by 'prune_rate'; valid: density, sparsity"):
        config_from_dict({"scale_fan_by": "prune_rate"})


def test_torch_default_is_torchs_own_conv_init():
    # nn.Conv2d.reset_parameters: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in 1152
    w = init_weight(weight(), "torch_default", False, 1.0, torch.Generator().manual_seed(0))
    bound = 1.0 / math.sqrt(1152)
    assert w.abs().max().item() <= bound and w.abs().max().item() > 0.99 * bound
    torch.manual_seed(0)
    reference = torch.nn.Conv2d(128, 256, 3).weight.detach()
    assert reference.abs().max().item() <= bound and w.std().item() == pytest.approx(reference.std().item(), rel=0.02)
