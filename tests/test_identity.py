"""Run identities: a run's hash covers exactly what can change its results, is pinned here, and
survives adding keys; sweep fingerprints ignore where data lives and how a trial is resourced."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from hiddennets import config_from_dict, config_hash
from hiddennets.algorithms import ALGORITHMS
from hiddennets.config import RunConfig
from hiddennets.identity import identity, legacy_config_hash
from hiddennets.run_dir import default_run_dir
from pipeline.spec import load_sweep
from tests.conftest import REPO

# one config per algorithm: (overrides, its hash now, the hash the landed code before this rule gave it)
PINNED = {
    "ep": ({"algo": "ep"}, "2f26ae06f7", "83851f8a09"),
    "biprop": ({"algo": "biprop", "density": 0.2, "biprop": {"global_threshold": True}}, "34da5d9ff9", "21249023e5"),
    "gem_miner": ({"algo": "gem_miner", "gem_miner": {"finetune_epochs": 5}}, "f8a1de52e6", "9f30d8cc21"),
    "hc": ({"algo": "hc"}, "00f8e413cc", "6ea9058af7"),
    "dnw": ({"algo": "dnw", "density": 0.01}, "008adf70d8", "0668a0bc15"),
    "pab": ({"algo": "pab", "density": 0.3, "learn_bn": True, "pab": {"threshold": 1e-4}}, "8a59d8f918", "4e1681de05"),
    "imp": ({"algo": "imp", "imp": {"levels": 5, "rate": 0.6}}, "d9b5679eb7", "30b0d79b70"),
    "dense": ({"algo": "dense", "learn_bn": True}, "917152cd9d", "dc26652087"),
    "random_mask": ({"algo": "random_mask", "random_mask": {"train_weights": True}}, "09c8f04f4d", "cc0794f1e7"),
}


def test_every_registered_algorithm_has_a_pinned_hash():
    assert set(PINNED) == set(ALGORITHMS)


@pytest.mark.parametrize("algo", sorted(PINNED))
def test_run_hashes_are_pinned_and_the_older_ones_are_still_computed(algo):
    overrides, now, before = PINNED[algo]
    cfg = config_from_dict(overrides)
    assert config_hash(cfg) == now
    assert legacy_config_hash(cfg) == before


def test_the_hash_covers_the_run_own_section_and_semantic_keys_only():
    ep = config_from_dict({"algo": "ep"})
    # another algorithm's section, where data lives, loader workers, device, the run's name: same run
    for other in ({"gem_miner": {"finetune_epochs": 9}}, {"pab": {"threshold": 0.5}}, {"data_dir": "/mnt/data"},
                  {"num_workers": 4}, {"device": "cpu"}, {"eval_batch_size": 64}, {"name": "another_sweep"},
                  {"download": True}):
        assert config_hash(config_from_dict({"algo": "ep", **other})) == config_hash(ep), other
    # what changes results changes the hash, the own section included
    for changed in ({"density": 0.3}, {"seed": 1}, {"optimizer": {"lr": 0.05}}, {"amp": False}):
        assert config_hash(config_from_dict({"algo": "ep", **changed})) != config_hash(ep), changed
    gem = config_from_dict({"algo": "gem_miner"})
    assert config_hash(config_from_dict({"algo": "gem_miner", "gem_miner": {"finetune_epochs": 9}})) != config_hash(gem)
    # keys at their default are not in the identity
    assert identity(ep) == {"score_init": "kaiming_uniform"}
    assert identity(config_from_dict({"algo": "imp", "imp": {"rate": 0.6}})) == {
        "algo": "imp", "imp.rate": 0.6, "score_init": "kaiming_uniform"}


def test_adding_a_key_with_a_default_renames_no_run(monkeypatch):
    before = {algo: config_hash(config_from_dict(o)) for algo, (o, _, _) in PINNED.items()}

    # a new key in an algorithm's section (gem_miner and hc share it) ...
    @dataclasses.dataclass
    class WiderGemMiner(ALGORITHMS["gem_miner"].options):
        new_knob: int = 0

    for algo in ("gem_miner", "hc"):
        monkeypatch.setitem(ALGORITHMS, algo, dataclasses.replace(ALGORITHMS[algo], options=WiderGemMiner))
    after = {algo: config_hash(config_from_dict(o)) for algo, (o, _, _) in PINNED.items()}
    assert after == before
    assert config_from_dict({"algo": "gem_miner", "gem_miner": {"new_knob": 3}}).gem_miner.new_knob == 3
    assert config_hash(config_from_dict({"algo": "gem_miner", "gem_miner": {"finetune_epochs": 5, "new_knob": 3}})) \
        != before["gem_miner"]
    # ... and a new common key
    @dataclasses.dataclass
    class WiderRunConfig(RunConfig):
        new_common_knob: float = 1.0

    for algo, (overrides, now, _) in PINNED.items():
        cfg = config_from_dict(overrides)
        wider = WiderRunConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
        assert config_hash(wider) == now
        assert config_hash(dataclasses.replace(wider, new_common_knob=2.0)) != now
        assert legacy_config_hash(dataclasses.replace(wider, new_common_knob=2.0)) is None  # no older folder has it


def test_a_run_folder_named_by_the_older_hash_is_found(tmp_path):
    cfg = config_from_dict({"algo": "ep", "name": "old", "epochs": 1})
    new = default_run_dir(cfg, tmp_path)
    assert new.name.endswith(config_hash(cfg)) and not new.exists()
    older = new.with_name(new.name.replace(config_hash(cfg), legacy_config_hash(cfg)))
    older.mkdir(parents=True)
    (older / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    assert default_run_dir(cfg, tmp_path) == older          # found by the second lookup, not moved
    new.mkdir()
    assert default_run_dir(cfg, tmp_path) == new            # a folder under the current name wins


def test_validation_returns_a_new_config_and_leaves_its_input_alone():
    from hiddennets.config import from_dict
    from hiddennets.algorithms import sections
    from hiddennets.validation import validate
    raw = from_dict(RunConfig, {"init": "usc", "algo": "gem_miner"}, sections=sections())
    copy = dataclasses.replace(raw)
    valid = validate(raw)
    assert (valid.init, valid.scaled, valid.score_init) == ("signed_constant", False, "uniform")
    assert raw == copy and (raw.init, raw.score_init) == ("usc", "auto")


def _spec_with(tmp_path, **changes):
    spec = yaml.safe_load((REPO / "sweeps" / "quickstart.yaml").read_text())
    for dotted, value in changes.items():
        node = spec
        *parents, key = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    path = tmp_path / f"spec{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_sweep_fingerprint_covers_semantic_content_only(tmp_path):
    original = load_sweep(REPO / "sweeps" / "quickstart.yaml")
    same = [load_sweep(REPO / "sweeps" / "quickstart.yaml", {"num_workers": 4}),
            load_sweep(REPO / "sweeps" / "quickstart.yaml", {"data_dir": "/mnt/data"}),
            load_sweep(REPO / "sweeps" / "quickstart.yaml", {"device": "cpu", "eval_batch_size": 64}),
            load_sweep(REPO / "sweeps" / "quickstart.yaml", storage=str(tmp_path / "elsewhere")),
            load_sweep(_spec_with(tmp_path, **{"resources.cpus_per_worker": 2})),
            load_sweep(_spec_with(tmp_path, **{"base.gem_miner": {"finetune_epochs": 3}}))]  # no trial is gem_miner
    assert {s.fingerprint() for s in same} == {original.fingerprint()}
    different = [load_sweep(REPO / "sweeps" / "quickstart.yaml", {"epochs": 3}),
                 load_sweep(_spec_with(tmp_path, **{"grid.density": [0.1, 0.3]})),
                 load_sweep(_spec_with(tmp_path, **{"scheduler.grace_period": 3})),
                 load_sweep(_spec_with(tmp_path, num_samples=2))]
    assert len({s.fingerprint() for s in different} | {original.fingerprint()}) == 5
