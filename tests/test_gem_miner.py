"""Gem-Miner against hand-computed values, and real short searches + fine-tunes on digits."""
import math

import pytest
import torch

from hiddennets.frozen_weights import model_from_checkpoint
from hiddennets import build_model, config_from_dict, load_config, train
from hiddennets.algorithms import ALGORITHMS, total_epochs
from hiddennets.algorithms.gem_miner import finetune_schedule, flagged_after_round, prune_round, rounds
from hiddennets.checkpoint import load_checkpoint
from hiddennets.errors import ConfigError
from hiddennets.layers import subnet_layers
from tests.interrupt import Stop, stop_after, untimed


@pytest.mark.parametrize("epochs,period,expected", [(150, 5, 29), (11, 2, 5), (15, 5, 2), (6, 5, 1), (20, 3, 6)])
def test_number_of_rounds_is_floor_of_epochs_minus_one_over_period(epochs, period, expected):
    cfg = config_from_dict({"algo": "gem_miner", "epochs": epochs, "gem_miner": {"iter_period": period}})
    assert rounds(cfg) == expected


def test_per_round_counts_follow_density_to_the_j_over_r():
    # n = 1000, density 0.1, R = 5: ceil(1000 * 0.1^(j/5)) = 631, 399, 252, 159, then exactly 100
    assert [flagged_after_round(1000, 0.1, j, 5) for j in range(1, 6)] == [631, 399, 252, 159, 100]


@pytest.mark.parametrize("density", [0.0059, 0.0144, 0.0372, 0.5])
def test_rounds_during_a_search_leave_exactly_the_target_flagged(density):
    # drive the real epoch hook over a whole search: 11 epochs, a round every 2 (R = 5)
    cfg = config_from_dict({"algo": "gem_miner", "density": density, "epochs": 11, "gem_miner": {"iter_period": 2}})
    model = build_model(cfg)
    algo = ALGORITHMS["gem_miner"]
    n = sum(layer.flag.numel() for layer in subnet_layers(model))
    counts = []
    for epoch in range(cfg.epochs):
        algo.on_epoch_start(model, cfg, epoch)
        counts.append(int(sum(layer.flag.sum() for layer in subnet_layers(model))))
    assert counts[0] == counts[1] == n                                  # no round at epoch 0
    assert counts[2] == flagged_after_round(n, density, 1, 5)           # per-round rate ~ 1 - density^(1/5)
    assert counts[-1] == math.ceil(density * n)                          # exact after the last round
    assert prune_round(model, density, 5, 5) == 0                       # rounds are idempotent (resume)


def test_l2_regulariser_and_clamp():
    cfg = config_from_dict({"algo": "gem_miner", "density": 0.5, "gem_miner": {"l2_lambda": 0.01}})
    model = build_model(cfg)
    algo = ALGORITHMS["gem_miner"]
    expected = 0.01 * sum(float((layer.scores.detach() ** 2).sum()) for layer in subnet_layers(model))
    assert algo.regularizer(model, cfg).item() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        for layer in subnet_layers(model):
            layer.scores.add_(torch.randn_like(layer.scores) * 3)
    algo.after_step(model, cfg)
    assert all(0.0 <= float(l.scores.detach().min()) and float(l.scores.detach().max()) <= 1.0
               for l in subnet_layers(model))


def test_search_too_short_for_any_round_is_refused():
    with pytest.raises(ConfigError, match="gem_miner.iter_period: with epochs=5 no pruning round would run"):
        config_from_dict({"algo": "gem_miner", "epochs": 5, "gem_miner": {"iter_period": 5}})


def test_gem_miner_search_and_finetune_on_digits_beat_a_random_mask_and_resume_exactly(quickstart, tmp_path):
    overrides = {"algo": "gem_miner", "epochs": 6, "optimizer.weight_decay": 0.0,
                 "gem_miner.iter_period": 5, "gem_miner.finetune_epochs": 2}
    cfg = load_config(quickstart, overrides)
    assert total_epochs(cfg) == 8
    snapshots = {}

    def snapshot(metrics, checkpoint):
        snapshots[metrics["epoch"]] = model_from_checkpoint(load_checkpoint(checkpoint)).state_dict()

    result = train(cfg, tmp_path / "gm", callbacks=[snapshot], log=None)
    random_mask = train(load_config(quickstart, {"algo": "random_mask", "epochs": 8}), tmp_path / "rm", log=None)
    assert result["phases"]["search"]["epoch"] == 6 and result["phases"]["finetune"]["epoch"] == 8
    assert result["phases"]["search"]["test_acc"] >= 85.0, result["phases"]
    assert result["final"]["test_acc"] >= 90.0 and result["final"]["density"] == 0.5
    assert random_mask["final"]["test_acc"] <= 30.0

    rows = untimed(tmp_path / "gm")
    assert [r["phase"] for r in rows] == ["search"] * 6 + ["finetune"] * 2
    assert all("test_acc_unrounded" in r for r in rows[:6]) and "test_acc_unrounded" not in rows[6]

    initial = build_model(cfg).state_dict()
    weights = [k for k in initial if k.endswith("weight") and k.replace("weight", "flag") in initial]
    for key in weights:  # frozen during the search, trained during fine-tuning
        assert torch.equal(snapshots[6][key], initial[key])
        assert not torch.equal(snapshots[8][key], snapshots[7][key])
    for key in [k for k in initial if k.endswith("flag")]:  # the mask stays fixed while fine-tuning
        assert torch.equal(snapshots[7][key], snapshots[8][key])
    for key in [k for k in initial if k.endswith("scores")]:
        assert 0.0 <= snapshots[6][key].min() and snapshots[6][key].max() <= 1.0

    # interrupted at the end of the search and again inside the fine-tune: same numbers in the end
    for stop in (6, 7):
        with pytest.raises(Stop):
            train(cfg, tmp_path / "again", callbacks=[stop_after(stop)], log=None)
    train(cfg, tmp_path / "again", log=None)
    assert untimed(tmp_path / "again") == rows


