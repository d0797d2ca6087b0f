"""What a study needs before it runs: its trials (loaded, expanded, selected), the cost of
each architecture, and where its run folders go. ``dispatch.study`` runs it."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path

from ablate.cost import analyse  # analyse.analyse_spec: a seam tests replace
from ablate.dispatch.cost_cache import cached_costs, remember
from ablate.dispatch.results import unwritable_runs_folder
from ablate.errors import RecipeError, UserInputError
from ablate.paths import expand_user
from ablate.recipes.loader import Recipe, load_recipe
from ablate.recipes.schema import ModelSpec
from ablate.recipes.tree import set_dotted
from ablate.recipes.tune import Tune, integer_range
from ablate.store import CostRecord, Store, resolve_url
from ablate.store.target import sqlite_path
from ablate.trials.expand import DEFAULT_MAX_TRIALS, Trial, expand, parse_set
from ablate.trials.tuning import fractional_draws, plan_tuning

DEFAULT_RUNS_ROOT = "results/runs"
RUNS_DIR_ENV = "ABLATE_RUNS_DIR"


def default_runs_root(db: str | None = None) -> Path:
    """Where run folders go unless ``--runs-dir`` says: ``$ABLATE_RUNS_DIR``, else ``runs/``
    beside a SQLite file, else ``results/runs``.

    Databases may share a runs folder (two SQLite files in one folder, every server URL):
    each study folder in it names the database study it belongs to, and a database
    ingests and writes only its own (``dispatch.results.study_root``).
    """
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return expand_user(env, RUNS_DIR_ENV)

    path = sqlite_path(resolve_url(db))
    return Path(path).parent / "runs" if path else Path(DEFAULT_RUNS_ROOT)


def resolve_runs_root(runs_dir: str | None, db: str | None = None) -> Path:
    """``--runs-dir`` wins; otherwise ``default_runs_root``."""
    return expand_user(runs_dir, "--runs-dir") if runs_dir else default_runs_root(db)


def check_runs_root(root: Path) -> None:
    """A runs folder that cannot be written or created (a file on its path, a folder
    without write permission) is refused before the database opens: the run would record
    its study and trials, then stop at the first run folder. Nothing is created here."""
    probe = root
    while not probe.exists() and probe.parent != probe:  # its nearest existing ancestor
        probe = probe.parent
    if not probe.is_dir():
        problem = f"{probe} is not a folder"
    elif not os.access(probe, os.W_OK | os.X_OK):
        problem = f"{probe}: permission denied"
    else:
        return
    raise unwritable_runs_folder(root, problem)


def load_trials(recipe_path: str, assignments: tuple[str, ...] = (),
                max_trials: int | None = DEFAULT_MAX_TRIALS,
                merged: list[str] | None = None) -> tuple[Recipe, list[Trial]]:
    """Parse and expand a recipe with ``--set`` overrides; raises on any bad input,
    and on a study of more than ``max_trials`` trials before building any. Configurations
    that resolve to one spec (and run once) are said in ``merged``, a line each.

    A tuned recipe (``[tune]``) gives its tuning trials: its confirmation trials are only
    known once the tuning phase has chosen (``dispatch.tuning``)."""
    recipe = load_recipe(recipe_path)
    overrides = parse_set(list(assignments), recipe=recipe.path)
    if recipe.tune is not None:
        return recipe, plan_tuning(recipe, overrides, max_trials=max_trials,
                                   merged=merged).trials
    return recipe, expand(recipe, overrides, max_trials=max_trials, merged=merged)


def select_trials(trials: list[Trial], *, trial_ids: tuple[str, ...] = (),
                  variants: tuple[str, ...] = (), source: str = "the recipe") -> list[Trial]:
    """Narrow a study to ``--trial`` ids (prefixes allowed) or ``--variant`` names."""
    chosen = trials
    if variants:
        known = {t.variant for t in trials}
        for v in variants:
            if v not in known:
                raise UserInputError(f"{source}: --variant: no variant {v!r}; allowed: "
                                     f"{', '.join(sorted(known))}")
        chosen = [t for t in chosen if t.variant in variants]
    if trial_ids:
        picked = []
        for tid in trial_ids:
            if not tid.strip():  # an empty prefix would match every trial
                raise UserInputError(f"{source}: --trial: empty; give a trial's id, id prefix "
                                     f"or name (`ablate plan {source}` lists them)")
            hits = [t for t in chosen if t.trial_id.startswith(tid) or t.name == tid]
            if not hits:
                among = f" of --variant {', '.join(variants)}" if variants else ""
                raise UserInputError(
                    f"{source}: --trial: no trial{among} has the id, id prefix or name "
                    f"{tid!r}; `ablate plan {source}` lists the ids and names")
            picked += [t for t in hits if t not in picked]
        chosen = picked
    return chosen


@contextlib.contextmanager
def blame(source: str | None, trial: Trial, tune: Tune | None = None):
    """Errors found while building a trial's model name the recipe and the trial; a
    tuning trial's model that only a fractional draw breaks names the ``[tune]`` key."""
    try:
        yield
    except RecipeError:
        raise
    except UserInputError as err:
        if source is None:
            raise
        if tune is not None and trial.tuning_draw is not None:
            _blame_fraction(source, trial, tune, err)
        raise RecipeError(source, f"trial {trial.name}: {err}") from None


