"""Figures: what is drawn (front, faded points, labels, scales), and the files written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ablate.report.plots import (
    FRONT_LABELS,
    LABEL_ALL_UP_TO,
    curves_figure,
    figure_png,
    figure_svg,
    pareto_figure,
    per_class_figure,
    save_figure,
)
from tests.report.readable import crowded_ticks, tick_labels


def configs(n: int = 4) -> pd.DataFrame:
    # (5, 56) (5.6, 59) (11, 58) (11.7, 61): the third is dominated by the second
    params = [5.0e6, 5.6e6, 11.0e6, 11.7e6][:n]
    miou = [56.0, 59.0, 58.0, 61.0][:n]
    return pd.DataFrame({"study": "s", "config_name": [f"c{i}" for i in range(n)],
                         "params": params, "miou_mean": miou, "miou_std": [1.0] * n})


def texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_front_as_steps_dominated_faded_and_labelled():
    fig = pareto_figure(configs(), "params")
    ax = fig.axes[0]
    (steps,) = ax.lines[-1:]  # the step line is drawn after the error bars
    assert steps.get_drawstyle() == "steps-post"
    assert list(steps.get_xdata()) == [5.0e6, 5.6e6, 11.7e6]
    assert list(steps.get_ydata()) == [56.0, 59.0, 61.0]
    faded = [t for t in ax.texts if t.get_alpha() == 0.5]
    assert [t.get_text() for t in faded] == ["c2"]
    assert sorted(texts(ax)) == ["c0", "c1", "c2", "c3"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dominated",
                                                                    "Pareto-optimal"]
    assert ax.get_xscale() == "linear"
    assert ax.get_ylabel() == "mIoU (%), mean ± std over seeds"  # what the bars are


def test_error_bars_are_the_std_over_seeds():
    ax = pareto_figure(configs(), "params").axes[0]
    segments = [seg for coll in ax.collections for seg in coll.get_segments()]
    assert sorted(round(seg[1][1] - seg[0][1], 6) for seg in segments) == [2.0] * 4


def test_without_a_spread_the_axis_claims_no_bars():
    one_seed = configs().assign(miou_std=float("nan"))  # one seed each: no std, no bars
    assert pareto_figure(one_seed, "params").axes[0].get_ylabel() == "mIoU (%)"


def test_single_point_and_log_scale():
    fig = pareto_figure(configs(1), "params", log_x=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and texts(ax) == ["c0"]
    assert ax.get_xlabel() == "parameters (log)"


@pytest.mark.parametrize(("column", "values", "labels"), [
    ("latency_ms", [4.0, 5.0, 8.0, 11.0], ["4", "5", "6", "7", "8", "9", "10"]),
    ("latency_ms", [0.8, 3.0, 12.0, 90.0], ["1", "2", "5", "10", "20", "50", "100"]),
    ("gflops", [0.02, 0.05, 0.3, 0.9], ["0.02", "0.05", "0.1", "0.2", "0.5", "1"]),
    ("params", [5.0e6, 5.6e6, 11.0e6, 11.7e6], ["5M", "6M", "7M", "8M", "9M", "10M"]),
    ("params", [2e3, 4e4, 1e6, 3e7, 1.5e8], ["10k", "100k", "1M", "10M", "100M"]),  # decades
])
def test_a_log_axis_reads_plain_numbers_between_the_decades_where_they_fit(column, values,
                                                                          labels):
    """Not matplotlib's 2×10^1: plain numbers, the ticks between decades labelled too
    where the axis spans few decades (every one, else 2 and 5), only the decades beyond."""
    frame = pd.DataFrame({"study": "s", "config_name": [f"c{i}" for i in range(len(values))],
                          column: values, "miou_mean": 50.0, "miou_std": 1.0})
    axis = pareto_figure(frame, column, log_x=True).axes[0].xaxis
    assert tick_labels(axis) == labels
    assert crowded_ticks(axis) == []
    # hung from one line (their tops: "k" is taller than "2"): a minor tick is shorter
    # than a major one, and its label was drawn higher
    renderer = axis.figure.canvas.get_renderer()
    assert len({round(label.get_window_extent(renderer).y1, 3)
                for label in axis.get_ticklabels(which="both") if label.get_text()}) == 1


def test_many_points_label_only_the_front():
    n = LABEL_ALL_UP_TO + 10
    frame = pd.DataFrame({"config_name": [f"c{i}" for i in range(n)],
                          "params": np.arange(n, dtype=float) + 1,
                          "miou_mean": np.where(np.arange(n) % 2 == 0, np.arange(n), 0.0)})
    ax = pareto_figure(frame, "params").axes[0]
    # the front is every even i (odd ones are dominated by c0): 25 points, 12 names spread
    names = texts(ax)
    assert len(names) == FRONT_LABELS and names[0] == "c0" and names[-1] == f"c{n - 2}"
    assert all(int(name[1:]) % 2 == 0 for name in names)


def test_study_prefix_with_several_studies():
    frame = configs(2)
    frame.loc[1, "study"] = "t"
    assert sorted(texts(pareto_figure(frame, "params").axes[0])) == ["s: c0", "t: c1"]


def test_files_and_png_bytes(tmp_path):
    paths = save_figure(pareto_figure(configs(), "params"), tmp_path / "out", "pareto_params")
    assert [p.name for p in paths] == ["pareto_params.png", "pareto_params.svg"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and "<svg" in paths[1].read_text()
    assert figure_png(pareto_figure(configs(), "params"))[:4] == b"\x89PNG"


def test_the_page_s_svg_draws_text_as_outlines_and_is_the_same_bytes_each_time():
    """The HTML page's figures: labels as glyph outlines (shown as measured at layout,
    whatever the browser's fonts), and no date or random ids in the file."""
    first = figure_svg(pareto_figure(configs(), "params"))
    assert first.startswith(b"<?xml") and b"<svg" in first
    assert b"<text" not in first and b"<use xlink:href=\"#DejaVuSans" in first
    assert figure_svg(pareto_figure(configs(), "params")) == first


