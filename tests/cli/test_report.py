"""``ablate report`` through CliRunner on a store filled by hand (tests/report/fake_store.py).

Hand-checked figures: against ``conventional`` at the same head, proposed[head=deeplabv3plus]
has (5,632,933 - 11,727,653) / 11,727,653 = -51.97 % params, (2 - 4) / 4 = -50 % GFLOPs,
(5 - 11) / 11 = -54.55 % latency and 59 - 61 = -2 mIoU points; measured - published params
of conventional[head=deeplabv3plus] is 11,727,653 - 11,745,643 = -17,990.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ablate.cli import main
from tests.report.fake_store import fill

NOTE = ("★ Pareto-optimal in params vs mIoU. mIoU: one confusion matrix over the validation set, "
        "mean ± std over seeds. GFLOPs: fvcore-mac at 64x64. Latency: median ms, batch 1, on the "
        "device that trained the trial.")

BASELINE_MARKDOWN = f"""\
## mnv3_mini: 4 configurations, 8 trials

Kim et al. 2025 in miniature: last expansion kept or dropped

|  | configuration | head | mIoU % | ± std | n | params | GFLOPs | latency ms | pub. params | Δ pub. params | pub. mIoU % | Δ pub. mIoU | Δ params % | Δ GFLOPs % | Δ latency % | Δ mIoU | Δ mIoU CI |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| ★ | proposed[head=deeplabv3] | deeplabv3 | 56.00 | 1.41 | 2 | 5,000,000 | 1.500 | 4.00 | 5,632,933 | -632,933 | 59.54 | -3.54 | -54.55 | -50.00 | -50.00 | -2.00 | [-14.71, +10.71] |
| ★≈ | proposed[head=deeplabv3plus] | deeplabv3plus | 59.00 | 0.71 | 2 | 5,632,933 | 2.000 | 5.00 | 5,632,933 | +0 | 59.54 | -0.54 | -51.97 | -50.00 | -54.55 | -2.00 | [-8.35, +4.35] |
|  | conventional[head=deeplabv3] | deeplabv3 | 58.00 | 0.00 | 2 | 11,000,000 | 3.000 | 8.00 | 11,745,643 | -745,643 | 62.24 | -4.24 | +0.00 | +0.00 | +0.00 | +0.00 | — |
| ★ | conventional[head=deeplabv3plus] | deeplabv3plus | 61.00 | 1.41 | 2 | 11,727,653 | 4.000 | 11.00 | 11,745,643 | -17,990 | 62.24 | -1.24 | +0.00 | +0.00 | +0.00 | +0.00 | — |

