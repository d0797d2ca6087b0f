"""A tuned study's two phases (``[tune]``), run by the study runner.

1. **Tuning**: every configuration trains the same ``budget`` draws of the nuisance keys
   on the tuning seeds (``ablate.trials.tuning``), evaluated on a held-out slice of the
   training set (or the validation set, with ``select_on = "validation"``).
2. **Selection**: once every tuning trial is finished, each configuration's best draw by
   mean selection metric (``ablate.analysis.tuning``). Before it, each tuning trial that
   failed in this run's tuning round is run once more, unless its error is known to be
   deterministic (a diverged loss, a setting refused at train time) or ``--skip-failed``
   accepts failures: a killed worker or an out-of-memory on a shared GPU says nothing of
   its draw, and would cut its configuration's tuning budget. A tuning trial still failed
   is a failed draw: its draw has no score and is never chosen. The selection is
   recorded with the study, so it never changes afterwards: later runs, ``--until-decided``
   rounds and reports read the recorded one (failed tuning trials are not retried once it
   is made).
3. **Confirmation**: each configuration at its chosen draw on the study's ``seeds``,
   as ordinary trials; the study's effects are read on these only (fresh seeds, and the
   study's own evaluation set), and ``--until-decided`` grows them like any study.

The set-up (the section, the draws and which trial trains each cell) is recorded with
the study before the first tuning trial runs. A later run whose set-up differs (an
edited ``[tune]``, another draw, and once the selection is recorded a recipe, ``--set``
or user-code change that alters a tuning trial) is refused with one line: its draws
would mix with the recorded ones. Before the selection, a change of what a tuning trial
trains (the model's code fixed after every draw of a configuration failed) makes the
changed cells new trials, as in any study, and the selection reads those. A study
recorded without ``[tune]`` cannot gain one, nor a tuned study lose it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ablate.dispatch import prepare
from ablate.dispatch.adaptive import Round, run_until_decided
from ablate.dispatch.claiming import runner_report
from ablate.dispatch.events import (
    DrawsChosen,
    RunnerReport,
    RunSummary,
    TuningRetried,
    TuningStarted,
    TuningStopped,
    TuningWaiting,
)
from ablate.errors import RecipeError, UserInputError, one_line
from ablate.trials.expand import Trial, expand
from ablate.trials.lifecycle import TrialStatus
from ablate.trials.tuning import TuningPlan, pin, plan_tuning

if TYPE_CHECKING:
    from ablate.recipes.loader import Recipe

RECORD_VERSION = 1
# stored errors (``TrialResult.error``: "Type: message") that a second attempt would repeat:
# the loss diverging (``train.loop.finite_mean``) and a setting refused at train time (a
# drawn batch size larger than the training set)
DETERMINISTIC_ERRORS = ("TrialFailed: loss became", "UserInputError:")


def tuning_plan(recipe: Recipe, overrides: dict | None) -> TuningPlan | None:
    """The recipe's tuning phase (None: not tuned); sizes were checked when it was loaded."""
    return plan_tuning(recipe, overrides, max_trials=None) if recipe.tune is not None else None


def check_recorded(store, recipe: Recipe, plan: TuningPlan | None) -> dict | None:
    """The study's recorded tuning; refuses, before anything runs, what would mix draws:
    a set-up other than the recorded one, a tuned recipe on a study trained without
    ``[tune]`` and the other way round."""
    name = recipe.name
    recorded = store.study_tunings([name]).get(name)
    if plan is None:
        if recorded is not None:
            raise RecipeError(recipe.path, f"study {name!r} was tuned (its [tune] section is "
                              "recorded with it); run it with that section, or give this "
                              "recipe another name", "tune")
        return None
    if recorded is None:
        if store.statuses(name):
            raise RecipeError(recipe.path, f"study {name!r} was recorded without [tune]: its "
                              "trials trained at one shared setting and would mix with the "
                              "tuned ones; give the tuned recipe another name", "tune")
        return None
    before, setup = recorded.get("setup", {}), _plain(plan.to_json())
    change = what_changed(before, setup)
    if (change and recorded.get("selection") is None
            and not what_changed({**before, "cells": None}, {**setup, "cells": None})):
        # the same section and draws, other tuning trials (the model's code fixed, a recipe
        # change outside [tune]) before any selection: nothing has read the old trials yet,
        # so the changed cells are new trials, as in any study (``run_tuned`` records them)
        return recorded
    if change:
        raise RecipeError(recipe.path, f"study {name!r} was tuned with another set-up "
                          f"({change}); its draws and selection hold for that set-up only. "
                          "Restore it, or give the study a new name", "tune")
    return recorded


