"""A sweep is a view over the run store: its trials (run hashes, in order), its spec versions, and
what its scheduler decided. Its tables are built from these and the store, never from Tune's files.

    <storage>/<sweep>/versions/0001.json   one object per spec version: date, changed keys, the trials
    <storage>/<sweep>/outcomes/<hash>.json  a trial this sweep's scheduler stopped early, or that errored
    <storage>/<sweep>/trials.parquet, epochs.parquet, report/   rebuilt from the above at any time
    <storage>/<sweep>/tune/<attempt>/       each driver run's own Tune experiment (never read back)

A trial's status in the view, first match wins: `damaged` (its record cannot be read), `running`
(a trial holds its lease), `completed` (every planned epoch is in the store), `stopped_early` or
`errored` (an outcome of this spec version), `interrupted` (some epochs, not running), `pending`.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any, Mapping

import pyarrow.fs as pafs

from hiddennets.config import RunConfig
from hiddennets.errors import ConfigError
from hiddennets.identity import config_hash, digest
from pipeline.run_lease import run_holder
from pipeline.run_store import RunStore, join
from pipeline.storage import filesystem, read_text, write_text
from pipeline.tables import TrialRecord, write_tables

VERSIONS = "versions"
OUTCOMES = "outcomes"
RESERVED_NAMES = ("runs",)  # the store's own folder in a storage root


@dataclass
class SweepTrial:
    """One trial of a sweep: its run's hash and the overrides of the base config that make it."""
    id: str
    overrides: dict[str, Any]
    config: RunConfig


def draw_seed(point: Mapping[str, Any], sample: int, key: str) -> int:
    """The seed of one sampled value: fixed by the grid point, the repeat and the key, so growing a
    sweep (more points, more repeats) keeps every draw it made before."""
    return int(digest({"point": dict(point), "sample": sample, "key": key}, 8), 16)


def expand_trials(spec) -> list[SweepTrial]:
    """The sweep's trials in order: every grid point, `num_samples` times, sampled axes drawn with
    Tune's own samplers. Repeats that give the same run (no sampled axis) are one trial."""
    sampled = spec.sampled_axes()
    if sampled:
        from ray import tune  # Tune's samplers, so the distributions are exactly Tune's
        samplers = {"loguniform": lambda a: tune.loguniform(*a), "uniform": lambda a: tune.uniform(*a),
                    "choice": tune.choice, "randint": lambda a: tune.randint(*a)}
    axes = spec.grid_axes()
    import itertools
    points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    trials, seen = [], set()
    for sample in range(spec.num_samples):
        for point in points:
            overrides = dict(point)
            for key, value in sampled.items():
                kind, args = next(iter(value.items()))
                drawn = samplers[kind](args).sample(random_state=draw_seed(point, sample, key))
                overrides[key] = drawn.item() if hasattr(drawn, "item") else drawn
            cfg = spec.config_for(overrides)
            run_hash = config_hash(cfg)
            if run_hash not in seen:
                seen.add(run_hash)
                trials.append(SweepTrial(run_hash, overrides, cfg))
    return trials


def scheduler_fingerprint(trials: list[SweepTrial], scheduler: Mapping[str, Any]) -> str:
    """What a scheduler's decisions depend on: the trials in order and the scheduler's settings."""
    return digest({"trials": [t.id for t in trials], "scheduler": dict(scheduler)}, 12)


def _spec_summary(spec) -> dict[str, Any]:
    return {"base": spec.base, "grid": spec.grid, "num_samples": spec.num_samples,
            "scheduler": vars(spec.scheduler), "plugins": spec.plugins}


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            if isinstance(v, Mapping) and not (prefix.startswith("grid.") and set(v) <= {"loguniform", "uniform",
                                                                                         "choice", "randint"}):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out
    a, b = flat(old), flat(new)
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


@dataclass
class Version:
    number: int
    fingerprint: str
    data: dict[str, Any]


def _entries(uri: str) -> tuple[pafs.FileSystem, list[pafs.FileInfo]]:
    """What a folder holds (nothing, if it is missing or unreadable)."""
    fs, path = filesystem(uri)
    try:
        return fs, fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError:
        return fs, []


def _list_names(uri: str) -> list[str]:
    return sorted(i.base_name for i in _entries(uri)[1]
                  if i.type == pafs.FileType.File and not i.base_name.startswith("."))


def versions(sweep_uri: str) -> list[Version]:
    """Every recorded spec version of the sweep, oldest first (unreadable ones left out)."""
    found = []
    for name in _list_names(join(sweep_uri, VERSIONS)):
        try:
            data = json.loads(read_text(join(sweep_uri, VERSIONS, name)) or "")
            found.append(Version(int(data["version"]), str(data["fingerprint"]), data))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda v: v.number)


