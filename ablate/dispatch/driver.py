"""Drive a study: validate, cost, register, run what is not done, ingest every result."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ablate.cost import analyse  # analyse.analyse_spec: a seam tests replace
from ablate.dispatch.claiming import worker_url
from ablate.dispatch.cost_cache import cached_costs, remember
from ablate.dispatch.entry import TrialJob
from ablate.dispatch.executor import Executor
from ablate.dispatch.leases import DEFAULT_LEASE_SECONDS, NOT_TRAINED
from ablate.dispatch.liveness import holder_is_dead
from ablate.dispatch.preflight import require_inputs
from ablate.dispatch.results import ingest_results, run_dir_for
from ablate.errors import RecipeError, StoreError, UserInputError
from ablate.recipes.loader import Recipe, load_recipe
from ablate.store import CostRecord, Store, resolve_url
from ablate.store.target import sqlite_path
from ablate.trials.expand import DEFAULT_MAX_TRIALS, Trial, expand, parse_set
from ablate.trials.ids import spec_dict

DEFAULT_RUNS_ROOT = "results/runs"
RUNS_DIR_ENV = "ABLATE_RUNS_DIR"


def default_runs_root(db: str | None = None) -> Path:
    """Where run folders go unless ``--runs-dir`` says: ``$ABLATE_RUNS_DIR``, else ``runs/``
    beside a SQLite file, else ``results/runs``.

    Tying the folder to the database keeps one database from ingesting result files
    written for another.
    """
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env).expanduser()

    path = sqlite_path(resolve_url(db))
    return Path(path).expanduser().parent / "runs" if path else Path(DEFAULT_RUNS_ROOT)


def resolve_runs_root(runs_dir: str | None, db: str | None = None) -> Path:
    """``--runs-dir`` wins; otherwise ``default_runs_root``."""
    return Path(runs_dir).expanduser() if runs_dir else default_runs_root(db)


def load_trials(recipe_path: str, assignments: tuple[str, ...] = (),
                max_trials: int | None = DEFAULT_MAX_TRIALS) -> tuple[Recipe, list[Trial]]:
    """Parse and expand a recipe with ``--set`` overrides; raises on any bad input,
    and on a study of more than ``max_trials`` trials before building any."""
    recipe = load_recipe(recipe_path)
    overrides = parse_set(list(assignments))
    return recipe, expand(recipe, overrides, max_trials=max_trials)


def select_trials(trials: list[Trial], *, trial_ids: tuple[str, ...] = (),
                  variants: tuple[str, ...] = ()) -> list[Trial]:
    """Narrow a study to ``--trial`` ids (prefixes allowed) or ``--variant`` names."""
    chosen = trials
    if variants:
        known = {t.variant for t in trials}
        for v in variants:
            if v not in known:
                raise UserInputError(f"--variant: no variant {v!r}; allowed: {', '.join(sorted(known))}")
        chosen = [t for t in chosen if t.variant in variants]
    if trial_ids:
        picked = []
        for tid in trial_ids:
            hits = [t for t in chosen if t.trial_id.startswith(tid) or t.name == tid]
            if not hits:
                raise UserInputError(f"--trial: no trial {tid!r} in this recipe")
            picked += [t for t in hits if t not in picked]
        chosen = picked
    return chosen


@contextlib.contextmanager
def _blame(source: str | None, trial: Trial):
    """Errors found while building a trial's model name the recipe and the trial."""
    try:
        yield
    except RecipeError:
        raise
    except UserInputError as err:
        if source is None:
            raise
        raise RecipeError(source, f"trial {trial.name}: {err}") from None


def compute_costs(trials: list[Trial], cached: dict[str, CostRecord],
                  flops: bool = True, source: str | None = None) -> dict[str, CostRecord]:
    """Parameters and FLOPs once per distinct architecture (``arch_id``): ``cached`` (the
    database's) first, then the per-user cache (``dispatch.cost_cache``), then counted.

    Building each architecture also validates it (expansion indices, output strides);
    with ``source`` such an error names the recipe file and the trial.
    """
    out = dict(cached)
    out.update(cached_costs(trials, out))
    for trial in trials:
        if trial.arch_id in out:
            continue

        with _blame(source, trial):
            report = analyse.analyse_spec(trial.spec, flops=flops and trial.spec.eval.flops)
        out[trial.arch_id] = CostRecord(
            arch_id=trial.arch_id, params=report.params, params_by_module=report.params_by_module,
            flops=report.flops, flops_by_module=report.flops_by_module,
            flops_convention=report.flops_convention, resolution=tuple(report.resolution),
            extra=report.extra or None,
        )
        remember({trial.arch_id: out[trial.arch_id]})  # kept even if a later one fails
    return out


def costs_for(store: Store | None, trials: list[Trial]) -> dict[str, CostRecord]:
    cached = store.get_costs([t.arch_id for t in trials]) if store else {}
    costs = compute_costs(trials, cached)
    if store is not None:
        for arch_id, cost in costs.items():
            if arch_id not in cached:
                store.put_cost(cost)
    return costs


@dataclass
class RunSummary:
    total: int
    skipped: int = 0
    retried: int = 0  # failed before, run again now
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # results found on disk and ingested
    corrupt: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)  # result on disk, database failed
    taken: list[str] = field(default_factory=list)  # claimed and trained by this runner
    left: dict[str, dict[str, Any]] = field(default_factory=dict)  # held elsewhere: outcome


