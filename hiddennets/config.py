"""Typed run configuration: dataclasses, YAML loading, overrides and validation.

A run config is plain data. Nothing here reads the command line or global state; callers pass the
file and the overrides they want. Every user mistake raises ConfigError with a one-line message
that names the key and says what would be valid.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import typing
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


class ConfigError(ValueError):
    """A user-facing configuration or input error (one line, no traceback needed)."""


# Field metadata: keys marked non-semantic do not change a run's results (where data lives, how
# many loader processes), so they are left out of the run's identity hash.
NOT_SEMANTIC = {"semantic": False}


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5.0e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # constant | cosine | multistep
    warmup_epochs: int = 0
    milestones: list[int] = field(default_factory=list)  # multistep: epochs where lr *= gamma
    gamma: float = 0.1


@dataclass
class RandomMaskConfig:
    train_weights: bool = False  # the random_mask baseline: frozen (default) or trained weights


@dataclass
class BipropConfig:
    global_threshold: bool = False  # one |score| threshold across all layers instead of per layer
    ramp_epochs: int = 10           # global variant, density <= 0.5: kept fraction ramps 0.5 -> density
    bn_only: bool = False           # train only the affine BN parameters (needs learn_bn: true)


@dataclass
class GemMinerConfig:
    iter_period: int = 5             # epochs between global pruning rounds (none at epoch 0)
    l2_lambda: float = 1.0e-4        # loss + l2_lambda * sum(p^2)
    finetune_epochs: int = 0         # fine-tune the weights under the final mask afterwards
    finetune_lr: float = 0.01
    finetune_weight_decay: float = 1.0e-4
    reinit_weights: bool = False     # sanity check: new random weights before fine-tuning
    shuffle_mask: bool = False       # sanity check: permute the mask within each layer before fine-tuning


@dataclass
class PabConfig:
    pruner: str = "synflow"          # the mask at init: synflow | snip | grasp | magnitude | random
    scope: str = "global"            # global: one threshold over all layers; layer: density per layer
    prune_iterations: int = 100      # synflow's iterations (exponential schedule)
    adaptivity: float = 1.0e-3       # Bop's gamma (the seed's --ar)
    threshold: float = 1.0e-6        # Bop's tau
    adaptivity_decay: float = 0.15   # gamma *= this every decay_epochs (the seed's --ar-decay-ratio)
    decay_epochs: int = 45           # (the seed's --ar-decay-freq)
    psg: bool = False                # weight gradients from the low-precision PSG branch
    psg_threshold: float = 1.0e-7    # PSG sparsify: zero entries below this * max|g|
    psg_sign: bool = False           # PSG: keep only the sign of the kept entries
    psg_input_bits: int = 8
    psg_grad_bits: int = 16


@dataclass
class ImpConfig:
    levels: int = 5                  # pruning levels after the dense level 0
    rate: float = 0.2                # fraction of the remaining weights pruned per level (global |w|)
    rewind_iter: int = 0             # rewind to the weights after this many steps of level 0 (0: init)


@dataclass
class RunConfig:
    name: str = "run"
    # data
    dataset: str = "digits"
    data_dir: str = field(default="~/data", metadata=NOT_SEMANTIC)
    download: bool = field(default=False, metadata=NOT_SEMANTIC)
    val_fraction: float = 0.1
    split_seed: int = 0
    augment: bool = True
    num_workers: int = field(default=0, metadata=NOT_SEMANTIC)
    # model
    arch: str = "conv_digits"
    width: float = 1.0
    algo: str = "ep"
    density: float = 0.5
    init: str = "kaiming_normal"
    scaled: bool = False
    score_init: str = "auto"  # auto: kaiming_uniform (ep, biprop), uniform in [0,1] (gem_miner, hc)
    learn_bn: bool = False
    first_layer_dense: bool = False
    last_layer_dense: bool = False
    # training
    epochs: int = 20
    batch_size: int = 128
    eval_batch_size: int = field(default=512, metadata=NOT_SEMANTIC)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = field(default="auto", metadata=NOT_SEMANTIC)  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast, used on CUDA only
    # algorithm-specific sections
    random_mask: RandomMaskConfig = field(default_factory=RandomMaskConfig)
    biprop: BipropConfig = field(default_factory=BipropConfig)
    gem_miner: GemMinerConfig = field(default_factory=GemMinerConfig)
    pab: PabConfig = field(default_factory=PabConfig)
    imp: ImpConfig = field(default_factory=ImpConfig)

    def semantic_dict(self) -> dict[str, Any]:
        """The keys that decide the run's results, flattened (`optimizer.lr`, ...)."""
        return {k: v for k, v in flatten(self).items() if _is_semantic(type(self), k)}

    def config_hash(self) -> str:
        blob = json.dumps(self.semantic_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


# ---------------------------------------------------------------------------------------------
# Generic dataclass <- dict conversion with validation

def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _is_semantic(cls: type, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    f = {f.name: f for f in dataclasses.fields(cls)}[head]
    if not f.metadata.get("semantic", True):
        return False
    sub = typing.get_type_hints(cls)[head]
    return _is_semantic(sub, rest) if rest and dataclasses.is_dataclass(sub) else True


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config dataclass to {'optimizer.lr': 0.1, ...} with plain values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        else:
            out[key] = _to_plain(value)
    return out


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {hint.__name__} keys, got {value!r}")
        return from_dict(hint, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
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
    raise ConfigError(f"{key}: expected {_TYPE_WORDS[hint]}, got {value!r}")


def unknown_key_error(key: str, valid: Sequence[str], prefix: str = "") -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean '{prefix}{close[0]}'?" if close else "valid keys: " + ", ".join(sorted(valid))
    return ConfigError(f"unknown key '{prefix}{key}': {hint}")


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            raise unknown_key_error(str(key), names, prefix)
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# Overrides

def parse_override(text: str) -> tuple[str, Any]:
    """'optimizer.lr=0.05' -> ('optimizer.lr', 0.05); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. optimizer.lr=0.05")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of `data` with dotted-key overrides set (nested dicts created as needed)."""
    data = copy.deepcopy(data)
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
# Semantic checks (names against registries, ranges)

def kept_count(density: float, n: int) -> int:
    """k = ceil(density * n), at least 1. Exact in decimal: 0.3 * 10 keeps 3, not 4."""
    k = Fraction(str(density)) * n
    return max(1, -(-k.numerator // k.denominator))


def _check_choice(key: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        close = difflib.get_close_matches(value, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{key}: unknown {key.split('.')[-1]} '{value}'{hint}; valid: {', '.join(valid)}")


def validate(cfg: RunConfig) -> RunConfig:
    """Range and name checks that a type check cannot make. Returns cfg with aliases resolved."""
    # Imported here: the registries import modules that import this one.
    from hiddennets.algorithms import ALGORITHMS
    from hiddennets.data import DATASETS
    from hiddennets.init import resolve_init, SCORE_INITS
    from hiddennets.models import ARCHITECTURES

    if not 0.0 < cfg.density <= 1.0:
        raise ConfigError(f"density: must be in (0, 1] (the fraction of weights kept), got {cfg.density}")
    _check_choice("dataset", cfg.dataset, sorted(DATASETS))
    _check_choice("arch", cfg.arch, sorted(ARCHITECTURES))
    _check_choice("algo", cfg.algo, sorted(ALGORITHMS))
    cfg.init, cfg.scaled = resolve_init(cfg.init, cfg.scaled)
    if cfg.score_init == "auto":
        cfg.score_init = "uniform" if cfg.algo in ("gem_miner", "hc") else "kaiming_uniform"
    _check_choice("score_init", cfg.score_init, sorted(SCORE_INITS))
    _check_choice("optimizer.name", cfg.optimizer.name, ["adam", "adamw", "sgd"])
    _check_choice("schedule.name", cfg.schedule.name, ["constant", "cosine", "multistep"])
    _check_choice("device", cfg.device, ["auto", "cpu", "cuda"])
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "eval_batch_size": cfg.eval_batch_size,
                "width": cfg.width}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"val_fraction: must be in [0, 1), got {cfg.val_fraction}")
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr: must be positive, got {cfg.optimizer.lr}")
    if cfg.optimizer.weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay: must be >= 0, got {cfg.optimizer.weight_decay}")
    if not 0 <= cfg.schedule.warmup_epochs < cfg.epochs:
        raise ConfigError(f"schedule.warmup_epochs: must be in [0, epochs={cfg.epochs}), got {cfg.schedule.warmup_epochs}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing: must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.biprop.bn_only and not cfg.learn_bn:
        raise ConfigError("biprop.bn_only: trains the affine BN parameters, so it needs learn_bn: true")
    if cfg.biprop.ramp_epochs < 0:
        raise ConfigError(f"biprop.ramp_epochs: must be >= 0, got {cfg.biprop.ramp_epochs}")
    g = cfg.gem_miner
    if g.iter_period < 1 or g.finetune_epochs < 0 or g.l2_lambda < 0 or g.finetune_lr <= 0:
        raise ConfigError("gem_miner: iter_period >= 1, finetune_epochs >= 0, l2_lambda >= 0 and finetune_lr > 0")
    if cfg.algo in ("gem_miner", "hc") and cfg.density < 1 and cfg.epochs <= g.iter_period:
        raise ConfigError(f"gem_miner.iter_period: with epochs={cfg.epochs} no pruning round would run "
                          f"(rounds happen every {g.iter_period} epochs after epoch 0); use more epochs or a shorter period")
    p = cfg.pab
    from hiddennets.pruners import PRUNERS
    _check_choice("pab.pruner", p.pruner, sorted(PRUNERS))
    _check_choice("pab.scope", p.scope, ["global", "layer"])
    if not 0 < p.adaptivity <= 1:
        raise ConfigError(f"pab.adaptivity: must be in (0, 1], got {p.adaptivity}")
    if p.threshold < 0 or p.psg_threshold < 0:
        raise ConfigError("pab.threshold and pab.psg_threshold: must be >= 0")
    if not 0 < p.adaptivity_decay <= 1 or p.decay_epochs < 1 or p.prune_iterations < 1:
        raise ConfigError("pab: adaptivity_decay in (0, 1], decay_epochs >= 1 and prune_iterations >= 1")
    if not (2 <= p.psg_input_bits <= 32 and 2 <= p.psg_grad_bits <= 32):
        raise ConfigError("pab.psg_input_bits and pab.psg_grad_bits: must be between 2 and 32")
    if cfg.imp.levels < 0 or not 0 < cfg.imp.rate < 1 or cfg.imp.rewind_iter < 0:
        raise ConfigError(f"imp: levels >= 0, rate in (0, 1) and rewind_iter >= 0; got levels={cfg.imp.levels}, "
                          f"rate={cfg.imp.rate}, rewind_iter={cfg.imp.rewind_iter}")
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers: must be >= 0, got {cfg.num_workers}")
    return cfg


# ---------------------------------------------------------------------------------------------
# Loading

def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def config_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> RunConfig:
    data = apply_overrides(dict(data), overrides or {})
    return validate(from_dict(RunConfig, data))


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


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None, **kw: Any) -> RunConfig:
    """Load a run config (or the `base:` of a sweep spec) from YAML, apply overrides, validate.

    >>> cfg = load_config("sweeps/quickstart.yaml", density=0.3, algo="ep")
    """
    merged = {**(overrides or {}), **kw}
    return config_from_dict(run_section(read_yaml(path)), merged)
