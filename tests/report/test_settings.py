"""Configurations that hold trials of different settings, and the report's notes.

Study ``tiny`` is run twice under one recipe name: once with ``train.epochs = 1``, then
with ``train.epochs = 2`` (what ``ablate run --set train.epochs=2`` leaves behind). mIoU
by hand (percent, seeds 0 and 1):

| configuration | epochs=1   | epochs=2   |
|---------------|------------|------------|
| image_size=32 | 50, 52: 51 | 70, 74: 72 |
| image_size=48 | 60, 62: 61 | 80, 82: 81 |

Pooled, image_size=32 would read 61.5 with n=4: an average of two experiments.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes.loader import parse_recipe
from ablate.report.build import build_report, curve_figures
from ablate.report.frame import config_frame, trials_frame
from ablate.report.render import config_notes, config_tables, flops_text, per_class_tables
from ablate.store import CostRecord, Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult
from tests.report.fake_store import add_study, result

TINY = """
name = "tiny"
seeds = [0, 1]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "shapes"
classes = 3
train_images = 16
val_images = 8
image_size = 32
[base.train]
epochs = {epochs}
batch_size = 4
[base.eval]
latency = false
[grid]
"data.image_size" = [32, 48]
"""

ONE_EPOCH = {"image_size=32": (1000, 1e9, [(0.50, 1.0), (0.52, 1.0)]),
             "image_size=48": (2000, 2e9, [(0.60, 1.0), (0.62, 1.0)])}
TWO_EPOCHS = {"image_size=32": (1000, 1e9, [(0.70, 1.0), (0.74, 1.0)]),
              "image_size=48": (2000, 2e9, [(0.80, 1.0), (0.82, 1.0)])}


@pytest.fixture
def mixed(tmp_path):
    path = tmp_path / "t.db"
    store = Store(f"sqlite:///{path}")
    add_study(store, TINY.format(epochs=1), "tiny", ONE_EPOCH)
    add_study(store, TINY.format(epochs=2), "tiny", TWO_EPOCHS)
    return store, str(path)


def report(db, *args):
    return CliRunner().invoke(main, ["report", "--db", db, *args])


def test_trials_of_two_settings_are_two_rows_never_pooled(mixed):
    store, _ = mixed
    configs = config_frame(trials_frame(store, settings=True)).set_index("config_name")
    assert sorted(configs.index) == [
        "image_size=32 {train.epochs=1}", "image_size=32 {train.epochs=2}",
        "image_size=48 {train.epochs=1}", "image_size=48 {train.epochs=2}"]
    assert configs["n"].tolist() == [2, 2, 2, 2]
    means = configs["miou_mean"].round(6).to_dict()
    assert means == {"image_size=32 {train.epochs=1}": 51.0, "image_size=48 {train.epochs=1}": 61.0,
                     "image_size=32 {train.epochs=2}": 72.0, "image_size=48 {train.epochs=2}": 81.0}
    assert configs.loc["image_size=32 {train.epochs=2}", "miou_std"] == pytest.approx(
        pd.Series([70.0, 74.0]).std())
    assert configs["axis:train.epochs"].to_dict()["image_size=48 {train.epochs=2}"] == 2
    assert set(configs["recipe_config"]) == {"image_size=32", "image_size=48"}
    assert configs.loc["image_size=48 {train.epochs=1}", "setting"] == "train.epochs=1"


def test_without_settings_the_names_are_the_recipes(mixed):
    store, _ = mixed  # what the --until-decided loop reads: it matches its own trials by name
    trials = trials_frame(store)
    assert set(trials["config_name"]) == {"image_size=32", "image_size=48"}
    assert "setting" not in trials


def test_one_setting_leaves_the_frame_as_it_was(filled):
    trials = trials_frame(filled, settings=True)
    assert "setting" not in trials and "recipe_config" not in trials
    assert "conventional[head=deeplabv3]" in set(trials["config_name"])


def test_the_note_says_which_settings_and_how_to_keep_one(mixed):
    _, db = mixed
    out = report(db, "--format", "markdown")
    assert out.exit_code == 0, out.output
    assert ("image_size=32 holds trials of 2 different settings (train.epochs=1; "
            "train.epochs=2): each is its own row, never pooled; keep one with --where "
            "train.epochs=1 (or another value), or re-run the study with one setting."
            ) in out.output
    kept = report(db, "--where", "train.epochs=2", "--json")
    rows = json.loads(kept.output)
    assert sorted((r["config_name"], r["n"], r["miou_mean"]) for r in rows) == [
        ("image_size=32 {train.epochs=2}", 2, 72.0), ("image_size=48 {train.epochs=2}", 2, 81.0)]
    assert "holds trials" not in report(db, "--where", "train.epochs=2", "--format",
                                        "markdown").output  # one setting left: no note


def test_effects_baseline_and_outputs_with_split_configurations(mixed, tmp_path):
    store, db = mixed
    built = build_report(store, effects=True, baseline="image_size=32 {train.epochs=1}")
    effects = built.effects.set_index("axis")
    # the setting that differs is a factor like an axis: 72 - 51 and 81 - 61, mean 20.5
    assert effects.loc["train.epochs", "estimate"] == pytest.approx(20.5)
    assert effects.loc["data.image_size", "estimate"] == pytest.approx(9.5)
    deltas = built.configs.set_index("config_name")["miou_delta"]
    assert deltas["image_size=32 {train.epochs=2}"] == pytest.approx(21.0)
    for args in (["--format", "csv"], ["--format", "latex", "--out", str(tmp_path)],
                 ["--format", "html", "--per-class", "--curves", "--effects", "--out",
                  str(tmp_path)], ["--pareto", "--per-class", "--out", str(tmp_path)]):
        out = report(db, *args)
        assert out.exit_code == 0, (args, out.output)
    assert "image\\_size=32 \\{train.epochs=2\\}" in (tmp_path / "report.tex").read_text()
    page = (tmp_path / "report.html").read_text()
    assert "image_size=32 {train.epochs=2}" in page and "holds trials of 2" in page


def test_the_effects_note_says_what_p_adj_is_and_why_a_sequential_study_has_none(mixed):
    """The table's 'p (adj.)' column was explained nowhere on screen, and read '—' on every
    row of a study grown by --until-decided."""
    from ablate.report.effects import effects_tables

    effects = build_report(mixed[0], effects=True).effects
    note = effects_tables(effects, 0.05)[0].notes[-1]
    assert "p (adj.): the test's two-sided p times the family size, at most 1." in note
    grown = effects.assign(method="group-sequential (obrien-fleming)", p_adj=float("nan"))
    assert ("at most 1 (—: a group-sequential design's repeated intervals have no "
            "fixed-sample p).") in effects_tables(grown, 0.05)[0].notes[-1]


def test_a_code_edit_is_a_setting_of_its_own(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    text = TINY.format(epochs=1)
    recipe = parse_recipe(text, "tiny.toml")
    trials = [t for t in expand(recipe) if t.config_name == "image_size=32"]
    store.upsert_study("tiny", "", "tiny.toml", text)
    # the same specs under other trial ids: what an edit of the user's code leaves
    later = [type(t)(**{**t.__dict__, "trial_id": t.trial_id[:-1] + "x"}) for t in trials]
    store.register_trials("tiny", trials + later)
    for group, code, mious in ((trials, {"model.builder": {"m.py": "aa"}}, (0.5, 0.52)),
                               (later, {"model.builder": {"m.py": "bb"}}, (0.7, 0.74))):
        for t, miou in zip(group, mious):
            store.put_cost(CostRecord(t.arch_id, 1000, {}, 10**9, None, "fvcore-mac", (32, 32)))
            data = result("tiny", t, miou, 1.0)
            data["environment"] = {"code": code}
            store.record(TrialResult.from_json({"format": 1, **data}))
    configs = config_frame(trials_frame(store, settings=True)).set_index("config_name")
    assert len(configs) == 2 and configs["n"].tolist() == [2, 2]
    assert all(name.startswith("image_size=32 {code=") for name in configs.index)
    assert sorted(configs["miou_mean"].round(6)) == [51.0, 72.0]


def test_untestable_pareto_lead_says_why(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    add_study(store, TINY.format(epochs=1), "tiny", {  # identical on every seed: no spread
        "image_size=32": (1000, 1e9, [(0.50, 1.0), (0.50, 1.0)]),
        "image_size=48": (2000, 2e9, [(0.40, 1.0), (0.40, 1.0)])})
    built = build_report(store)
    notes = config_notes(built.configs)
    assert ("★? image_size=32: its mIoU lead over image_size=48, which it dominates, is not "
            "testable: every seed gave the same difference (no spread), so no interval can be "
            "formed.") in notes
    one = Store(f"sqlite:///{tmp_path / 'q.db'}")
    add_study(one, TINY.format(epochs=1).replace("[0, 1]", "[0]"), "tiny", {
        "image_size=32": (1000, 1e9, [(0.50, 1.0)]), "image_size=48": (2000, 2e9, [(0.40, 1.0)])})
    assert ("★? image_size=32: its mIoU lead over image_size=48, which it dominates, is not "
            "testable with fewer than two seeds a side.") in config_notes(build_report(one).configs)


def test_flops_note_names_every_resolution_and_flops_that_were_not_counted():
    rows = pd.DataFrame({"gflops": [1.0, 2.0], "flops_convention": ["fvcore-mac"] * 2,
                         "resolution": ["32x32", "48x48"]})
    assert flops_text(rows) == "fvcore-mac at each row's resolution (32x32, 48x48)"
    assert flops_text(rows.iloc[:1]) == "fvcore-mac at 32x32"
    off = pd.DataFrame({"gflops": [float("nan")], "flops_convention": [None],
                        "resolution": ["32x32"]})
    assert flops_text(off) == "not counted (eval.flops = false)"
    assert "None" not in flops_text(off)


def test_configurations_whose_every_trial_failed_are_named(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    trials = add_study(store, TINY.format(epochs=1), "tiny",
                       {"image_size=32": ONE_EPOCH["image_size=32"]})
    for t in trials:
        if t.config_name == "image_size=48":
            store.record(TrialResult.from_json({
                "format": 1, "study": "tiny", "trial_id": t.trial_id, "status": "failed",
                "error": "boom", "final": {}, "epochs": []}))
    built = build_report(store)
    (table,) = config_tables(built.configs, built.trials)
    assert table.notes[-1] == ("Not shown, every trial failed: image_size=48 (2 failed trials); "
                               "see why with: ablate status tiny")


def test_per_class_table_has_configurations_as_rows(filled):
    configs = config_frame(trials_frame(filled, per_class=True))
    (table, *_) = per_class_tables(configs)
    assert table.columns[0].header == "configuration"
    assert [c.header for c in table.columns[1:]] == ["background", "circle", "square"]
    assert "conventional[head=deeplabv3plus]" in table.columns[0].cells  # never cut


def test_one_epoch_curves_say_so(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'e.db'}")
    trials = add_study(store, TINY.format(epochs=1), "tiny", {})
    for t in trials:
        store.put_cost(CostRecord(t.arch_id, 1000, {}, 10**9, None, "fvcore-mac", (32, 32)))
        store.record(TrialResult.from_json({"format": 1, **result("tiny", t, 0.5, 1.0,
                                                                  epochs=1)}))
    (figure,) = curve_figures(store, build_report(store))
    assert figure.note == (
        "--curves: every trial ran one epoch, so each curve is a single point (the database "
        "keeps one record per epoch, so --curves-x step has the same one point); for a curve "
        "train more epochs (train.epochs), or see the per-step loss in a tracker "
        "(TensorBoard, MLflow).")
    out = report(str(tmp_path / "e.db"), "--curves", "--out", str(tmp_path / "o"))
    assert out.exit_code == 0 and "note: --curves: every trial ran one epoch" in out.output


def test_a_pareto_row_of_the_same_mean_miou_claims_no_lead(tmp_path):
    """It dominates by its parameters alone: 'its mIoU lead over image_size=48' named a lead
    of 0.00 points (the means are equal), in the terminal's notes and LaTeX's alike."""
    from ablate.report.latex import to_latex

    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    add_study(store, TINY.format(epochs=1), "tiny", {
        "image_size=32": (1000, 1e9, [(0.50, 1.0), (0.40, 1.0)]),
        "image_size=48": (2000, 2e9, [(0.40, 1.0), (0.50, 1.0)])})
    built = build_report(store)
    assert "★≈ image_size=32: no mIoU lead (the same mean mIoU), fewer parameters than " \
        "image_size=48." in config_notes(built.configs)
    latex = to_latex(built.configs, built.effects, built.tuning, built.alpha)
    assert "no mIoU lead (the same mean mIoU), fewer parameters than" in latex
    assert "lead over" not in latex