def test_sanity_checks_before_finetuning_shuffle_within_layers_and_reinit_weights():
    cfg = config_from_dict({"algo": "gem_miner", "density": 0.3, "epochs": 6,
                            "gem_miner": {"finetune_epochs": 1, "shuffle_mask": True, "reinit_weights": True}})
    model = build_model(cfg)
    algo = ALGORITHMS["gem_miner"]
    for epoch in range(cfg.epochs):
        algo.on_epoch_start(model, cfg, epoch)
    layers = subnet_layers(model)
    flags = [layer.flag.clone() for layer in layers]
    weights = [layer.weight.detach().clone() for layer in layers]
    algo.start_phase(model, cfg, algo.phases(cfg)[1], fresh=True)
    for layer, flag, weight in zip(layers, flags, weights):
        assert layer.flag.sum() == flag.sum()            # same count in every layer
        assert not torch.equal(layer.flag, flag)         # but elsewhere
        assert not torch.equal(layer.weight, weight)     # new random weights
        assert layer.weight.requires_grad and not layer.scores.requires_grad
        assert torch.equal(layer.mask(), layer.flag)


def test_hc_trains_relaxed_but_its_accuracy_is_the_rounded_subnetwork():
    cfg = config_from_dict({"algo": "hc", "density": 0.5, "epochs": 6})
    model = build_model(cfg)
    algo = ALGORITHMS["hc"]
    algo.start_phase(model, cfg, algo.phases(cfg)[0], fresh=True)
    layer = subnet_layers(model)[0]
    relaxed = layer.weight * layer.scores * layer.flag
    rounded = layer.weight * (layer.scores > 0.5) * layer.flag
    model.train()
    assert torch.equal(layer.effective_weight(), relaxed)
    model.eval()
    assert torch.equal(layer.effective_weight(), rounded)
    with algo.evaluation_modes(model, cfg, algo.phases(cfg)[0])["unrounded"]:
        assert torch.equal(layer.effective_weight(), relaxed)
    assert torch.equal(layer.effective_weight(), rounded)


def test_dense_first_and_last_layers_stay_whole_and_density_one_prunes_nothing():
    cfg = config_from_dict({"algo": "gem_miner", "density": 0.2, "epochs": 6,
                            "first_layer_dense": True, "last_layer_dense": True})
    model = build_model(cfg)
    algo = ALGORITHMS["gem_miner"]
    algo.start_phase(model, cfg, algo.phases(cfg)[0], fresh=True)
    for epoch in range(cfg.epochs):
        algo.on_epoch_start(model, cfg, epoch)
    layers = subnet_layers(model)
    for layer in (layers[0], layers[-1]):
        assert torch.equal(layer.effective_weight(), layer.weight) and not layer.scores.requires_grad
    assert all(float(layer.flag.mean()) == 1.0 for layer in (layers[0], layers[-1]))
    searched = layers[1:-1]
    assert sum(int(l.flag.sum()) for l in searched) == math.ceil(0.2 * sum(l.flag.numel() for l in searched))
    whole = config_from_dict({"algo": "gem_miner", "density": 1.0, "epochs": 6})
    model = build_model(whole)
    for epoch in range(whole.epochs):
        algo.on_epoch_start(model, whole, epoch)  # no round to make, no error


def test_search_has_no_weight_decay_and_finetune_drops_lr_at_53_and_80_percent():
    cfg = config_from_dict({"algo": "gem_miner", "epochs": 6, "optimizer": {"weight_decay": 5e-4},
                            "gem_miner": {"finetune_epochs": 150}})
    search, tune = ALGORITHMS["gem_miner"].phases(cfg)
    assert search.optimizer.weight_decay == 0.0 and tune.optimizer.weight_decay == 1e-4
    assert tune.optimizer.lr == 0.01 and tune.schedule.milestones == [80, 120]
    assert finetune_schedule(2).milestones == [1, 2] and finetune_schedule(1).milestones == [1]
