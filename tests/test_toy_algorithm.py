"""Adding an algorithm is one module plus one registry call (tests/toy_algorithm.py): its option is
validated with the usual one-line errors, it trains through pipeline.run and through a real Ray
sweep, its metric is a column of epochs.parquet, and pipeline.report reports it. The same sweep
then resumes, not refused, after its data folder and loader workers change."""
from __future__ import annotations

import json
import re

import pandas as pd
import yaml

from tests.conftest import run_cli

BASE = {"dataset": "digits", "arch": "conv_digits", "algo": "toy", "density": 0.5, "init": "signed_constant",
        "epochs": 2, "batch_size": 64, "toy": {"score_scale": 2.0}}


def write_spec(folder, name, **sections):
    spec = {"name": name, "plugins": ["tests.toy_algorithm"], "base": BASE, **sections}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_toy_algorithm_option_is_validated_with_one_line(tmp_path):
    spec = write_spec(tmp_path, "toy_run")
    for override, message in (("toy.score_scale=-1", "error: toy.score_scale: must be positive, got -1.0"),
                              ("toy.scale=1", "error: unknown key 'toy.scale': did you mean 'toy.score_scale'?"),
                              ("toy.score_scale=big", "error: toy.score_scale: expected a number, got 'big'")):
        proc = run_cli("pipeline.run", str(spec), override, "--out", str(tmp_path / "never"))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [message]
        assert not (tmp_path / "never").exists()


def test_the_toy_algorithm_trains_alone_and_in_a_ray_sweep_and_is_reported(tmp_path):
    spec = write_spec(tmp_path, "toy_run")
    proc = run_cli("pipeline.run", str(spec), "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["score_l1"] > 0 for r in rows)
    assert rows[-1]["test_acc"] > 50  # edge-popup with scaled scores still learns the digits

    sweep = write_spec(tmp_path, "toy_sweep", grid={"toy.score_scale": [0.5, 2.0]})
    first = run_cli("pipeline.sweep", str(sweep), "--storage", str(tmp_path / "out"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    folder = tmp_path / "out" / "toy_sweep"
    trials, epochs = pd.read_parquet(folder / "trials.parquet"), pd.read_parquet(folder / "epochs.parquet")
    assert sorted(trials.toy_score_scale) == [0.5, 2.0] and set(trials.status) == {"completed"}
    assert "score_l1" in epochs.columns and epochs.score_l1.notna().all() and len(epochs) == 4
    # the scale shows in the metric: scores start 4x larger and move by the same SGD steps
    by_scale = epochs.merge(trials[["trial_id", "toy_score_scale"]]).groupby("toy_score_scale").score_l1.mean()
    assert by_scale[2.0] > 2 * by_scale[0.5]
    results = (folder / "report" / "report.md").read_text().split("## Results per setting")[1]
    assert "toy_score_scale" in results and len(re.findall(r"\|\s*toy\s*\|", results)) == 2  # one row per scale

    # where the data lives and how many loader workers read it are not part of the sweep's identity
    again = run_cli("pipeline.sweep", str(sweep), "data_dir=/elsewhere", "num_workers=1",
                    "--storage", str(tmp_path / "out"))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming sweep toy_sweep" in again.stdout
    resumed = pd.read_parquet(folder / "epochs.parquet")
    pd.testing.assert_frame_equal(resumed.sort_values(["trial_id", "epoch"]).reset_index(drop=True),
                                  epochs.sort_values(["trial_id", "epoch"]).reset_index(drop=True))  # nothing retrained

    rebuilt = run_cli("pipeline.report", str(folder), "--out", str(tmp_path / "report2"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    # a process that never imported the plugin still tells the two settings apart
    results = (tmp_path / "report2" / "report.md").read_text().split("## Results per setting")[1]
    assert "toy_score_scale" in results and len(re.findall(r"\|\s*toy\s*\|", results)) == 2
