"""Checkpoints without the frozen random weights: they are rebuilt from the seed.

Edge-popup, biprop, Gem-Miner's search, hc and a random mask never change their random weights, and
`build_model(cfg)` draws them again bit for bit from the seed; only the scores (and BN, masks,
optimiser state) carry information. Leaving them out halves a ResNet-18 checkpoint (89 MB -> 45 MB at
density 0.5) and every copy a sweep keeps.

Safety, both ways: a parameter is left out only when it is frozen (requires_grad False) and its
SHA-256 still equals the one taken when the model was built; the checkpoint records that digest,
and a resume compares it with the freshly built model's before loading, so a weight that would not
come back bit-identical (another torch's RNG, another init) fails with a CheckpointError instead of
training on.
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn as nn

from hiddennets.errors import CheckpointError

KEY = "regenerated"  # checkpoint key: {parameter name: sha256 of its bytes at build time}


def tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


class FrozenWeights:
    """The digests of a freshly built model's parameters (take them before training starts)."""

    def __init__(self, model: nn.Module):
        self.at_build = {name: tensor_digest(p) for name, p in model.named_parameters()}
        # (storage address, version counter) of a parameter last seen equal to its digest: torch bumps
        # a tensor's version on every in-place write and a new .data has a new address, so while both
        # hold the bytes cannot have changed and the epoch's checkpoint skips hashing them again (on a
        # GPU that would copy every frozen weight to the host each epoch)
        self._verified: dict[str, tuple[int, int]] = {}

    def _unchanged(self, name: str, p: torch.Tensor) -> bool:
        seen = (p.data_ptr(), p._version)
        if self._verified.get(name) == seen:
            return True
        if tensor_digest(p) != self.at_build[name]:
            return False
        self._verified[name] = seen
        return True

    def model_state(self, model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """(state_dict without the regenerable parameters, {their names: digests})."""
        state = model.state_dict()
        regenerated = {}
        for name, p in model.named_parameters():
            if not p.requires_grad and name in self.at_build and self._unchanged(name, p):
                regenerated[name] = self.at_build[name]
                state.pop(name, None)
        return state, regenerated

    def restore(self, model: nn.Module, saved: dict[str, Any], where: str) -> None:
        """Load a checkpoint's model state into this freshly built model (the one digested)."""
        restore_model_state(model, saved, where, self.at_build)


def restore_model_state(model: nn.Module, saved: dict[str, Any], where: str = "checkpoint",
                        at_build: dict[str, str] | None = None) -> None:
    """Load `saved["model"]` into `model`, a model just built from the run's config: the parameters the
    checkpoint left out must be bit-identical to the rebuilt ones. `at_build`: their digests if known."""
    regenerated = saved.get(KEY) or {}
    params = dict(model.named_parameters())
    for name, digest in regenerated.items():
        if name not in params:
            raise CheckpointError(f"{where}: the checkpoint regenerates '{name}', which this model does not have")
        rebuilt = at_build[name] if at_build and name in at_build else tensor_digest(params[name])
        if rebuilt != digest:
            raise CheckpointError(f"{where}: the frozen weights '{name}' rebuilt from the seed differ from the run's "
                                  "(another torch version or init?); resume with the versions that started the run")
    missing, unexpected = model.load_state_dict(saved["model"], strict=False)
    missing = sorted(set(missing) - set(regenerated))
    if missing or unexpected:
        raise CheckpointError(f"{where}: the checkpoint does not fit this model (missing {missing[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")


def model_from_checkpoint(saved: dict[str, Any], where: str = "checkpoint") -> nn.Module:
    """The network a checkpoint holds (load it with hiddennets.checkpoint.load_checkpoint): built from
    its own config, frozen weights regenerated, the rest loaded. On the CPU."""
    from hiddennets.build import build_model
    from hiddennets.validation import config_from_dict

    model = build_model(config_from_dict(saved["config"]))
    restore_model_state(model, saved, where)
    return model