def test_per_class_heatmap():
    table = pd.DataFrame({"c0": [80.0, 40.0], "c1": [np.nan, 60.0]}, index=["cat", "dog"])
    ax = per_class_figure(table).axes[0]
    assert ax.images[0].get_array().shape == (2, 2)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog"]
    assert texts(ax) == ["80", "40", "60"]  # NaN cells stay blank


@pytest.mark.parametrize("by,lines", [("config", 1), ("trial", 2)])
def test_curves(by, lines):
    rows = [("c0", tid, e, 10 * e, key, value)
            for tid, shift in (("t1", 0.0), ("t2", 1.0))
            for e in (1, 2)
            for key, value in (("train_loss", 1.0 / e + shift), ("val_miou", 20.0 * e + shift))]
    epochs = pd.DataFrame(rows, columns=["label", "trial_id", "epoch", "step", "key", "value"])
    fig = curves_figure(epochs, by=by, x="step")
    loss, miou = fig.axes[:2]
    assert len(loss.lines) == lines and loss.get_xlabel() == "step"
    if by == "config":  # mean over the two trials, band from min to max
        assert list(miou.lines[0].get_ydata()) == [20.5, 40.5]
        assert len(miou.collections) == 1
    else:
        # one line per seed in its configuration's colour, one legend entry per configuration
        assert [line.get_label() for line in miou.lines] == ["c0", "_nolegend_"]
        assert miou.lines[0].get_color() == miou.lines[1].get_color()


def _covered_points(fig) -> list[tuple[str, int]]:
    """(artist, point index) for every drawn label or legend box that covers a point marker."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    points = np.concatenate([np.asarray(line.get_xydata()) for line in ax.lines
                             if line.get_marker() == "o"])  # the markers, not steps or caps
    centers = ax.transData.transform(points)
    radius = 5.0 * fig.dpi / 72.0 / 2.0
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts]
    boxes.append(("legend", ax.get_legend().get_window_extent(renderer)))
    return [(name, i) for name, box in boxes for i, (cx, cy) in enumerate(centers)
            if box.x0 - radius < cx < box.x1 + radius and box.y0 - radius < cy < box.y1 + radius]


@pytest.mark.slow
def test_legend_and_labels_cover_no_point():
    """The quick-start's shape: the worst configuration sits at the lower right, where the
    legend used to be drawn; and a crowded random layout."""
    quick = pd.DataFrame({"study": "q", "config_name": [
        "all_expansions[keep_last_expansion=true]", "all_expansions[keep_last_expansion=false]",
        "lean_last_stage[keep_last_expansion=true]", "lean_last_stage[keep_last_expansion=false]"],
        "params": [11.0e6, 9.8e6, 10.5e6, 9.0e6], "miou_mean": [70.0, 66.0, 72.0, 52.0],
        "miou_std": [1.0, 2.0, 1.5, 3.0]})
    fig = pareto_figure(quick, "params")
    assert _covered_points(fig) == []
    assert sorted(texts(fig.axes[0])) == sorted(quick["config_name"])  # every one labelled
    legend = fig.axes[0].get_legend().get_window_extent(fig.canvas.get_renderer())
    assert legend.x0 >= fig.axes[0].get_window_extent().x1  # outside the axes
    rng = np.random.default_rng(3)
    crowded = pd.DataFrame({"study": "s", "config_name": [f"config-{i}" for i in range(25)],
                            "params": rng.uniform(1e6, 1e7, 25), "miou_mean": rng.uniform(40, 70, 25),
                            "miou_std": 0.5})
    assert _covered_points(pareto_figure(crowded, "params")) == []


def test_per_class_labels_fit_inside_the_figure():
    """Long configuration names (a split setting's `{train.epochs=2}`) are sized for, not
    cut at the figure's edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = ["keep_last_expansion=false", "keep_last_expansion=true {train.epochs=2}",
             "lean_last_stage[keep_last_expansion=true] {train.epochs=1, code=0a1b2c3d}"]
    table = pd.DataFrame([[68.0, 34.0, 0.0], [0.0, 8.0, 16.0]],
                         index=["background_and_more", "square"], columns=names)
    fig = per_class_figure(table)
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    box = fig.bbox
    ax = fig.axes[0]
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        extent = label.get_window_extent(renderer)
        assert extent.x0 >= box.x0 and extent.y0 >= box.y0, label.get_text()
