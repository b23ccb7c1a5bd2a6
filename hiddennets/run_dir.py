"""Run folders: where a run's outputs live, and the guard that keeps one config per folder."""
from __future__ import annotations

from pathlib import Path

import yaml

from hiddennets.checkpoint import write_text
from hiddennets.config import ConfigError, RunConfig, config_from_dict

CONFIG_FILE = "config.yaml"


def default_run_dir(cfg: RunConfig, storage: str | Path = "results") -> Path:
    """<storage>/<name>/<algo>_<arch>_d<density>_s<seed>_<hash>: readable, and unique per config."""
    return Path(storage) / cfg.name / f"{cfg.algo}_{cfg.arch}_d{cfg.density:g}_s{cfg.seed}_{cfg.config_hash()}"


def claim_run_dir(path: Path, cfg: RunConfig) -> bool:
    """Create the folder for `cfg`, or accept it if it holds the same config. Returns True if it existed.

    A folder holding a run with a different semantic config is refused (ConfigError), and nothing in
    it is touched.
    """
    path = Path(path)
    existing = path / CONFIG_FILE
    if existing.is_file():
        try:
            old = config_from_dict(yaml.safe_load(existing.read_text()) or {})
        except (ConfigError, yaml.YAMLError) as exc:
            raise ConfigError(f"{existing}: holds a config this version cannot read ({exc}); use another folder") from None
        if old.config_hash() != cfg.config_hash():
            a, b = old.semantic_dict(), cfg.semantic_dict()
            diff = ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            raise ConfigError(f"{path}: holds a run with a different config ({diff}); "
                              "choose another output folder or delete that one")
        return True
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"{path}: exists and is not a hiddennets run folder (no {CONFIG_FILE}); choose another output folder")
    path.mkdir(parents=True, exist_ok=True)
    write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), path / CONFIG_FILE)
    return False
