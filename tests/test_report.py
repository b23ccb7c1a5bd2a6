"""The analysis API and `python -m pipeline.report`, on the tables of a real (small) Ray sweep.

Every aggregate the report shows is recomputed here from the raw epoch rows with the statistics
module, and every PNG is opened and its pixels checked for the colours of the series it should show.
"""
from __future__ import annotations

import io
import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.analysis import load, over_seeds, setting_columns
from pipeline.plots import PALETTE, accuracy_vs_density
from pipeline.published import compare, matching_trials, published
from pipeline.report import write_report
from pipeline.spec import load_sweep
from pipeline.tables import config_columns
from tests.conftest import REPO, run_cli
from tests.test_sweep import write_spec

SEEDS, DENSITIES, INITS, ALGOS = [0, 1], [0.25, 0.5], ["signed_constant"], ["ep", "gem_miner"]
SEARCH_EPOCHS, FINETUNE_EPOCHS = 2, 1


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """8 trials: edge-popup and Gem-Miner (2 search + 1 fine-tune epochs) x 2 densities x 2 seeds."""
    folder = tmp_path_factory.mktemp("report")
    spec = write_spec(folder, "small", base={"epochs": SEARCH_EPOCHS, "batch_size": 128,
                                             "gem_miner": {"iter_period": 1, "finetune_epochs": FINETUNE_EPOCHS}},
                      grid={"algo": ALGOS, "density": DENSITIES, "seed": SEEDS},
                      scheduler={"name": "fifo"})
    proc = run_cli("pipeline.sweep", str(spec), "--storage", str(folder / "out"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"report: {folder / 'out' / 'small'}/report/report.md" in proc.stdout
    return folder / "out" / "small"


def per_trial_from_epoch_rows(epochs: pd.DataFrame) -> pd.DataFrame:
    """test acc at the first epoch of best val acc, last test acc, and test acc at the end of search."""
    rows = []
    for trial_id, rows_of_trial in epochs.groupby("trial_id"):
        ordered = rows_of_trial.sort_values("epoch").to_dict("records")
        best = max(ordered, key=lambda r: r["val_acc"])  # max() keeps the first of equal values
        search = [r for r in ordered if r["phase"] == "search"]
        rows.append({"trial_id": trial_id, "at_best": best["test_acc"], "last": ordered[-1]["test_acc"],
                     "search_end": search[-1]["test_acc"] if search else None, "epochs": len(ordered)})
    return pd.DataFrame(rows)


def expected_cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f} ({len(values)})"


def markdown_rows(report: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first table under `heading`, as {column: cell}."""
    table: list[list[str]] = []
    for line in report.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip("|").split("|")])
        elif table:
            break
    header, body = table[0], table[2:]
    return [dict(zip(header, row)) for row in body]


def test_report_aggregates_equal_values_recomputed_from_raw_rows(sweep):
    trials, epochs = load(str(sweep))
    assert len(trials) == 8 and (trials.status == "completed").all()
    assert setting_columns(trials) == ["dataset", "arch", "algo", "density", "init"]
    raw = per_trial_from_epoch_rows(epochs).merge(trials[["trial_id", "algo", "density", "init", "seed"]])
    planned = {"ep": SEARCH_EPOCHS, "gem_miner": SEARCH_EPOCHS + FINETUNE_EPOCHS}
    assert (raw.epochs == raw.algo.map(planned)).all()

    aggregated = over_seeds(trials).set_index(["algo", "density", "init"])
    report = (sweep / "report" / "report.md").read_text()
    shown = {(r["algo"], float(r["density"]), r["init"]): r for r in markdown_rows(report, "## Results per setting")}
    assert len(shown) == len(ALGOS) * len(DENSITIES) * len(INITS)
    for (algo, density, init), group in raw.groupby(["algo", "density", "init"]):
        assert sorted(group.seed) == SEEDS
        agg = aggregated.loc[(algo, density, init)]
        assert agg.test_acc_at_best_val_mean == pytest.approx(statistics.mean(group.at_best))
        assert agg.test_acc_at_best_val_std == pytest.approx(statistics.stdev(group.at_best))
        assert agg.test_acc_at_best_val_count == 2 and agg.seeds == 2 and agg.completed == 2
        assert agg.last_test_acc_mean == pytest.approx(statistics.mean(group["last"]))
        row = shown[(algo, density, init)]
        assert row["test acc. at best val"] == expected_cell(list(group.at_best))
        assert row["last test acc."] == expected_cell(list(group["last"]))
        assert row["completed / stopped early / errored"] == "2 / 0 / 0"

    # Gem-Miner: where the search ended and where fine-tuning ended
    phases = {(r["algo"], float(r["density"]), r["init"]): r
              for r in markdown_rows(report, "## Two-phase algorithms")}
    for (algo, density, init), group in raw[raw.algo == "gem_miner"].groupby(["algo", "density", "init"]):
        assert phases[(algo, density, init)]["end of search: test acc."] == expected_cell(list(group.search_end))
        assert phases[(algo, density, init)]["after fine-tune: test acc."] == expected_cell(list(group["last"]))

    planned_total = 4 * SEARCH_EPOCHS + 4 * (SEARCH_EPOCHS + FINETUNE_EPOCHS)
    assert f"8 trials: 8 completed, 0 stopped early, 0 errored. They ran {planned_total} of the " \
           f"{planned_total} epochs a full run of every trial would take; no trial was stopped early" in report
    assert "None of the 32 published settings" in report


def _pixels_near(image: np.ndarray, color: str, tolerance: float = 30.0) -> int:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    return int((np.linalg.norm(image[..., :3].astype(float) - rgb, axis=-1) < tolerance).sum())


def panel_colors(png: bytes | Path, panel) -> set[str]:
    """The palette colours drawn inside one panel's pixel box."""
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as opened:
        assert opened.format == "PNG"
        image = np.asarray(opened.convert("RGB"))
    left, top, right, bottom = panel.box if hasattr(panel, "box") else panel["box"]
    assert 0 <= left < right <= image.shape[1] and 0 <= top < bottom <= image.shape[0]
    return {c for c in PALETTE if _pixels_near(image[top:bottom, left:right], c) >= 15}


def test_accuracy_vs_density_draws_one_line_per_init_in_each_algorithm_panel():
    rows = [{"algo": algo, "density": d, "init": init, "stopped_early": 0, "m_mean": 50 + 100 * d + (20 if init == "kaiming_normal" else 0),
             "m_std": 1.0, "m_count": 2}
            for algo in ("biprop", "ep") for init in ("kaiming_normal", "signed_constant")
            for d in (0.05, 0.2, 0.5) if not (algo == "biprop" and init == "signed_constant")]
    plot = accuracy_vs_density(pd.DataFrame(rows), "x.png", "title", ["init"], metric="m")
    assert [(p.title, p.series) for p in plot.panels] == [
        ("biprop", ["init=kaiming_normal"]), ("ep", ["init=kaiming_normal", "init=signed_constant"])]
    for panel in plot.panels:
        assert panel_colors(plot.png, panel) == {plot.colors[s] for s in panel.series}


def test_every_png_opens_and_each_panel_draws_exactly_its_series(sweep):
    trials, epochs = load(str(sweep))
    described = {p["file"]: p for p in json.loads((sweep / "report" / "plots.json").read_text())}
    inits = [f"init={i}" for i in sorted(INITS)]
    settings = [f"density={d}, init={i}" for d in DENSITIES for i in sorted(INITS)]
    finetuned = epochs.merge(trials[["trial_id", "algo"]])
    assert set(finetuned[finetuned.algo == "gem_miner"].phase) == {"search", "finetune"}
    expected = {  # file: {panel: series}, from the grid
        "accuracy_vs_density_digits_conv_digits.png": {algo: inits for algo in ALGOS},
        "accuracy_vs_flops_digits_conv_digits.png": {algo: inits for algo in ALGOS},
        "layer_density_digits_conv_digits.png": {algo: settings for algo in ALGOS},
        "learning_curves_digits_conv_digits.png": {algo: settings for algo in ALGOS},
        "phases_digits_conv_digits_gem_miner.png": {
            s: ["search, after rounding", "search, before rounding", "fine-tune"] for s in settings},
    }
    assert set(described) == set(expected)
    report = (sweep / "report" / "report.md").read_text()
    for name, panels in expected.items():
        assert f"]({name})" in report  # linked from report.md
        info = described[name]
        assert {p["title"]: sorted(p["series"]) for p in info["panels"]} == {k: sorted(v) for k, v in panels.items()}
        for panel in info["panels"]:
            drawn = panel_colors(sweep / "report" / name, panel)
            assert drawn == {info["colors"][s] for s in panel["series"]}, (name, panel["title"])


def test_published_numbers_sit_beside_ours_when_the_setting_matches(sweep, tmp_path):
    trials, epochs = load(str(sweep))
    raw = per_trial_from_epoch_rows(epochs).merge(trials[["trial_id", "algo", "density", "init"]])
    columns = list(published().columns)
    base = {c: np.nan for c in columns} | {"source": "test", "table": "digits", "dataset": "digits",
                                            "arch": "conv_digits", "width": 1.0, "top1_std": np.nan}
    reference = pd.DataFrame([
        base | {"label": "ep sc 0.5", "algo": "ep", "density": 0.5, "init": "signed_constant", "top1": 95.0},
        base | {"label": "ep any density", "algo": "ep", "init": "signed_constant", "top1": 90.0},  # not stated
        base | {"label": "other dataset", "dataset": "cifar10", "algo": "ep", "density": 0.5, "top1": 80.0},
        base | {"label": "not swept", "algo": "ep", "density": 0.1, "top1": 70.0},
    ], columns=columns)
    table = compare(trials, reference)
    assert sorted(table.label) == ["ep any density", "ep any density", "ep sc 0.5"]
    assert sorted(table[table.label == "ep any density"].setting) == [
        "dataset=digits, arch=conv_digits, algo=ep, density=0.25, init=signed_constant",
        "dataset=digits, arch=conv_digits, algo=ep, density=0.5, init=signed_constant"]
    for row in table.itertuples():
        density = float(row.setting.split("density=")[1].split(",")[0])
        ours = raw[(raw.algo == "ep") & (raw.density == density)].at_best
        assert row.ours_mean == pytest.approx(statistics.mean(ours)) and row.ours_count == 2
        assert row.difference == pytest.approx(statistics.mean(ours) - row.published)

    # the same section in a report written through a URI, to a URI
    where = write_report(f"file://{sweep}", out=f"file://{tmp_path}/r", reference=reference)
    assert where == f"file://{tmp_path}/r/report.md"
    rows = markdown_rows((tmp_path / "r" / "report.md").read_text(), "## Beside the published numbers")
    assert len(rows) == 3  # one row per (published row, our matching setting)
    sc = next(r for r in rows if r["published setting"] == "ep sc 0.5")
    ours = raw[(raw.algo == "ep") & (raw.density == 0.5)].at_best
    assert sc["published"] == "95.00" and sc["ours"] == expected_cell(list(ours))
    assert sc["ours − published"] == f"{statistics.mean(ours) - 95.0:+.2f}"
    assert len(list((tmp_path / "r").glob("*.png"))) == 5


def test_load_reads_a_uri_like_a_path(sweep):
    by_path, by_uri = load(str(sweep)), load(f"file://{sweep}")
    for a, b in zip(by_path, by_uri):
        pd.testing.assert_frame_equal(a, b)


def test_the_published_table_holds_the_seed_readmes_numbers():
    table = published()
    # 6 hidden-networks ImageNet, 5 biprop CIFAR-10, 4 biprop ImageNet, 6 DNW CIFAR-10, 11 DNW ImageNet
    assert table.groupby(["source", "table"]).size().to_dict() == {
        ("biprop", "CIFAR-10"): 5, ("biprop", "ImageNet"): 4, ("dnw", "CIFAR-10"): 6, ("dnw", "ImageNet"): 11,
        ("hidden-networks", "ImageNet"): 6}
    def one(label: str) -> pd.Series:
        rows = table[table.label == label]
        assert len(rows) == 1, label
        return rows.iloc[0]
    vgg = one("MPT-1/32 VGG-Small, 95% pruned")  # "% Weights Pruned" 95 is density 0.05
    assert (vgg.arch, vgg.algo, vgg.density, vgg.top1) == ("vgg_small_seed", "biprop", 0.05, 91.48)
    wide = one("MPT-1/1 +BN VGG-Small (1.25 width), 75% pruned")
    assert (wide.arch, wide.width, wide.density, wide.learn_bn, wide.top1) == \
        ("vgg_small_binact_seed", 1.25, 0.25, "true", 91.9)
    rn50 = one("ResNet-50, Signed Kaiming Constant")
    assert (rn50.dataset, rn50.algo, rn50.density, rn50.init, rn50.top1) == \
        ("imagenet", "ep", 0.3, "signed_constant", 68.6)
    dnw = one("Continuous (DNW)")
    assert (dnw.density, dnw.top1, dnw.top1_std) == (0.05, 83.1, 0.3)
    densities = table.density.dropna()
    assert ((densities > 0) & (densities <= 1)).all()


def test_report_of_a_folder_without_tables_is_a_one_line_error_and_writes_nothing(tmp_path):
    proc = run_cli("pipeline.report", str(tmp_path / "nothing"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "trials.parquet" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "nothing").exists()