def record_version(sweep_uri: str, spec, trials: list[SweepTrial]) -> tuple[Version, Version | None]:
    """Append the spec's version if it differs from the latest one: (current, previous or None).
    Append-only: each version is a new object, never rewritten."""
    fingerprint = scheduler_fingerprint(trials, vars(spec.scheduler))
    known = versions(sweep_uri)
    latest = known[-1] if known else None
    summary = _spec_summary(spec)
    if latest is not None and latest.fingerprint == fingerprint:
        return latest, latest
    number = (latest.number + 1) if latest else 1
    data = {"version": number, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "fingerprint": fingerprint, "sweep": spec.name,
            "changed": _changed(latest.data.get("spec", {}), summary) if latest else {},
            "spec": summary, "trials": [{"id": t.id, "overrides": t.overrides} for t in trials]}
    write_text(join(sweep_uri, VERSIONS, f"{number:04d}.json"), json.dumps(data, indent=1, default=str))
    return Version(number, fingerprint, data), latest


def check_sweep_name(name: str) -> None:
    if name in RESERVED_NAMES:
        raise ConfigError(f"name: '{name}' is the run store's folder in the storage root; give the sweep another name")


# --- outcomes: what this sweep decided about a trial --------------------------------------------
def write_outcome(sweep_uri: str, run_hash: str, outcome: dict[str, Any]) -> None:
    write_text(join(sweep_uri, OUTCOMES, f"{run_hash}.json"), json.dumps(outcome, default=str))


def clear_outcome(sweep_uri: str, run_hash: str) -> None:
    fs, path = filesystem(join(sweep_uri, OUTCOMES, f"{run_hash}.json"))
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


def read_outcome(sweep_uri: str, run_hash: str, fingerprint: str) -> dict[str, Any]:
    """One trial's outcome under this spec version ({} if none)."""
    try:
        outcome = json.loads(read_text(join(sweep_uri, OUTCOMES, f"{run_hash}.json")) or "{}")
    except ValueError:
        return {}
    return outcome if isinstance(outcome, dict) and outcome.get("version_fingerprint") == fingerprint else {}


def read_outcomes(sweep_uri: str, fingerprint: str) -> dict[str, dict[str, Any]]:
    """The outcomes recorded under this spec version (an older version's scheduler decided for
    other trials: its outcomes no longer apply)."""
    found = {}
    for name in _list_names(join(sweep_uri, OUTCOMES)):
        try:
            outcome = json.loads(read_text(join(sweep_uri, OUTCOMES, name)) or "")
        except ValueError:
            continue
        if isinstance(outcome, dict) and outcome.get("version_fingerprint") == fingerprint:
            found[name.removesuffix(".json")] = outcome
    return found


# --- the tables -----------------------------------------------------------------------------------
def trial_records(sweep_uri: str, store: RunStore, trials: list[SweepTrial], fingerprint: str,
                  label: str, cache: dict | None = None) -> list[TrialRecord]:
    """Each trial as the tables show it. `label` is this view's `trained_by` (sweep@vN): epochs
    trained under another label were reused. `cache` keeps complete records between calls (a
    complete run never changes), so a long sweep does not re-read them all on every write."""
    outcomes = read_outcomes(sweep_uri, fingerprint)
    cache = {} if cache is None else cache
    records = []
    for trial in trials:
        found = cache.get(trial.id) or store.read(trial.id)
        record = found.record
        if record is not None and record.complete:
            cache[trial.id] = found
        history = record.history if record else []
        outcome = outcomes.get(trial.id, {})
        reason, decision = "", None
        if found.damaged:
            status, reason, history = "damaged", found.damaged, []
        elif run_holder(store, trial.id):
            status = "running"
        elif record is not None and record.complete:
            status = "completed"
        elif outcome.get("status") == "stopped_early":
            status, reason, decision = "stopped_early", outcome.get("reason", ""), outcome.get("decision")
            history = history[:int(outcome.get("epoch", len(history)))]  # what this sweep's trial saw
        elif outcome.get("status") == "errored":
            status, reason = "errored", outcome.get("reason", "error")
        elif history:
            status = "interrupted"
        else:
            status = "pending"
        ckpt = store.location(trial.id, record.checkpoints[0]["file"]) if record and record.checkpoints else ""
        reused = any(row.get("trained_by") not in (None, label) for row in history)
        records.append(TrialRecord(trial.id, trial.config, status, history, reason, ckpt, reused, decision))
    return records


def write_view(sweep_uri: str, sweep: str, store: RunStore, trials: list[SweepTrial], fingerprint: str,
               label: str, cache: dict | None = None):
    """Write the sweep's three tables. `cache` (the driver's, kept between calls) holds complete records
    and each trial's built rows, so a call does work for what changed, not for the whole sweep."""
    cache = {} if cache is None else cache
    records = trial_records(sweep_uri, store, trials, fingerprint, label, cache.setdefault("records", {}))
    return write_tables(sweep_uri, sweep, records, cache.setdefault("built", {}))


def sweeps_in(storage: str) -> list[str]:
    """The sweep names under a storage root (folders holding spec versions)."""
    fs, infos = _entries(storage)
    names = []
    for info in infos:
        if info.type == pafs.FileType.Directory and info.base_name not in RESERVED_NAMES \
                and fs.get_file_info(join(info.path, VERSIONS)).type == pafs.FileType.Directory:
            names.append(info.base_name)
    return sorted(names)