def what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first difference between two recorded set-ups, in words ("" when equal)."""
    before, after = old.get("section", {}), new.get("section", {})
    for key in dict.fromkeys([*before, *after]):
        if before.get(key) != after.get(key):
            return (f"tune.{key}: {_short(before.get(key))} -> {_short(after.get(key))}"
                    if key != "ranges" else _range_change(before.get(key, {}),
                                                          after.get(key, {})))
    if old.get("draws") != new.get("draws"):
        return "the same section drew other values (another scipy?)"
    if old.get("cells") != new.get("cells"):
        return "the recipe or --set changed what a tuning trial trains"
    return ""


def _range_change(before: dict, after: dict) -> str:
    for key in dict.fromkeys([*before, *after]):
        if before.get(key) != after.get(key):
            return f'tune."{key}": {_short(before.get(key))} -> {_short(after.get(key))}'
    return "the order of the nuisance keys"


def _short(value: Any) -> str:
    text = "unset" if value is None else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(data: Any) -> Any:
    """As it reads back from the database's JSON column (tuples become lists)."""
    return json.loads(json.dumps(data))


def check_selected(plan: TuningPlan, trials: list[Trial], source: str = "the recipe") -> None:
    """A tuned study runs whole: a selection needs every configuration's draws."""
    if {t.trial_id for t in trials} != {t.trial_id for t in plan.trials}:
        raise UserInputError(f"{source}: --trial/--variant: a tuned study ([tune]) runs every "
                             "tuning trial; the selection compares them all")


def scores_frame(store, study: str, plan: TuningPlan):
    """``config, draw, seed, value``: each cell's selection metric (percent; NaN: its trial
    failed or has not finished)."""
    import numpy as np  # lazy: loads numpy
    import pandas as pd  # lazy: loads pandas

    from ablate.report.frame import trials_frame  # lazy: loads numpy, pandas, sqlalchemy

    metric = plan.tune.settings.metric
    frame = trials_frame(store, [study], keys=[metric], tuning=True)
    done = frame["status"] == TrialStatus.DONE
    value = dict(zip(frame["trial_id"], np.where(done, frame[metric], np.nan)))
    return pd.DataFrame([{"config": c, "draw": d, "seed": s, "value": value.get(t, np.nan)}
                         for c, d, s, t in plan.cells])


def select(store, study: str, plan: TuningPlan) -> dict[str, Any]:
    """Each configuration's best draw, as recorded with the study (raises ``NoDrawLeft``)."""
    from ablate.analysis.tuning import choose, draw_scores  # lazy: loads numpy, pandas

    scores = draw_scores(scores_frame(store, study, plan))
    chosen = choose(scores)
    return {"metric": plan.tune.settings.metric, "chosen": chosen,
            "scores": {str(c): [None if v != v else float(v) for v in row]
                       for c, row in zip(scores.index, scores.to_numpy(dtype=float))}}


@dataclass
class TunedRun:
    """What ``run_tuned`` ran: the confirmation round (empty while the tuning phase is
    unfinished), the tuning round (None when the selection was recorded before) and the
    ``--until-decided`` rounds."""

    summary: RunSummary
    tuning: RunSummary | None = None
    rounds: list[Round] = field(default_factory=list)


