"""Typed run configuration: the common keys, dict <-> dataclass conversion, YAML and overrides.

A run config is plain data. Nothing here reads the command line or global state; callers pass the
file and the overrides they want. Every user mistake raises ConfigError with a one-line message
that names the key and says what would be valid.

This module is the bottom of the import graph (it imports only `errors`). The algorithm sections
(`gem_miner:`, `pab:`, ...) are declared by the algorithms themselves; `hiddennets.validation`
hands their dataclasses to `from_dict` and checks names and ranges against the registries.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from hiddennets.errors import ConfigError

__all__ = ["ConfigError", "OptimizerConfig", "RunConfig", "ScheduleConfig", "apply_overrides", "check_choice", "check_finite", "flatten",
           "from_dict", "is_semantic", "parse_override", "read_yaml", "run_section", "unknown_key_error"]

# Field metadata: keys marked non-semantic do not change a run's results (where data lives, how
# many loader processes, what the run is called), so they are left out of the run's identity.
NOT_SEMANTIC = {"semantic": False}
SECTIONS = {"sections": True}  # the field holding the algorithms' sections


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam | adamw (hiddennets.optim.OPTIMIZERS)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5.0e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # constant | cosine | multistep (hiddennets.optim.SCHEDULES)
    warmup_epochs: int = 0
    milestones: list[int] = field(default_factory=list)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1


@dataclass
class RunConfig:
    """The keys every run has. `cfg.<section>` (e.g. `cfg.gem_miner`) reads an algorithm's section."""
    name: str = field(default="run", metadata=NOT_SEMANTIC)
    # data
    dataset: str = "digits"
    data_dir: str = field(default="~/data", metadata=NOT_SEMANTIC)
    download: bool = field(default=False, metadata=NOT_SEMANTIC)
    val_fraction: float = 0.1
    split_seed: int = 0
    augment: bool = True
    # DataLoader processes on the torchvision path: a number, or auto (the CPU threads this process
    # was given: a Ray trial's reserved cores)
    num_workers: int | str = field(default=0, metadata=NOT_SEMANTIC)
    # auto | device | torchvision: auto holds the uint8 images on the run's device and augments whole
    # batches there wherever the dataset fits (hiddennets.data.device_path); the same augmentations
    # from another random stream, so not part of the run's identity (like num_workers)
    loader: str = field(default="auto", metadata=NOT_SEMANTIC)
    # model
    arch: str = "conv_digits"
    width: float = 1.0
    algo: str = "ep"
    density: float = 0.5
    init: str = "kaiming_normal"
    scaled: bool = False
    # scaled inits draw with std gain / sqrt(fan * f): f = density (the papers, DESIGN.md) or
    # f = sparsity = 1 - density (the seeds' code: hidden-networks and biprop utils/builder.py)
    scale_fan_by: str = "density"
    score_init: str = "auto"  # auto: the algorithm's own default (Algorithm.score_init)
    learn_bn: bool = False
    first_layer_dense: bool = False
    last_layer_dense: bool = False
    # training
    epochs: int = 20
    batch_size: int = 128
    eval_batch_size: int = field(default=512, metadata=NOT_SEMANTIC)
    # evaluate the test set every this many epochs of a phase, and also at every new best validation
    # accuracy (so test_acc_at_best_val stays exact) and at each phase's last epoch; 1 = every epoch,
    # the seeds' behaviour (and what the best-test-over-epochs protocol assumes). Validation: every epoch.
    test_every: int = 1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = field(default="auto", metadata=NOT_SEMANTIC)  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast, used on CUDA only
    # torch.compile the network (masks included; one compile per process and phase layout): the same
    # results within float tolerance, so not part of the identity; costs a compile at the start
    compile: bool = field(default=False, metadata=NOT_SEMANTIC)
    # section name -> that algorithm's options dataclass (every registered section, defaults filled in)
    sections: dict[str, Any] = field(default_factory=dict, repr=False, metadata=SECTIONS)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections")  # absent while unpickling: no recursion
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"RunConfig has no key or section '{name}'")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data (the YAML form): the common keys, then each section as a mapping."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("sections"):
                out.update({name: _to_plain(dataclasses.asdict(section)) for name, section in value.items()})
            else:
                out[f.name] = _to_plain(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
        return out


# ---------------------------------------------------------------------------------------------
# Generic dataclass <-> dict conversion with type checks

def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _fields(obj_or_cls: Any) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(obj_or_cls) if not f.metadata.get("sections")]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config dataclass to {'optimizer.lr': 0.1, 'gem_miner.iter_period': 5, ...}, plain values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("sections"):
            for name, section in value.items():
                out.update(flatten(section, f"{prefix}{name}."))
        elif dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = _to_plain(value)
    return out


def is_semantic(dotted: str) -> bool:
    """Whether a flattened RunConfig key can change a run's results (sections always can)."""
    head = dotted.partition(".")[0]
    f = {f.name: f for f in dataclasses.fields(RunConfig)}.get(head)
    return f is None or f.metadata.get("semantic", True)


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
MAX_SHOWN = 80  # characters of a bad value quoted in an error line


