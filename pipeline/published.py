"""The seeds' published numbers (pipeline/reference/published.csv) and our results beside them.

A published row names its setting in our config's terms; an empty cell means the source does not
say, and matches anything (pipeline/reference/README.md explains each column).
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

from pipeline.analysis import over_seeds, setting_columns

MATCH_COLUMNS = ["dataset", "arch", "width", "algo", "density", "init", "scaled", "learn_bn"]

# How each paper's number was taken (published.csv's `protocol`, read from its seed code) and the
# trials-table column that is measured the same way.
PROTOCOLS = {
    "best_test": ("best_test_acc", "best test accuracy over epochs"),
    "last": ("last_test_acc", "test accuracy at the last epoch"),
    "best_val": ("test_acc_at_best_val", "test accuracy at the best-validation epoch"),
}
DEFAULT_PROTOCOL = "best_val"  # a reference table without a protocol column (ours, before protocols)
def published() -> pd.DataFrame:
    with resources.files("pipeline").joinpath("reference/published.csv").open() as fh:
        table = pd.read_csv(fh, dtype={"scaled": "string", "learn_bn": "string", "conditions": "string",
                                       "init": "string"})
    return table


def _same(ours, theirs) -> bool:
    if isinstance(theirs, float):  # density, width: tables carry floats that went through YAML and JSON
        return abs(float(ours) - theirs) < 1e-9
    return str(ours).lower() == str(theirs).lower()


def _conditions(text) -> list[tuple[str, str]]:
    if pd.isna(text) or not str(text).strip():
        return []
    return [tuple(part.split("=", 1)) for part in str(text).split(";") if part.strip()]


def matching_trials(trials: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    """The trials of this sweep in the published row's setting."""
    wanted = [(c, row[c]) for c in MATCH_COLUMNS if not pd.isna(row[c])] + _conditions(row["conditions"])
    mask = pd.Series(True, index=trials.index)
    for column, value in wanted:
        if column not in trials:
            return trials.iloc[0:0]
        mask &= trials[column].map(lambda ours, v=value: not pd.isna(ours) and _same(ours, v))
    return trials[mask]


def protocol_of(row: pd.Series) -> str:
    protocol = row.get("protocol")
    return DEFAULT_PROTOCOL if protocol is None or pd.isna(protocol) or not str(protocol) else str(protocol)


def _left_out(matched: pd.DataFrame) -> str:
    """The matching trials the comparison does not count, by status (`2 stopped_early, 1 errored`)."""
    counts = matched.loc[matched["status"] != "completed", "status"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def compare(trials: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (published row, our setting that matches it): the published top-1 and, over the
    setting's COMPLETED trials only, our mean, std and count of the metric measured by the row's
    protocol, and ours minus theirs in points. A trial stopped early, errored or unfinished never
    enters the mean (a trial cut at epoch 10 is not the paper's 100 epochs); `left_out` lists them.
    A published row can match several of our settings (e.g. both scaled and unscaled inits)."""
    reference = published() if reference is None else reference
    rows = []
    for _, ref in reference.iterrows():
        matched = matching_trials(trials, ref)
        if matched.empty:
            continue
        protocol = protocol_of(ref)
        metric = PROTOCOLS[protocol][0]
        keys = setting_columns(matched)
        as_keys = matched[keys].astype(object).where(matched[keys].notna(), "")  # as over_seeds groups them
        for _, ours in over_seeds(matched, metrics=[metric], by=keys, statuses=("completed",)).iterrows():
            same = matched[(as_keys == pd.Series({k: ours[k] for k in keys})).all(axis=1)]
            mean = ours[f"{metric}_mean"]
            rows.append({"source": ref["source"], "table": ref["table"], "label": ref["label"],
                         "protocol": protocol, "metric": metric,
                         "setting": ", ".join(f"{c}={ours[c]}" for c in keys),
                         "published": ref["top1"], "published_std": ref["top1_std"],
                         "ours_mean": mean, "ours_std": ours[f"{metric}_std"],
                         "ours_count": ours[f"{metric}_count"], "left_out": _left_out(same),
                         "difference": mean - ref["top1"]})
    return pd.DataFrame(rows, columns=["source", "table", "label", "protocol", "metric", "setting", "published",
                                       "published_std", "ours_mean", "ours_std", "ours_count", "left_out",
                                       "difference"])
