"""python -m pipeline.report SWEEP_PATH [--out FOLDER]

Writes a self-contained report folder (default SWEEP_PATH/report, local or s3://): report.md with the
results per setting (mean ± std over seeds), what early stopping saved, our numbers beside the
published ones for every setting the sweep shares with a paper, and PNG plots; plots.json says what
each plot shows (panels, series, colours, pixel boxes).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import pandas as pd

from hiddennets.errors import ConfigError
from pipeline import analysis, plots
from pipeline.cli import run_main
from pipeline.published import PROTOCOLS, compare, published
from pipeline.storage import write_bytes, write_text

METRICS = ["test_acc_at_best_val", "best_val_acc", "best_test_acc", "last_test_acc"]
METRIC_TITLES = {"test_acc_at_best_val": "test acc. at best val", "best_val_acc": "best val acc.",
                 "best_test_acc": "best test acc.", "last_test_acc": "last test acc."}
COSTS = {"params_kept": "params kept", "flops_effective": "FLOPs / image (masks applied)"}


def headline_metric(trials: pd.DataFrame) -> str:
    """What the plots show: test accuracy at the best-validation epoch, or, for a sweep that holds out
    no validation split (val_fraction 0), the best test accuracy over epochs (the seeds' protocol)."""
    measured = "test_acc_at_best_val" in trials and trials["test_acc_at_best_val"].notna().any()
    return "test_acc_at_best_val" if measured else "best_test_acc"


def count_text(value) -> str:
    """1234567 -> 1.23M: parameter and FLOP counts at a glance."""
    if pd.isna(value):
        return "–"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.0f}"


@dataclass
class Report:
    folder: str
    markdown: str
    plots: list[plots.Plot]


def mean_std(mean, std, count) -> str:
    if count == 0 or pd.isna(mean):
        return "–"
    text = f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"
    return f"{text} ({int(count)})"


def cells(aggregated: pd.DataFrame, metric: str) -> list[str]:
    """over_seeds() output as "mean ± std (count)" strings, one per setting."""
    return [mean_std(r[f"{metric}_mean"], r[f"{metric}_std"], r[f"{metric}_count"]) for _, r in aggregated.iterrows()]


def markdown_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True) if len(frame) else "(none)"


def results_table(aggregated: pd.DataFrame, setting: list[str]) -> pd.DataFrame:
    out = aggregated[setting].copy()
    out["seeds"] = aggregated["seeds"]
    out["completed / stopped early / errored"] = [
        f"{r.completed} / {r.stopped_early} / {r.errored}" for r in aggregated.itertuples()]
    for metric in METRICS:
        out[METRIC_TITLES[metric]] = cells(aggregated, metric)
    for cost, title in COSTS.items():
        if f"{cost}_mean" in aggregated:
            out[title] = [count_text(v) for v in aggregated[f"{cost}_mean"]]
    return out


def phase_table(trials: pd.DataFrame, setting: list[str]) -> pd.DataFrame | None:
    """Two-phase algorithms (e.g. Gem-Miner): test accuracy where the first phase ended and at the end."""
    parts = []
    for algo, two in analysis.two_phase_algorithms().items():
        ended = f"{two.first}_last_test_acc"
        runs = trials[trials["algo"] == algo]
        if runs.empty or ended not in runs or runs[ended].isna().all():
            continue
        aggregated = analysis.over_seeds(runs, metrics=[ended, "last_test_acc"], by=setting)
        out = aggregated[setting].copy()
        out[f"{two.first_end}: test acc."] = cells(aggregated, ended)
        out[f"{two.second_end}: test acc."] = cells(aggregated, "last_test_acc")
        parts.append(out)
    return pd.concat(parts, ignore_index=True) if parts else None


def savings_text(s: dict) -> str:
    unfinished = "".join(f", {n} {status}" for status, n in sorted(s.get("unfinished", {}).items()))
    counts = (f"{s['trials']} trials: {s['completed']} completed, {s['stopped_early']} stopped early, "
              f"{s['errored']} errored{unfinished}. They ran {s['epochs_run']} of the {s['epochs_planned']} epochs a full "
              f"run of every trial would take")
    note = (" The sweep is not finished (run the same command to resume): its unfinished trials' remaining "
            "epochs are not counted as saved." if unfinished else "")
    if not s["stopped_early"]:
        return counts + f"; no trial was stopped early (the trials ran {s['seconds_run']:.0f} s in all).{note}"
    return counts + (f"; early stopping saved {s['epochs_saved']} epochs ({100 * s['fraction_saved']:.1f}% of "
                     f"the budget), about {s['seconds_saved_estimate']:.0f} s of compute at each stopped trial's "
                     f"own seconds per epoch (the trials ran {s['seconds_run']:.0f} s in all).{note}")


