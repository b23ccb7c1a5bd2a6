"""What names a run: the hash of exactly the keys that can change its results.

A run's identity is the flattened config restricted to (a) the common keys that are semantic (not
where data lives, how many loader workers, the run's name, ...) and (b) its own algorithm's section,
and within those only the keys that differ from their defaults (OpenLTH's rule). So adding a key
with a default renames no run, provided the default reproduces the old behaviour, which is the rule
for every new key. `tests/test_identity.py` pins the hashes.

Run folders named before this rule (every semantic key of every section, the name included) are
still found: `legacy_config_hash` recomputes that older name, and `hiddennets.run_dir` looks there
second.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from hiddennets.algorithms import ALGORITHMS, sections
from hiddennets.config import RunConfig, flatten, is_semantic


def default_config(config_type: type = RunConfig) -> RunConfig:
    """Every key at its default, every registered section filled in (a bare RunConfig has none)."""
    return config_type(sections={name: options() for name, options in sections().items()})


def _defaults(config_type: type = RunConfig) -> dict[str, Any]:
    return flatten(default_config(config_type))


def applicable(cfg: RunConfig) -> dict[str, Any]:
    """The flattened config without other algorithms' sections, which do not apply to this run."""
    own = ALGORITHMS[cfg.algo].section + "." if cfg.algo in ALGORITHMS else None
    return {k: v for k, v in flatten(cfg).items()
            if k.partition(".")[0] not in cfg.sections or (own is not None and k.startswith(own))}


def identity(cfg: RunConfig) -> dict[str, Any]:
    """The keys that name the run: semantic, common or of its own section, and not at their default."""
    defaults = _defaults(type(cfg))
    return {key: value for key, value in applicable(cfg).items()
            if is_semantic(key) and (key not in defaults or value != defaults[key])}


def digest(data: Any, length: int) -> str:
    """The first `length` hex digits of the SHA-256 of `data` as sorted JSON."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def config_hash(cfg: RunConfig) -> str:
    """Ten hex digits naming the run (its folder, its row in the tables)."""
    return digest(identity(cfg), 10)


# Every key that named a run before identities were narrowed (the schema of hiddennets 0.1.0 up to
# this change): the common semantic keys with `name`, and all five sections of that time.
LEGACY_KEYS = (
    "name", "dataset", "val_fraction", "split_seed", "augment", "arch", "width", "algo", "density", "init",
    "scaled", "score_init", "learn_bn", "first_layer_dense", "last_layer_dense", "epochs", "batch_size",
    "optimizer.name", "optimizer.lr", "optimizer.momentum", "optimizer.nesterov", "optimizer.weight_decay",
    "optimizer.betas", "schedule.name", "schedule.warmup_epochs", "schedule.milestones", "schedule.gamma",
    "label_smoothing", "seed", "amp", "random_mask.train_weights", "biprop.global_threshold",
    "biprop.ramp_epochs", "biprop.bn_only", "gem_miner.iter_period", "gem_miner.l2_lambda",
    "gem_miner.finetune_epochs", "gem_miner.finetune_lr", "gem_miner.finetune_weight_decay",
    "gem_miner.reinit_weights", "gem_miner.shuffle_mask", "pab.pruner", "pab.scope", "pab.prune_iterations",
    "pab.adaptivity", "pab.threshold", "pab.adaptivity_decay", "pab.decay_epochs", "pab.psg", "pab.psg_threshold",
    "pab.psg_sign", "pab.psg_input_bits", "pab.psg_grad_bits", "imp.levels", "imp.rate", "imp.rewind_iter")


def legacy_config_hash(cfg: RunConfig) -> str | None:
    """The hash this config had under the older rule, or None if it uses a key that did not exist then
    (at a value other than its default), so no older folder can hold it."""
    flat, defaults = flatten(cfg), _defaults(type(cfg))
    if any(k not in LEGACY_KEYS and is_semantic(k) and flat[k] != defaults.get(k) for k in flat):
        return None
    if any(k not in flat for k in LEGACY_KEYS):  # an algorithm of that time is not registered
        return None
    return digest({k: flat[k] for k in LEGACY_KEYS}, 10)


def config_diff(old: RunConfig, new: RunConfig) -> str:
    """What differs between two runs' identities, as `key old -> new, ...` with the values in force."""
    a, b = identity(old), identity(new)
    flat_old, flat_new = flatten(old), flatten(new)
    return ", ".join(f"{k} {a.get(k, flat_old.get(k))!r} -> {b.get(k, flat_new.get(k))!r}"
                     for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
