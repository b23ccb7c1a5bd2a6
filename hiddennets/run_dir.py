"""Run folders: where a run's outputs live, and the guard that keeps one config per folder."""
from __future__ import annotations

from pathlib import Path

import yaml

from hiddennets.checkpoint import write_text
from hiddennets.config import RunConfig
from hiddennets.errors import ConfigError
from hiddennets.identity import config_diff, config_hash, legacy_config_hash
from hiddennets.validation import config_from_dict

CONFIG_FILE = "config.yaml"


def _folder_name(cfg: RunConfig, digest: str) -> str:
    return f"{cfg.algo}_{cfg.arch}_d{cfg.density:g}_s{cfg.seed}_{digest}"


def default_run_dir(cfg: RunConfig, storage: str | Path = "results") -> Path:
    """<storage>/<name>/<algo>_<arch>_d<density>_s<seed>_<hash>: readable, and unique per config.

    A folder made before run hashes were narrowed to what changes results is named by the older
    hash; when only that one exists it is used (a second lookup: nothing is renamed or moved)."""
    current = Path(storage) / cfg.name / _folder_name(cfg, config_hash(cfg))
    legacy = legacy_config_hash(cfg)
    if not current.exists() and legacy is not None:
        older = Path(storage) / cfg.name / _folder_name(cfg, legacy)
        if (older / CONFIG_FILE).is_file():
            return older
    return current


def read_run_config(path: Path) -> RunConfig:
    """The config a run folder holds (its config.yaml)."""
    existing = Path(path) / CONFIG_FILE
    try:
        return config_from_dict(yaml.safe_load(existing.read_text()) or {})
    except (ConfigError, yaml.YAMLError) as exc:
        raise ConfigError(f"{existing}: holds a config this version cannot read ({exc}); use another folder") from None


def claim_run_dir(path: Path, cfg: RunConfig) -> bool:
    """Create the folder for `cfg`, or accept it if it holds the same config. Returns True if it existed.

    A folder holding a run with a different semantic config is refused (ConfigError), and nothing in
    it is touched.
    """
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        old = read_run_config(path)
        if config_hash(old) != config_hash(cfg):
            raise ConfigError(f"{path}: holds a run with a different config ({config_diff(old, cfg)}); "
                              "choose another output folder or delete that one")
        return True
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"{path}: exists and is not a hiddennets run folder (no {CONFIG_FILE}); choose another output folder")
    path.mkdir(parents=True, exist_ok=True)
    write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), path / CONFIG_FILE)
    return False