def comparison_text(trials: pd.DataFrame, reference: pd.DataFrame) -> str:
    table = compare(trials, reference)
    if table.empty:
        covered = ", ".join(sorted(set(trials["dataset"].astype(str))))
        return (f"None of the {len(reference)} published settings (pipeline/reference/published.csv) is in "
                f"this sweep (datasets here: {covered}).")
    shown = pd.DataFrame({
        "source": table["source"] + " " + table["table"], "published setting": table["label"],
        "our setting": table["setting"],
        "published": [f"{p:.2f}" if pd.isna(s) else f"{p:.2f} ± {s:.2f}"
                      for p, s in zip(table["published"], table["published_std"])],
        "ours": [mean_std(m, s, c) for m, s, c in zip(table["ours_mean"], table["ours_std"], table["ours_count"])],
        "ours − published": [f"{d:+.2f}" if not pd.isna(d) else "–" for d in table["difference"]],
        "protocol": [PROTOCOLS[p][1] for p in table["protocol"]],
        "not counted": [t or "–" for t in table["left_out"]]})
    return ("Ours is the mean ± std over seeds, in %, of the completed trials only, each measured as its "
            "paper measured it (the protocol column: the seeds' code reports the best test accuracy over "
            "epochs, or the last epoch's). Trials stopped early, errored or unfinished are not counted: they "
            "are listed apart.\n\n" + markdown_table(shown))


def figures(trials: pd.DataFrame, epochs: pd.DataFrame, layers: pd.DataFrame, setting: list[str]) -> list[plots.Plot]:
    """`trials` as results_view() gives them (IMP: one row per level, at its measured density)."""
    out = []
    metric = headline_metric(trials)
    described = plots.METRIC_LABELS[metric].removesuffix(" (%)")
    for (dataset, arch), group in trials.groupby(["dataset", "arch"], sort=True):
        where = f"{dataset} {arch}"
        slug = f"{dataset}_{arch}"
        line_by = [c for c in setting if c not in ("dataset", "arch", "algo", "density")]
        aggregated = analysis.over_seeds(group, metrics=[metric, "flops_effective"], by=setting)
        if aggregated[f"{metric}_count"].sum():
            out.append(plots.accuracy_vs_density(
                aggregated, f"accuracy_vs_density_{slug}.png",
                f"{where}: {described} vs density (mean ± std over seeds)", line_by, metric))
            if aggregated["flops_effective_count"].sum():
                out.append(plots.accuracy_vs_flops(
                    aggregated, f"accuracy_vs_flops_{slug}.png",
                    f"{where}: {described} vs FLOPs per image with the masks applied (mean ± std over seeds)",
                    line_by, metric))
        per_layer = layer_table(group, layers, setting)
        if len(per_layer):
            out.append(plots.layer_densities(
                per_layer, f"layer_density_{slug}.png",
                f"{where}: kept fraction of each masked layer at the last epoch (mean over seeds)"))
        curves_of = "val_acc" if epochs["val_acc"].notna().any() else "test_acc"
        curves = analysis.curves(group.drop_duplicates("trial_id"), epochs, curves_of, by=setting)
        if len(curves):
            starts = {algo: sorted(c.groupby("phase")["epoch"].min())[1:] for algo, c in curves.groupby("algo")}
            out.append(plots.learning_curves(
                curves, f"learning_curves_{slug}.png",
                f"{where}: {'validation' if curves_of == 'val_acc' else 'test'} accuracy by epoch (mean ± std over seeds)",
                [c for c in setting if c not in ("dataset", "arch", "algo")], phase_starts=starts))
        two_phase = analysis.two_phase_algorithms()
        for algo in sorted(set(group["algo"]) & set(two_phase)):
            out.extend(phase_figure(group[group["algo"] == algo], epochs, setting, two_phase[algo],
                                    f"phases_{slug}_{algo}.png", f"{where} {algo}"))
    return out


def layer_table(results: pd.DataFrame, layers: pd.DataFrame, setting: list[str]) -> pd.DataFrame:
    """Each masked layer's kept fraction where each result ends (a trial's last epoch; for IMP, each
    level's last epoch), averaged over seeds per setting: algo, label, layer_index, layer, kept_fraction."""
    if layers.empty or results.empty:
        return pd.DataFrame()
    by = [c for c in setting if c not in ("dataset", "arch", "algo")]
    of_trial = dict(tuple(layers.groupby("trial_id", sort=False)))
    picked = []
    for _, row in results.iterrows():
        mine = of_trial.get(row["trial_id"])
        level = row.get("level") or ""
        if mine is not None and level:
            mine = mine[mine["phase"] == level]
        if mine is None or mine.empty:
            continue
        end = mine[mine["epoch"] == mine["epoch"].max()]
        picked.append(end.assign(algo=row["algo"], label=plots.label_of(row, by), layer_index=range(len(end))))
    if not picked:
        return pd.DataFrame()
    table = pd.concat(picked, ignore_index=True)
    return table.groupby(["algo", "label", "layer_index", "layer"], sort=True)["kept_fraction"].mean().reset_index()


