"""pipeline.bench runs end to end on this device and writes every section it prints (tiny settings)."""
import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow  # 1.5 minutes: every section of the bench, once
def test_the_bench_runs_every_section_and_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    done = run_cli("pipeline.bench", "--device", "cpu", "--rounds", "1", "--archs", "conv2", "--batch", "8",
                   "--data-images", "500", "--tables-trials", "20", "--packed", "--packed-seconds", "1",
                   "--trial-epochs", "1", "--trial-images", "200", "--trial-arch", "conv2",
                   "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    for section in ("data", "training", "ops", "optimizer_ops", "masks", "fixed_costs", "packed", "trial"):
        assert results[section], section
    assert {row["loader"].split()[0] for row in results["data"]} == {
        "device", "torchvision_0w", "torchvision_1w", "torchvision_2w", "torchvision_auto"}
    variants = {row["variant"] for row in results["training"]}
    assert {"dense", "ep", "ep_seed_mask", "pab_psg", "imp"} <= variants
    assert all(row["host_syncs"] == 0 for row in results["ops"])  # what the bench prints, every algorithm
    assert [row["processes"] for row in results["packed"]] == [1, 2, 4]
    [epoch] = results["trial"]
    assert epoch["epoch"] == 1 and epoch["train_images"] == 180 and epoch["images_per_s"] > 0
    assert "1. data path" in done.stdout and "5. fixed costs" in done.stdout