def run_study(recipe: Recipe, trials: list[Trial], store: Store, executor: Executor, *,
              runs_root: str | Path | None = None, skip_failed: bool = False,
              force: bool = False, preflight: bool = True,
              lease_seconds: float = DEFAULT_LEASE_SECONDS,
              on_event: Callable[[TrialJob, dict[str, Any]], None] | None = None,
              on_plan: Callable[[list[TrialJob], int, int], None] | None = None,
              wait: bool = False,
              on_wait: Callable[[int, datetime | None], None] | None = None,
              tracking: tuple[str, ...] = (),
              tracking_options: dict[str, Any] | None = None) -> RunSummary:
    """Record the study and its trials, then run those not done; failed ones run again
    unless ``skip_failed``. Nothing is recorded when an input is missing or a model
    cannot be built. ``runs_root`` defaults to the store's (``default_runs_root``).

    Trials whose holder died on this host are taken over at once. With ``wait``, trials
    that live runners elsewhere hold are waited for until they are recorded, or their
    leases expire and this runner takes them over; ``on_wait(n, expiry)`` says so.
    """
    runs_root = Path(runs_root) if runs_root else default_runs_root(store.url)
    if preflight:  # data roots, weights, class counts: fail fast (the CLI checks earlier)
        require_inputs(trials, recipe.path)
    costs = compute_costs(trials, store.get_costs([t.arch_id for t in trials]), source=recipe.path)
    store.upsert_study(recipe.name, recipe.description, recipe.path, recipe.text)
    store.register_trials(recipe.name, trials)
    for cost in costs.values():
        store.put_cost(cost)

    summary = RunSummary(total=len(trials))
    started = store.database_time()  # failed before this: ours to retry (claims)
    wanted = {t.trial_id for t in trials}
    report = ingest_results(store, recipe.name, runs_root, wanted)
    summary.recovered, summary.corrupt = report.ingested, report.corrupt
    statuses = store.statuses(recipe.name)
    if force:
        store.reset(recipe.name, [t.trial_id for t in trials])
        statuses = {t.trial_id: "pending" for t in trials}
    todo = [t for t in trials
            if statuses.get(t.trial_id) != "done"
            and (statuses.get(t.trial_id) != "failed" or not skip_failed)]
    summary.skipped = len(trials) - len(todo)
    summary.retried = sum(statuses.get(t.trial_id) == "failed" for t in todo)
    jobs = [TrialJob(recipe.name, t.trial_id, t.name, spec_dict(t.spec),
                     str(run_dir_for(runs_root, recipe.name, t.trial_id)),
                     db=worker_url(store.url), lease_seconds=lease_seconds,
                     failed_before=started.isoformat(), tracking=tuple(tracking),
                     track_info=_track_info(t, tracking_options) if tracking else None)
            for t in todo]
    if force:
        for job in jobs:  # a forced rerun starts from scratch, not from a checkpoint
            _remove_run_state(Path(job.run_dir))
    if on_plan:
        on_plan(jobs, summary.skipped, summary.retried)

    def handle(job: TrialJob, event: dict[str, Any]) -> None:
        if event["kind"] == "start" and event.get("claimed"):
            summary.taken.append(job.trial_id)
            summary.left.pop(job.trial_id, None)
        elif event["kind"] == "start":  # Slurm: at submission, with the job id
            store.mark_running(job.study, job.trial_id, job.run_dir, event.get("job_id"))
        elif event["kind"] == "cancelled":  # its Slurm job was scancel'ed: run it again later
            store.reset(job.study, [job.trial_id])
        elif event["kind"] == "finish":
            result = event["result"]
            if result["status"] in NOT_TRAINED:  # held by another runner (claims)
                summary.left[job.trial_id] = result
                if on_event:
                    on_event(job, event)
                return
            (summary.done if result["status"] == "done" else summary.failed).append(job.trial_id)
            try:
                store.ingest_result(result)
            except StoreError:
                summary.unrecorded.append(job.trial_id)  # safe on disk; ingested next time
        if on_event:
            on_event(job, event)

    executor.run(jobs, handle)
    # a holder that died meanwhile (its process gone here, or its lease expired): take
    # its trials over now
    for _ in range(3):
        free = set(store.claimable(recipe.name, list(summary.left), started, holder_is_dead))
        if not free:
            break
        executor.run([job for job in jobs if job.trial_id in free], handle)
    while wait and summary.left:
        _wait_for_holders(store, recipe.name, summary, on_wait)
        free = set(store.claimable(recipe.name, list(summary.left), started, holder_is_dead))
        if free:
            executor.run([job for job in jobs if job.trial_id in free], handle)
    return summary


def _track_info(trial: Trial, options: dict[str, Any] | None) -> dict[str, Any]:
    """What trackers record of a trial (``ablate.track``): plain data, it is pickled."""
    return {"axes": dict(trial.axes), "seed": trial.seed, "variant": trial.variant,
            "config_name": trial.config_name, "options": dict(options or {})}


WAIT_POLL_S = 5.0  # how often a waiting runner looks at the trials others hold


def _wait_for_holders(store: Store, study: str, summary: RunSummary,
                      on_wait: Callable[[int, datetime | None], None] | None) -> None:
    """Sleep until a held trial is recorded elsewhere or its lease can expire; drop the
    recorded ones from ``summary.left``."""
    statuses = store.statuses(study)
    for trial_id in [t for t in summary.left if statuses.get(t) in ("done", "failed")]:
        summary.left.pop(trial_id)  # its holder recorded it
    if not summary.left:
        return
    expiry = store.lease_expiry(study, list(summary.left))
    if on_wait:
        on_wait(len(summary.left), expiry)
    now = store.database_time()
    seconds = WAIT_POLL_S if expiry is None else (expiry - now).total_seconds() + 0.5
    time.sleep(min(max(seconds, 0.2), WAIT_POLL_S))


def _remove_run_state(run_dir: Path) -> None:
    for name in ("checkpoint.pt", "result.json"):
        (run_dir / name).unlink(missing_ok=True)
