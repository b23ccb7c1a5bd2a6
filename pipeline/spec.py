"""Sweep spec files (docs/SPECS.md): top-level keys, the run config in `base:`, the grid.

    name: quickstart
    base: {...}                       # one run config; every key validated
    grid:                             # cartesian product; a mapping value is a sampled axis
      algo: [ep, random_mask]
      density: [0.1, 0.5]
      optimizer.lr: {loguniform: [0.01, 0.2]}
    num_samples: 1                    # repeats of the grid (each repeat draws the sampled axes anew)
    scheduler: {name: asha, metric: val_acc, mode: max, grace_period: 2, reduction_factor: 3}
    resources: {workers_per_trial: 1, cpus_per_worker: 1, gpus_per_worker: 0}
    max_failures: 2                   # retries of a failing trial, from its last checkpoint
    storage: results
    plugins: [mylab.my_algorithm]     # modules to import first (each registers an algorithm, ...)
"""
from __future__ import annotations

import importlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from hiddennets.algorithms import total_epochs
from hiddennets.config import RunConfig, check_finite, from_dict, parse_override, read_yaml, run_section, shown, unknown_key_error
from hiddennets.errors import ConfigError
from hiddennets.identity import config_hash, digest
from hiddennets.validation import check_name, config_from_dict
from pipeline.storage import check_location

SPEC_KEYS = ("name", "description", "base", "grid", "num_samples", "scheduler", "resources", "max_failures", "storage",
             "plugins")
SAMPLERS = ("loguniform", "uniform", "choice", "randint")


@dataclass
class SchedulerConfig:
    name: str = "fifo"  # fifo | asha (early stopping must be asked for)
    metric: str = "val_acc"
    mode: str = "max"
    grace_period: int = 1
    reduction_factor: int = 3


@dataclass
class ResourcesConfig:
    workers_per_trial: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass
class SweepSpec:
    name: str
    base: dict[str, Any]
    grid: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    max_failures: int = 2
    storage: str = "results"
    description: str = ""
    plugins: list[str] = field(default_factory=list)

    def grid_axes(self) -> dict[str, list[Any]]:
        return {k: v for k, v in self.grid.items() if isinstance(v, list)}

    def sampled_axes(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.grid.items() if isinstance(v, dict)}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every grid point's overrides (sampled axes left out: Tune draws them per trial)."""
        axes = self.grid_axes()
        points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
        return points * self.num_samples

    def config_for(self, overrides: Mapping[str, Any]) -> RunConfig:
        return config_from_dict(self.base, overrides)

    def max_epochs(self) -> int:
        """The longest trial's epochs over all its phases (ASHA's max_t)."""
        return max(total_epochs(self.config_for(p)) for p in self.grid_points())

    def fingerprint(self) -> str:
        """Identity of what the sweep runs: the run hash of every grid point in order, the sampled axes,
        the repeats and the scheduler. Where data lives, loader workers, devices, resources and storage
        are left out, so a sweep resumes after they change; a rerun with another fingerprint would mix
        two sweeps."""
        axes = self.grid_axes()
        points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
        return digest({"runs": [config_hash(self.config_for(p)) for p in points], "sampled": self.sampled_axes(),
                       "num_samples": self.num_samples, "scheduler": vars(self.scheduler)}, 12)


