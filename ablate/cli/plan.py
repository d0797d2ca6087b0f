"""``ablate plan``: what a recipe expands to, and what it costs, without training."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

import click

from ablate.cli import main
from ablate.cli.options import (
    db_option,
    echo_ignored_plugins,
    echo_warnings,
    fmt_float,
    fmt_int,
    given,
    json_option,
    make_console,
    max_trials_option,
    option_name,
    recipe_argument,
    set_option,
)
from ablate.cli.text import terminal
from ablate.cli.time_estimate import estimate_options
from ablate.cli.until_decided import check_loop_options, until_decided_options
from ablate.dispatch.preflight import find_problems
from ablate.errors import NoDatabaseError, RecipeError, UserInputError
from ablate.trials.lifecycle import TrialStatus

if TYPE_CHECKING:
    from ablate.recipes.tune import Tune

# A terminal table shows the first and last rows of a large study (rendering 20,000 rows
# with rich takes most of a minute); --json and --format csv give every row.
TABLE_HEAD, TABLE_TAIL = 20, 5
CSV_COLUMNS = ("trial_id", "name", "variant", "status", "seed", "params", "gflops",
               "flops_convention", "resolution", "arch_id", "seconds", "time_source")


@main.command("plan")
@recipe_argument
@db_option
@set_option
@json_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True, help="table: the first and last rows of a large study; "
                                      "json, csv: every row.")
@click.option("--no-cost", is_flag=True,
              help="Skip counting parameters and FLOPs (architectures are still checked).")
@max_trials_option
@click.option("--trial", "trial_ids", multiple=True, metavar="ID",
              help="Only this trial, as ablate run --trial takes it (repeatable).")
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="Only this variant, as ablate run --variant takes it (repeatable).")
@estimate_options
@until_decided_options
def plan(recipe: str, db: str | None, assignments: tuple[str, ...], as_json: bool, fmt: str,
         no_cost: bool, max_trials: int, trial_ids: tuple[str, ...], variants: tuple[str, ...],
         **estimate_flags) -> None:
    """Dry run: list every trial of RECIPE with its id, status and cost, and the time it
    takes on the executor (from done trials of each architecture, else a --probe).

    \b
    Example:
        ablate plan recipes/quickstart.toml
        ablate plan recipes/mnv3_expansion.toml --set data.name=shapes --json
        ablate plan recipes/quickstart.toml --format csv --no-cost > trials.csv
        ablate plan recipes/quickstart.toml --jobs 2 --probe
        ablate plan recipes/quickstart.toml --until-decided --max-seeds 10
        ablate plan recipes/mnv3_expansion.toml --variant proposed --set data.name=shapes
    """
    from ablate.dispatch.prepare import (  # lazy: loads pydantic, sqlalchemy
        compute_costs,
        load_trials,
        select_trials,
    )
    from ablate.trials.resolve import eval_resolution  # lazy: loads pydantic

    if as_json:
        if fmt not in ("table", "json"):
            raise click.UsageError(f"--json and --format {fmt} contradict each other")
        fmt = "json"
    check_loop_options(estimate_flags["until_decided"])
    _check_executor_flags(estimate_flags["executor"])
    echo_ignored_plugins()
    merged: list[str] = []
    recipe_obj, trials = load_trials(recipe, assignments, max_trials=max_trials, merged=merged)
    echo_warnings(merged)  # now: a --variant the merge took away is refused next
    tuned = _tuning(recipe_obj, assignments)
    if trial_ids or variants:  # what `ablate run` with the same selection would run
        trials = select_trials(trials, trial_ids=trial_ids, variants=variants, source=recipe)
        if tuned is not None:  # planned whole, as it runs whole (`ablate run` refuses too)
            from ablate.dispatch.tuning import check_selected  # lazy: loads pydantic

            check_selected(tuned[1], trials, recipe_obj.path)
    store = _existing_store(db)
    phases = _phases(store, recipe_obj, tuned) if tuned is not None else None
    if phases is not None and phases.trials is not None:  # the selection is recorded
        trials = trials + phases.trials
    statuses = store.statuses(recipe_obj.name) if store and _has_study(store, recipe_obj.name) else {}
    cached = store.get_costs([t.arch_id for t in trials]) if store else {}
    costs = ({} if no_cost else
             compute_costs(trials, cached, source=recipe_obj.path, tune=recipe_obj.tune))
    if no_cost:  # invalid architectures are refused whether or not FLOPs are counted
        check_architectures(trials, recipe_obj.path, recipe_obj.tune, cached)
    # plan needs no data and no weights: what `run` would refuse is only a warning here
    warnings = find_problems(trials, recipe_obj.path)
    from ablate.trials.stale import code_change_notes  # trials an edit of user code made pending

    warnings += code_change_notes(store, recipe_obj.name, trials, statuses)
    if store is not None and (statuses or tuned is not None):
        warnings += _setup_refusal(store, recipe_obj, tuned)
    if store is not None:
        for arch_id, cost in costs.items():
            if arch_id not in cached:
                store.put_cost(cost)
    from ablate.cli.time_estimate import plan_estimate  # lazy: loads the estimate's modules

    estimated, settled = _estimated(store, recipe_obj, trials, tuned, phases)
    estimate, seconds = plan_estimate(store, recipe_obj, estimated, assignments, estimate_flags,
                                      settled)
    rows = []
    for t in trials:
        cost = costs.get(t.arch_id)
        rows.append({
            "trial_id": t.trial_id, "name": t.name, "variant": t.variant,
            "status": statuses.get(t.trial_id, TrialStatus.PENDING).value, "seed": t.seed,
            "params": cost.params if cost else None,
            "gflops": cost.gflops if cost else None,
            "flops_convention": cost.flops_convention if cost else None,
            "resolution": list(cost.resolution if cost else eval_resolution(t.spec)),
            "arch_id": t.arch_id, "seconds": seconds[t.trial_id][0],
            "time_source": seconds[t.trial_id][1],
        })
        if phases is not None:
            rows[-1]["phase"] = "tune" if t.tuning_draw is not None else "confirm"
    if phases is not None:
        rows += _waiting_rows(phases, {r["trial_id"]: r for r in rows})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        echo_warnings(warnings)
        return
    if fmt == "csv":
        _print_csv(rows)
        echo_warnings(warnings)
        return
    console = make_console()
    console.print(_table(recipe_obj.name, rows))
    if phases is not None:
        console.print(_phases_line(recipe_obj, rows, phases))
    if rows and rows[0]["flops_convention"]:
        h, w = rows[0]["resolution"]
        console.print(f"GFLOPs: {rows[0]['flops_convention']} at the evaluation resolution "
                      f"({h}x{w} for the first trial).")
    from ablate.cli.time_estimate import estimate_lines, estimate_table  # lazy: rich

    console.print(estimate_table(estimate))
    for line in estimate_lines(estimate):
        console.print(terminal(line))
    echo_warnings(warnings)


def _check_executor_flags(executor: str) -> None:
    """The estimate's options for the other executor would be ignored: refused, one line
    naming both options, as ``ablate run`` refuses them."""
    ctx = click.get_current_context()
    if executor == "slurm" and given(ctx, "jobs"):
        raise UserInputError("--jobs: only with --executor local; on Slurm at most "
                             "--array-parallelism trials run at once")
    for name in ("cpus_per_trial", "array_parallelism"):
        if executor != "slurm" and given(ctx, name):
            raise UserInputError(f"{option_name(ctx, name)}: only with --executor slurm")


def _tuning(recipe, assignments: tuple[str, ...]):
    """A tuned recipe's ``--set`` overrides and tuning phase (``TuningPlan``), worked out
    once for the selection check, the confirmation phase and the estimate; None when the
    recipe has no ``[tune]``."""
    if recipe.tune is None:
        return None
    from ablate.dispatch.tuning import tuning_plan  # lazy: loads pydantic
    from ablate.trials.expand import parse_set  # lazy: loads pydantic

    overrides = parse_set(list(assignments), recipe=recipe.path)
    return overrides, tuning_plan(recipe, overrides)


def _phases(store, recipe, tuned):
    """A tuned recipe's confirmation phase, as far as the database knows it."""
    from ablate.dispatch.tuning import plan_confirmation  # lazy: loads pydantic

    return plan_confirmation(store, recipe, *tuned)


