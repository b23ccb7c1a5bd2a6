"""Where sweeps stand, read from the run store (works on local and s3:// storage, also mid-sweep).

    python -m pipeline.status [STORAGE]            the sweeps in a storage root: trials by status, last run
    python -m pipeline.status STORAGE/SWEEP        one sweep's trials: config, status, epochs, best val, reused
    python -m pipeline.status STORAGE --orphans    runs no sweep refers to, with their size
    python -m pipeline.status STORAGE --orphans --delete HASH [HASH ...]   delete those (orphans only)
    ... --json                                      the same as JSON, for scripts

Nothing is ever deleted without --delete naming the runs.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from typing import Any

import pyarrow.fs as pafs

from hiddennets.algorithms import total_epochs
from hiddennets.errors import ConfigError
from hiddennets.validation import config_from_dict
from pipeline.cli import run_main
from pipeline.run_lease import run_holder
from pipeline.run_store import RUNS, RunStore, join
from pipeline.spec import import_plugins
from pipeline.storage import filesystem
from pipeline.sweep_view import VERSIONS, SweepTrial, sweeps_in, trial_records, versions
from pipeline.tables import STATUSES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.status", description=__doc__.split("\n\n")[0])
    p.add_argument("location", nargs="?", default="results", help="a storage root or a sweep folder (default: results)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--orphans", action="store_true", help="list the runs no sweep refers to, with their size")
    p.add_argument("--delete", nargs="+", metavar="HASH", default=[], help="with --orphans: delete these orphan runs")
    return p


def _is_dir(location: str) -> bool:
    fs, path = filesystem(location)
    try:
        return fs.get_file_info(path).type == pafs.FileType.Directory
    except OSError:
        return False


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def sweep_trials(sweep_uri: str) -> tuple[list[SweepTrial], Any]:
    """The trials of the sweep's latest spec version, rebuilt from that version's record."""
    known = versions(sweep_uri)
    if not known:
        raise ConfigError(f"{sweep_uri}: no readable spec version under {VERSIONS}/; not a sweep folder")
    latest = known[-1]
    spec = latest.data["spec"]
    import_plugins(spec.get("plugins", []))
    trials = [SweepTrial(t["id"], t["overrides"], config_from_dict(spec["base"], t["overrides"]))
              for t in latest.data["trials"]]
    return trials, latest


def sweep_status(root: str, sweep: str) -> dict[str, Any]:
    sweep_uri = join(root, sweep)
    trials, latest = sweep_trials(sweep_uri)
    store = RunStore(root)
    records = trial_records(sweep_uri, store, trials, latest.fingerprint, f"{sweep}@v{latest.number}")
    rows = []
    for trial, record in zip(trials, records):
        best = max((r["val_acc"] for r in record.history if r.get("val_acc") is not None), default=None)
        rows.append({"trial": trial.id, **{k: v for k, v in trial.overrides.items()}, "status": record.status,
                     "epochs": len(record.history), "planned": total_epochs(trial.config),
                     "best_val_acc": best, "reused": record.reused, "reason": record.reason,
                     "last_ran": max((r.get("end_time") or 0 for r in record.history), default=None) or None})
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES if any(r["status"] == s for r in rows)}
    return {"sweep": sweep, "version": latest.number, "version_date": latest.data.get("date"), "trials": rows,
            "counts": counts, "last_ran": max((r["last_ran"] or 0 for r in rows), default=None) or None}


def referenced(root: str) -> set[str]:
    """Every run hash some sweep's latest spec version names."""
    refs: set[str] = set()
    for sweep in sweeps_in(root):
        known = versions(join(root, sweep))
        if known:
            refs.update(t["id"] for t in known[-1].data.get("trials", []))
    return refs


