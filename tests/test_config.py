"""Run configs: YAML + overrides, and a one-line error with exit code 2 for every bad input."""
import hashlib
from pathlib import Path

import pytest
import yaml

from hiddennets import config_hash, load_config
from hiddennets.validation import config_from_dict
from pipeline.cli import run_main
from pipeline.run import main as run_command
from tests.conftest import run_cli


def test_load_config_with_overrides(quickstart):
    cfg = load_config(quickstart, {"optimizer.lr": 0.05}, density=0.3, algo="random_mask")
    assert (cfg.density, cfg.algo, cfg.optimizer.lr, cfg.dataset) == (0.3, "random_mask", 0.05, "digits")
    assert cfg.optimizer.momentum == 0.9  # untouched keys keep their values


def test_aliases_resolve_and_hash_ignores_where_data_lives():
    a = config_from_dict({"init": "usc"})
    assert (a.init, a.scaled) == ("signed_constant", False)
    b = config_from_dict({"init": "signed_constant", "scaled": False, "data_dir": "/elsewhere", "num_workers": 4})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(config_from_dict({"init": "usc", "seed": 1}))


BAD_INPUTS = [
    (["densty=0.3"], "unknown key 'densty': did you mean 'density'?"),
    (["optimizer.lrr=0.1"], "unknown key 'optimizer.lrr': did you mean 'optimizer.lr'?"),
    (["epochs=abc"], "epochs: expected an integer, got 'abc'"),
    (["optimizer.lr=fast"], "optimizer.lr: expected a number, got 'fast'"),
    (["learn_bn=3"], "learn_bn: expected true or false, got 3"),
    (["density=0"], "density: must be in (0, 1]"),
    (["density=1.5"], "density: must be in (0, 1]"),
    (["density=-0.2"], "density: must be in (0, 1]"),
    (["arch=resnet19"], "arch: unknown arch 'resnet19' (did you mean 'resnet18'?); valid: conv2, conv2_binact, conv4"),
    (["algo=edgepopup"], "algo: unknown algo 'edgepopup'; valid: biprop, dense, dnw, ep, gem_miner, hc, imp, pab, random_mask"),
    (["init=gaussian"], "init: unknown init 'gaussian'; valid: kaiming_normal"),
    (["dataset=cifar11"], "dataset: unknown dataset 'cifar11' (did you mean 'cifar10'?); valid: cifar10, cifar100, digits"),
    (["optimizer=sgd"], "optimizer: expected a mapping of OptimizerConfig keys, got 'sgd'"),
    (["oops"], "override 'oops': expected KEY=VALUE"),
]


@pytest.mark.parametrize("overrides,message", BAD_INPUTS)
def test_bad_input_gives_one_line_error_and_exit_2(overrides, message, quickstart, tmp_path, capsys):
    code = run_main(run_command, [str(quickstart), *overrides, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()  # nothing written


def test_missing_data_folder_says_where_it_looked(quickstart, tmp_path, capsys):
    code = run_main(run_command, [str(quickstart), "dataset=cifar10", "arch=conv2", f"data_dir={tmp_path}/nodata",
                                  "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "dataset cifar10: missing cifar-10-batches-py/data_batch_1" in err
    assert f"under {tmp_path}/nodata" in err and "download: true" in err


def test_yaml_syntax_error_names_file_and_line(tmp_path, capsys):
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: x\nbase:\n  density: [0.5\n  algo: ep\n")
    assert run_main(run_command, [str(spec)]) == 2
    err = capsys.readouterr().err
    assert str(spec) in err and "line" in err and "YAML syntax error" in err


def test_unknown_top_level_spec_key(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "base": {"density": 0.5}, "grids": {"seed": [0, 1]}}))
    assert run_main(run_command, [str(spec)]) == 2
    assert "unknown key 'grids': did you mean 'grid'?" in capsys.readouterr().err


def test_cli_process_exits_2_without_traceback(quickstart, tmp_path):
    proc = run_cli("pipeline.run", str(quickstart), "density=2", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: density: must be in (0, 1] (the fraction of weights kept), got 2.0"]
    assert "Traceback" not in proc.stderr + proc.stdout


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_folder_is_never_overwritten_by_another_config(quickstart, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(run_command, [str(quickstart), "epochs=1", "--out", str(out)]) == 0
    before = _snapshot(out)
    assert "checkpoint.pt" in before and "result.json" in before
    code = run_main(run_command, [str(quickstart), "epochs=1", "density=0.3", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "holds a run with a different config (density 0.5 -> 0.3)" in err
    assert _snapshot(out) == before
    # a folder that is not a run folder is refused too
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    assert run_main(run_command, [str(quickstart), "epochs=1", "--out", str(other)]) == 2
    assert (other / "thesis.tex").read_text() == "precious" and len(list(other.iterdir())) == 1
