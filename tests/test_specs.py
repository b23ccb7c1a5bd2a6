"""The shipped specs validate, and the CIFAR-10 spec trains end to end on a fixture in the real format."""
import json

import pytest

from pipeline.spec import base_config, load_sweep, read_spec
from tests import fixtures
from tests.conftest import REPO, run_cli

SPECS = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_spec_validates_every_grid_point_and_names_its_results_folder_after_the_file(path):
    spec = load_sweep(path)  # raises on any invalid key or grid value
    assert spec.name == path.stem
    assert len(spec.grid_points()) >= 1


def test_conv4_spec_mirrors_the_seed():
    cfg = base_config(read_spec(REPO / "sweeps" / "edgepopup_conv4_cifar10.yaml"), {})
    assert (cfg.arch, cfg.algo, cfg.init, cfg.scaled, cfg.density) == ("conv4", "ep", "signed_constant", False, 0.5)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.schedule.name, cfg.batch_size, cfg.epochs) == \
        (0.1, 1e-4, "cosine", 128, 100)


def test_conv4_cifar10_spec_trains_on_cifar_batches(tmp_path):
    fixtures.write_cifar(tmp_path / "data", n_per_batch=40, n_test=50)
    out = tmp_path / "run"
    proc = run_cli("pipeline.run", str(REPO / "sweeps" / "edgepopup_conv4_cifar10.yaml"), f"data_dir={tmp_path}/data",
                   "epochs=2", "batch_size=32", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "epoch   2/2" in proc.stdout and f"outputs: {out}" in proc.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["density"] == 0.5