def shown(value: Any) -> str:
    """repr(value), cut to a bounded length: an error line stays one short line whatever was typed."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


MAX_INT = 2**31 - 1


def check_finite(values: Mapping[str, Any], prefix: str = "") -> None:
    """Every number (and every number in a list) must be finite (NaN passes every `<` check unnoticed)
    and every integer within 32 bits (seeds, counts and sizes beyond that are typos or overflow)."""
    for key, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{prefix}{key}: expected a finite number, got {item}")
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
                raise ConfigError(f"{prefix}{key}: expected an integer of at most {MAX_INT}, got {shown(item)}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        words = " or ".join(_TYPE_WORDS[arg] for arg in typing.get_args(hint))
        raise ConfigError(f"{key}: expected {words}, got {shown(value)}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {hint.__name__} keys, got {shown(value)}")
        return from_dict(hint, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {shown(value)}")
        args = typing.get_args(hint)
        if origin is tuple and len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        items = [_coerce(v, args[i] if origin is tuple else args[0], f"{key}[{i}]")
                 for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer too large for a float
                raise ConfigError(f"{key}: expected a finite number, got {shown(value)}") from None
        if isinstance(value, float):
            return value
        if isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string; accept it as a number
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this module does not know is a programming error
        raise TypeError(f"unsupported config type {hint!r} for {key}")
    raise ConfigError(f"{key}: expected {_TYPE_WORDS[hint]}, got {shown(value)}")


def unknown_key_error(key: str, valid: Sequence[str], prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean '{prefix}{close[0]}'?" if close else "valid keys: " + ", ".join(sorted(valid))
    return ConfigError(f"unknown key '{prefix}{key[:MAX_SHOWN]}': {hint}")


def check_choice(key: str, value: str, valid: Sequence[str]) -> None:
    """Refuse a name that is not one of `valid`, suggesting the closest one."""
    if value not in valid:
        close = difflib.get_close_matches(value, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{key}: unknown {key.split('.')[-1]} '{value[:MAX_SHOWN]}'{hint}; valid: {', '.join(valid)}")


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "",
              sections: Mapping[str, type] | None = None) -> Any:
    """Build dataclass `cls` from a mapping, checking every key and type. For RunConfig, `sections`
    maps each algorithm section's name to its options dataclass; every one is built (defaults for
    the sections the mapping does not mention)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in _fields(cls)]
    sections = dict(sections or {})
    kwargs, given = {}, {}
    for key, value in data.items():
        if key in sections:
            given[key] = value
        elif key in names:
            kwargs[key] = _coerce(value, hints[key], prefix + key)
        else:
            raise unknown_key_error(str(key), names + list(sections), prefix)
    if sections:
        kwargs["sections"] = {name: _coerce(given.get(name, {}), options, prefix + name)
                              for name, options in sections.items()}
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# Overrides

def parse_override(text: str) -> tuple[str, Any]:
    """'optimizer.lr=0.05' -> ('optimizer.lr', 0.05); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. optimizer.lr=0.05")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of `data` with dotted-key overrides set (nested dicts created as needed)."""
    data = copy.deepcopy(dict(data))
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{dotted}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


# ---------------------------------------------------------------------------------------------
# Loading

# A spec expands to at most this many YAML nodes, aliases counted at their full size: a legitimate
# spec has a few hundred; a "billion laughs" of 7 levels would have 4.8 million.
MAX_YAML_NODES = 20_000


class _SpecLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys and counts what aliases expand to while composing,
    before anything is built (so a bomb costs nothing)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.expanded = 0
        self._sizes: dict[int, int] = {}

    def _size(self, node: yaml.Node) -> int:
        if id(node) not in self._sizes:
            children: list = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            self._sizes[id(node)] = 1 + sum(self._size(child) for child in children)
        return self._sizes[id(node)]

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            if anchor in self.anchors:
                self.expanded += self._size(self.anchors[anchor])
        else:
            self.expanded += 1
        if self.expanded > MAX_YAML_NODES:
            raise ConfigError(f"YAML aliases expand to more than {MAX_YAML_NODES} values; write the values out "
                              "or use fewer aliases")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, typing.Hashable):
                continue  # the base class says what is wrong with such a key
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key '{str(key)[:MAX_SHOWN]}'; "
                                  "give each key once")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML with duplicate keys refused and alias expansion bounded (ConfigError), else yaml.YAMLError."""
    loader = _SpecLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path, *, empty_ok: bool = False) -> dict[str, Any]:
    """Read a spec or run config: UTF-8 YAML whose top level is a mapping (an empty file is refused
    unless `empty_ok`)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder; give a YAML spec file")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the "
                          "spec as UTF-8") from None
    try:
        data = parse_yaml(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: YAML syntax error: {problem[:MAX_SHOWN]}") from None
    if data is None:
        if empty_ok:
            return {}
        raise ConfigError(f"{path}: empty; a spec needs run-config keys or a base: section (see docs/SPECS.md)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def run_section(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A file is either a run config or a sweep spec whose `base:` is the run config."""
    if "base" not in spec:
        return dict(spec)
    base = spec["base"] or {}
    if not isinstance(base, dict):
        raise ConfigError(f"base: expected a mapping of run-config keys, got {base!r}")
    base = dict(base)
    if "name" in spec:
        base.setdefault("name", spec["name"])
    return base