def _estimated(store, recipe, trials: list, tuned, phases) -> tuple[list, set[str]]:
    """The trials the time estimate counts: a tuned study's both phases, its confirmation
    trials included before the selection (as ``ablate run --budget`` counts them); and
    those that run no more (once the selection is recorded, the tuning trials)."""
    if phases is None:
        return trials, set()
    from ablate.dispatch.tuning import estimated_trials, settled  # lazy: loads pydantic

    if phases.trials is not None:
        return trials, settled(tuned[1])
    return estimated_trials(store, recipe, *tuned)


def _waiting_rows(phases, by_id: dict[str, dict]) -> list[dict]:
    """One row per confirmation trial the selection has not made yet (its cost is its
    configuration's, read from a tuning trial of it)."""
    rows = []
    for name, tuning_id in phases.waiting:
        like = by_id[tuning_id]
        rows.append({**like, "trial_id": "-", "name": name, "status": "waiting on selection",
                     "seed": int(name.rsplit("=", 1)[1]), "phase": "confirm"})
    return rows


def _phases_line(recipe, rows: list[dict], phases) -> str:
    settings = recipe.tune.settings
    tuning = sum(r["phase"] == "tune" for r in rows)
    confirm = len(rows) - tuning
    configs = len({r["name"].rsplit("/", 1)[0] for r in rows if r["phase"] == "confirm"})
    failed = sum(r["phase"] == "tune" and r["status"] == TrialStatus.FAILED.value for r in rows)
    state = ("waiting on the selection (made once every tuning trial is finished)"
             if phases.trials is None else "at each configuration's chosen draw" + (
                 f"; the tuning trials run no more ({failed} failed, not retried)"
                 if failed else ""))
    return (f"Two phases: {tuning:,} tuning trial(s) ({settings.budget} draws x "
            f"{configs} configuration(s) x {len(settings.seeds)} tuning seed(s); a setting "
            f"drawn twice trains once), then {confirm:,} confirmation trial(s) ({configs} "
            f"configuration(s) x {confirm // max(configs, 1)} seed(s)), {state}.")