def orphans(root: str) -> list[dict[str, Any]]:
    store, refs = RunStore(root), referenced(root)
    found = []
    for run_hash in store.hashes():
        if run_hash in refs:
            continue
        read = store.read(run_hash)
        cfg = read.record.config if read.record else {}
        found.append({"run": run_hash, "size_bytes": store.size(run_hash), "algo": cfg.get("algo"),
                      "arch": cfg.get("arch"), "density": cfg.get("density"), "seed": cfg.get("seed"),
                      "epochs": len(read.record.history) if read.record else None, "damaged": read.damaged or None,
                      "training_now": bool(run_holder(store, run_hash))})
    return found


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def cell(column: str, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):  # accuracies to two places, config values as given
            return f"{value:.2f}" if column.endswith("_acc") else f"{value:g}"
        return str(value)
    cells = [[cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def delete_orphans(root: str, hashes: list[str]) -> list[str]:
    """Delete the named runs, every one of which must be an orphan not being trained; all or nothing."""
    by_hash = {o["run"]: o for o in orphans(root)}
    store = RunStore(root)
    for run_hash in hashes:
        if run_hash not in by_hash:
            why = "a sweep refers to it" if run_hash in store.hashes() else "no such run in the store"
            raise ConfigError(f"--delete: {run_hash} is not an orphan run of {root} ({why}); "
                              "list them with --orphans")
        if by_hash[run_hash]["training_now"]:
            raise ConfigError(f"--delete: {run_hash} is being trained right now; wait for it to finish")
    for run_hash in hashes:
        store.delete(run_hash)
    return hashes


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    location = args.location.rstrip("/")
    if args.delete and not args.orphans:
        raise ConfigError("--delete: only with --orphans (it deletes orphan runs, which --orphans lists)")
    if not _is_dir(location):
        raise ConfigError(f"{location}: no such folder; give a storage root (holding {RUNS}/) or a sweep folder")
    is_sweep = _is_dir(join(location, VERSIONS))
    root, sweep = (location, None)
    if is_sweep:
        root, sweep = location.rsplit("/", 1) if "/" in location else (".", location)
    if not is_sweep and not _is_dir(join(location, RUNS)) and not sweeps_in(location):
        raise ConfigError(f"{location}: neither a sweep folder (no {VERSIONS}/) nor a storage root (no {RUNS}/)")
    if args.orphans:
        if args.delete:
            deleted = delete_orphans(root, args.delete)
            print(json.dumps({"deleted": deleted}) if args.json else f"deleted {len(deleted)} orphan run(s): "
                  + " ".join(deleted))
            return 0
        found = orphans(root)
        if args.json:
            print(json.dumps(found, indent=1))
        elif not found:
            print(f"{root}: no orphan runs (every run in {RUNS}/ belongs to a sweep)")
        else:
            total = sum(o["size_bytes"] for o in found)
            print(_table([{**o, "size": _size(o["size_bytes"])} for o in found],
                         ["run", "size", "algo", "arch", "density", "seed", "epochs", "training_now", "damaged"]))
            print(f"\n{len(found)} orphan run(s), {_size(total)}; delete with: python -m pipeline.status {root} "
                  f"--orphans --delete HASH ...")
        return 0
    if sweep is not None:
        status = sweep_status(root, sweep)
        if args.json:
            print(json.dumps(status, indent=1, default=str))
            return 0
        keys = list(dict.fromkeys(k for r in status["trials"] for k in r
                                  if k not in ("status", "epochs", "planned", "best_val_acc", "reused", "reason",
                                               "last_ran")))
        rows = [{**r, "epochs": f"{r['epochs']}/{r['planned']}", "last_ran": _when(r["last_ran"])}
                for r in status["trials"]]
        print(f"sweep {sweep} (spec version {status['version']}, {status['version_date']}): "
              + ", ".join(f"{n} {s}" for s, n in status["counts"].items()))
        print(_table(rows, keys + ["status", "epochs", "best_val_acc", "reused", "last_ran", "reason"]))
        return 0
    summaries = [sweep_status(root, name) for name in sweeps_in(root)]
    if args.json:
        print(json.dumps([{k: v for k, v in s.items() if k != "trials"} | {"trials": len(s["trials"])}
                          for s in summaries], indent=1, default=str))
        return 0
    if not summaries:
        print(f"{root}: no sweeps yet")
        return 0
    rows = [{"sweep": s["sweep"], "version": s["version"], "trials": len(s["trials"]),
             **{st: s["counts"].get(st, 0) for st in STATUSES}, "last_ran": _when(s["last_ran"])} for s in summaries]
    used = [st for st in STATUSES if any(r[st] for r in rows)]
    print(_table(rows, ["sweep", "version", "trials"] + used + ["last_ran"]))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
