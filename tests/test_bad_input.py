"""Malformed sweep specs and run configs, generated with hypothesis: every one is refused with a
one-line message naming the key, file or line, exit code 2, no traceback, and nothing written."""
from __future__ import annotations

import copy
import dataclasses
import math
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hiddennets.algorithms import sections
from hiddennets.config import RunConfig
from pipeline.cli import run_main
from pipeline.run import main as run_command
from pipeline.spec import ResourcesConfig, SchedulerConfig
from pipeline.sweep import main as sweep_command

VALID = {
    "name": "battery",
    "base": {"dataset": "digits", "arch": "conv_digits", "algo": "ep", "density": 0.5, "init": "signed_constant",
             "epochs": 2, "batch_size": 64, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
             "schedule": {"name": "cosine", "warmup_epochs": 0}, "biprop": {"ramp_epochs": 3},
             "gem_miner": {"iter_period": 1}, "random_mask": {"train_weights": False}},
    "grid": {"density": [0.1, 0.5], "seed": [0, 1]},
    "scheduler": {"name": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1, "reduction_factor": 2},
    "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
    "storage": "results",
}
# derandomize: the same examples on every machine and every run, so CI never meets a new one first
FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fields(cls) -> dict[str, typing.Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "sections"}
    return fields | (sections() if cls is RunConfig else {})


def _section_class(path: tuple[str, ...]):
    """The dataclass behind a nested section of the spec, e.g. ('base', 'optimizer')."""
    if path == ("scheduler",):
        return SchedulerConfig
    if path == ("resources",):
        return ResourcesConfig
    cls = RunConfig
    for name in path[1:]:
        cls = sections().get(name) or typing.get_type_hints(cls)[name]  # an algorithm's section, or a common one
    return cls


SECTIONS = [(), ("base",), ("base", "optimizer"), ("base", "schedule"), ("base", "biprop"), ("base", "gem_miner"),
            ("base", "random_mask"), ("scheduler",), ("resources",)]


def valid_keys(path: tuple[str, ...]) -> set[str]:
    if path == ():
        return {"name", "description", "base", "grid", "num_samples", "scheduler", "resources", "max_failures",
                "storage"}
    return set(_fields(_section_class(path)))


def refused(tmp_path: Path, capsys, spec_text: str, command=sweep_command, extra=("--dry-run",)) -> str:
    """Run the command in-process on this spec; it must exit 2 with one line on stderr and write nothing.
    Returns that line."""
    folder = tmp_path / f"case{len(list(tmp_path.glob('case*')))}"
    folder.mkdir()
    spec = folder / "spec.yaml"
    spec.write_text(spec_text)
    capsys.readouterr()
    code = run_main(command, [str(spec), "--storage", str(folder / "out"), *extra])
    out, err = capsys.readouterr()
    assert code == 2, (spec_text, out, err)
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == ["spec.yaml"]  # nothing written
    return err.strip()


def with_value(path: tuple[str, ...], key: str, value) -> dict:
    spec = copy.deepcopy(VALID)
    node = spec
    for name in path:
        node = node[name]
    node[key] = value
    return spec


@FAST
@given(data=st.data())
def test_an_unknown_key_at_any_level_is_named(tmp_path, capsys, data):
    path = data.draw(st.sampled_from(SECTIONS), label="section")
    key = data.draw(st.from_regex(r"[a-z][a-z_]{1,11}", fullmatch=True).filter(lambda k: k not in valid_keys(path)),
                    label="key")
    line = refused(tmp_path, capsys, yaml.safe_dump(with_value(path, key, 1)))
    inner = [p for p in path if p != "base"]
    assert ".".join(inner + [key]) in line, line


# a value of the wrong type for each kind of field
WRONG = {int: st.one_of(st.text(min_size=1).filter(lambda s: not s.strip().lstrip("-").isdigit()),
                        st.lists(st.integers(), min_size=1, max_size=2),
                        st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x))),
         float: st.one_of(st.text(min_size=1).filter(lambda s: not _is_number(s)),
                          st.lists(st.floats(), min_size=1, max_size=2), st.booleans()),
         bool: st.one_of(st.text(min_size=1).filter(lambda s: s.lower() not in ("true", "false")),
                         st.integers(min_value=2), st.lists(st.booleans(), min_size=1, max_size=2)),
         str: st.one_of(st.integers(), st.lists(st.text(max_size=3), min_size=1, max_size=2),
                        st.dictionaries(st.text(min_size=1, max_size=3), st.integers(), min_size=1, max_size=2))}


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def typed_fields() -> list[tuple[tuple[str, ...], str, type]]:
    out = []
    for path in SECTIONS[1:]:
        for name, hint in _fields(_section_class(path)).items():
            if hint in WRONG and not (path == ("base",) and name in ("name", "data_dir", "device")):
                out.append((path, name, hint))
    return out


@FAST
@given(data=st.data())
def test_a_value_of_the_wrong_type_is_named_with_its_key(tmp_path, capsys, data):
    path, key, hint = data.draw(st.sampled_from(typed_fields()), label="field")
    value = data.draw(WRONG[hint], label="value")
    line = refused(tmp_path, capsys, yaml.safe_dump(with_value(path, key, value)))
    inner = [p for p in path if p != "base"]
    assert ".".join(inner + [key]) in line, line


@FAST
@given(density=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True),
                         st.just(math.nan)), where=st.sampled_from(["base", "grid"]))
def test_densities_outside_zero_to_one_are_refused(tmp_path, capsys, density, where):
    spec = with_value(("base",), "density", density) if where == "base" else \
        with_value(("grid",), "density", [0.5, density])
    line = refused(tmp_path, capsys, yaml.safe_dump(spec))
    assert "density: must be in (0, 1]" in line, line


@FAST
@given(axis=st.sampled_from(["density", "seed", "algo", "optimizer.lr", "arch"]))
def test_an_empty_grid_axis_is_named(tmp_path, capsys, axis):
    line = refused(tmp_path, capsys, yaml.safe_dump(with_value(("grid",), axis, [])))
    assert f"grid.{axis}: empty list" in line, line


@FAST
@given(data=st.data())
def test_yaml_syntax_errors_name_the_file_and_line(tmp_path, capsys, data):
    lines = yaml.safe_dump(VALID, default_flow_style=None).splitlines()
    at = data.draw(st.integers(0, len(lines) - 1), label="line")
    junk = data.draw(st.sampled_from(["{", "[", "key: [1, 2", "\t- x", ": :", "'unclosed", "- a\nb: c"]))
    text = "\n".join(lines[:at] + [lines[at] + " " + junk] + lines[at + 1:]) + "\n"
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        line = refused(tmp_path, capsys, text)
        assert "spec.yaml: line " in line and "YAML syntax error" in line, line
    else:  # the junk happened to be valid YAML: it must still be refused or accepted cleanly
        capsys.readouterr()


@pytest.mark.parametrize("change, message", [
    ({"density": 0}, "density: must be in (0, 1]"),
    ({"optimizer": {"name": "sgd", "lr": "fast"}}, "optimizer.lr: expected a number, got 'fast'"),
    ({"gem_miner": {"iter_perod": 2}}, "unknown key 'gem_miner.iter_perod': did you mean 'gem_miner.iter_period'?"),
    ({"dataset": "cifar10", "data_dir": "/nonexistent/data"}, "dataset cifar10: missing"),
])
def test_run_command_refuses_bad_configs_before_writing(tmp_path, capsys, change, message):
    line = refused(tmp_path, capsys, yaml.safe_dump({**VALID["base"], **change}), command=run_command, extra=())
    assert message in line, line
