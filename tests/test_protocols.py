"""How a number is measured: `val_fraction: 0` (the seeds' protocol: train on the whole training set,
no validation at all), the three test accuracies every run reports, and the published comparison
that measures each row as its paper did and counts completed trials only."""
from __future__ import annotations

import json
import math
import re
import statistics

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import run_main
from pipeline.published import PROTOCOLS, compare, published
from pipeline.report import comparison_text
from pipeline.sweep import main as sweep_command
from tests.conftest import run_cli
from tests.test_sweep import tables, write_spec

VAL_COLUMNS = ["val_loss", "val_acc", "val_top5"]


def test_val_fraction_zero_trains_on_everything_and_reports_no_validation(quickstart, tmp_path):
    proc = run_cli("pipeline.run", str(quickstart), "val_fraction=0", "epochs=2", "--storage", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " val " not in proc.stdout and "best val" not in proc.stdout, proc.stdout
    assert "no validation split: val_fraction 0" in proc.stdout
    run_dir = next(tmp_path.rglob("result.json")).parent
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and not any(k.startswith("val_") for row in rows for k in row), rows
    result = json.loads((run_dir / "result.json").read_text())
    assert result["best_val_acc"] is None and result["best_epoch"] is None and result["test_acc_at_best_val"] is None
    assert result["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert result["last_test_acc"] == rows[-1]["test_acc"]
    # all 1,797 digits minus the test split train: the train accuracy is over the whole training set
    with_val = run_cli("pipeline.run", str(quickstart), "epochs=1", "--storage", str(tmp_path / "v"))
    assert with_val.returncode == 0 and " val " in with_val.stdout


def test_asha_on_a_val_metric_refuses_trials_without_validation(tmp_path, capsys):
    spec = write_spec(tmp_path, "noval", grid={"val_fraction": [0.0, 0.1]},
                      scheduler={"name": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1,
                                 "reduction_factor": 2})
    assert run_main(sweep_command, [str(spec), "--storage", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: scheduler.metric: asha ranks trials on val_acc, but trial ") and "val_fraction 0" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_sweep_without_validation_leaves_the_val_columns_empty_and_the_comparison_uses_each_protocol(tmp_path):
    spec = write_spec(tmp_path, "proto", base={"epochs": 3}, grid={"val_fraction": [0.0, 0.1]},
                      scheduler={"name": "fifo"})
    proc = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, epochs = tables(tmp_path / "out", "proto")
    assert (trials.status == "completed").all() and len(trials) == 2
    without = trials[trials.val_fraction == 0].iloc[0]
    with_val = trials[trials.val_fraction == 0.1].iloc[0]
    for column in ("best_val_acc", "best_epoch", "test_acc_at_best_val", "last_val_acc", "last_val_loss"):
        assert pd.isna(without[column]) and not pd.isna(with_val[column]), column
    assert epochs[epochs.trial_id == without.trial_id][VAL_COLUMNS].isna().all().all()
    assert epochs[epochs.trial_id == with_val.trial_id][VAL_COLUMNS].notna().all().all()
    for trial in (without, with_val):  # the three accuracies, recomputed from the epoch rows
        mine = epochs[epochs.trial_id == trial.trial_id].sort_values("epoch")
        assert trial.best_test_acc == mine.test_acc.max() and trial.last_test_acc == mine.test_acc.iloc[-1]
    mine = epochs[epochs.trial_id == with_val.trial_id].sort_values("epoch")
    assert with_val.test_acc_at_best_val == mine.test_acc.iloc[int(np.argmax(mine.val_acc.to_numpy()))]
    # the same setting under each protocol: the column it names, and nothing at the best-val epoch without val
    columns = list(published().columns)
    base = {c: np.nan for c in columns} | {"source": "test", "table": "digits", "dataset": "digits", "algo": "ep",
                                            "top1_std": np.nan, "top1": 90.0}
    reference = pd.DataFrame([base | {"label": f"{p} {vf}", "protocol": p, "conditions": f"val_fraction={vf}"}
                              for p in PROTOCOLS for vf in (0.0, 0.1)], columns=columns)
    table = compare(trials, reference).set_index("label")
    for protocol, (metric, _) in PROTOCOLS.items():
        for vf, trial in ((0.0, without), (0.1, with_val)):
            row = table.loc[f"{protocol} {vf}"]
            assert row.protocol == protocol and row.metric == metric
            if pd.isna(trial[metric]):
                assert row.ours_count == 0 and math.isnan(row.ours_mean)
            else:
                assert row.ours_count == 1 and row.ours_mean == trial[metric]
                assert row.difference == pytest.approx(trial[metric] - 90.0)


def test_every_published_row_names_a_protocol_the_comparison_knows():
    table = published()
    assert set(table.protocol) <= set(PROTOCOLS), table.protocol.unique()
    assert table.protocol.notna().all()


def assert_comparison_counts_completed_trials_only(trials: pd.DataFrame) -> None:
    """On a real ASHA sweep's trials (tests/test_sweep.py calls this): the comparison leaves out every
    stopped-early trial, says so, and measures each row by its protocol."""
    stopped = trials[trials.status == "stopped_early"]
    assert len(stopped) >= 1 and (trials.status == "completed").any(), trials.status
    columns = list(published().columns)
    base = {c: np.nan for c in columns} | {"source": "test", "table": "digits", "dataset": "digits",
                                            "top1_std": np.nan, "top1": 50.0}
    reference = pd.DataFrame([base | {"label": f"any density {p}", "protocol": p} for p in PROTOCOLS], columns=columns)
    table = compare(trials, reference)
    settings = trials.groupby(["algo", "density"]).ngroups
    assert len(table) == 3 * settings  # each protocol x each of our settings (algo, density) it matches
    for row in table.itertuples():
        algo = row.setting.split("algo=")[1].split(",")[0]
        density = float(row.setting.split("density=")[1].split(",")[0])
        mine = trials[(trials.algo == algo) & (trials.density == density)]
        done = mine[mine.status == "completed"][PROTOCOLS[row.protocol][0]]
        assert row.ours_count == len(done)
        if len(done):
            assert row.ours_mean == pytest.approx(statistics.mean(done))
        else:
            assert math.isnan(row.ours_mean)
        left = mine[mine.status != "completed"].status.value_counts()
        assert row.left_out == ", ".join(f"{n} {s}" for s, n in sorted(left.items()))
    assert any("stopped_early" in text for text in table.left_out)
    text = comparison_text(trials, reference)  # the report's section: each row's protocol, what is not counted
    for _, description in PROTOCOLS.values():
        assert len(re.findall(rf"\|\s*{description}\s*\|", text)) == settings
    assert len(re.findall(r"\|\s*1 stopped_early\s*\|", text)) == 3 * len(stopped)  # one trial per setting here


def test_test_every_evaluates_the_test_set_on_schedule_at_new_best_val_and_at_the_phase_end(tmp_path):
    from hiddennets import config_from_dict, train
    every = train(config_from_dict({"epochs": 7}), tmp_path / "every", log=None)
    sparse = train(config_from_dict({"epochs": 7, "test_every": 3}), tmp_path / "sparse", log=None)
    rows = [json.loads(line) for line in (tmp_path / "sparse" / "metrics.jsonl").read_text().splitlines()]
    full = [json.loads(line) for line in (tmp_path / "every" / "metrics.jsonl").read_text().splitlines()]
    best = -1.0
    for row, ref in zip(rows, full):
        assert row["val_acc"] == ref["val_acc"]  # validation every epoch, and training untouched
        new_best = row["val_acc"] > best
        best = max(best, row["val_acc"])
        expected = row["epoch"] % 3 == 0 or row["epoch"] == 7 or new_best
        assert ("test_acc" in row) == expected, row["epoch"]
        if expected:
            assert row["test_acc"] == ref["test_acc"]
    assert sum("test_acc" in r for r in rows) < 7  # something was skipped
    assert sparse["test_acc_at_best_val"] == every["test_acc_at_best_val"]
    assert sparse["last_test_acc"] == every["last_test_acc"]
