"""Which sweeps ASHA may run (trials compared only where they are in the same phase), and ASHA's
max_t following each trial's own epochs. Dry-runs: no Ray starts."""
from __future__ import annotations

import pytest

from pipeline.asha_phases import phase_at_each_epoch
from pipeline.cli import run_main
from pipeline.spec import load_sweep
from pipeline.sweep import main as sweep_command
from pipeline.sweep_view import expand_trials
from tests.conftest import REPO
from tests.test_sweep import write_spec

ASHA = {"name": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1, "reduction_factor": 2}


def test_each_epoch_is_named_by_its_phase(tmp_path):
    gem = load_sweep(str(write_spec(tmp_path, "gem", base={"algo": "gem_miner", "epochs": 3,
                                                            "gem_miner": {"finetune_epochs": 2, "iter_period": 1}})))
    assert phase_at_each_epoch(gem.config_for({})) == ["search"] * 3 + ["finetune"] * 2
    imp = load_sweep(str(write_spec(tmp_path, "imp", base={"algo": "imp", "epochs": 2, "imp": {"levels": 2}})))
    assert phase_at_each_epoch(imp.config_for({})) == ["level0"] * 2 + ["level1"] * 2 + ["level2"] * 2


@pytest.mark.parametrize("sections", [
    {"grid": {"density": [0.1, 0.5]}},                                             # one phase, same length
    {"grid": {"epochs": {"choice": [2, 5]}}, "num_samples": 3},                    # sampled epochs axis
    {"base": {"algo": "gem_miner", "gem_miner": {"iter_period": 1}}, "grid": {"gem_miner.finetune_epochs": [0, 1, 3]}},  # longer fine-tunes
    {"base": {"algo": "imp", "epochs": 2}, "grid": {"imp.levels": [1, 3]}},       # more IMP levels
    {"grid": {"algo": ["ep", "random_mask", "dense", "biprop"]}},                  # all "train"
])
def test_asha_accepts_trials_that_differ_only_in_how_long_they_train(tmp_path, capsys, sections):
    spec = write_spec(tmp_path, "ok", scheduler=ASHA, **sections)
    assert run_main(sweep_command, [str(spec), "--dry-run", "--storage", str(tmp_path / "out")]) == 0, \
        capsys.readouterr().err


