"""The report's figures, drawn with matplotlib's object API (no pyplot, so no global figure state).

Every function returns a `Plot`: the PNG bytes plus what it shows (panels, series labels, colours and
each panel's pixel box), which the report saves beside the PNGs so a reader or a test can check a
picture against the table it came from. A series keeps one colour across all panels of a figure.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullLocator

# tab10 without its grey, which grid lines and antialiased black lines would imitate
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
DPI = 100


@dataclass
class Panel:
    title: str
    series: list[str]
    box: list[int] = field(default_factory=list)  # left, top, right, bottom in image pixels


@dataclass
class Plot:
    name: str      # file name, e.g. accuracy_vs_density_digits_conv_digits.png
    title: str
    png: bytes
    panels: list[Panel]
    colors: dict[str, str]

    def describe(self) -> dict:
        return {"file": self.name, "title": self.title, "colors": self.colors,
                "panels": [{"title": p.title, "series": p.series, "box": p.box} for p in self.panels]}


def label_of(row: pd.Series, columns: Sequence[str]) -> str:
    return ", ".join(f"{c}={row[c]}" for c in columns) if columns else "all"


def _grid(n: int, legend_width: float) -> Figure:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols + legend_width, 3.3 * rows), dpi=DPI, layout="constrained")
    fig.subplots(rows, cols, squeeze=False)
    for ax in fig.axes[n:]:
        ax.set_visible(False)
    return fig


def _finish(fig: Figure, name: str, title: str, panels: list[Panel], colors: dict[str, str]) -> Plot:
    handles = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:  # outside the panels, so a panel's pixels are its data alone
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside right center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    width, height = fig.canvas.get_width_height()
    for ax, panel in zip(fig.axes, panels):  # positions as laid out by that save
        box = ax.get_position()
        panel.box = [round(box.x0 * width), round((1 - box.y1) * height), round(box.x1 * width),
                     round((1 - box.y0) * height)]
    return Plot(name, title, buffer.getvalue(), panels, colors)


def _colors(labels: Sequence[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


METRIC_LABELS = {"test_acc_at_best_val": "test acc. at best val (%)", "best_test_acc": "best test acc. (%)",
                 "last_test_acc": "last test acc. (%)"}


def accuracy_vs_density(table: pd.DataFrame, name: str, title: str, line_by: Sequence[str],
                        metric: str = "test_acc_at_best_val") -> Plot:
    """One panel per algorithm, one line per `line_by` value (the init, and whatever else varies),
    mean over seeds with std error bars, log density axis. `table` is over_seeds() output for one
    dataset and arch. A triangle marks a point where early stopping cut at least one seed short."""
    return _accuracy_vs(table, name, title, line_by, metric, "density", "density (fraction of weights kept)")


def accuracy_vs_flops(table: pd.DataFrame, name: str, title: str, line_by: Sequence[str],
                      metric: str = "test_acc_at_best_val") -> Plot:
    """As accuracy_vs_density, against the mean effective FLOPs of one forward pass (masks applied;
    over_seeds() of `flops_effective`), log axis."""
    return _accuracy_vs(table, name, title, line_by, metric, "flops_effective_mean",
                        "FLOPs per image, masks applied (log)")


def _accuracy_vs(table: pd.DataFrame, name: str, title: str, line_by: Sequence[str], metric: str, x: str,
                 xlabel: str) -> Plot:
    algos = sorted(table["algo"].unique())
    labels = sorted({label_of(r, line_by) for _, r in table.iterrows()})
    colors = _colors(labels)
    fig = _grid(len(algos), legend_width=2.6)
    panels = []
    for ax, algo in zip(fig.axes, algos):
        part = table[table["algo"] == algo]
        series = []
        for label in labels:
            line = part[[label_of(r, line_by) == label for _, r in part.iterrows()]].sort_values(x)
            if line.empty or line[f"{metric}_count"].sum() == 0:
                continue
            series.append(label)
            std = line[f"{metric}_std"].fillna(0.0)
            ax.errorbar(line[x], line[f"{metric}_mean"], yerr=std, color=colors[label], label=label,
                        marker="o", markersize=6, linewidth=2, capsize=3)
            cut = line[line["stopped_early"] > 0]
            ax.plot(cut[x], cut[f"{metric}_mean"], linestyle="none", marker="v", markersize=9,
                    color=colors[label])
        ax.set_xscale("log")
        if x == "density":
            ticks = sorted(part["density"].unique())  # the grid's densities, not powers of ten
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_title(algo, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        panels.append(Panel(algo, series))
    return _finish(fig, name, title, panels, colors)


def layer_densities(table: pd.DataFrame, name: str, title: str) -> Plot:
    """One panel per algorithm: each masked layer's kept fraction (mean over seeds, at each trial's
    last epoch), layers in network order on x, one line per setting (`label`). A global pruner's
    allocation shows here: a layer near 0 is close to collapse."""
    algos = sorted(table["algo"].unique())
    labels = sorted(table["label"].unique())
    colors = _colors(labels)
    fig = _grid(len(algos), legend_width=2.6)
    panels = []
    for ax, algo in zip(fig.axes, algos):
        part = table[table["algo"] == algo]
        series = []
        for label in labels:
            line = part[part["label"] == label].sort_values("layer_index")
            if line.empty:
                continue
            series.append(label)
            ax.plot(line["layer_index"], line["kept_fraction"], color=colors[label], label=label, marker="o",
                    markersize=4, linewidth=1.5)
        names = part.drop_duplicates("layer_index").sort_values("layer_index")
        ax.set_xticks(names["layer_index"], names["layer"], rotation=90, fontsize=6)
        ax.set_yscale("log")
        ax.set_xlabel("masked layer")
        ax.set_ylabel("kept fraction")
        ax.set_title(algo, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        panels.append(Panel(algo, series))
    return _finish(fig, name, title, panels, colors)


def learning_curves(curves: pd.DataFrame, name: str, title: str, line_by: Sequence[str],
                    metric_label: str = "val acc. (%)", phase_starts: dict[str, list[int]] | None = None) -> Plot:
    """One panel per algorithm, one line per setting: mean over seeds by epoch with a ±std band.
    `curves` is analysis.curves() output. A dotted line marks where a later phase starts."""
    algos = sorted(curves["algo"].unique())
    labels = sorted({label_of(r, line_by) for _, r in curves.drop_duplicates(list(line_by) or ["algo"]).iterrows()})
    colors = _colors(labels)
    fig = _grid(len(algos), legend_width=3.2)
    panels = []
    for ax, algo in zip(fig.axes, algos):
        part = curves[curves["algo"] == algo]
        part = part.assign(_label=[label_of(r, line_by) for _, r in part.iterrows()])
        series = []
        for label in labels:
            line = part[part["_label"] == label].sort_values("epoch")
            if line.empty:
                continue
            series.append(label)
            ax.plot(line["epoch"], line["mean"], color=colors[label], label=label, linewidth=2)
            std = line["std"].fillna(0.0)
            ax.fill_between(line["epoch"], line["mean"] - std, line["mean"] + std, color=colors[label], alpha=0.15,
                            linewidth=0)
        for start in (phase_starts or {}).get(algo, []):
            ax.axvline(start - 0.5, color="black", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric_label)
        ax.set_title(algo, fontsize=9)
        ax.grid(True, alpha=0.3)
        panels.append(Panel(algo, series))
    return _finish(fig, name, title, panels, colors)


PHASE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c")  # first phase, its relaxed evaluation, second phase


def phases(settings: list[tuple[str, pd.DataFrame]], two, relaxed: str | None, name: str, title: str) -> Plot:
    """Two-phase algorithms (`two`: the algorithm's TwoPhaseReport): one panel per setting, with the
    first phase's accuracy (for Gem-Miner: the search after rounding, what the mask achieves), its
    relaxed evaluation in column `relaxed` if any (before rounding), then the second phase.
    Each frame holds mean val_acc (and `relaxed`) per epoch and phase, over seeds."""
    fig = _grid(len(settings), legend_width=2.4)
    colors = {two.first_series: PHASE_COLORS[0], two.relaxed_series: PHASE_COLORS[1], two.second_series: PHASE_COLORS[2]}
    panels = []
    for ax, (label, frame) in zip(fig.axes, settings):
        first = frame[frame["phase"] != two.second].sort_values("epoch")
        second = frame[frame["phase"] == two.second].sort_values("epoch")
        lines = [(two.first_series, first, "val_acc")]
        if relaxed:
            lines.append((two.relaxed_series, first, relaxed))
        lines.append((two.second_series, second, "val_acc"))
        series = []
        for series_label, part, column in lines:
            part = part.dropna(subset=[column]) if column in part else part.iloc[0:0]
            if part.empty:
                continue
            series.append(series_label)
            ax.plot(part["epoch"], part[column], color=colors[series_label], label=series_label,
                    linewidth=2, marker="o", markersize=3)
        if not second.empty:
            ax.axvline(second["epoch"].min() - 0.5, color="black", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("val acc. (%)")
        ax.set_title(label, fontsize=8)
        ax.grid(True, alpha=0.3)
        panels.append(Panel(label, series))
    return _finish(fig, name, title, panels, {k: v for k, v in colors.items() if k})
