"""The lean training step: no host sync in any algorithm's step (counted with torch's dispatcher, as
pipeline.bench does), fused optimisers and the compiled network give the same masks and, within float
tolerance, the same losses as the plain step."""
import pytest
import torch
import torch.nn.functional as F

from hiddennets import build_model, config_from_dict, train
from hiddennets.algorithms import ALGORITHMS
from hiddennets.layers import subnet_layers
from hiddennets.optim import build_optimizer
from pipeline.bench import VARIANTS, algorithm_step_fn, variant_config
from pipeline.op_count import count_ops

def _setup(name, **kw):
    cfg = variant_config(name, "conv4", width=0.25, **kw)
    torch.manual_seed(0)
    return cfg, build_model(cfg).train(), torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))


def test_every_algorithm_is_registered_here():
    assert {VARIANTS[v].get("algo", v) for v in VARIANTS} == set(ALGORITHMS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_training_step_reads_nothing_back_from_the_device(name):
    cfg, model, x, y = _setup(name)
    step = algorithm_step_fn(model, cfg, x, y)
    step()
    count = count_ops(step)
    assert count.ops > 20  # the counter sees the forward, backward and update
    assert count.syncs == 0, f"{name}: {count.syncs} host syncs in one step"


def _masks(model):
    return [layer.mask().detach().clone() if hasattr(layer, "mask") else None for layer in subnet_layers(model)]


def _steps(model, opt, x, y, n=5, net=None):
    losses = []
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy((net or model)(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_fused_optimiser_steps_give_the_same_masks_and_losses_as_the_per_tensor_loop():
    results = []
    for fused in (False, True):
        cfg, model, x, y = _setup("ep", optimizer={"name": "sgd", "lr": 0.1, "weight_decay": 5e-4})
        opt = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optimizer, fused=fused)
        assert bool(opt.defaults.get("fused")) == fused
        results.append((_steps(model, opt, x, y), _masks(model)))
    (loop_losses, loop_masks), (fused_losses, fused_masks) = results
    assert fused_losses == pytest.approx(loop_losses, rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(loop_masks, fused_masks))
    assert loop_losses[-1] < loop_losses[0]  # the steps did train


@pytest.mark.slow
def test_the_compiled_network_trains_with_the_same_masks_and_losses(tmp_path):
    results = []
    for compiled in (False, True):
        cfg, model, x, y = _setup("ep")
        opt = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg.optimizer)
        net = torch.compile(model) if compiled else None
        results.append((_steps(model, opt, x, y, net=net), _masks(model)))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    # and `compile: true` runs end to end (digits, 2 epochs) to an accuracy like the plain run's
    plain = train(config_from_dict({"epochs": 2}), tmp_path / "plain", log=None)["final"]
    fast = train(config_from_dict({"epochs": 2, "compile": True}), tmp_path / "compiled", log=None)["final"]
    assert fast["test_acc"] == pytest.approx(plain["test_acc"], abs=2.0)
    assert fast["density"] == plain["density"] == 0.5