{NOTE}
pub.: published figures (Kim et al. 2025, Table 1); Δ pub. = measured - published (mIoU in points).
Δ against conventional[head=deeplabv3], conventional[head=deeplabv3plus]: params, GFLOPs and latency in percent, mIoU in points; Δ mIoU and its CI come from the same seeds: paired t at 1 - alpha (95% by default) over the seeds both ran, else Welch over all trials (— with fewer than two a side).
★≈ proposed[head=deeplabv3plus]: its mIoU lead over conventional[head=deeplabv3], which it dominates, is inconclusive: within seed noise so far.
"""  # noqa: E501


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "r.db"
    fill(f"sqlite:///{path}")
    return str(path)


def report(db, *args):
    return CliRunner().invoke(main, ["report", "--db", db, *args])


def test_markdown_with_baseline_and_published_figures(db):
    result = report(db, "--study", "mnv3_mini", "--baseline", "conventional", "--format", "markdown",
                    "--sort", "params")
    assert result.exit_code == 0, result.output
    assert result.output == BASELINE_MARKDOWN


def test_several_studies_and_default_order(db):
    result = report(db, "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if line.startswith("## ")] == [
        "## mnv3_mini: 4 configurations, 8 trials",
        "## other: 1 configuration, 1 trial (1 unfinished, not shown)"]  # seed 1 is pending
    rows = [line.split(" | ")[1] for line in lines
            if line.startswith(("| ★ |", "| ★≈ |", "|  |")) and " configuration " not in line]
    assert rows == ["conventional[head=deeplabv3plus]", "proposed[head=deeplabv3plus]",
                    "conventional[head=deeplabv3]", "proposed[head=deeplabv3]", "base"]
    assert "| ★ | base | 50.00 | — | 1 | 1,000 | 0.001 | 1.00 |"  # one seed: no std in lines


def test_csv_where_on_an_axis_and_on_a_trial_column(db):
    result = report(db, "--study", "mnv3_mini", "--where", "model.head=deeplabv3", "--where",
                    "seed=0", "--format", "csv")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header == ("study,config_name,variant,n,miou_mean,miou_std,pixel_acc,params,gflops,"
                      "flops_convention,resolution,latency_ms,preemptions,axis:model.head,"
                      "published_params,"
                      "published_miou,published_source,pareto,params_vs_published,"
                      "miou_vs_published,pareto_mark,pareto_tie,pareto_reason")
    assert [r.split(",")[1] for r in rows] == ["conventional[head=deeplabv3]",
                                               "proposed[head=deeplabv3]"]
    assert [r.split(",")[3] for r in rows] == ["1", "1"]  # seed 0 only
    assert rows[1].split(",")[7:9] == ["5000000", "1.5"]


def test_where_sort_and_x_take_an_axis_by_the_name_the_table_shows(db):
    """The header shows ``model.head`` as ``head``: that name works as well as the key."""
    short = report(db, "--study", "mnv3_mini", "--where", "head=deeplabv3", "--sort", "head",
                   "--format", "csv")
    assert short.exit_code == 0, short.output
    full = report(db, "--study", "mnv3_mini", "--where", "model.head=deeplabv3", "--sort",
                  "model.head", "--format", "csv")
    assert short.output == full.output
    assert [r.split(",")[1] for r in short.output.splitlines()[1:]] == [
        "conventional[head=deeplabv3]", "proposed[head=deeplabv3]"]


def test_json_is_an_alias_and_where_on_a_configuration_column(db):
    as_json = report(db, "--json", "--where", "pareto=false")
    assert as_json.exit_code == 0, as_json.output
    assert as_json.output == report(db, "--format", "json", "--where", "pareto=false").output
    rows = json.loads(as_json.output)
    assert [r["config_name"] for r in rows] == ["conventional[head=deeplabv3]"]
    assert rows[0]["params_vs_published"] == -745_643 and rows[0]["n"] == 2


def test_booleans_read_alike_in_csv_json_and_markdown(tmp_path):
    """An axis of booleans and the ``pareto`` column: ``true``/``false`` in every text
    format (pandas' CSV alone wrote Python's ``True``/``False``)."""
    from ablate.store import Store
    from tests.report.fake_store import FLAGS, FLAGS_FIGURES, add_study

    db = str(tmp_path / "flags.db")
    add_study(Store(f"sqlite:///{db}"), FLAGS, "flags", FLAGS_FIGURES)
    csv_out = report(db, "--format", "csv")
    assert csv_out.exit_code == 0, csv_out.output
    header, *rows = csv_out.output.splitlines()
    cells = [dict(zip(header.split(","), row.split(","))) for row in rows]
    assert [(c["axis:train.channels_last"], c["pareto"], c["n"], c["miou_mean"]) for c in cells] \
        == [("false", "true", "1", "60.0"), ("true", "false", "1", "50.0")]
    rows = json.loads(report(db, "--format", "json").output)
    assert [(r["axis:train.channels_last"], r["pareto"]) for r in rows] == [(False, True),
                                                                           (True, False)]
    markdown = report(db, "--format", "markdown").output
    assert "| ★? | channels_last=false | false | 60.00 |" in markdown
    assert "|  | channels_last=true | true | 50.00 |" in markdown


def test_integer_axis_stays_an_integer_beside_a_study_without_it(tmp_path):
    """Another study of the report has no ``train.epochs`` axis: its rows leave the column
    empty, and the other study's epochs still read ``2``, never ``2.0`` (pandas made the
    column float to hold the gap)."""
    from ablate.store import Store
    from tests.report.fake_store import FLAGS, FLAGS_FIGURES, add_study

    epochs = """