@pytest.mark.parametrize("sections,message", [
    ({"base": {"gem_miner": {"iter_period": 1}}, "grid": {"algo": ["ep", "gem_miner"]}},
     "at epoch 1 trial {1} is in phase 'search' (gem_miner: search 4) and trial {0} in 'train' (ep: train 4)"),
    ({"base": {"algo": "gem_miner", "gem_miner": {"finetune_epochs": 2, "iter_period": 1}}, "grid": {"epochs": [2, 4]}},
     "at epoch 3 trial {0} is in phase 'finetune' (gem_miner: search 2 + finetune 2) and trial {1} in 'search' "
     "(gem_miner: search 4 + finetune 2)"),
    ({"base": {"algo": "imp", "imp": {"levels": 2}}, "grid": {"epochs": [2, 3]}},
     "at epoch 3 trial {0} is in phase 'level1' (imp: level0 2 + level1 2 + level2 2) and trial {1} in 'level0' "
     "(imp: level0 3 + level1 3 + level2 3)"),
])
def test_asha_refuses_trials_in_different_phases_at_the_same_epoch(tmp_path, capsys, sections, message):
    spec = write_spec(tmp_path, "mixed", scheduler=ASHA, **sections)
    ids = [t.id for t in expand_trials(load_sweep(str(spec)))]
    assert run_main(sweep_command, [str(spec), "--dry-run", "--storage", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: scheduler: asha compares trials at the same epoch, but ") and err.count("\n") == 1
    assert message.format(*ids) in err, err
    assert "or use scheduler: {name: fifo}" in err
    # the same grid under FIFO is fine: nothing compares the trials
    fifo = write_spec(tmp_path, "mixed_fifo", scheduler={"name": "fifo"}, **sections)
    assert run_main(sweep_command, [str(fifo), "--dry-run", "--storage", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out").exists()


def test_a_relative_storage_is_refused_inside_a_ray_job(tmp_path, capsys, monkeypatch):
    # the marker Ray's job supervisor sets for an entrypoint (the real `ray job submit` is in test_ray_job)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, "job", grid={"seed": [0]}, storage="results")
    assert run_main(sweep_command, [str(spec)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: storage: 'results' is relative, and this sweep runs as a Ray job whose working folder "
                   f"{tmp_path} is Ray's temporary copy, deleted with the Ray session; pass an absolute path "
                   "(--storage /shared/results) or s3://bucket/prefix\n")
    assert run_main(sweep_command, [str(spec), "--storage", "out", "--dry-run"]) == 2
    assert "error: --storage: 'out' is relative" in capsys.readouterr().err
    assert run_main(sweep_command, [str(spec), "--storage", str(tmp_path / "abs"), "--dry-run"]) == 0
    assert not (tmp_path / "results").exists() and not (tmp_path / "out").exists()


def test_a_trial_stopped_inside_a_weakref_callback_prints_no_traceback():
    """Ray's SIGTERM handler raises SystemExit wherever the trial is; inside a weakref callback Python
    would print 'Exception ignored in ...' and a traceback to the sweep's console."""
    import subprocess
    import sys

    code = ("import weakref, gc\n{setup}\n"
            "class A: pass\n"
            "def stop(_): raise SystemExit(1)\n"
            "a = A(); r = weakref.ref(a, stop); del a; gc.collect()\n"
            "print('alive')\n")
    for setup, noisy in (("", True), ("from pipeline.trial import quiet_when_stopped; quiet_when_stopped()", False)):
        done = subprocess.run([sys.executable, "-c", code.format(setup=setup)], capture_output=True, text=True,
                              cwd=REPO)
        assert done.stdout.strip() == "alive"
        assert ("Exception ignored" in done.stderr) == noisy, done.stderr


def test_the_driver_drops_a_stopped_trials_unraisable_systemexit_block_and_nothing_else():
    """The lines Ray forwarded in a CI run, when SIGTERM reached a trial still importing (before its own
    hook): the block goes, a real error block and every other line stay, interleaved pids included."""
    import io

    from pipeline.worker_noise import WithoutStoppedTrialNoise

    def worker(pid, text):
        return f"\x1b[36m(single_worker_trial pid={pid})\x1b[0m {text}\n"

    noise = [worker(8790, line) for line in (
        "Exception ignored in: <function WeakSet.__init__.<locals>._remove at 0x7f2ce675a480>",
        "Traceback (most recent call last):",
        '  File "/root/.pyenv/versions/3.11.7/lib/python3.11/_weakrefset.py", line 39, in _remove',
        "    def _remove(item, selfref=ref(self)):", "",
        '  File "/tmp/ci/.venv/lib/python3.11/site-packages/ray/_private/worker.py", line 1063, in sigterm_handler',
        "    raise_sys_exit_with_custom_error_message(",
        '  File "python/ray/_raylet.pyx", line 712, in ray._raylet.raise_sys_exit_with_custom_error_message',
        "SystemExit: 1")]
    real = [worker(8791, line) for line in (
        "Exception ignored in: <function Thing.__del__ at 0x1>", "Traceback (most recent call last):",
        '  File "x.py", line 1, in __del__', "ValueError: a real problem")]
    plain = ["SIGTERM received: stopping the sweep\n", worker(8792, "epoch 3/5 done")]
    out = io.StringIO()
    stream = WithoutStoppedTrialNoise(out)
    for a, b in zip(noise, real + plain + [""] * 9):  # two workers' blocks interleaved, written in pieces
        stream.write(a[:10])
        stream.write(a[10:] + b)
    stream.close_blocks()
    assert out.getvalue() == "".join(real + plain)