def phase_figure(runs: pd.DataFrame, epochs: pd.DataFrame, setting: list[str], two, name: str,
                 where: str) -> list[plots.Plot]:
    """One algorithm's two phases per setting (and the first phase's relaxed evaluation, if declared)."""
    panel_by = [c for c in setting if c not in ("dataset", "arch", "algo")]
    merged = analysis.curves(runs, epochs, "val_acc", by=panel_by).rename(columns={"mean": "val_acc"})
    relaxed = f"val_acc_{two.relaxed_suffix}" if two.relaxed_suffix else None
    if relaxed and relaxed in epochs:
        extra = analysis.curves(runs, epochs, relaxed, by=panel_by)
        merged = merged.merge(extra[panel_by + ["epoch", "phase", "mean"]].rename(columns={"mean": relaxed}),
                              on=panel_by + ["epoch", "phase"], how="left")
    settings = [(plots.label_of(part.iloc[0], panel_by), part)
                for _, part in merged.groupby(panel_by, sort=True)] if panel_by else [("all", merged)]
    if not settings:
        return []
    return [plots.phases(settings, two, relaxed, name, f"{where}: {two.title}, mean val accuracy over seeds")]


def build_report(sweep_path: str, out: str | None = None, reference: pd.DataFrame | None = None) -> Report:
    trials, epochs = analysis.load(sweep_path)
    layers = analysis.load_layers(sweep_path)
    folder = (out or f"{sweep_path.rstrip('/')}/report").rstrip("/")
    name = str(trials["sweep"].iloc[0]) if len(trials) else sweep_path.rstrip("/").rsplit("/", 1)[-1]
    lines = [f"# Sweep report: {name}", "",
             f"Tables: `{sweep_path.rstrip('/')}/trials.parquet` and `epochs.parquet`. "
             f"Rebuild with `python -m pipeline.report {sweep_path}`.", ""]
    if trials.empty:
        lines.append("The sweep has no trials yet.")
        return Report(folder, "\n".join(lines) + "\n", [])
    results = analysis.results_view(trials, epochs)  # IMP: one row per level, at its measured density
    setting = analysis.setting_columns(results)
    aggregated = analysis.over_seeds(results, METRICS + list(COSTS), by=setting)
    lines += ["## Trials and early stopping", "", savings_text(analysis.early_stopping_savings(trials)), "",
              "## Results per setting", "",
              "Accuracies in %, mean ± std over seeds (number of trials). A setting is every config key that "
              f"varies in this sweep except the seed: {', '.join(setting)}. Trials stopped early count with "
              "the accuracy they had reached; errored trials do not count.", "",
              markdown_table(results_table(aggregated, setting)), ""]
    phase_rows = phase_table(trials, setting)
    if phase_rows is not None:
        lines += ["## Two-phase algorithms: where the first phase ended and the final result", "",
                  markdown_table(phase_rows), ""]
    lines += ["## Beside the published numbers", "",
              comparison_text(results, published() if reference is None else reference), ""]
    errored = trials[trials["status"] == "errored"]
    if len(errored):
        lines += ["## Errored trials", "", markdown_table(errored[["trial_id"] + setting + ["seed", "stop_reason"]]), ""]
    drawn = figures(results, epochs, layers, setting)
    if drawn:
        lines += ["## Plots", ""]
        for plot in drawn:
            lines += [f"### {plot.title}", "", f"![{plot.title}]({plot.name})", ""]
        lines += ["Accuracy vs density: a triangle marks a point where early stopping cut at least one seed "
                  "short, so that point is not a full-length result. Learning curves: a dotted line marks "
                  "the start of a later phase (e.g. Gem-Miner's fine-tune).", ""]
    return Report(folder, "\n".join(lines), drawn)


def write_report(sweep_path: str, out: str | None = None, reference: pd.DataFrame | None = None) -> str:
    """Build and write the report folder; returns the location of report.md."""
    report = build_report(sweep_path, out, reference)
    for plot in report.plots:
        write_bytes(f"{report.folder}/{plot.name}", plot.png)
    write_text(f"{report.folder}/plots.json", json.dumps([p.describe() for p in report.plots], indent=1))
    write_text(f"{report.folder}/report.md", report.markdown)
    return f"{report.folder}/report.md"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__.split("\n\n")[1])
    p.add_argument("sweep", help="sweep folder holding trials.parquet and epochs.parquet (path or s3:// URI)")
    p.add_argument("--out", help="report folder (default: SWEEP/report)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.out and "://" not in args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ConfigError(f"--out: {args.out} is not a folder; give the folder to write the report into")
    print(f"report: {write_report(args.sweep, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
