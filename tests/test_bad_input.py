"""Malformed sweep specs and run configs, generated with hypothesis: every one is refused with a
one-line message naming the key, file or line, exit code 2, no traceback, and nothing written."""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import time
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


# ---------------------------------------------------------------------------------------------------
# The battery's second half: numbers, encodings, names and paths, alias depth, sampled axes, section
# shapes, and fixed cases. Every case: exit 2, one line of bounded length, no traceback, nothing
# written, nothing outside the storage touched (`refused` checks all of that).

MAX_LINE = 1010  # "error: " + pipeline.cli.MAX_ERROR_LINE


def refused_bounded(tmp_path, capsys, spec_text: str, **kw) -> str:
    line = refused(tmp_path, capsys, spec_text, **kw)
    assert len(line) <= MAX_LINE, len(line)
    return line


def numeric_fields() -> list[tuple[tuple[str, ...], str, type]]:
    return [(path, name, hint) for path, name, hint in typed_fields() if hint in (int, float)
            and path != ("resources",) and not (path == ("scheduler",))]


@FAST
@given(data=st.data())
def test_non_finite_negative_and_huge_numbers_are_refused_naming_the_key(tmp_path, capsys, data):
    path, key, hint = data.draw(st.sampled_from(numeric_fields()), label="field")
    bad = [-1, -10**9, 10**30] if hint is int else [math.nan, math.inf, -math.inf, -1.0, -1e30]
    value = data.draw(st.sampled_from(bad), label="value")
    line = refused_bounded(tmp_path, capsys, yaml.safe_dump(with_value(path, key, value)))
    section = [p for p in path if p != "base"]
    assert key in line and all(s in line for s in section), line


@FAST
@given(data=st.data())
def test_resources_and_scheduler_numbers_that_make_no_sense_are_refused(tmp_path, capsys, data):
    section = data.draw(st.sampled_from(["resources", "scheduler"]), label="section")
    key = data.draw(st.sampled_from(sorted(_fields(_section_class((section,))))), label="key")
    hint = _fields(_section_class((section,)))[key]
    if hint is str:
        value = data.draw(st.text(min_size=1, max_size=400).filter(lambda s: s not in ("asha", "fifo", "max", "min")
                                                                    and not s.startswith(("val_", "train_", "test_"))))
    else:
        value = data.draw(st.sampled_from([-1, 0, -5, 10**12] if hint is int else [math.nan, math.inf, -1.0, -0.5]))
        if key == "gpus_per_worker" and value in (0, -0.0):
            value = -1.0
    if (section, key, value) in (("resources", "gpus_per_worker", 0), ("resources", "cpus_per_worker", 0)):
        value = -1
    line = refused_bounded(tmp_path, capsys, yaml.safe_dump(with_value((section,), key, value)))
    assert section in line, line


ENCODINGS = ["latin-1", "utf-16", "utf-32", "cp1252"]


