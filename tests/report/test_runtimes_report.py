"""Runtime columns, the runtimes table and the latency-by-batch figure, from hand-made results."""

from __future__ import annotations

import pandas as pd
import pytest

from ablate.recipes.loader import parse_recipe
from ablate.report.build import build_report, latency_figures
from ablate.report.runtimes import latency_by_batch_figure, runtime_tables
from ablate.store import CostRecord, Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult
from tests.report.readable import crowded_ticks, problems, tick_labels

RECIPE = """
name = "rt"
seeds = [0, 1]
[base.data]
name = "shapes"
[base.eval]
runtimes = ["eager", "compile", "onnxruntime"]
latency_batch_sizes = [1, 10]
[grid]
"model.head" = ["lraspp", "fcn"]
"""

# per seed: eager bs1, bs10; onnxruntime bs1, bs10; onnxruntime pixel agreement
LATENCY = {0: (10.0, 80.0, 5.0, 20.0, 1.0), 1: (12.0, 100.0, 7.0, 30.0, 0.998)}


def _result(trial) -> dict:
    e1, e10, o1, o10, agree = LATENCY[trial.seed]
    final = {
        "miou": 0.5, "pixel_acc": 0.9, "latency_ms": e1, "latency_threads": 2.0,
        "latency_ms@eager/bs1": e1, "latency_ms@eager/bs10": e10,
        "latency_ms@onnxruntime/bs1": o1, "latency_ms@onnxruntime/bs10": o10,
        "supported@eager": 1.0, "supported@onnxruntime": 1.0, "supported@compile": 0.0,
        "miou@eager": 0.5, "miou@onnxruntime": 0.5 - (1 - agree), "parity_agree@onnxruntime": agree,
        "parity_max_abs@onnxruntime": 1e-5 * (trial.seed + 1), "parity_miou_diff@onnxruntime":
        -(1 - agree), "parity_ok@onnxruntime": 1.0 if agree == 1.0 else 0.0,
    }
    runtimes = {"eager": {"status": "ok", "device": "cpu", "threads": 2},
                "onnxruntime": {"status": "ok", "device": "cpu", "threads": 2},
                "compile": {"status": "unsupported", "threads": 2,
                            "reason": "InductorError: no C++ compiler"}}
    return {"study": "rt", "trial_id": trial.trial_id, "status": "done", "error": None,
            "final": final, "epochs": [], "environment": {"runtimes": runtimes}}


@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'rt.db'}")
    trials = expand(parse_recipe(RECIPE, "rt.toml"))
    store.upsert_study("rt", "", "rt.toml", RECIPE)
    store.register_trials("rt", trials)
    for t in trials:
        store.put_cost(CostRecord(t.arch_id, 1000, {"backbone": 1000}, 10**9, None,
                                  "fvcore-mac", (64, 64)))
        store.record(TrialResult.from_json({"format": 1, **_result(t)}))
    return store


def test_configuration_columns_aggregate_seeds(store):
    configs = build_report(store).configs
    row = configs[configs["config_name"] == "head=fcn"].iloc[0]
    assert row["latency_ms@eager/bs10"] == 90.0  # median of 80 and 100
    assert row["latency_ms@onnxruntime/bs10"] == 25.0
    assert row["x_eager@onnxruntime/bs10"] == pytest.approx(25.0 / 90.0)
    assert row["x_eager@onnxruntime/bs1"] == pytest.approx(6.0 / 11.0)
    assert row["parity_agree@onnxruntime"] == pytest.approx(99.8)  # the worse seed, percent
    assert row["parity_max_abs@onnxruntime"] == pytest.approx(2e-5)  # the larger
    assert row["parity_miou_diff@onnxruntime"] == pytest.approx(-0.1)  # mean, points
    assert row["parity_ok@onnxruntime"] == 0.0  # one seed differs
    assert row["unsupported@compile"] == "InductorError: no C++ compiler"
    assert "x_eager@eager/bs1" not in configs and "supported@eager" not in configs


def test_where_sort_and_x_take_runtime_columns(store):
    report = build_report(store, where=["model.head=fcn"], sort="latency_ms@onnxruntime/bs1")
    assert list(report.configs["config_name"]) == ["head=fcn"]
    from ablate.report.build import cost_axes

    assert cost_axes(report.configs, ("latency_ms@onnxruntime/bs10",)) == [
        "latency_ms@onnxruntime/bs10"]


