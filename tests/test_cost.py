"""What a sparse network costs: parameters and FLOPs (dense and with the masks applied) against hand
counts, layers.parquet against the trained layers' own masks, and IMP reported per level."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hiddennets.frozen_weights import model_from_checkpoint
from hiddennets import build_model, load_config
from hiddennets.checkpoint import load_checkpoint
from hiddennets.cost import CostMeter, layer_counts
from hiddennets.masks import kept_count
from pipeline.analysis import load, load_layers, results_view
from pipeline.published import compare, published
from tests.conftest import run_cli
from tests.test_sweep import write_spec

# conv_digits on 8x8 digits (hiddennets/models/conv.py), by hand. A conv's multiply-adds are
# out x in x k x k x output positions; torch's counter gives 2 FLOPs per multiply-add.
CONV_DIGITS_LAYERS = {  # name: (weights, multiply-adds)
    "0": (64 * 1 * 9, 64 * 1 * 9 * 8 * 8),
    "3": (64 * 64 * 9, 64 * 64 * 9 * 8 * 8),
    "7": (128 * 64 * 9, 128 * 64 * 9 * 4 * 4),    # after the first 2x2 max-pool
    "10": (128 * 128 * 9, 128 * 128 * 9 * 4 * 4),
    "15": (512 * 256, 512 * 256),                  # 128 channels x 2 x 2 flattened, FC 256
    "18": (256 * 10, 256 * 10),
}
BN_AFFINE = 2 * (64 + 64 + 128 + 128 + 256)  # weight and bias of each batch norm, when learned


def test_conv_digits_parameters_and_flops_equal_a_hand_count(quickstart):
    for learn_bn in (False, True):
        cfg = load_config(quickstart, {"algo": "ep", "density": 0.1, "learn_bn": learn_bn})
        cost = CostMeter(1, 8).measure(build_model(cfg))
        weights = sum(w for w, _ in CONV_DIGITS_LAYERS.values())
        assert weights == 392_256
        assert cost["params_total"] == weights + (BN_AFFINE if learn_bn else 0)  # scores are not the network's
        assert cost["flops_dense"] == 2 * sum(m for _, m in CONV_DIGITS_LAYERS.values()) == 12_137_472
        kept = {name: kept_count(0.1, w) for name, (w, _) in CONV_DIGITS_LAYERS.items()}  # ep keeps k per layer
        assert [(r["layer"], r["kept"], r["total"]) for r in cost["layers"]] == [
            (name, kept[name], w) for name, (w, _) in CONV_DIGITS_LAYERS.items()]
        assert cost["params_kept"] == sum(kept.values()) + (BN_AFFINE if learn_bn else 0)
        effective = sum(2 * m * kept[name] / w for name, (w, m) in CONV_DIGITS_LAYERS.items())
        assert cost["flops_effective"] == round(effective)
        assert cost["density"] == sum(kept.values()) / weights


def test_the_dense_baseline_keeps_everything_and_counting_leaves_the_model_as_it_was(quickstart):
    cfg = load_config(quickstart, {"algo": "dense", "density": 1.0})
    model = build_model(cfg)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cost = CostMeter(1, 8).measure(model)
    assert cost["params_kept"] == cost["params_total"] and cost["flops_effective"] == cost["flops_dense"] == 12_137_472
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN statistics untouched


def test_layers_table_equals_the_trained_layers_own_kept_counts_and_imp_is_reported_per_level(tmp_path):
    spec = write_spec(tmp_path, "cost", base={"epochs": 2, "imp": {"levels": 2, "rate": 0.5}},
                      grid={"algo": ["ep", "imp"], "density": [0.3]}, scheduler={"name": "fifo"})
    proc = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, epochs = load(str(tmp_path / "out" / "cost"))
    layers = load_layers(str(tmp_path / "out" / "cost"))
    assert set(trials.status) == {"completed"}
    for trial in trials.itertuples():
        model = model_from_checkpoint(load_checkpoint(Path(trial.checkpoint)))  # the newest: the last epoch
        last = layers[(layers.trial_id == trial.trial_id) & (layers.epoch == trial.epochs_completed)]
        own = layer_counts(model)
        assert last[["layer", "kept", "total"]].values.tolist() == [[c.name, c.kept, c.total] for c in own]
        assert last["shape"].tolist() == ["x".join(map(str, c.shape)) for c in own]
        assert (last.kept_fraction == last.kept / last.total).all()
        cost = CostMeter(1, 8).measure(model)
        assert (trial.params_kept, trial.flops_effective, trial.flops_dense) == (
            cost["params_kept"], cost["flops_effective"], cost["flops_dense"])
        assert trial.last_density == pytest.approx(last.kept.sum() / last.total.sum())
        # every epoch has its rows: the epochs table's params and FLOPs follow from them
        assert sorted(layers[layers.trial_id == trial.trial_id].epoch.unique()) == list(
            range(1, trial.epochs_completed + 1))

    # IMP: one result per level, at the density the level measured, never the config's 0.3
    imp = trials[trials.algo == "imp"].iloc[0]
    view = results_view(trials, epochs)
    levels = view[view.algo == "imp"].sort_values("level")
    mine = epochs[epochs.trial_id == imp.trial_id]
    assert levels.level.tolist() == ["level0", "level1", "level2"]
    for level in levels.itertuples():
        rows = mine[mine.phase == level.level].sort_values("epoch")
        assert level.density == pytest.approx(rows.measured_density.iloc[-1]) and level.status == "completed"
        assert level.best_test_acc == rows.test_acc.max() and level.last_test_acc == rows.test_acc.iloc[-1]
        assert level.flops_effective == rows.flops_effective.iloc[-1]
    assert levels.density.tolist() == pytest.approx([1.0, 0.5, 0.25], abs=1e-3) and 0.3 not in levels.density.tolist()
    assert view[view.algo == "ep"].density.tolist() == [0.3]
    # the published comparison matches a row at a level's density, not at the config's
    columns = list(published().columns)
    row = {c: np.nan for c in columns} | {"source": "t", "table": "t", "label": "imp at 1/4", "dataset": "digits",
                                          "algo": "imp", "density": float(levels.density.iloc[2]),
                                          "protocol": "best_test", "top1": 90.0, "top1_std": np.nan}
    table = compare(view, pd.DataFrame([row], columns=columns))
    assert len(table) == 1 and table.ours_mean.iloc[0] == levels.best_test_acc.iloc[2]
    assert compare(view, pd.DataFrame([row | {"density": 0.3}], columns=columns)).empty
    # the report: one results row per level, a per-layer plot and accuracy vs FLOPs
    report = (tmp_path / "out" / "cost" / "report" / "report.md").read_text()
    assert "layer_density_digits_conv_digits.png" in report and "accuracy_vs_flops_digits_conv_digits.png" in report
    shown = [line for line in report.split("## Results per setting")[1].split("##")[0].splitlines()
             if line.startswith("| digits") and " imp " in line]
    assert len(shown) == 3, shown
