"""Sweep spec files (DESIGN.md section 5): the top-level keys and the run config in `base:`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from hiddennets.config import ConfigError, RunConfig, config_from_dict, parse_override, read_yaml, \
    run_section, unknown_key_error

SPEC_KEYS = ("name", "description", "base", "grid", "scheduler", "resources", "storage")


def read_spec(path: str | Path) -> dict[str, Any]:
    """Read a spec file and check its top-level keys (a file without `base:` is a plain run config)."""
    data = read_yaml(path)
    if "base" in data:
        for key in data:
            if key not in SPEC_KEYS:
                raise unknown_key_error(str(key), SPEC_KEYS)
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    return dict(parse_override(item) for item in items)


def base_config(spec: Mapping[str, Any], overrides: Mapping[str, Any]) -> RunConfig:
    return config_from_dict(run_section(spec), overrides)


def storage_of(spec: Mapping[str, Any], cli_storage: str | None) -> str:
    storage = cli_storage or spec.get("storage") or "results"
    if not isinstance(storage, str):
        raise ConfigError(f"storage: expected a path, got {storage!r}")
    return storage