def test_runtimes_table_rows_and_verdicts(store):
    (table,) = runtime_tables(build_report(store).configs)
    assert table.title == "rt: runtimes and batch sizes"
    cells = {c.header: c.cells for c in table.columns}
    assert cells["configuration"] == ["head=lraspp"] * 3 + ["head=fcn"] * 3
    assert cells["runtime"] == ["eager", "compile", "onnxruntime"] * 2
    assert cells["bs 10 ms"][:3] == ["90.0", "-", "25.0"]
    assert cells["bs 10 x eager"][2] == "0.28"
    assert cells["same class %"][2] == "99.800"
    assert cells["parity"][:3] == ["reference", "unsupported: InductorError: no C++ compiler",
                                   "DIFFERS"]
    assert "intra-op threads: 2." in table.notes[0]


def test_latency_by_batch_figure_has_a_line_per_configuration_and_runtime(store):
    (figure,) = latency_figures(build_report(store))
    assert figure.stem == "latency_by_batch"
    lines = figure.figure.axes[0].lines
    assert sorted(line.get_label() for line in lines) == [
        "head=fcn · eager", "head=fcn · onnxruntime",
        "head=lraspp · eager", "head=lraspp · onnxruntime"]
    eager = next(line for line in lines if line.get_label() == "head=fcn · eager")
    assert list(eager.get_xdata()) == [1, 10] and list(eager.get_ydata()) == [11.0, 90.0]
    # plain numbers, a tick at each batch size measured (not 10^0, 10^1; nor 2×10^1 ms)
    ax = figure.figure.axes[0]
    assert tick_labels(ax.xaxis) == ["1", "10"]
    assert tick_labels(ax.yaxis) == ["10", "20", "50", "100"]
    assert crowded_ticks(ax.xaxis) == [] and crowded_ticks(ax.yaxis) == []


def test_latency_by_batch_legend_hides_no_point(store):
    """A runtime slowest at batch 1 (torch.compile on a CPU) draws its point top left,
    where the legend stood inside the axes and hid it: the legend stands outside now."""
    configs = build_report(store).configs.copy()
    configs["latency_ms@onnxruntime/bs1"] = 500.0  # above every batch of 10
    figure = latency_by_batch_figure(configs)
    assert problems(figure) == []  # no text over the axes, none cut or overlapping
    legend = figure.axes[0].get_legend().get_window_extent()
    assert not legend.overlaps(figure.axes[0].get_window_extent())
    # twelve lines with long names: one column, none cut at the figure's edge
    long = pd.DataFrame([{"study": "rt", "config_name": f"lean_last_stage[keep_last_expansion="
                          f"false,remove=[head.aspp.convs.{i}]]", **{
                              f"latency_ms@{r}/bs{bs}": (i + 1.0) * bs for r in
                              ("eager", "compile", "onnxruntime") for bs in (1, 10)}}
                         for i in range(4)])
    assert problems(latency_by_batch_figure(long)) == []


def test_eager_at_batch_one_only_adds_nothing(tmp_path):
    from tests.report.fake_store import fill

    report = build_report(fill(f"sqlite:///{tmp_path / 'plain.db'}"))
    assert not [c for c in report.configs.columns if "@" in c]
    assert runtime_tables(report.configs) == [] and latency_figures(report) == []


def test_export_has_every_runtime_and_batch_size_column(store, tmp_path):
    """Export promises every final figure: latencies per runtime and batch size too."""
    import csv

    from click.testing import CliRunner

    from ablate.cli import main

    out = tmp_path / "rt.csv"
    result = CliRunner().invoke(main, ["export", "rt", "--csv", str(out), "--db",
                                       str(store.url)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    runtime_columns = [c for c in rows[0] if "@" in c]
    assert runtime_columns == [
        "latency_ms@eager/bs1", "latency_ms@eager/bs10", "latency_ms@onnxruntime/bs1",
        "latency_ms@onnxruntime/bs10", "miou@eager", "miou@onnxruntime",
        "parity_agree@onnxruntime", "parity_max_abs@onnxruntime",
        "parity_miou_diff@onnxruntime", "parity_ok@onnxruntime", "supported@compile",
        "supported@eager", "supported@onnxruntime"]
    by_seed = {row["seed"]: row for row in rows if row["config_name"] == "head=fcn"}
    assert [float(by_seed["1"][c]) for c in runtime_columns[:4]] == [12.0, 100.0, 7.0, 30.0]
    assert [float(by_seed["0"][c]) for c in runtime_columns[:4]] == [10.0, 80.0, 5.0, 20.0]
    # the report's trial frame stays as it was: runtimes are configuration columns there
    from ablate.report.frame import trials_frame

    assert not [c for c in trials_frame(store, ["rt"]).columns if "/bs" in c]
