"""Bop by hand: exactly the weights that satisfy the rule flip, magnitudes stay, state resumes."""
from __future__ import annotations

import torch

from hiddennets.bop import Bop


def test_bop_flips_exactly_the_weights_that_satisfy_the_rule_and_keeps_every_magnitude():
    w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, 3.0]))
    mask = torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool)     # entry 4 is pruned
    opt = Bop([w], adaptivity=0.5, threshold=0.2, masks=[mask])
    w.grad = torch.tensor([0.5, 0.5, -0.5, -0.5, 10.0, 0.3])
    opt.step()
    # m = 0.5 * grad = [0.25, 0.25, -0.25, -0.25, 5, 0.15]: flip where |m| >= 0.2 and sign(m) == sign(w)
    assert w.tolist() == [-1.0, -1.0, 2.0, 2.0, 0.5, 3.0]
    assert opt.state[w]["flips"].tolist() == [1, 0, 0, 1, 0, 0]
    w.grad = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.3])
    opt.step()
    # m = [0.125, 0.125, -0.125, -0.125, 2.5, 0.225]: only the last entry reaches the threshold now
    assert w.tolist() == [-1.0, -1.0, 2.0, 2.0, 0.5, -3.0]
    assert opt.state[w]["flips"].tolist() == [1, 0, 0, 1, 0, 1]
    assert w.abs().tolist() == [1.0, 1.0, 2.0, 2.0, 0.5, 3.0]


def test_bop_state_round_trips_so_a_resumed_run_flips_identically():
    torch.manual_seed(0)
    grads = [torch.randn(50) for _ in range(6)]
    mask = torch.rand(50) < 0.5

    def run(split: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.nn.Parameter(torch.randn(50, generator=torch.Generator().manual_seed(1)))
        opt = Bop([w], adaptivity=0.3, threshold=0.1, masks=[mask])
        for i, g in enumerate(grads):
            if i == split:  # "restart": a new optimiser from the saved state
                saved = opt.state_dict()
                opt = Bop([w], adaptivity=0.3, threshold=0.1, masks=[mask])
                opt.load_state_dict(saved)
            w.grad = g
            opt.step()
        return w.detach().clone(), opt.state[w]["flips"].clone()

    straight, flips = run(None)
    resumed, flips_resumed = run(3)
    assert torch.equal(straight, resumed) and torch.equal(flips, flips_resumed)
    assert flips.sum() > 0 and (flips[~mask] == 0).all()


def _per_tensor_step(params, momenta, flips, masks, rate, threshold):
    """Bop as its definition reads, one tensor at a time (the optimiser does it with foreach ops)."""
    for p, m, f, mask in zip(params, momenta, flips, masks):
        m.mul_(1 - rate).add_(p.grad, alpha=rate)
        flip = (m.abs() >= threshold) & (torch.sign(m) == torch.sign(p)) & mask
        p.copy_(torch.where(flip, -p, p))
        f += flip


def test_the_foreach_step_equals_the_per_tensor_definition_over_many_steps():
    torch.manual_seed(0)
    ours = [torch.randn(50, 30), torch.randn(7, 3, 3, 3), torch.randn(10)]
    reference = [w.clone() for w in ours]
    masks = [torch.rand_like(w) < 0.6 for w in ours]
    opt = Bop(ours, adaptivity=0.3, threshold=0.05, masks=masks)
    momenta, flips = [torch.zeros_like(w) for w in ours], [torch.zeros_like(w) for w in ours]
    for _ in range(20):
        for a, b in zip(ours, reference):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        opt.step()
        _per_tensor_step(reference, momenta, flips, masks, 0.3, 0.05)
    assert all(torch.equal(a, b) for a, b in zip(ours, reference))
    assert all(torch.equal(opt.state[w]["flips"], f) for w, f in zip(ours, flips))
    assert opt.total_flips() == int(sum(f.sum() for f in flips)) > 1000