def _blame_fraction(source: str, trial: Trial, tune: Tune, err: UserInputError) -> None:
    """Raise an error naming the ``[tune]`` key when the trial's model fails to build as
    drawn and builds once its fractional ``model.args`` draws are rounded: the builder
    needs an int there. Model arguments have no schema, so asking the builder is the one
    way to know; anything else keeps the builder's own error."""
    from ablate.cost.analyse import build_on_meta  # lazy: loads torch
    from ablate.trials.resolve import num_classes

    assert trial.tuning_draw is not None
    suspects = fractional_draws(tune, trial.tuning_draw)
    if not suspects:
        return
    args = copy.deepcopy(trial.spec.model.args)
    for rng, value in suspects:
        set_dotted(args, rng.key.removeprefix("model.args."), round(value))
    rounded = trial.spec.model.model_copy(update={"args": args})
    classes = num_classes(trial.spec)
    try:
        build_on_meta(trial.spec.model, classes)
        return  # it builds as drawn: the error came from elsewhere (a forward probe)
    except UserInputError:
        pass
    try:
        build_on_meta(rounded, classes)
    except UserInputError:
        return  # it fails with integers too: the fraction is not the cause
    rng, value = suspects[0]
    others = "".join(f"; {r.key} draws {v:g}" for r, v in suspects[1:])
    raise RecipeError(
        source, f"{rng.describe()} draws {value:g} (draw {trial.tuning_draw}{others}), and "
        f"with it {err}; with {round(value)} it builds: the builder needs an int there, give "
        f"{integer_range(rng)}", f'tune."{rng.key}"') from None


def compute_costs(trials: list[Trial], cached: dict[str, CostRecord],
                  flops: bool = True, source: str | None = None,
                  tune: Tune | None = None) -> dict[str, CostRecord]:
    """Parameters and FLOPs once per distinct architecture (``arch_id``): ``cached`` (the
    database's) first, then the per-user cache (``dispatch.cost_cache``), then counted.

    Building each architecture also validates it (expansion indices, output strides);
    with ``source`` such an error names the recipe file and the trial (``tune``: and the
    ``[tune]`` key a tuning trial's fractional draw breaks, ``blame``).
    """
    out = dict(cached)
    out.update(cached_costs(trials, out))
    for trial in trials:
        if trial.arch_id in out:
            continue

        with blame(source, trial, tune):
            report = analyse.analyse_spec(trial.spec, flops=flops and trial.spec.eval.flops)
        out[trial.arch_id] = CostRecord(
            arch_id=trial.arch_id, params=report.params, params_by_module=report.params_by_module,
            flops=report.flops, flops_by_module=report.flops_by_module,
            flops_convention=report.flops_convention, resolution=tuple(report.resolution),
            extra=report.extra or None,
        )
        remember({trial.arch_id: out[trial.arch_id]})  # kept even if a later one fails
    check_aux_weights(trials, source)
    return out


def check_aux_weights(trials: list[Trial], source: str | None = None) -> None:
    """Refuse a ``model.aux_weight`` (other than its default or 0) on a builder's model
    that returns no ``aux`` output in training mode: the weight would never be read, and
    the trials would differ in their ids only. The built-in heads are checked by the
    schema (``aux_weight`` without ``aux_head``); a user's model is asked, once per
    architecture, every run (the cost caches do not keep the answer)."""
    from ablate.trials.resolve import eval_resolution, num_classes

    default = ModelSpec.model_fields["aux_weight"].default
    has_aux: dict[str, bool] = {}
    for trial in trials:
        model = trial.spec.model
        if model.builder is None or model.aux_weight in (0, default):
            continue
        if trial.arch_id not in has_aux:
            try:  # a folder dataset's classes and sizes are read from its files
                classes = num_classes(trial.spec)
                resolution = tuple(int(v) for v in eval_resolution(trial.spec))
            except UserInputError:
                continue  # not there: run's input check names it, plan warns of it
            from ablate.models.custom import returns_aux  # lazy: loads torch (a plan need not)

            with blame(source, trial):
                has_aux[trial.arch_id] = returns_aux(model, classes,
                                                     resolution)  # type: ignore[arg-type]
        if not has_aux[trial.arch_id]:
            message = (f"model.aux_weight = {model.aux_weight:g} is never read: the model "
                       f"{model.builder} built returns no 'aux' output in training mode; "
                       "return {'out': logits, 'aux': aux_logits} while training, or "
                       "remove model.aux_weight")
            if source is None:
                raise UserInputError(message)
            raise RecipeError(source, f"trial {trial.name}: {message}")


def costs_for(store: Store, trials: list[Trial], source: str | None = None,
              tune: Tune | None = None) -> dict[str, CostRecord]:
    """``compute_costs`` with the store's costs first; the new ones are stored (once all
    were counted, so a model that cannot be built stores nothing)."""
    cached = store.get_costs([t.arch_id for t in trials])
    costs = compute_costs(trials, cached, source=source, tune=tune)
    for arch_id, cost in costs.items():
        if arch_id not in cached:
            store.put_cost(cost)
    return costs