def _table(study: str, rows: list[dict]):
    """The first TABLE_HEAD and last TABLE_TAIL rows, the rest elided with their count."""
    from rich.table import Table  # lazy: loads rich.table

    phased = bool(rows) and "phase" in rows[0]
    trials, archs = len(rows), len({r["arch_id"] for r in rows})
    table = Table(title=f"{terminal(study)}: {trials:,} trial{'s' * (trials != 1)}, "
                  f"{archs:,} architecture{'s' * (archs != 1)}")
    for col in ("trial id", "name", *(("phase",) if phased else ()), "status", "params",
                "GFLOPs"):
        table.add_column(col, justify="right" if col in ("params", "GFLOPs") else "left",
                         overflow="fold")
    shown = rows
    if len(rows) > TABLE_HEAD + TABLE_TAIL + 1:
        shown = rows[:TABLE_HEAD] + [None] + rows[-TABLE_TAIL:]
    for r in shown:
        if r is None:
            hidden = len(rows) - TABLE_HEAD - TABLE_TAIL
            table.add_row("...", f"[dim]{hidden:,} more trials (--format csv or --json: "
                                 "every row)[/]", *([""] * (4 if phased else 3)))
            continue
        table.add_row(r["trial_id"], terminal(r["name"]), *((r["phase"],) if phased else ()),
                      r["status"], fmt_int(r["params"]), fmt_float(r["gflops"]))
    return table


def _print_csv(rows: list[dict]) -> None:
    buffer = io.StringIO()
    columns = (*CSV_COLUMNS, "phase") if rows and "phase" in rows[0] else CSV_COLUMNS
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "resolution": "x".join(map(str, r["resolution"]))})
    click.echo(buffer.getvalue(), nl=False)


def check_architectures(trials: list, source: str, tune: Tune | None = None,
                        cached: dict | None = None) -> None:
    """Build each distinct architecture on the ``meta`` device (no memory, no FLOPs):
    an expansion block out of range, a head the backbone cannot carry or selective
    down-sampling off DeepLabV3-ResNet is refused, as ``compute_costs`` refuses them.
    A user builder's model whose cost is not cached (``cached``: the database's, then
    the per-user cache) runs images as counting it would (``check_model``: logits of the
    wrong shape, no trainable parameter), and a ``model.aux_weight`` it never reads is
    refused: ``--no-cost`` skips the counting, not these checks."""
    from ablate.cost.analyse import build_on_meta  # lazy: loads pydantic
    from ablate.dispatch.cost_cache import cached_costs  # lazy: loads pydantic
    from ablate.dispatch.prepare import blame, check_aux_weights  # lazy: loads pydantic
    from ablate.trials.resolve import eval_resolution, num_classes  # lazy: loads pydantic

    counted = dict(cached or {})
    counted.update(cached_costs([t for t in trials if t.spec.model.builder is not None],
                                counted))
    seen: set[str] = set()
    for trial in trials:
        if trial.arch_id in seen:
            continue
        seen.add(trial.arch_id)
        with blame(source, trial, tune):  # as `run` builds it (selective: zoo's heads)
            classes = num_classes(trial.spec)
            if trial.spec.model.builder is not None and trial.arch_id not in counted:
                from ablate.models.custom import check_model  # lazy: loads torch

                check_model(trial.spec.model, classes,
                            tuple(int(v) for v in eval_resolution(trial.spec)))
            build_on_meta(trial.spec.model, classes)  # with its knock-outs, as counting
    check_aux_weights(trials, source)


def _setup_refusal(store, recipe, tuned) -> list[str]:
    """What ``ablate run`` refuses before anything runs because the study was recorded
    tuned otherwise (an edited ``[tune]``, a ``[tune]`` added or removed): a warning."""
    from ablate.dispatch.tuning import check_recorded  # lazy: loads pydantic

    try:
        check_recorded(store, recipe, tuned[1] if tuned is not None else None)
    except RecipeError as err:
        return [f"{err} (`ablate run` refuses this recipe)"]
    return []


def _existing_store(db: str | None):
    """Planning never creates a database; it reads one if it is there."""
    from ablate.store import Store  # lazy: loads sqlalchemy

    try:
        return Store(db, must_exist=True)
    except NoDatabaseError:
        return None


def _has_study(store, name: str) -> bool:
    return any(s.name == name for s in store.studies())
