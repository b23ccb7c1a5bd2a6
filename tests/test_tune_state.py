"""Tune's state files: a last good copy is kept, and put back when a kill cut the live one short."""
from __future__ import annotations

import json
import pickle

from pipeline.tune_state import BACKUP_DIR, backup_state, reads_back_whole, repair_tune_state


def test_truncated_state_files_are_put_back_from_their_last_good_copy(tmp_path):
    experiment = tmp_path / "experiment_state-2026-01-01_00-00-00.json"
    searcher = tmp_path / "basic-variant-state-2026-01-01_00-00-00.json"  # Tune pickles this one
    experiment.write_text(json.dumps({"trial_data": [1, 2, 3]}))
    searcher.write_bytes(pickle.dumps({"_total_samples": 3}))
    (tmp_path / "result.json").write_text("not a state file")
    backup_state(str(tmp_path))
    assert sorted(p.name for p in (tmp_path / BACKUP_DIR).iterdir()) == sorted([experiment.name, searcher.name])

    good_experiment, good_searcher = experiment.read_bytes(), searcher.read_bytes()
    experiment.write_bytes(good_experiment[:10])   # cut short mid-copy
    searcher.write_bytes(b"")                      # or not written at all
    backup_state(str(tmp_path))                    # a copy that does not read back never replaces a good one
    assert sorted(repair_tune_state(str(tmp_path))) == sorted([experiment.name, searcher.name])
    assert experiment.read_bytes() == good_experiment and searcher.read_bytes() == good_searcher
    assert repair_tune_state(str(tmp_path)) == []  # whole files are left alone


def test_what_reads_back_whole():
    assert reads_back_whole(b'{"a": 1}') and reads_back_whole(pickle.dumps([1, 2]))
    data = pickle.dumps({"key": list(range(100))})
    assert not reads_back_whole(b"") and not reads_back_whole(data[:-1]) and not reads_back_whole(b'{"a": ')
