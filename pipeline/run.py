"""Train one run without Ray.

    python -m pipeline.run SPEC.yaml [KEY=VALUE ...] [--out DIR] [--storage DIR]

SPEC is a run config or a sweep spec (its `base:` is trained; the grid is ignored). Overrides use
dotted keys: `density=0.3 optimizer.lr=0.05` (also accepted as `--set KEY=VALUE`). Running the same
command again resumes from the last checkpoint; a finished run just prints its result.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hiddennets.engine import train
from hiddennets.errors import ConfigError
from hiddennets.run_dir import default_run_dir
from hiddennets.validation import check_loader_workers
from pipeline.cli import run_main
from pipeline.spec import base_config, parse_overrides, read_spec, storage_of
from pipeline.storage import check_location, inside_root


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.run", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="run config or sweep spec (YAML)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optimizer.lr=0.05")
    p.add_argument("--set", dest="more", action="append", default=[], metavar="KEY=VALUE", help="same as a positional override")
    p.add_argument("--out", help="run folder (default: <storage>/<name>/<algo>_<arch>_d<density>_s<seed>_<hash>)")
    p.add_argument("--storage", help="output root when --out is not given (default: the spec's storage, else results)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    spec = read_spec(args.spec)
    cfg = base_config(spec, parse_overrides(args.overrides + args.more))
    check_loader_workers(cfg.num_workers, os.cpu_count() or 1, "this machine")
    if args.out:
        out = Path(args.out).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out: {out} is not a folder; give a run folder (new or holding this run)")
        check_location(str(out), "--out")
        run_dir = out
    else:
        storage = storage_of(spec, args.storage)
        run_dir = default_run_dir(cfg, storage)
        inside_root(storage, str(run_dir))
    if spec.get("grid"):
        print("note: this spec has a grid; pipeline.run trains its base config only", file=sys.stderr)
    print(f"run {cfg.name}: {cfg.algo} on {cfg.arch}/{cfg.dataset}, density {cfg.density}, seed {cfg.seed} -> {run_dir}",
          flush=True)
    result = train(cfg, run_dir, log=lambda line: print(line, flush=True))
    print(f"done: {result_line(result)}")
    print(f"outputs: {result['run_dir']}  (metrics.jsonl, result.json, checkpoint.pt, tb/)")
    return 0


def result_line(result: dict) -> str:
    """The last epoch's accuracies and the best ones; without a validation split, no val at all."""
    final = result["final"]
    best_test = f"best test {result['best_test_acc']:.2f}%" if result.get("best_test_acc") is not None else ""
    if result.get("best_val_acc") is None:
        return (f"test {final['test_acc']:.2f}%  density {final['density']:.4f}  "
                f"({best_test}{'; ' if best_test else ''}no validation split: val_fraction 0)")
    return (f"test {final['test_acc']:.2f}%  val {final['val_acc']:.2f}%  density {final['density']:.4f}  "
            f"(best val {result['best_val_acc']:.2f}% at epoch {result['best_epoch']}{', ' if best_test else ''}"
            f"{best_test})")


if __name__ == "__main__":
    sys.exit(run_main(main))