name = "epochs"
seeds = [0]
[base.data]
name = "shapes"
[grid]
"train.epochs" = [1, 2]
"""
    db = str(tmp_path / "two.db")
    store = Store(f"sqlite:///{db}")
    add_study(store, FLAGS, "flags", FLAGS_FIGURES)
    add_study(store, epochs, "epochs", {"epochs=1": (1_000, 10**6, [(0.4, 1.0)]),
                                        "epochs=2": (1_000, 10**6, [(0.45, 1.0)])})
    csv_out = report(db, "--format", "csv")
    assert csv_out.exit_code == 0, csv_out.output
    header, *rows = csv_out.output.splitlines()
    cells = [dict(zip(header.split(","), row.split(","))) for row in rows]
    assert [c["axis:train.epochs"] for c in cells] == ["", "", "2", "1"]
    rows = json.loads(report(db, "--format", "json").output)
    assert [r["axis:train.epochs"] for r in rows] == [None, None, 2, 1]
    assert all(isinstance(r["axis:train.epochs"], int | None) for r in rows)
    markdown = report(db, "--format", "markdown").output
    assert "| epochs=2 | 2 | 45.00 |" in markdown and "2.0" not in markdown
    plotted = report(db, "--x", "epochs", "--out", str(tmp_path / "plots"))
    assert plotted.exit_code == 0, plotted.output


def test_json_baseline_values(db):
    rows = json.loads(report(db, "--json", "--baseline", "proposed[head=deeplabv3plus]").output)
    by_name = {r["config_name"]: r for r in rows}
    conv = by_name["conventional[head=deeplabv3plus]"]
    assert conv["baseline"] == "proposed[head=deeplabv3plus]"
    # (11,727,653 - 5,632,933) / 5,632,933 = +108.198 %; (4 - 2) / 2; (11 - 5) / 5; 61 - 59
    assert conv["params_delta_pct"] == pytest.approx(108.197985)
    assert [conv["gflops_delta_pct"], conv["latency_delta_pct"], conv["miou_delta"]] == \
        pytest.approx([100.0, 120.0, 2.0])
    assert by_name["base"]["baseline"] is None  # study `other` has no such configuration


def test_terminal_table(db):
    result = report(db, "--study", "other")
    assert result.exit_code == 0, result.output
    assert "│ ★ │ base          │  50.00 │     — │ 1 │  1,000 │  0.001 │       1.00 │" in result.output
    assert "other: 1 configuration, 1 trial (1 unfinished, not shown)" in result.output


@pytest.mark.parametrize("args,code,message", [
    (["--baseline", "nope"], 2, "Error: --baseline: no configuration or variant 'nope'; known: "
                                "base, conventional, conventional[head=deeplabv3]"),
    # a baseline --where leaves out is there: it must pass --where (it said "no ... 'proposed'")
    (["--baseline", "proposed", "--where", "variant=conventional"], 2,
     "Error: --baseline: 'proposed' is left out by --where (the baseline must pass it); "
     "shown: conventional, conventional[head=deeplabv3], conventional[head=deeplabv3plus]\n"),
    (["--where", "nope=1"], 2, "Error: --where: no column 'nope'; columns: study, config_name"),
    (["--where", "nope"], 2, "Error: --where: expected KEY=VALUE or KEY!=VALUE, got 'nope'"),
    (["--sort", "nope"], 2, "Error: --sort: no column 'nope'; columns: study, config_name"),
    # a column named by its start, or misspelt, is named in full
    (["--sort", "pixel"], 2, "Error: --sort: no column 'pixel' (did you mean 'pixel_acc'?); "
                             "columns: study, "),
    (["--x", "flops"], 2, "Error: --x: no numeric column 'flops' (did you mean 'gflops'?); "),
    (["--where", "model.haed=fcn"], 2, "Error: --where: no column 'model.haed' (did you mean "
                                       "'model.head'?); "),
    (["--x", "config_name"], 2, "Error: --x: no numeric column 'config_name'; numeric columns: "
                                "miou_mean, miou_std, pixel_acc, params, gflops, latency_ms"),
    (["--where", "study=other", "--x", "published_params"], 2,  # an empty plot, exit 0
     "Error: --x published_params: no configuration has a value; columns with values: "
     "miou_mean, pixel_acc, params, gflops, latency_ms, preemptions\n"),
    (["--json", "--format", "csv"], 2, "Error: --json and --format csv contradict each other"),
    (["--desc"], 2, "Error: --desc needs --sort COLUMN"),
    (["--study", "nope"], 2, "Error: --study: no study 'nope' in sqlite:///{db}; known: "
                             "mnv3_mini, other"),
])
def test_errors(db, args, code, message):
    result = report(db, *args)
    assert result.exit_code == code, result.output
    assert message.replace("{db}", db) in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_pareto_plots_with_x_and_log_x(db, tmp_path):
    out = tmp_path / "plots"
    result = report(db, "--pareto", "--log-x", "--out", str(out))
    assert result.exit_code == 0, result.output
    stems = ["pareto_params", "pareto_gflops", "pareto_latency_ms"]
    assert result.output.splitlines()[-6:] == [
        f"wrote {out / stem}.{ext}" for stem in stems for ext in ("png", "svg")]
    for stem in stems:
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.svg").read_text().startswith("<?xml")
    only = tmp_path / "only"
    result = report(db, "--x", "pixel_acc", "--x", "model.head", "--out", str(only))
    assert result.exit_code == 2 and "no numeric column 'model.head'" in result.output
    result = report(db, "--x", "pixel_acc", "--format", "json", "--out", str(only))
    assert result.exit_code == 0
    assert json.loads(result.stdout)[0]["config_name"] == "conventional[head=deeplabv3plus]"
    assert sorted(p.name for p in only.iterdir()) == ["pareto_pixel_acc.png",
                                                      "pareto_pixel_acc.svg"]
    assert f"wrote {only / 'pareto_pixel_acc.png'}" in result.stderr


def test_per_class_and_curves(db, tmp_path):
    out = tmp_path / "views"
    result = report(db, "--study", "mnv3_mini", "--per-class", "--curves", "--curves-by", "trial",
                    "--format", "markdown", "--out", str(out))
    assert result.exit_code == 0, result.output
    # configurations as rows (names never cut), classes as columns, the best per class bold
    assert "| configuration | background | circle | square |" in result.output
    assert "| conventional[head=deeplabv3plus] | **81.0** | **51.0** | **51.0** |" in result.output
    assert "| proposed[head=deeplabv3] | 76.0 | 46.0 | 46.0 |" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "curves.png", "curves.svg", "per_class_iou.png", "per_class_iou.svg"]
    rows = json.loads(report(db, "--study", "mnv3_mini", "--per-class", "--json",
                             "--out", str(out)).stdout)
    assert rows[0]["iou/background"] == pytest.approx(81.0)


@pytest.mark.slow
def test_html_page(db, tmp_path):
    out = tmp_path / "page"
    result = report(db, "--format", "html", "--per-class", "--curves", "--baseline",
                    "conventional", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out / 'report.html'}\n"
    assert [p.name for p in out.iterdir()] == ["report.html"]
    page = (out / "report.html").read_text()
    # every seed x 2 studies, 3 Pareto, 2 heatmaps, curves
    assert page.count('<img src="data:image/svg+xml;base64,') == 8
    assert "<td data-v=\"proposed[head=deeplabv3plus]\">proposed[head=deeplabv3plus]</td>" in page
    assert '<td class="num" data-v="-17990.0">-17,990</td>' in page
    assert "http://" not in page and "https://" not in page


def test_the_garbage_collector_runs_less_often_during_a_report_only(db, tmp_path,
                                                                     monkeypatch):
    """A report raises the young generation's threshold (its long-lived objects were
    scanned again and again) and gives the caller's thresholds back, even on an error."""
    import gc

    from ablate.heap import YOUNG_THRESHOLD as GC_THRESHOLD
    from ablate.report import build

    seen = []
    real = build.build_report

    def recording(*args, **kwargs):
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "build_report", recording)
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 9, 8)
        assert report(db, "--format", "html", "--out", str(tmp_path / "page")).exit_code == 0
        assert seen == [(GC_THRESHOLD, 9, 8)] and gc.get_threshold() == (700, 9, 8)
        assert report(db, "--sort", "no_such_column").exit_code != 0
        assert len(seen) == 2 and gc.get_threshold() == (700, 9, 8)
    finally:
        gc.set_threshold(*before)


