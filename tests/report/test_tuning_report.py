"""What a report shows of a tuned study, on a study written straight into a store (no
training) with figures checked by hand.

Configurations a and b (variants), 4 shared draws of train.lr, tuning seed 100, study
seeds 0 and 1. Selection mIoU (%) per draw:

    a: 40, 50, 30, 20          -> draw 1 chosen
    b: 45, 35, failed, 55      -> draw 3 chosen

Confirmation mIoU: a 50, 52; b 49, 50 -> a -> b: -1.5 points. Effect at each draw (b - a
on the tuning trials): +5, -15, none (b failed), +35: 1 of 3 agree in sign with -1.5.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.dispatch.tuning import select
from ablate.recipes.loader import parse_recipe
from ablate.report.build import build_report
from ablate.report.latex import to_latex
from ablate.report.tuning import tuning_json, tuning_tables
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult
from ablate.trials.tuning import pin, plan_tuning
from tests.report.fake_store import result

RECIPE = """
name = "tuned"
seeds = [0, 1]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
[base.data]
name = "shapes"
classes = 3
[variants.a]
model.keep_last_expansion = true
[variants.b]
model.keep_last_expansion = false
[tune]
budget = 4
seeds = [100]
"train.lr" = { log_uniform = [1e-4, 1.0] }
"""
SELECTION = {"a": [0.40, 0.50, 0.30, 0.20], "b": [0.45, 0.35, None, 0.55]}
CONFIRMATION = {"a": [0.50, 0.52], "b": [0.49, 0.50]}


@pytest.fixture
def tuned(tmp_path):
    return tuned_study(tmp_path, RECIPE)


def tuned_study(tmp_path, text: str):
    """The study of the module's docstring, tuned over ``text``'s [tune] ranges."""
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    recipe = parse_recipe(text, "tuned.toml")
    plan = plan_tuning(recipe)
    store.upsert_study("tuned", "", "tuned.toml", text)
    store.set_study_tuning("tuned", {"version": 1, "setup": json.loads(json.dumps(plan.to_json())),
                                     "selection": None})
    store.register_trials("tuned", plan.trials)
    for t in plan.trials:
        miou = SELECTION[t.config_name][t.tuning_draw]
        data = ({**result("tuned", t, 0.0, 1.0), "status": "failed", "final": {},
                 "error": "TrialFailed: loss became nan"} if miou is None
                else result("tuned", t, miou, 1.0))
        store.record(TrialResult.from_json({"format": 1, **data}))
    selection = select(store, "tuned", plan)
    assert selection["chosen"] == {"a": 1, "b": 3}
    store.set_study_tuning("tuned", {**store.study_tunings()["tuned"], "selection": selection})
    confirm = expand(pin(recipe, {c: plan.draws[j] for c, j in selection["chosen"].items()}))
    store.register_trials("tuned", confirm)
    for t in confirm:
        store.record(TrialResult.from_json(
            {"format": 1, **result("tuned", t, CONFIRMATION[t.config_name][t.seed], 1.0)}))
    return store, plan


def test_the_report_reads_effects_on_confirmations_and_shows_the_tuning(tuned):
    store, plan = tuned
    report = build_report(store, ["tuned"], effects=True)
    assert sorted(report.trials["name"]) == ["a/seed=0", "a/seed=1", "b/seed=0", "b/seed=1"]
    (effect,) = report.effects.to_dict("records")
    assert effect["change"] == "a -> b"
    assert effect["estimate"] == pytest.approx(-1.5)
    assert effect["method"].endswith("; tuned (best of 4 draws)")

    view = tuning_json(report.tuning)["tuned"]
    assert {c: v["draw"] for c, v in view["chosen"].items()} == {"a": 1, "b": 3}
    assert view["chosen"]["b"]["values"] == plan.draws[3]
    assert view["scores"] == {"a": pytest.approx([40, 50, 30, 20]),
                              "b": [pytest.approx(45), pytest.approx(35), None, pytest.approx(55)]}
    curve = {(r["config"], r["draws"]): r["expected"] for r in view["curves"]}
    assert curve[("a", 1)] == pytest.approx(35.0)  # the mean of the four
    assert curve[("a", 2)] == pytest.approx(260 / 6)  # best of each of the 6 pairs
    assert curve[("a", 4)] == pytest.approx(50.0)
    assert curve[("b", 1)] is None  # one draw could be the failed one
    assert curve[("b", 2)] == pytest.approx(290 / 6)
    # the band is cut to the scores' range: at n = 2 the mean 43.3 plus its sd 7.5 would
    # pass the best score, 50; the estimator's words say so (they read "± one sd" alone)
    high = {(r["config"], r["draws"]): r["high"] for r in view["curves"]}
    assert high[("a", 2)] == pytest.approx(50.0)
    assert "within the lowest and highest score" in view["curve_estimator"]
    (per_draw,) = view["draw_effects"]
    assert [per_draw[f"draw_{j}"] for j in range(4)] == [
        pytest.approx(5.0), pytest.approx(-15.0), None, pytest.approx(35.0)]
    assert (per_draw["agree"], per_draw["of"]) == (1, 3)


def test_an_extreme_draw_far_from_the_range_s_end_asks_for_more_draws(tuned):
    """0.1034 is the highest of the draws but a decade below the range's top, 1.0: a
    quarter of the range on the log scale the draws are spread on. Widening the range would
    not look where no draw fell; more draws would (it said "widen it")."""
    store, plan = tuned
    # the draws are 0.004363, 0.1034, 0.01737, 0.0004109: a's choice is the highest, b's
    # the lowest; log10(1 / 0.1034) / 4 = 0.246, log10(0.0004109 / 1e-4) / 4 = 0.153
    assert [d["train.lr"] for d in plan.draws] == [0.004363, 0.1034, 0.01737, 0.0004109]
    report = build_report(store, ["tuned"], effects=True)
    edges = tuning_json(report.tuning)["tuned"]["edges"]
    assert [(e["config"], e["key"], e["side"], e["advice"]) for e in edges] == [
        ("a", "train.lr", "highest", "more draws"), ("b", "train.lr", "lowest", "more draws")]
    assert [e["range_gap"] for e in edges] == [pytest.approx(0.2464, abs=1e-4),
                                               pytest.approx(0.1535, abs=1e-4)]
    notes = tuning_tables(report.tuning)[0].notes
    assert notes[1:] == [
        "⚠ a: train.lr = 0.1034 is the highest value drawn but 25% of the range (on a log "
        "scale) from its top, 1: the best may lie in between, where no draw fell; more draws "
        "([tune] budget) look there.",
        "⚠ b: train.lr = 0.0004109 is the lowest value drawn but 15% of the range (on a log "
        "scale) from its bottom, 0.0001: the best may lie in between, where no draw fell; "
        "more draws ([tune] budget) look there."]


def test_an_extreme_draw_at_the_range_s_end_warns_to_widen_it(tmp_path):
    """The same draws on an int range [1, 4]: 4, 2, 3, 1; a's choice is the top, b's the
    bottom."""
    text = RECIPE.replace('"train.lr" = { log_uniform = [1e-4, 1.0] }',
                          '"train.batch_size" = { int = [1, 4] }')
    store, plan = tuned_study(tmp_path, text)
    assert [d["train.batch_size"] for d in plan.draws] == [2, 4, 3, 1]
    report = build_report(store, ["tuned"], effects=True)
    edges = tuning_json(report.tuning)["tuned"]["edges"]
    assert [(e["config"], e["side"], e["range_gap"], e["advice"]) for e in edges] == [
        ("a", "highest", 0.0, "widen the range"), ("b", "lowest", 0.0, "widen the range")]
    assert tuning_tables(report.tuning)[0].notes[1:] == [
        "⚠ a: train.batch_size = 4 is the highest value drawn, at the range's end: the best "
        "may lie above the range; widen it.",
        "⚠ b: train.batch_size = 1 is the lowest value drawn, at the range's end: the best "
        "may lie below the range; widen it."]


def test_table_json_and_latex_show_the_chosen_values(tuned, tmp_path):
    store, plan = tuned
    report = build_report(store, ["tuned"], effects=True)
    chosen = tuning_tables(report.tuning)[0]
    assert chosen.title == "tuned: tuned configurations"
    assert [c.header for c in chosen.columns] == [
        "configuration", "train.lr (chosen)", "draw", "mIoU at the draw (%)", "failed draws"]
    assert chosen.columns[1].cells == [f"{plan.draws[1]['train.lr']:.4g}",
                                       f"{plan.draws[3]['train.lr']:.4g}"]
    assert chosen.columns[4].cells == ["0", "1"]
    latex = to_latex(report.configs, report.effects, report.tuning)
    assert "each configuration tuned with the same 4 draws" in latex
    assert f"b & {plan.draws[3]['train.lr']:.4g} & 3 & 55.00 & 1" in latex


def test_a_chosen_boolean_reads_true_false_in_the_tables_and_latex():
    import pandas as pd

    from ablate.report.latex import tuned_table
    from ablate.report.tuning import TuningView, chosen_table

    view = TuningView("s", "best of 2 draws", "miou", "validation",
                      {"train.channels_last": {"choice": [True, False]}},
                      [{"train.channels_last": True}, {"train.channels_last": False}],
                      {"a": 1}, pd.DataFrame([[40.0, 50.0]], index=["a"]), pd.DataFrame())
    table = chosen_table(view)
    assert table.columns[1].cells == ["false"]
    assert "Ranges: train.channels_last: choice of true, false." in table.notes[0]
    assert r"a & false & 1 & 50.00 & 0 \\" in tuned_table(view)


def test_html_has_the_tuning_section_and_its_figure(tuned, tmp_path):
    out = CliRunner().invoke(main, ["report", "--db", str(tmp_path / "t.db"), "--study",
                                    "tuned", "--effects", "--format", "html",
                                    "--out", str(tmp_path / "html")])
    assert out.exit_code == 0, out.output
    page = (tmp_path / "html" / "report.html").read_text()
    section = page[page.index("Tuning (each configuration tuned with the same draws)"):]
    assert "tuned: tuning curves (mIoU %, expected best of n draws)" in section
    assert "1 of 3" in section  # draws agreeing with the tuned effect
    assert "data:image/svg+xml;base64," in section  # the tuning-curve figure, inline


def test_a_study_still_tuning_is_not_reported_as_having_no_finished_trial(tmp_path):
    # one tuning trial done, no selection yet: the report said "No finished trials in the
    # database yet", while 'ablate status' listed the done trial
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    plan = plan_tuning(parse_recipe(RECIPE, "tuned.toml"))
    store.upsert_study("tuned", "", "tuned.toml", RECIPE)
    store.set_study_tuning("tuned", {"version": 1, "selection": None,
                                     "setup": json.loads(json.dumps(plan.to_json()))})
    store.register_trials("tuned", plan.trials)
    store.record(TrialResult.from_json({"format": 1,
                                        **result("tuned", plan.trials[0], 0.4, 1.0)}))
    out = CliRunner().invoke(main, ["report", "--db", store.url, "--study", "tuned"])
    assert out.exit_code == 0, out.output
    assert " ".join(out.output.split()) == (
        "Study 'tuned' has no selection yet ([tune]): its tables read the confirmation "
        "trials, which run once every tuning trial is finished and a draw is chosen for "
        "each configuration ('ablate status tuned' shows the tuning trials; the same "
        "'ablate run' goes on).")
