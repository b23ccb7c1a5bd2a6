"""The seeds' published numbers (pipeline/reference/published.csv) and our results beside them.

A published row names its setting in our config's terms; an empty cell means the source does not
say, and matches anything (pipeline/reference/README.md explains each column).
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

from pipeline.analysis import over_seeds

MATCH_COLUMNS = ["dataset", "arch", "width", "algo", "density", "init", "scaled", "learn_bn"]
OUR_METRIC = "test_acc_at_best_val"


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


def compare(trials: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (published row, our setting that matches it): the published top-1, our mean, std and
    count over seeds of test accuracy at the best-validation epoch, and ours minus theirs in points.
    A published row can match several of our settings (e.g. both scaled and unscaled inits)."""
    reference = published() if reference is None else reference
    rows = []
    for _, ref in reference.iterrows():
        matched = matching_trials(trials, ref)
        if matched.empty:
            continue
        for _, ours in over_seeds(matched, metrics=[OUR_METRIC]).iterrows():
            mean = ours[f"{OUR_METRIC}_mean"]
            rows.append({"source": ref["source"], "table": ref["table"], "label": ref["label"],
                         "setting": ", ".join(f"{c}={ours[c]}" for c in ours.index
                                              if c not in ("trials", "seeds", "completed", "stopped_early",
                                                           "errored") and not c.startswith(OUR_METRIC)),
                         "published": ref["top1"], "published_std": ref["top1_std"],
                         "ours_mean": mean, "ours_std": ours[f"{OUR_METRIC}_std"],
                         "ours_count": ours[f"{OUR_METRIC}_count"], "difference": mean - ref["top1"]})
    return pd.DataFrame(rows, columns=["source", "table", "label", "setting", "published", "published_std",
                                       "ours_mean", "ours_std", "ours_count", "difference"])