@pytest.fixture
def failing(tmp_path):
    """mnv3_mini with proposed[head=deeplabv3] failed on both seeds and
    conventional[head=deeplabv3] on seed 1: 3 configurations, 5 done trials, 3 failed."""
    from ablate.store import Store
    from tests.report.fake_store import FIGURES, MNV3_MINI, add_failing_study

    db = str(tmp_path / "failing.db")
    add_failing_study(Store(f"sqlite:///{db}"), MNV3_MINI, "mnv3_mini", FIGURES, {
        ("proposed[head=deeplabv3]", 0), ("proposed[head=deeplabv3]", 1),
        ("conventional[head=deeplabv3]", 1)})
    return db


def test_the_title_counts_the_trials_the_rows_hold_and_the_failed_ones_apart(failing,
                                                                            tmp_path):
    """It read '4 configurations, 8 trials' over rows holding 5 trials of 3 configurations."""
    title = "mnv3_mini: 3 configurations, 5 trials (3 failed, not shown)"
    markdown = report(failing, "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    assert f"## {title}\n" in markdown.output
    assert title in report(failing).output  # the terminal's table
    page = report(failing, "--format", "html", "--out", str(tmp_path / "page"))
    assert page.exit_code == 0, page.output
    html = (tmp_path / "page" / "report.html").read_text()
    assert html.count(title) == 1 and "3 configurations, 5 trials (3 failed, not shown); " \
        "generated by ablate" in html
    # a --where on the table: the configurations it leaves out count in neither (the one
    # shown failed once; the one whose every trial failed has no row to leave out)
    one = report(failing, "--format", "markdown", "--where", "pareto=false")
    assert "## mnv3_mini: 1 configuration, 1 trial (3 failed, not shown)\n" in one.output
    two = report(failing, "--format", "markdown", "--where", "pareto=true")
    assert "## mnv3_mini: 2 configurations, 4 trials (2 failed, not shown)\n" in two.output


def test_empty_database_html_and_markdown(tmp_path):
    db = str(tmp_path / "e.db")
    from ablate.store import Store

    Store(db).close()  # a report never creates one (tests/validation)
    assert report(db, "--format", "markdown").output == (
        "No finished trials in the database yet. Run: ablate run RECIPE\n")
    result = report(db, "--format", "html", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert "ablate report: no trials" in (tmp_path / "o" / "report.html").read_text()


def test_a_database_whose_every_trial_failed_says_so(tmp_path):
    """Not 'No finished trials in the database yet. Run: ablate run RECIPE': they ran."""
    from ablate.store import Store
    from tests.report.fake_store import FIGURES, MNV3_MINI, add_failing_study

    db = str(tmp_path / "failed.db")
    add_failing_study(Store(f"sqlite:///{db}"), MNV3_MINI, "mnv3_mini", {},
                      {(name, seed) for name in FIGURES for seed in (0, 1)})
    for fmt in ("table", "markdown"):
        result = report(db, "--format", fmt)
        assert result.exit_code == 0, result.output  # as an empty database (docs/cluster.md)
        assert result.output == ("Every trial of study 'mnv3_mini' failed (8 trials); see why "
                                 "with: ablate status mnv3_mini\n")
    result = report(db, "--format", "json")
    assert result.exit_code == 0, result.output
    assert result.output == "[]\n"  # pandas wrote "[", an empty line, "]"
    result = report(db, "--format", "html", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "o" / "report.html").read_text()
    assert "<title>ablate report: mnv3_mini</title>" in page  # was "no trials"
    assert "0 configurations, 0 trials (8 failed, not shown)" in page


def test_csv_without_a_row_has_the_header_a_report_with_rows_has(db, tmp_path):
    """A script reading the CSV finds the same columns before any trial is done: those of
    every report (pixel_acc, preemptions, the Pareto marks), and the axes and published
    figures its studies' trials name (--baseline's too); a result's own columns
    (per-class IoU, runtimes) only once some trial has them."""
    from ablate.store import Store
    from tests.report.fake_store import FIGURES, MNV3_MINI, add_failing_study

    def header(database, *args):
        result = report(database, "--study", "mnv3_mini", "--format", "csv", *args)
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()[0]  # a typo's note goes to stderr

    full = header(db)
    assert header(db, "--where", "model.head=fcn") == full  # no trial matches
    failed = str(tmp_path / "failed.db")
    add_failing_study(Store(f"sqlite:///{failed}"), MNV3_MINI, "mnv3_mini", {},
                      {(name, seed) for name in FIGURES for seed in (0, 1)})
    assert header(failed) == full  # every trial failed
    assert header(db, "--baseline", "conventional", "--where", "model.head=fcn") == \
        header(db, "--baseline", "conventional")
    empty = str(tmp_path / "e.db")
    Store(empty).close()
    fixed = report(empty, "--format", "csv").output.strip()
    assert fixed == ("study,config_name,variant,n,miou_mean,miou_std,pixel_acc,params,gflops,"
                     "flops_convention,resolution,latency_ms,preemptions,pareto,pareto_mark,"
                     "pareto_tie,pareto_reason")  # no study: no axis, no published figure
    assert [c for c in full.split(",") if c not in fixed.split(",")] == [
        "axis:model.head", "published_params", "published_miou", "published_source",
        "params_vs_published", "miou_vs_published"]


def test_where_that_matches_nothing(db):
    """A value no trial holds (a typo, or one the recipe never had) names the values there
    are; one whose trials are not all finished (here: a filter on two axes) does not."""
    result = report(db, "--where", "model.head=fcn", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.output == ("No finished trial matches --where model.head=fcn; no trial has "
                             "model.head=fcn; its values: deeplabv3plus, deeplabv3.\n")
    both = report(db, "--where", "head=deeplabv3", "--where", "variant=proposd")
    assert both.output == ("No finished trial matches --where head=deeplabv3 variant=proposd; "
                           "no trial has variant=proposd; its values: conventional, proposed, base.\n")
    some = report(db, "--where", "miou=99", "--where", "head=deeplabv3")
    assert some.output == "No finished trial matches --where miou=99 head=deeplabv3.\n"
    out = f"{db}.csv"
    export = CliRunner().invoke(main, ["export", "mnv3_mini", "--db", str(db), "--where",
                                       "head=fcn", "--csv", str(out)])
    assert export.exit_code == 0 and export.output == (
        f"wrote {out} (0 trials; no trial has head=fcn; its values: deeplabv3plus, "
        "deeplabv3)\n")


def test_where_typo_is_named_on_stderr_beside_a_csv_or_json(db):
    """``--format csv > t.csv`` with a typo wrote the header alone and said nothing: the
    line that names the values there are goes to stderr, the output stays parseable."""
    for fmt, empty in (("csv", "study,config_name,"), ("json", "[]")):
        result = report(db, "--where", "head=fcn", "--format", fmt)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(empty)
        assert result.stderr == ("No finished trial matches --where head=fcn; no trial has "
                                 "head=fcn; its values: deeplabv3plus, deeplabv3.\n")
    waiting = report(db, "--where", "miou=99", "--format", "csv")  # no typo: nothing to say
    assert waiting.exit_code == 0 and waiting.stderr == ""


def test_where_on_another_final_figure_and_a_negation(db):
    result = report(db, "--study", "mnv3_mini", "--where", "train_loss=0.5", "--where",
                    "variant!=proposed", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert [r.split(",")[1] for r in result.output.splitlines()[1:]] == [
        "conventional[head=deeplabv3plus]", "conventional[head=deeplabv3]"]


def test_effects_table_matches_hand_computed_intervals(db):
    """Per seed, proposed - conventional averaged over heads: seed 0 (-2.5 - 3) / 2 = -2.75,
    seed 1 (-1.5 - 1) / 2 = -1.25; mean -2, se 0.75. The study has 3 effects (2 main, 1
    interaction): the interval is at 1 - 0.05/3, t(1 df) quantile tan(pi (q - 1/2))."""
    import math

    result = report(db, "--study", "mnv3_mini", "--effects", "--format", "markdown")
    assert result.exit_code == 0, result.output
    from scipy import optimize, stats

    half = math.tan((0.5 - 0.05 / 6) * math.pi) * 0.75
    # MDE: the effect the test detects with power 0.8, on the noncentral t (1 df)
    critical = math.tan((0.5 - 0.05 / 6) * math.pi)
    mde = 0.75 * optimize.brentq(lambda x: stats.nct.sf(critical, 1, x) - 0.8, 1, 100)
    p = 1 - 2 / math.pi * math.atan(2.0 / 0.75)  # two-sided, t(1 df) = 2.667
    row = (f"| variant | conventional -> proposed | -2.00 | [{-2 - half:+.2f}, {-2 + half:+.2f}] "
           f"| {3 * p:.3g} | 2 | {mde:.2f} | -53% | -50% | -52% | inconclusive (n=2) "
           "| paired t (seeds) |")
    assert row == "| variant | conventional -> proposed | -2.00 | [-30.64, +26.64] | 0.685 | 2 " \
                  "| 36.72 | -53% | -50% | -52% | inconclusive (n=2) | paired t (seeds) |"
    assert row in result.output.splitlines()
    assert "## mnv3_mini: effects of each axis on mIoU" in result.output
    assert "98.33% = 1 - alpha/3, over the 3 effect(s) of this study" in result.output


def test_effects_json_has_nulls_where_one_seed_ran(db):
    result = report(db, "--study", "mnv3_mini", "--where", "seed=0", "--effects", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {r["config_name"] for r in data["configurations"]} >= {"proposed[head=deeplabv3]"}
    assert all(r["miou_std"] is None for r in data["configurations"])  # n = 1: null, not 0
    marks = {r["config_name"]: (r["pareto_mark"], r["pareto_tie"]) for r in data["configurations"]}
    # seed 0: proposed[dlv3plus] (59.5) leads conventional[dlv3] (58.0), which it dominates,
    # but one seed a side cannot tell that from noise
    assert marks["proposed[head=deeplabv3plus]"] == ("?", "conventional[head=deeplabv3]")
    assert marks["proposed[head=deeplabv3]"] == ("", None)  # dominates nothing
    effects = {(e["kind"], e["axis"]): e for e in data["effects"]}
    variant = effects[("main", "variant")]
    assert variant["estimate"] == pytest.approx(-2.75)  # seed 0 alone
    assert (variant["ci_low"], variant["p_adj"], variant["verdict"]) == \
        (None, None, "inconclusive (n=1)")
    assert (variant["metric"], variant["unit"], variant["family"]) == ("miou", "mIoU points", 3)
    assert variant["configs"] == ["proposed[head=deeplabv3plus]", "proposed[head=deeplabv3]",
                                  "conventional[head=deeplabv3plus]", "conventional[head=deeplabv3]"]


def test_alpha_is_checked(db):
    result = report(db, "--effects", "--alpha", "0")
    assert result.exit_code == 2 and "--alpha" in result.output


def test_effects_where_nothing_matches_is_no_traceback(db):
    result = report(db, "--effects", "--where", "model.head=fcn", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "No finished trial matches --where model.head=fcn; no trial has" in result.output


def test_forest_writes_the_effect_figures_and_pareto_alone_does_not(db, tmp_path):
    out = tmp_path / "figs"
    result = report(db, "--study", "mnv3_mini", "--forest", "--out", str(out))
    assert result.exit_code == 0, result.output
    stems = ("forest", "improvement", "seeds")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{ext}" for s in stems for ext in ("png", "svg"))
    assert "effects of each axis on mIoU" in result.output  # --forest implies --effects
    both = tmp_path / "both"
    result = report(db, "--study", "mnv3_mini", "--effects", "--pareto", "--out", str(both))
    assert result.exit_code == 0, result.output
    assert {f"{s}.png" for s in stems} <= {p.name for p in both.iterdir()}
    plain = tmp_path / "plain"
    result = report(db, "--study", "mnv3_mini", "--pareto", "--out", str(plain))
    assert result.exit_code == 0, result.output
    assert not any(p.name.startswith(stems) for p in plain.iterdir())


def test_effects_json_has_improvement_seeds_and_per_class_effects(db, tmp_path):
    """The fake store's class IoUs are mIoU + 0.2, - 0.1, - 0.1: every class changes as
    mIoU does, -2 points for the variant (seed 0: -2.75, seed 1: -1.25)."""
    result = report(db, "--study", "mnv3_mini", "--effects", "--per-class", "--json", "--out",
                    str(tmp_path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # "wrote" lines (heat maps) go to stderr
    variant = {(e["kind"], e["axis"]): e for e in data["effects"]}[("main", "variant")]
    assert variant["seeds"] == [0, 1]
    assert variant["seed_diffs"] == pytest.approx([-2.75, -1.25])
    # every proposed run loses to every conventional run of the same head
    assert (variant["p_improve"], variant["p_improve_low"], variant["p_improve_high"]) == (
        0.0, 0.0, 0.0)
    classes = [r for r in data["per_class_effects"] if r["axis"] == "variant"]
    assert [r["class"] for r in classes] == ["background", "circle", "square"]
    assert [r["estimate"] for r in classes] == pytest.approx([-2.0, -2.0, -2.0])
    assert {r["family"] for r in classes} == {6}  # 3 classes x 2 main effects
    assert {r["excludes_zero"] for r in classes} == {False}


def test_per_class_effects_table_in_markdown(db, tmp_path):
    result = report(db, "--study", "mnv3_mini", "--effects", "--per-class", "--format",
                    "markdown", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "## mnv3_mini: effect of each axis on the IoU of each class" in result.output
    lines = [line for line in result.output.splitlines()
             if line.startswith("| variant | conventional -> proposed | circle |")]
    assert len(lines) == 1 and "| -2.00 |" in lines[0]
    assert "Bonferroni over the 3 classes x 2 main effects" in result.output


def test_an_axis_keeps_its_direction_when_its_first_configuration_is_not_shown(db, tmp_path):
    """The recipe's head axis runs deeplabv3plus -> deeplabv3. Without
    conventional[head=deeplabv3plus] (left out by --where, or every trial of it failed) the
    first configuration left has deeplabv3: the levels followed the shown rows, and the
    same axis read deeplabv3 -> deeplabv3plus with the sign turned. Only the proposed cell
    has both heads: 55 - 59.5 and 57 - 58.5, so -3."""
    result = report(db, "--study", "mnv3_mini", "--where",
                    "config_name!=conventional[head=deeplabv3plus]", "--effects", "--per-class",
                    "--json", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    head = {(e["kind"], e["axis"]): e for e in data["effects"]}[("main", "model.head")]
    assert head["change"] == "deeplabv3plus -> deeplabv3"
    assert head["estimate"] == pytest.approx(-3.0)
    assert head["seed_diffs"] == pytest.approx([-4.5, -1.5])
    classes = [r for r in data["per_class_effects"] if r["axis"] == "model.head"]
    assert {r["change"] for r in classes} == {"deeplabv3plus -> deeplabv3"}
    assert [r["estimate"] for r in classes] == pytest.approx([-3.0, -3.0, -3.0])


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _files(folder) -> list[str]:
    """Every file and folder under ``folder`` but the database's own (r.db, -wal, -shm)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if not p.name.startswith("r.db"))


def _refused(db, tmp_path, *args, message, usage=False):
    """Exit 2, the one line ``message`` (nothing printed before it; a usage error's ends
    with where to look), no traceback, the database's bytes and the folder's files as they
    were."""
    before, files = _digest(db), _files(tmp_path)
    result = report(db, *args)
    assert result.exit_code == 2, result.output
    end = f" (see {main.name} report --help)" if usage else ""
    assert result.output == f"Error: {message}{end}\n"
    assert _digest(db) == before
    assert _files(tmp_path) == files
    return result


@pytest.mark.parametrize("args", [
    ["--format", "html"], ["--format", "latex"], ["--pareto"], ["--per-class"], ["--curves"],
    ["--effects", "--forest"], ["--x", "params", "--format", "json"],
])
def test_an_out_folder_that_cannot_be_created_is_one_line(db, tmp_path, args):
    (tmp_path / "afile").write_text("hi\n")
    out = tmp_path / "afile" / "sub"
    _refused(db, tmp_path, "--study", "mnv3_mini", "--out", str(out), *args,
             message=f"--out {out}: cannot create the folder: Not a directory "
                     "(nothing was written)")


def test_an_out_folder_the_system_refuses(db, tmp_path):
    _refused(db, tmp_path, "--format", "html", "--out", "/proc/ablate-report",
             message="--out /proc/ablate-report: cannot create the folder: No such file or "
                     "directory (nothing was written)")


def test_a_failed_report_leaves_no_folder_behind(db, tmp_path):
    out = tmp_path / "new" / "deeper"
    result = report(db, "--pareto", "--where", "nope=1", "--out", str(out))
    assert result.exit_code == 2 and "Error: --where: no column 'nope'" in result.output
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("args,name", [
    (["--format", "html"], "report.html"),
    (["--study", "mnv3_mini", "--per-class"], "per_class_iou.svg"),
])
def test_a_report_file_that_is_the_database_is_refused(tmp_path, args, name):
    (tmp_path / "o").mkdir()
    db = tmp_path / "o" / name
    fill(f"sqlite:///{db}")
    before = _digest(db)
    result = report(str(db), *args, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert result.output == (f"Error: --out {tmp_path / 'o'}: the report would write {db}, "
                             "which is the results database; give another folder (nothing "
                             "was written)\n")
    assert _digest(db) == before
    assert [p.name for p in (tmp_path / "o").iterdir() if p.name != name
            and not p.name.startswith(name + "-")] == []


@pytest.mark.parametrize("args,message", [
    (["--min-effect", "1"], "--min-effect needs --effects (or --forest)"),
    (["--curves-by", "trial"], "--curves-by needs --curves"),
    (["--curves-x", "step", "--pareto"], "--curves-x needs --curves"),
    (["--log-x", "--per-class"], "--log-x needs --pareto or --x COLUMN (or --format html)"),
    (["--estimates", "--effects"], "--estimates and --effects contradict each other: "
                                   "--estimates shows each run's time estimate instead of the "
                                   "tables and figures"),
    (["--estimates", "--json", "--where", "seed=1"], "--estimates and --where contradict each "
                                                     "other: --estimates shows each run's time "
                                                     "estimate instead of the tables and figures"),
    (["--estimates", "--out", "elsewhere"], "--estimates and --out contradict each other: "
                                            "--estimates shows each run's time estimate "
                                            "instead of the tables and figures"),
    (["--effects", "--format", "csv"], "--effects and --format csv contradict each other: the "
                                       "CSV holds the configurations only; use --format json "
                                       "(or markdown, html, latex) for the effects"),
    (["--effects", "--min-effect", "1", "--format", "csv"],
     "--effects and --format csv contradict each other: the CSV holds the configurations "
     "only; use --format json (or markdown, html, latex) for the effects"),
])
def test_an_option_that_would_be_ignored_is_refused(db, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    _refused(db, tmp_path, *args, message=message, usage=True)


def test_the_options_that_need_another_work_with_it(db, tmp_path):
    result = report(db, "--study", "mnv3_mini", "--forest", "--min-effect", "1", "--format",
                    "json", "--out", str(tmp_path / "f"))
    assert result.exit_code == 0, result.output
    assert "forest.svg" in result.stderr
    result = report(db, "--study", "mnv3_mini", "--estimates", "--json")
    assert result.exit_code == 0, result.output
    # --effects with a CSV counts where a figure draws them (the forest, the class heat map)
    for figure in ("--pareto", "--per-class"):
        result = report(db, "--study", "mnv3_mini", "--effects", figure, "--format", "csv",
                        "--out", str(tmp_path / "c"))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("study,config_name,")
    assert {"forest.png", "class_effects.png"} <= {p.name for p in (tmp_path / "c").iterdir()}


def test_x_on_a_cost_no_configuration_has_says_so(tmp_path):
    """FLOPs not counted (eval.flops = false): the study's gflops column holds None. --x
    gflops said "no numeric column 'gflops'" and offered latency_ms, refused in its turn
    with the reason; gflops gets that reason too."""
    from ablate.store import Store
    from tests.report.fake_store import FLAGS, add_study

    db = tmp_path / "noflops.db"
    add_study(Store(f"sqlite:///{db}"), FLAGS, "flags",
              {"channels_last=true": (1_000, None, [(0.5, 1.0)]),
               "channels_last=false": (1_000, None, [(0.6, 1.0)])})
    result = report(str(db), "--x", "gflops", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.output == ("Error: --x gflops: no configuration has a value (not counted: "
                             "eval.flops = false?); columns with values: miou_mean, pixel_acc, "
                             "params, latency_ms, preemptions\n")


def test_miou_names_the_measured_mean_not_the_published_figure(db):
    """``--sort miou`` sorted by the published mIoU where a study has one (and was no
    column where none has): the table's mIoU is the measured mean."""
    import json

    def order(key):
        return [(r["config_name"], r["miou_mean"])
                for r in json.loads(report(db, "--sort", key, "--json").output)]

    assert order("miou") == order("miou_mean") == [
        ("base", 50.0), ("proposed[head=deeplabv3]", 56.0), ("conventional[head=deeplabv3]", 58.0),
        ("proposed[head=deeplabv3plus]", 59.0), ("conventional[head=deeplabv3plus]", 61.0)]
    # published 59.54 for both proposed rows, 62.24 for both conventional ones, none for base
    assert [name for name, _ in order("published_miou")] == [
        "proposed[head=deeplabv3plus]", "proposed[head=deeplabv3]",
        "conventional[head=deeplabv3plus]", "conventional[head=deeplabv3]", "base"]

