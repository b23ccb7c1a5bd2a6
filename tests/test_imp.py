"""IMP on real short trainings: per-level density, rewinding, levels as rows, exact resume, and
accuracy against a trained random mask of the same final density."""
from __future__ import annotations

import math

import pytest
import torch

from hiddennets import build_model, load_config, train
from hiddennets.algorithms import ALGORITHMS, total_epochs
from hiddennets.checkpoint import load_checkpoint
from hiddennets.data import build_datasets
from hiddennets.pruners import imp_densities
from pipeline.analysis import phase_results
from tests.interrupt import Stop, stop_after, untimed

IMP = {"algo": "imp", "epochs": 3, "imp.levels": 5, "imp.rate": 0.6, "init": "kaiming_normal", "schedule.name": "constant", "optimizer.lr": 0.05}


def test_imp_levels_prune_60_percent_of_what_remains_rewind_to_init_and_beat_a_random_mask(quickstart, tmp_path):
    cfg = load_config(quickstart, IMP)
    assert [p.name for p in ALGORITHMS["imp"].phases(cfg)] == [f"level{j}" for j in range(6)]
    assert total_epochs(cfg) == 18
    snapshots = {}

    def snapshot(metrics, checkpoint):
        snapshots[metrics["epoch"]] = load_checkpoint(checkpoint)["model"]

    result = train(cfg, tmp_path / "imp", callbacks=[snapshot], log=None)
    initial = build_model(cfg).state_dict()
    total = sum(v.numel() for k, v in initial.items() if k.endswith("fixed_mask"))
    rows = untimed(tmp_path / "imp")
    per_level = [rows[3 * j]["density"] for j in range(6)]
    assert per_level == pytest.approx(imp_densities(5, 0.6, total), abs=1e-12)  # exact kept counts
    assert per_level[-1] == pytest.approx(0.4 ** 5, abs=1e-5)
    for j in range(1, 6):
        before, after = snapshots[3 * j], snapshots[3 * j + 1]
        for key in [k for k in initial if k.endswith("fixed_mask")]:
            assert not (after[key].bool() & ~before[key].bool()).any()  # pruned weights stay pruned
        # the level's surviving weights are the largest |w| of the previous level's end
        kept = torch.cat([before[k.replace("fixed_mask", "weight")].abs()[after[k].bool()] for k in initial
                          if k.endswith("fixed_mask")])
        dropped = torch.cat([before[k.replace("fixed_mask", "weight")].abs()[before[k].bool() & ~after[k].bool()]
                             for k in initial if k.endswith("fixed_mask")])
        assert kept.min() >= dropped.max()
    for key in [k for k in initial if k.endswith("rewind_weight")]:  # rewind_iter 0: the initialisation
        assert torch.equal(snapshots[18][key], initial[key])

    final_density = rows[-1]["density"]
    random_mask = train(load_config(quickstart, {"algo": "random_mask", "density": final_density, "epochs": 3,
                                                 "init": "kaiming_normal",
                                                 "random_mask.train_weights": True, "schedule.name": "constant",
                                                 "optimizer.lr": 0.05}), tmp_path / "rm", log=None)
    assert result["final"]["test_acc"] >= 90.0, result["final"]
    assert result["final"]["test_acc"] >= random_mask["final"]["test_acc"] + 10.0, random_mask["final"]

    # interrupted inside level 2 and at the end of level 4: the same rows in the end
    for stop in (8, 15):
        with pytest.raises(Stop):
            train(cfg, tmp_path / "again", callbacks=[stop_after(stop)], log=None)
    train(cfg, tmp_path / "again", log=None)
    assert untimed(tmp_path / "again") == rows


def test_rewind_iter_keeps_the_weights_after_that_many_steps(quickstart, tmp_path):
    cfg = load_config(quickstart, {**IMP, "epochs": 2, "imp.levels": 1})
    steps_per_epoch = math.ceil(len(build_datasets(cfg)[0]) / cfg.batch_size)
    cfg = load_config(quickstart, {**IMP, "epochs": 2, "imp.levels": 1, "imp.rewind_iter": steps_per_epoch})
    snapshots = {}
    train(cfg, tmp_path / "rw", callbacks=[lambda m, c: snapshots.__setitem__(m["epoch"], load_checkpoint(c)["model"])],
          log=None)
    first_epoch = snapshots[1]
    for key in [k for k in first_epoch if k.endswith("weight") and not k.endswith("rewind_weight")]:
        rewind = key.rsplit(".", 1)[0] + ".rewind_weight"
        if rewind in first_epoch:
            assert torch.equal(first_epoch[rewind], first_epoch[key])      # snapshot after epoch 1's steps
            assert torch.equal(snapshots[4][rewind], first_epoch[key])      # and kept through level 1
    assert int(snapshots[4]["imp_steps"]) == 2 * steps_per_epoch  # counted through level 0 only


def test_levels_are_rows_of_the_phase_results_table():
    import pandas as pd
    epochs = pd.DataFrame({"trial_id": ["t"] * 4, "epoch": [1, 2, 3, 4], "phase": ["level0", "level0", "level1", "level1"],
                           "density": [1.0, 1.0, 0.8, 0.8], "val_acc": [50.0, 70.0, 80.0, 60.0],
                           "test_acc": [51.0, 71.0, 79.0, 61.0]})
    trials = pd.DataFrame({"trial_id": ["t"], "dataset": ["digits"], "arch": ["conv_digits"], "algo": ["imp"],
                           "density": [0.5], "init": ["kaiming_normal"], "seed": [0], "status": ["completed"]})
    table = phase_results(trials, epochs)
    assert table[["phase", "phase_end_epoch", "phase_density", "phase_last_test_acc", "phase_test_acc_at_best_val"]
                 ].values.tolist() == [["level0", 2, 1.0, 71.0, 71.0], ["level1", 4, 0.8, 61.0, 79.0]]
    assert (table["algo"] == "imp").all() and (table["seed"] == 0).all()
