"""Peek-a-Boo on real short trainings: the SynFlow mask, Bop's rules over a whole run, the decay
schedule, exact resume of Bop's state, and accuracy against a random mask of the same density."""
from __future__ import annotations


import pytest
import torch

from hiddennets import build_model, load_config, train
from hiddennets.checkpoint import load_checkpoint
from hiddennets.masks import kept_count
from hiddennets.layers import subnet_layers
from tests.interrupt import Stop, stop_after, untimed

# digits has ~11 steps an epoch (CIFAR ~390), so Bop's threshold is raised from the seed's 1e-6
PAB = {"algo": "pab", "density": 0.3, "epochs": 4, "init": "kaiming_normal", "learn_bn": True, "pab.prune_iterations": 20,
       "pab.threshold": 1.0e-4, "pab.decay_epochs": 2}


def test_pab_flips_only_kept_signs_beats_a_random_mask_and_resumes_bop_exactly(quickstart, tmp_path):
    cfg = load_config(quickstart, PAB)
    snapshots = {}

    def snapshot(metrics, checkpoint):
        snapshots[metrics["epoch"]] = load_checkpoint(checkpoint)

    result = train(cfg, tmp_path / "pab", callbacks=[snapshot], log=None)
    random_mask = train(load_config(quickstart, {"algo": "random_mask", "density": 0.3, "epochs": 4,
                                                 "init": "kaiming_normal", "learn_bn": True}), tmp_path / "rm", log=None)
    assert result["final"]["test_acc"] >= 90.0, result["final"]
    assert result["final"]["test_acc"] >= random_mask["final"]["test_acc"] + 15.0, random_mask["final"]

    initial = build_model(cfg).state_dict()
    final = snapshots[4]["model"]
    masks = {k.removesuffix(".fixed_mask"): final[k] for k in final if k.endswith("fixed_mask")}
    total = sum(m.numel() for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == kept_count(0.3, total)  # SynFlow, global, exact
    assert all(torch.equal(snapshots[e]["model"][f"{n}.fixed_mask"], masks[n]) for e in snapshots for n in masks)
    model = build_model(cfg)
    (classifier,) = [name for name, m in model.named_modules() if getattr(m, "is_output", False)]
    for name, mask in masks.items():
        before, after = initial[f"{name}.weight"], final[f"{name}.weight"]
        if name == classifier:  # trained by SGD, not flipped
            assert not torch.equal(before.abs(), after.abs())
            continue
        assert torch.equal(before.abs(), after.abs())                   # magnitudes never change
        flipped = torch.sign(before) != torch.sign(after)
        assert flipped.any() and not (flipped & (mask == 0)).any()     # pruned weights never flip

    rows = untimed(tmp_path / "pab")
    assert [r["adaptivity"] for r in rows] == pytest.approx([1e-3, 1e-3, 1.5e-4, 1.5e-4])  # x0.15 every 2 epochs
    flips = [r["flips"] for r in rows]
    assert flips == sorted(flips) and flips[0] > 0
    # Bop's moving averages and per-weight flip counts are in the checkpoint
    bop_state = snapshots[4]["optimizer"][0]["state"]
    assert sum(int(s["flips"].sum()) for s in bop_state.values()) == flips[-1]

    # interrupted twice (between decay steps and just after one): the same run in the end
    for stop in (1, 3):
        with pytest.raises(Stop):
            train(cfg, tmp_path / "again", callbacks=[stop_after(stop)], log=None)
    train(cfg, tmp_path / "again", log=None)
    assert untimed(tmp_path / "again") == rows


def test_pab_with_psg_trains_and_pruners_are_selectable(quickstart, tmp_path):
    cfg = load_config(quickstart, {**PAB, "epochs": 3, "pab.psg": True, "pab.psg_threshold": 0.01,
                                   "pab.pruner": "snip", "pab.scope": "layer"})
    result = train(cfg, tmp_path / "psg", log=None)
    assert result["final"]["test_acc"] >= 80.0, result["final"]
    for layer in subnet_layers(build_model(cfg)):
        assert layer.psg is not None and layer.psg.threshold == 0.01
    final = load_checkpoint(tmp_path / "psg" / "checkpoint.pt")["model"]
    for key in [k for k in final if k.endswith("fixed_mask")]:  # SNIP, per layer: each layer exactly
        assert int(final[key].sum()) == kept_count(0.3, final[key].numel())
