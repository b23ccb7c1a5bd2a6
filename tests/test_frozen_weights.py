"""Checkpoints leave out the frozen random weights and rebuild them from the seed, checked bit for bit."""
import pytest
import torch

from hiddennets import config_from_dict, train
from hiddennets.checkpoint import load_checkpoint
from hiddennets.errors import CheckpointError
from hiddennets.frozen_weights import KEY, model_from_checkpoint, restore_model_state, tensor_digest
from hiddennets.build import build_model


def test_a_frozen_weight_checkpoint_holds_only_what_trains_and_reloads_the_trained_network(tmp_path):
    cfg = config_from_dict({"epochs": 2})
    train(cfg, tmp_path / "ep", log=None)
    saved = load_checkpoint(tmp_path / "ep" / "checkpoint.pt")
    model = build_model(cfg)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and set(saved[KEY]) == set(frozen)           # every weight of edge-popup: rebuilt
    assert not set(frozen) & set(saved["model"])               # and not stored
    assert all(n.endswith("scores") or n in saved["model"] for n, p in model.named_parameters() if p.requires_grad)
    rebuilt = model_from_checkpoint(saved)
    assert all(tensor_digest(p) == saved[KEY][n] for n, p in rebuilt.named_parameters() if n in saved[KEY])
    assert torch.equal(rebuilt.state_dict()["0.scores"], saved["model"]["0.scores"])


def test_weights_that_train_or_changed_are_always_stored(tmp_path):
    dense = config_from_dict({"algo": "dense", "epochs": 1})
    train(dense, tmp_path / "dense", log=None)
    saved = load_checkpoint(tmp_path / "dense" / "checkpoint.pt")
    assert saved[KEY] == {} and "0.weight" in saved["model"]
    # a gem_miner fine-tune trains the weights: the search epochs leave them out, the fine-tune keeps them
    gm = config_from_dict({"algo": "gem_miner", "epochs": 2, "gem_miner": {"iter_period": 1, "finetune_epochs": 1}})
    seen = {}
    train(gm, tmp_path / "gm", log=None, callbacks=[lambda m, c: seen.__setitem__(m["phase"], load_checkpoint(c))])
    assert "0.weight" in seen["search"][KEY] and "0.weight" not in seen["search"]["model"]
    assert "0.weight" in seen["finetune"]["model"] and "0.weight" not in seen["finetune"][KEY]


def test_a_weight_that_would_not_come_back_bit_identical_fails_the_resume(tmp_path):
    cfg = config_from_dict({"epochs": 2})
    train(cfg, tmp_path / "ep", log=None)
    saved = load_checkpoint(tmp_path / "ep" / "checkpoint.pt")
    model = build_model(cfg)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n in saved[KEY]).mul_(1.0000001)  # another RNG, say
    with pytest.raises(CheckpointError, match="rebuilt from the seed differ"):
        restore_model_state(model, saved, "ckpt")


def test_a_frozen_weight_written_in_place_after_a_checkpoint_is_stored_again(monkeypatch):
    # Later checkpoints skip re-hashing a weight whose storage and version counter are unchanged; any
    # in-place write (under no_grad too) or a new .data must bring the bytes back into the checkpoint.
    from hiddennets import frozen_weights
    from hiddennets.frozen_weights import FrozenWeights

    model = build_model(config_from_dict({"epochs": 1}))
    frozen = FrozenWeights(model)
    name, weight = next((n, p) for n, p in model.named_parameters() if not p.requires_grad)
    assert name in frozen.model_state(model)[1]
    hashed = []
    real = frozen_weights.tensor_digest
    monkeypatch.setattr(frozen_weights, "tensor_digest", lambda t: hashed.append(t) or real(t))
    state, regenerated = frozen.model_state(model)
    assert not hashed and name in regenerated and name not in state  # unchanged: not hashed again
    with torch.no_grad():
        weight.mul_(-1).mul_(-1)  # written in place (the same bytes again): hashed, still rebuilt
    assert name in frozen.model_state(model)[1] and len(hashed) == 1
    with torch.no_grad():
        weight.add_(1.0)
    state, regenerated = frozen.model_state(model)
    assert name not in regenerated and torch.equal(state[name], weight)
    weight.data = torch.zeros_like(weight)  # a new tensor under the same parameter
    state, regenerated = frozen.model_state(model)
    assert name not in regenerated and torch.equal(state[name], torch.zeros_like(weight))