def run_tuned(runner, recipe: Recipe, trials: list[Trial], overrides: dict, start,
              plan: TuningPlan, recorded: dict | None, guard=None) -> TunedRun:
    """Both phases on ``runner`` (a ``StudyRunner``), then ``start``'s ``--until-decided``
    rounds (a ``LoopStart``, or None) on the confirmation trials, each round first asking
    ``guard`` (``--budget``'s, or None). ``recorded`` is ``check_recorded``'s and
    ``trials`` passed ``check_selected``."""
    store, emit, force = runner.store, runner.emit, runner.options.force
    # every tuning trial's model is built before the study and its set-up are recorded:
    # a set-up recorded by a run that stops here would refuse the recipe's fix
    prepare.costs_for(store, plan.trials, source=recipe.path, tune=recipe.tune)
    store.upsert_study(recipe.name, recipe.description, recipe.path, recipe.text)
    setup = _plain(plan.to_json())
    if recorded is None or recorded["setup"] != setup:  # new, or new cells before a selection
        recorded = {"version": RECORD_VERSION, "setup": setup, "selection": None}
        store.set_study_tuning(recipe.name, recorded)
    selection, tuning, fresh = recorded.get("selection"), None, False
    if selection is None:
        emit(TuningStarted(recipe.name, plan.tune.describe(), len(plan.draws),
                           len(plan.configs), len(plan.trials),
                           len(plan.tune.settings.seeds)))
        tuning = runner.run(recipe, plan.trials, force=force)
        emit(RunnerReport(tuple(runner_report(store, recipe.name, tuning))))
        if tuning.unclaimed:  # the claim's database error: the next run retries
            return TunedRun(RunSummary(total=0, unclaimed=dict(tuning.unclaimed)), tuning)
        unfinished = _unfinished(store, recipe.name, plan)
        if unfinished:
            emit(TuningWaiting(unfinished))
            return TunedRun(RunSummary(total=0), tuning)
        retry = ([] if runner.options.skip_failed  # --skip-failed: failures are accepted
                 else retried_failures(store, recipe.name, plan, tuning.failed))
        if retry:  # once, in this run: the selection is never redone
            emit(TuningRetried(len(retry), _error_kinds(r.error for r in retry)))
            ids = {r.trial_id for r in retry}
            again = runner.run(recipe, [t for t in plan.trials if t.trial_id in ids],
                               force=force)
            emit(RunnerReport(tuple(runner_report(store, recipe.name, again))))
            tuning = _merged(tuning, again)
            if again.unclaimed:
                return TunedRun(RunSummary(total=0, unclaimed=dict(again.unclaimed)), tuning)
            unfinished = _unfinished(store, recipe.name, plan)
            if unfinished:  # held by another runner meanwhile
                emit(TuningWaiting(unfinished))
                return TunedRun(RunSummary(total=0), tuning)
        from ablate.analysis.tuning import NoDrawLeft  # lazy: loads numpy, pandas

        try:
            selection = select(store, recipe.name, plan)
        except NoDrawLeft as err:
            emit(TuningStopped(str(err)))
            statuses = store.statuses(recipe.name)
            failed = [t.trial_id for t in plan.trials
                      if statuses[t.trial_id] == TrialStatus.FAILED]
            return TunedRun(RunSummary(total=0, failed=failed), tuning)
        store.set_study_tuning(recipe.name, {**recorded, "selection": selection})
        fresh = True
    chosen = {c: plan.draws[j] for c, j in selection["chosen"].items()}
    emit(DrawsChosen({c: (j, plan.draws[j], selection["scores"][c][j])
                      for c, j in selection["chosen"].items()}, selection["metric"], fresh,
                     {c: sum(v is None for v in row) for c, row in selection["scores"].items()},
                     len(plan.draws)))
    confirm = pin(recipe, chosen)
    summary = runner.run(confirm, expand(confirm, overrides, max_trials=None), force=force)
    emit(RunnerReport(tuple(runner_report(store, recipe.name, summary))))
    run = TunedRun(summary, tuning)
    if start is not None and not summary.failed and not summary.unclaimed:
        start = dataclasses.replace(start, recipe=pin(start.recipe, chosen))
        run.rounds = run_until_decided(start, store, runner.run, emit=emit, guard=guard)
    return run


def _unfinished(store, study: str, plan: TuningPlan) -> int:
    statuses = store.statuses(study)
    return sum(not statuses[t.trial_id].finished for t in plan.trials)