def import_plugins(modules: Iterable[str]) -> None:
    """Import each module a spec names under `plugins:` (each registers what it adds, e.g. an algorithm)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import '{module}' ({exc}); give an importable module name") from None


def plugins_of(data: Mapping[str, Any]) -> list[str]:
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) and p for p in plugins):
        raise ConfigError(f"plugins: expected a list of module names, got {plugins!r}")
    return plugins


def read_spec(path: str | Path) -> dict[str, Any]:
    """Read a spec file and check its top-level keys (a file without `base:` is a plain run config)."""
    data = read_yaml(path)
    if "base" in data:
        for key in data:
            if key not in SPEC_KEYS:
                raise unknown_key_error(str(key), SPEC_KEYS)
        import_plugins(plugins_of(data))  # before any run config is read: they may add algorithms
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    return dict(parse_override(item) for item in items)


def base_config(spec: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    return config_from_dict(run_section(spec), overrides)


def storage_of(spec: Mapping[str, Any], cli_storage: str | None) -> str:
    storage = cli_storage or spec.get("storage") or "results"
    if not isinstance(storage, str) or not storage.strip():
        raise ConfigError(f"storage: expected a path or s3:// URI, got {shown(storage)}")
    refuse_credentials(storage)
    check_location(storage)
    return storage


SECRET_WORDS = ("key", "secret", "token", "password", "credential", "session")


def refuse_credentials(uri: str) -> None:
    """pyarrow would accept s3://KEY:SECRET@bucket or ?secret_key=...; the URI then lands in every
    results table and checkpoint path. Credentials come from the standard AWS chain instead."""
    from urllib.parse import parse_qs, urlsplit

    if "://" not in uri:
        return
    parts = urlsplit(uri)
    query_keys = [k for k in parse_qs(parts.query) if any(w in k.lower() for w in SECRET_WORDS)]
    if "@" in parts.netloc or query_keys:
        raise ConfigError("storage: the URI carries credentials, which would be written into the results; drop "
                          "them and let the AWS credential chain supply them (AWS_* environment variables, "
                          "~/.aws/credentials, or the node's instance profile)")


def _number(a: Any) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)


def _check_sampler(key: str, value: dict[str, Any], base: dict[str, Any]) -> None:
    """A sampled axis: a known sampler, a valid range, and every value it can draw valid for its key."""
    if len(value) != 1 or next(iter(value)) not in SAMPLERS:
        raise ConfigError(f"grid.{key}: a sampled axis is one of {{{', '.join(SAMPLERS)}: [...]}}, got {shown(value)}")
    kind, args = next(iter(value.items()))
    if not isinstance(args, list) or not args:
        raise ConfigError(f"grid.{key}.{kind}: expected a list of values, got {shown(args)}")
    if kind in ("loguniform", "uniform", "randint"):
        if len(args) != 2 or not all(_number(a) for a in args) or args[0] >= args[1] \
                or (kind == "loguniform" and args[0] <= 0) or (kind == "randint" and not all(isinstance(a, int) for a in args)):
            raise ConfigError(f"grid.{key}.{kind}: expected [low, high] of finite {'integers' if kind == 'randint' else 'numbers'}"
                              f" with low < high{' and low > 0' if kind == 'loguniform' else ''}, got {shown(args)}")
        ends = [args[0], args[1] - 1] if kind == "randint" else args  # randint's high is exclusive
    else:
        ends = args
    for end in ends:  # a range is valid for its key when both ends are (every check is an interval)
        try:
            config_from_dict(base, {key: end})
        except ConfigError as exc:
            raise ConfigError(f"grid.{key}.{kind}: draws {shown(end)}, which is refused: {exc}") from None


def _section(data: Mapping[str, Any], key: str, cls: type) -> Any:
    value = data[key]
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping of {cls.__name__} keys, got {shown(value)}")
    return from_dict(cls, value, prefix=f"{key}.")


def load_sweep(path: str | Path, overrides: Mapping[str, Any] | None = None,
               storage: str | None = None) -> SweepSpec:
    """Read and fully validate a sweep spec: every grid value is checked as a run config."""
    data = read_spec(path)
    if "base" not in data:
        data = {"name": data.get("name", Path(path).stem), "base": data}
    name = (overrides or {}).get("name", data.get("name", Path(path).stem))  # name=... / --name renames the sweep
    if not isinstance(name, str):
        raise ConfigError(f"name: expected a folder name of letters, digits, '_', '-' or '.', got {shown(name)}")
    check_name("name", name)
    base = run_section(data)
    base.pop("name", None)
    base = {**base, "name": name}
    # apply CLI overrides to the base (dotted keys) and validate it
    base = json.loads(json.dumps(config_from_dict(base, overrides or {}).to_dict()))
    grid = data.get("grid", {})
    if "grid" in data and not grid:
        raise ConfigError("grid: empty; give at least one axis (e.g. density: [0.1, 0.5]) or remove the key")
    if not isinstance(grid, dict):
        raise ConfigError(f"grid: expected a mapping of run-config keys to lists, got {shown(grid)}")
    for key, values in grid.items():
        if isinstance(values, dict):
            _check_sampler(str(key), values, base)
            continue
        if not isinstance(values, list):
            raise ConfigError(f"grid.{key}: expected a list of values (or a sampler such as {{loguniform: [a, b]}}), "
                              f"got {shown(values)}")
        if not values:
            raise ConfigError(f"grid.{key}: empty list; give at least one value")
        for value in values:
            try:
                config_from_dict(base, {key: value})
            except ConfigError as exc:
                raise ConfigError(f"grid: {exc}") from None
    kwargs: dict[str, Any] = {"name": name, "base": base, "grid": grid, "plugins": plugins_of(data),
                              "storage": storage_of(data, storage), "description": str(data.get("description", ""))}
    if "scheduler" in data:
        kwargs["scheduler"] = _section(data, "scheduler", SchedulerConfig)
    if "resources" in data:
        kwargs["resources"] = _section(data, "resources", ResourcesConfig)
    for key in ("num_samples", "max_failures"):
        if key in data:
            value = data[key]
            if not isinstance(value, int) or isinstance(value, bool) or not (1 if key == "num_samples" else 0) <= value <= 10_000:
                raise ConfigError(f"{key}: expected an integer in [{1 if key == 'num_samples' else 0}, 10000], got {shown(value)}")
            kwargs[key] = value
    spec = SweepSpec(**kwargs)
    _check_sweep(spec)
    return spec


def _check_sweep(spec: SweepSpec) -> None:
    s, r = spec.scheduler, spec.resources
    check_finite(vars(s), "scheduler.")
    if s.name not in ("asha", "fifo"):
        raise ConfigError(f"scheduler.name: unknown scheduler '{s.name[:80]}'; valid: asha, fifo")
    if s.mode not in ("max", "min"):
        raise ConfigError(f"scheduler.mode: expected max or min, got '{s.mode[:80]}'")
    metrics = [f"{split}_{m}" for split in ("train", "val", "test") for m in ("loss", "acc", "top5")]
    if s.metric not in metrics:
        raise ConfigError(f"scheduler.metric: unknown metric '{s.metric[:80]}'; valid: {', '.join(metrics)}")
    if s.grace_period < 1 or s.reduction_factor < 2:
        raise ConfigError("scheduler: grace_period must be >= 1 and reduction_factor >= 2")
    if s.name == "asha" and s.grace_period > spec.max_epochs():
        raise ConfigError(f"scheduler.grace_period: {s.grace_period} epochs is more than the longest trial's "
                          f"{spec.max_epochs()}; ASHA would never compare trials (use at most {spec.max_epochs()})")
    check_finite(vars(r), "resources.")
    if r.workers_per_trial < 1:
        raise ConfigError(f"resources.workers_per_trial: must be >= 1, got {r.workers_per_trial}")
    if r.cpus_per_worker < 0 or r.gpus_per_worker < 0 or (r.cpus_per_worker == 0 and r.gpus_per_worker == 0):
        raise ConfigError("resources: a worker needs some CPU or GPU (cpus_per_worker, gpus_per_worker >= 0, not both 0)")
    if r.gpus_per_worker > 1 and r.gpus_per_worker != int(r.gpus_per_worker):
        raise ConfigError(f"resources.gpus_per_worker: fractions only below 1 (several trials share a GPU), "
                          f"got {r.gpus_per_worker}")
    if r.workers_per_trial > 4096 or r.cpus_per_worker > 4096 or r.gpus_per_worker > 64:
        raise ConfigError("resources: at most 4096 workers per trial, 4096 CPUs and 64 GPUs per worker")