@FAST
@given(data=st.data())
def test_specs_that_are_not_utf8_are_refused_naming_the_file(tmp_path, capsys, data):
    kind = data.draw(st.sampled_from(ENCODINGS + ["binary"]), label="kind")
    if kind == "binary":
        raw = data.draw(st.binary(min_size=1, max_size=200).filter(lambda b: not _decodes(b)), label="bytes")
    else:
        text = yaml.safe_dump({**VALID, "description": "Ångström café ünïcode"}, allow_unicode=True)
        raw = text.encode(kind)
    folder = tmp_path / f"case{len(list(tmp_path.glob('case*')))}"
    folder.mkdir()
    (folder / "spec.yaml").write_bytes(raw)
    capsys.readouterr()
    code = run_main(sweep_command, [str(folder / "spec.yaml"), "--storage", str(folder / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(folder / "spec.yaml") in err and "not UTF-8" in err, err
    assert sorted(p.name for p in folder.iterdir()) == ["spec.yaml"]


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


BAD_NAMES = st.one_of(st.sampled_from(["..", ".", "../escaped", "a/b", "/abs", ".hidden", "-dash", "name with space",
                                       "x" * 101, "x" * 300, "tab\there", "ünï", "a\\b", "semi;colon", ""]),
                      st.text(min_size=1, max_size=30).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", s)))


@FAST
@given(name=BAD_NAMES, command=st.sampled_from(["sweep", "run"]))
def test_names_that_are_not_one_safe_folder_are_refused(tmp_path, capsys, name, command):
    if command == "sweep":
        line = refused_bounded(tmp_path, capsys, yaml.safe_dump({**VALID, "name": name}))
    else:
        line = refused_bounded(tmp_path, capsys, yaml.safe_dump({**VALID["base"], "name": name}), command=run_command,
                               extra=())
    assert line.startswith("error: name: expected a folder name"), line
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "escaped").exists()


BAD_STORAGE = st.sampled_from(["/etc/hiddennets", "/proc/results", "/sys/x", "/dev/results", "/", "~/.ssh/results",
                               "~/.config/hiddennets", "/usr/results", "ftp://host/results", "http://host/x",
                               "hdfs://namenode/x", "sftp://h/x", "file:///etc/results", "   "])


@FAST
@given(storage=BAD_STORAGE, where=st.sampled_from(["spec", "flag"]), command=st.sampled_from(["sweep", "run"]))
def test_storage_in_a_system_folder_or_of_an_unsupported_scheme_is_refused(tmp_path, capsys, storage, where, command):
    folder = tmp_path / f"case{len(list(tmp_path.glob('case*')))}"
    folder.mkdir()
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({**VALID, **({"storage": storage} if where == "spec" else {})}))
    capsys.readouterr()
    argv = [str(spec)] + (["--storage", storage] if where == "flag" else []) + (["--dry-run"] if command == "sweep" else [])
    code = run_main(sweep_command if command == "sweep" else run_command, argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: storage: "), err
    assert sorted(p.name for p in folder.iterdir()) == ["spec.yaml"]
    assert not Path("/etc/hiddennets").exists() and not Path(os.path.expanduser("~/.config/hiddennets")).exists()


@FAST
@given(depth=st.integers(4, 9), width=st.integers(6, 12), where=st.sampled_from(["description", "milestones"]))
def test_yaml_alias_bombs_are_refused_before_they_expand(tmp_path, capsys, depth, width, where):
    lines = [f"l0: &l0 [{', '.join(['1'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
    body = yaml.safe_dump(VALID)
    target = f"*l{depth - 1}"
    if where == "description":
        body = body.replace("name: battery", f"name: battery\ndescription: {target}")
    else:
        body = body.replace("  schedule:\n", f"  schedule:\n    milestones: {target}\n")
    # the anchors sit under a key of their own: a small expansion is then refused as an unknown key
    text = "anchors:\n" + "\n".join("  " + ln for ln in lines) + "\n" + body
    started = time.perf_counter()
    line = refused_bounded(tmp_path, capsys, text)
    assert time.perf_counter() - started < 5  # refused while composing: not a speed claim, a bound on the damage
    assert "YAML aliases expand to more than" in line or "unknown key 'anchors'" in line, line
    if width ** depth > 20_000:
        assert "YAML aliases expand to more than" in line, line


SAMPLED = st.sampled_from([
    ("density", {"uniform": [0.5, 2.0]}), ("density", {"uniform": [-0.5, 0.5]}), ("density", {"loguniform": [0.0, 0.5]}),
    ("density", {"choice": [0.5, 1.5]}), ("algo", {"choice": ["ep", "nosuchalgo"]}), ("arch", {"choice": ["conv4x"]}),
    ("optimizer.lr", {"loguniform": [math.nan, 1.0]}), ("optimizer.lr", {"uniform": [0.1, math.inf]}),
    ("optimizer.lr", {"loguniform": [0.2, 0.1]}), ("optimizer.lr", {"uniform": [-1.0, 0.1]}),
    ("optimizer.momentum", {"uniform": [0.5, 1.5]}), ("seed", {"randint": [-5, 3]}), ("seed", {"randint": [0, 2**40]}),
    ("seed", {"randint": [0.5, 3.5]}), ("epochs", {"randint": [0, 3]}), ("optimizer.lr", {"normal": [0.1, 0.01]}),
    ("density", {"uniform": [0.1]}), ("density", {"uniform": "0.1, 0.5"}), ("density", {"uniform": [0.1, 0.5], "x": 1}),
    ("schedule.gamma", {"uniform": [-0.1, 0.1]}), ("label_smoothing", {"uniform": [0.0, 1.0]}),
])


@FAST
@given(axis=SAMPLED, also_grid=st.booleans())
def test_sampled_axes_are_checked_for_their_key_before_anything_starts(tmp_path, capsys, axis, also_grid):
    key, sampler = axis
    spec = copy.deepcopy(VALID)
    spec["grid"] = {key: sampler, **({"seed": [0, 1]} if also_grid and key != "seed" else {})}
    line = refused_bounded(tmp_path, capsys, yaml.safe_dump(spec))
    assert f"grid.{key}" in line, line


SHAPES = st.sampled_from([[1, 2], "text", 5, 1.5, True, [{"a": 1}]])


@FAST
@given(where=st.sampled_from([("scheduler",), ("resources",), ("base",), ("base", "optimizer"), ("base", "schedule"),
                              ("base", "biprop"), ("base", "gem_miner"), ("base", "pab"), ("base", "imp"),
                              ("base", "random_mask"), ("grid",)]), shape=SHAPES)
def test_a_section_that_is_not_a_mapping_is_named(tmp_path, capsys, where, shape):
    spec = copy.deepcopy(VALID)
    node = spec
    for name in where[:-1]:
        node = node[name]
    node[where[-1]] = shape
    line = refused_bounded(tmp_path, capsys, yaml.safe_dump(spec))
    assert where[-1] in line, line


def _spec_text(**changes) -> str:
    spec = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        node = spec
        *parents, key = dotted.split(".")
        for name in parents:
            node = node[name]
        node[key] = value
    return yaml.safe_dump(spec)


FIXED = [  # the cases that once ran or crashed: (spec text, extra arguments, what the line must say)
    ("", (), "empty"),
    ("name: a\nname: b\nbase: {density: 0.5}\n", (), "duplicate key 'name'"),
    (_spec_text(**{"base.optimizer.lr": math.nan}), (), "optimizer.lr: expected a finite number, got nan"),
    (_spec_text(**{"base.optimizer.lr": math.inf}), (), "optimizer.lr: expected a finite number, got inf"),
    (_spec_text(**{"base.optimizer.weight_decay": math.nan}), (), "optimizer.weight_decay: expected a finite number"),
    (_spec_text(**{"base.schedule.gamma": math.nan}), (), "schedule.gamma"),
    (_spec_text(**{"base.schedule": {"name": "multistep", "milestones": [-5]}}), (), "schedule.milestones: each must be in [1, 1]"),
    (_spec_text(**{"base.schedule": {"name": "multistep", "milestones": [2]}}), (), "schedule.milestones"),
    (_spec_text(**{"base.optimizer.momentum": -1}), (), "optimizer.momentum: must be in [0, 1)"),
    (_spec_text(**{"base.optimizer": {"name": "adam", "betas": [1.5, 0.9]}}), (), "optimizer.betas: each must be in [0, 1)"),
    (_spec_text(**{"base.seed": 10**20}), (), "seed: must be in [0, 2147483647]"),
    (_spec_text(**{"base.width": math.nan}), (), "width"),
    (_spec_text(**{"resources.cpus_per_worker": math.nan}), (), "resources.cpus_per_worker: expected a finite number"),
    (_spec_text(**{"resources.gpus_per_worker": math.nan}), (), "resources.gpus_per_worker: expected a finite number"),
    (_spec_text(**{"scheduler.grace_period": 50}), (), "scheduler.grace_period: 50 epochs is more than"),
    (_spec_text(scheduler=[1]), (), "scheduler: expected a mapping"),
    (_spec_text(resources="x"), (), "resources: expected a mapping"),
    (_spec_text(**{"grid": {"optimizer.lr": {"loguniform": [math.nan, 1]}}}), (), "grid.optimizer.lr.loguniform"),
    (_spec_text(name="x" * 300), (), "name: expected a folder name"),
    (_spec_text(name=".."), (), "name: expected a folder name"),
    (_spec_text(name="."), (), "name: expected a folder name"),
    (_spec_text(), ("--storage", "ftp://host/results"), "storage: unsupported URI scheme 'ftp://'"),
    (_spec_text(), ("--storage", "/etc"), "storage: /etc is a system or hidden folder"),
    (_spec_text(**{"base.num_workers": 100000}), (), "num_workers: must be in [0, 256]"),
    (_spec_text(**{"grid": {"density": {"uniform": [0.5, 2.0]}}}), (), "grid.density.uniform: draws 2.0"),
    (_spec_text(**{"grid": {"algo": {"choice": ["ep", "nosuchalgo"]}}}), (), "grid.algo.choice: draws 'nosuchalgo'"),
    (_spec_text(), ("--wait-for-nodes", "nan"), "--wait-for-nodes: must be a number of seconds"),
    (_spec_text(), ("--max-concurrent", "0"), "--max-concurrent: must be in [1, 100000]"),
    ("a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nbase: {density: 0.5}\n", (),
     "YAML aliases expand to more than 20000 values"),
]


@pytest.mark.parametrize("text, extra, message", FIXED, ids=[f"fixed{i}" for i in range(len(FIXED))])
def test_fixed_cases_are_refused_with_one_line(tmp_path, capsys, text, extra, message):
    line = refused_bounded(tmp_path, capsys, text, extra=("--dry-run", *extra))
    assert message in line, line


RUN_FIXED = [  # pipeline.run's own
    ({"name": "../../escaped"}, "name: expected a folder name"),
    ({"optimizer": {"lr": math.nan}}, "optimizer.lr: expected a finite number, got nan"),
    ({"num_workers": 100}, "num_workers: 100 loader processes but this machine has"),
    ({"density": 0.5, "width": 1e9}, "width: must be at most 64"),
]


@pytest.mark.parametrize("change, message", RUN_FIXED)
def test_fixed_run_cases_are_refused_with_one_line(tmp_path, capsys, change, message):
    if "num_workers" in change and (os.cpu_count() or 1) >= 100:
        pytest.skip("this machine has 100 CPUs or more")  # pragma: no cover - the CI machine has 2
    line = refused_bounded(tmp_path, capsys, yaml.safe_dump({**VALID["base"], **change}), command=run_command, extra=())
    assert message in line, line
    assert not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("target", ["file", "devnull"])
def test_out_must_be_a_folder(tmp_path, capsys, target):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(VALID))
    out = tmp_path / "a_file.txt" if target == "file" else Path(os.devnull)
    if target == "file":
        out.write_text("precious")
    assert run_main(run_command, [str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out: {out} is not a folder") and err.count("\n") == 1
    if target == "file":
        assert out.read_text() == "precious"