def retried_failures(store, study: str, plan: TuningPlan, failed: list[str]) -> list:
    """The tuning trials of ``failed`` (this run's tuning round's) to run once more before
    the selection: failed, with an error not known to be deterministic
    (``DETERMINISTIC_ERRORS``)."""
    ids = set(failed) & {t.trial_id for t in plan.trials}
    return [r for r in store.trials(study, with_metrics=False)
            if r.trial_id in ids and r.status == TrialStatus.FAILED
            and not (r.error or "").startswith(DETERMINISTIC_ERRORS)]


def _error_kinds(errors) -> dict[str, int]:
    """Each error's kind (its exception's name, or its first words) -> how many."""
    kinds: dict[str, int] = {}
    for error in errors:
        head = one_line(error or "no error recorded", None)
        name = head.split(": ", 1)[0]
        kind = name if name.replace(".", "_").isidentifier() else one_line(head, 60)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _merged(first: RunSummary, again: RunSummary) -> RunSummary:
    """The tuning round with its retry: the retried trials' new outcomes replace the old."""
    rerun = set(again.done) | set(again.failed)
    return dataclasses.replace(
        first, retried=first.retried + again.retried, done=[*first.done, *again.done],
        failed=[*(t for t in first.failed if t not in rerun), *again.failed],
        recovered=[*first.recovered, *again.recovered], corrupt=[*first.corrupt, *again.corrupt],
        unrecorded=[*first.unrecorded, *again.unrecorded], taken=[*first.taken, *again.taken],
        left={**first.left, **again.left}, interrupted=[*first.interrupted, *again.interrupted],
        unclaimed={**first.unclaimed, **again.unclaimed})


def estimated_trials(store, recipe: Recipe, overrides: dict,
                     plan: TuningPlan) -> tuple[list[Trial], set[str]]:
    """Both phases' trials, as a time estimate (``--budget``, ``ablate plan``) counts them:
    the tuning trials, then the confirmation trials (configurations x seeds); and the ids
    of those that run no more (``settled``). Before the selection is recorded, each
    configuration stands in at its first draw: the same architecture and steps as at its
    chosen one unless a nuisance key changes them."""
    confirm = plan_confirmation(store, recipe, overrides, plan).trials
    if confirm is None:
        first = pin(recipe, {c: plan.draws[0] for c in plan.configs})
        return [*plan.trials, *expand(first, overrides, max_trials=None)], set()
    return [*plan.trials, *confirm], settled(plan)


def settled(plan: TuningPlan) -> set[str]:
    """The trials a run leaves as they are once the selection is recorded: every tuning
    trial (``run_tuned`` goes straight to the confirmation; a failed draw is not retried,
    a done one not rerun even with ``--force``)."""
    return {t.trial_id for t in plan.trials}


@dataclass(frozen=True)
class Confirmation:
    """What ``ablate plan`` shows of a tuned study's second phase: its trials once the
    selection is recorded, else one placeholder name per configuration and seed."""

    trials: list[Trial] | None  # None: waiting on the selection
    waiting: list[tuple[str, str]]  # (name, a tuning trial of its configuration's id)


def plan_confirmation(store, recipe: Recipe, overrides: dict, plan: TuningPlan) -> Confirmation:
    """The confirmation phase as far as the store knows it (``store`` may be None)."""
    recorded = store.study_tunings([recipe.name]).get(recipe.name) if store else None
    if (recorded and recorded.get("selection")
            and not what_changed(recorded.get("setup", {}), _plain(plan.to_json()))):
        chosen = {c: plan.draws[j] for c, j in recorded["selection"]["chosen"].items()}
        return Confirmation(expand(pin(recipe, chosen), overrides, max_trials=None), [])
    seeds = overrides.get("seeds", recipe.seeds)
    first = {}
    for config, _draw, _seed, trial_id in plan.cells:
        first.setdefault(config, trial_id)
    return Confirmation(None, [(f"{c}/seed={s}", first[c]) for c in plan.configs for s in seeds])
