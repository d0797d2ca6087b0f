"""``ablate run``: train and evaluate every trial of a recipe that is not done yet."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path

import click

from ablate.cli import main
from ablate.cli.options import (
    db_option,
    echo_ignored_plugins,
    echo_warnings,
    make_console,
    max_trials_option,
    not_nan,
    recipe_argument,
    runs_option,
    set_option,
)
from ablate.cli.text import terminal as escape
from ablate.cli.until_decided import (
    check_loop_options,
    check_until_decided,
    until_decided_options,
)
from ablate.dispatch.adaptive import fold_seeds, loop_design
from ablate.dispatch.leases import DEFAULT_LEASE_SECONDS
from ablate.errors import UserInputError
from ablate.trials.lifecycle import DEFAULT_KEEP, KEEP_CHOICES

SLURM_FLAGS = ("partition", "gpus_per_trial", "cpus_per_trial", "mem", "time", "array_parallelism")


def slurm_options(fn):
    """``--partition`` ... ``--detach``: override the recipe's ``[slurm]`` section."""
    options = [
        click.option("--partition", default=None, metavar="NAME",
                     help="Slurm partition [recipe, else the cluster's default]."),
        click.option("--gpus-per-trial", type=click.IntRange(0), default=None,
                     help="GPUs per trial (more than 1: DistributedDataParallel) [recipe's "
                          "[slurm], else 1 locally, 0 on Slurm]."),
        click.option("--cpus-per-trial", type=click.IntRange(1), default=None,
                     help="CPU cores per trial [recipe, else 2]."),
        click.option("--mem", default=None, metavar="SIZE",
                     help="Memory per trial: a whole number with K, M, G or T, e.g. 16G "
                          "[recipe, else the partition's default]."),
        click.option("--time", type=click.IntRange(1), default=None, metavar="MINUTES",
                     help="Time limit per trial in minutes [recipe, else 60]."),
        click.option("--array-parallelism", type=click.IntRange(1), default=None,
                     help="At most this many trials of the array run at once [recipe, else 64]."),
        click.option("--detach", is_flag=True,
                     help="Submit to Slurm and return (no progress bars); it prints the job "
                          "logs' folder; follow with 'ablate watch' or 'ablate status'."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


lease_option = click.option(
    "--lease-seconds", type=click.FloatRange(2, 86400), default=DEFAULT_LEASE_SECONDS, show_default=True,
    callback=not_nan, metavar="SECONDS",
    help="A claimed trial whose holder stops renewing (every SECONDS/4) is free again after "
         "this long; other runners then take it over from its checkpoint.")


def _budget(ctx, param, values: tuple[str, ...]):
    """``--budget``: parsed (and refused, one line) before anything runs."""
    from ablate.dispatch.budget import parse_budget  # lazy: only with --budget

    return parse_budget(values) if values else None


budget_option = click.option(
    "--budget", "budget", multiple=True, metavar="AMOUNT", callback=_budget,
    help="Hold the study to this many device-hours (gpu-h, cpu-h: the study's recorded "
         "trials count, earlier runs included) or this run to a wall time (h, min), e.g. "
         "20gpu-h or 2h (repeatable: one of each). Over it, the recipe's trials are "
         "refused before anything runs; --until-decided stops adding seeds.")


def _check_flags(executor: str, detach: bool, slurm_flags: dict, until_decided: bool,
                 rerun_failed: bool, skip_failed: bool) -> None:
    """Flags that contradict each other or the executor: one line, before anything runs."""
    if executor != "slurm":
        _refuse_slurm_flags(detach, slurm_flags)
    check_until_decided(until_decided, detach, executor)
    check_loop_options(until_decided)
    if rerun_failed and skip_failed:
        raise UserInputError("--rerun-failed and --skip-failed contradict each other; "
                             "failed trials run again by default")


def _interrupted(executor: str, study: str, where: str = "") -> str:
    if executor == "slurm":
        name = escape(shlex.quote(study) + where)
        return (f"[yellow]Interrupted.[/] The Slurm jobs keep running. Follow them with "
                f"'ablate status {name}' (it records their results), or "
                f"stop them with 'ablate cancel {name}'.")
    return ("[yellow]Interrupted.[/] Finished trials are recorded; run the same "
            "command again to finish the rest (trials resume from checkpoints).")


def _where(db: str | None, runs_dir: str | None) -> str:
    """`` --db D --runs-dir R`` of the commands a run tells the user to follow it with:
    each as typed on the command line (``$ABLATE_DB`` reaches them anyway)."""
    typed_db = db if _on_command_line("db") else None
    return "".join(f" {flag} {shlex.quote(value)}"
                   for flag, value in (("--db", typed_db), ("--runs-dir", runs_dir)) if value)


def _detached(study: str, job_ids: dict[str, str], folder: Path, where: str) -> str:
    """What a detached run leaves the user with: its job arrays, where their logs go, and
    the commands that follow them (with this run's --db and --runs-dir)."""
    arrays = ", ".join(sorted({job.split("_")[0] for job in job_ids.values()}))
    name = shlex.quote(study)
    return (f"Submitted {len(job_ids)} trial(s) to Slurm (job array {arrays}); each job's "
            f"log: {folder}/<job id>_0_log.out and .err. Follow them live with "
            f"'ablate watch {name}{where}', or with 'ablate status {name}{where}' (it also "
            f"records jobs that died); cancel with 'ablate cancel {name}{where}'.")


def _on_command_line(name: str) -> bool:
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE


def _refuse_slurm_flags(detach: bool, flags: dict) -> None:
    # --gpus-per-trial also sizes local trials (their GPU slots)
    given = [name for name in SLURM_FLAGS
             if name != "gpus_per_trial" and flags.get(name) is not None]
    if detach:
        given.append("detach")
    if given:
        raise UserInputError(f"--{given[0].replace('_', '-')}: only with --executor slurm")


def _local_gpus(executor: str, gpus: str | None, recipe, flags: dict, jobs: int | None,
                trials_per_gpu: int | None):
    """Local runs: the devices (``--gpus``), devices per trial, trials per device and the
    memory per trial (``--trials-per-gpu``, ``[local]``), and the worker count; Slurm
    assigns its own devices."""
    if executor != "local":
        if gpus is not None:
            raise UserInputError("--gpus: only with --executor local; Slurm jobs get "
                                 "--gpus-per-trial devices each")
        if trials_per_gpu is not None:
            raise UserInputError("--trials-per-gpu: only with --executor local")
        if jobs is not None:  # the Slurm executor submits every trial at once
            raise UserInputError("--jobs: only with --executor local; on Slurm at most "
                                 "--array-parallelism trials run at once")
        return [], 1, 1, None, jobs or 1
    from ablate.dispatch.gpus import runner_gpus  # lazy: only `ablate run` needs it
    from ablate.dispatch.sharing import runner_sharing  # lazy: likewise

    devices, per_trial = runner_gpus(gpus, flags.get("gpus_per_trial"),
                                     recipe.slurm.gpus_per_trial)
    k, trial_gib = runner_sharing(trials_per_gpu, recipe, devices, per_trial)
    at_once = len(devices) * k // per_trial
    jobs = jobs or (at_once if k > 1 else 1)
    if devices and jobs > at_once:  # trials share a device only with --trials-per-gpu
        click.echo(f"Warning: --jobs {jobs}: {len(devices)} GPU(s), {per_trial} per trial"
                   f"{f', {k} per GPU' if k > 1 else ''}: at most {at_once} trial(s) at a "
                   f"time", err=True)
    return devices, per_trial, k, trial_gib, jobs


def _new_database(db: str | None) -> bool:
    """A SQLite file this run would create (or that is empty): it holds nothing yet."""
    from ablate.store import resolve_url  # lazy: loads sqlalchemy
    from ablate.store.target import sqlite_path  # lazy: likewise

    path = sqlite_path(resolve_url(db))
    if path is None:
        return False
    try:
        return os.stat(path).st_size == 0  # stat: no descriptor of the database is opened
    except FileNotFoundError:
        return True
    except OSError:  # the store names what is wrong with it
        return False


def _build_architectures(stand_in, recipe, trials: list, overrides: dict) -> None:
    """Build every architecture the first round builds (a tuned study's tuning trials
    too), counting its costs into ``stand_in``: one that cannot be built (an expansion
    block out of range, a knocked-out path the network lacks) is refused here. The
    per-user cost cache keeps the counts, so execute does not count them again."""
    from ablate.dispatch.prepare import costs_for  # lazy: loads pydantic, sqlalchemy
    from ablate.dispatch.tuning import tuning_plan  # lazy: likewise

    plan = tuning_plan(recipe, overrides)
    costs_for(stand_in, trials + (plan.trials if plan is not None else []),
              source=recipe.path, tune=recipe.tune)


@main.command("run")
@recipe_argument
@db_option
@set_option
@runs_option
@click.option("--jobs", "-j", default=None, type=click.IntRange(1),
              help="Local worker processes running trials side by side [1; with "
                   "--trials-per-gpu K: GPUs x K]; a trial timing its latency holds the "
                   "others at their next step.")
@click.option("--skip-failed", is_flag=True,
              help="Keep failed trials as they are (by default they run again).")
@click.option("--rerun-failed", is_flag=True, hidden=True,
              help="Deprecated: failed trials run again by default; accepted and ignored.")
@click.option("--force", is_flag=True, help="Run every trial again, done ones included.")
@click.option("--trial", "trial_ids", multiple=True, metavar="ID", help="Only this trial (repeatable).")
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="Only this variant (repeatable).")
@click.option("--executor", default="local", show_default=True,
              type=click.Choice(["local", "slurm"]), help="Where trials run.")
@click.option("--gpus", default=None, metavar="LIST",
              help="Local GPUs this runner uses, by index: 0,2,3 or all [every visible "
                   "one]; each trial takes --gpus-per-trial of them.")
@click.option("--trials-per-gpu", type=click.IntRange(1), default=None, metavar="K",
              help="Up to K trials side by side on each local GPU, each in its own process "
                   "(CUDA MPS when its daemon runs, else time-sharing); latency is timed "
                   "with the GPU to a trial alone [recipe [local], else 1].")
@lease_option
@click.option("--wait", is_flag=True,
              help="Wait for trials that other live runners hold: until they are recorded, "
                   "or their leases expire and this runner takes them over. (A holder "
                   "whose process died on this machine is taken over at once anyway.)")
@click.option("--tracking", "tracking", multiple=True,
              type=click.Choice(["tensorboard", "mlflow", "wandb"]),
              help="Also log each trial to TensorBoard (event files in its run folder), "
                   "MLflow ($MLFLOW_TRACKING_URI) or Weights & Biases (a run per trial, "
                   "offline in its run folder without a key or server); repeatable. Off by "
                   "default.")
@click.option("--keep", default=DEFAULT_KEEP, show_default=True, type=click.Choice(KEEP_CHOICES),
              help="What a done trial's run folder keeps of its checkpoint: the model's "
                   "weights alone (weights.pt: spec, state dict, step), the whole resumable "
                   "checkpoint (optimiser, scaler and random states too), or nothing.")
@slurm_options
@max_trials_option
@until_decided_options
@budget_option
def run(recipe: str, db: str | None, assignments: tuple[str, ...], runs_dir: str | None,
        jobs: int | None, skip_failed: bool, rerun_failed: bool, force: bool,
        trial_ids: tuple[str, ...], variants: tuple[str, ...],
        executor: str, detach: bool, lease_seconds: float, max_trials: int,
        until_decided: bool, max_seeds: int, alpha: float, min_effect: float | None,
        spending: str, gpus: str | None = None, wait: bool = False,
        tracking: tuple[str, ...] = (), trials_per_gpu: int | None = None, budget=None,
        keep: str = DEFAULT_KEEP, **slurm_flags) -> None:
    """Run the trials of RECIPE that are not done, and record them in the database.

    Done trials are skipped; failed ones run again (--skip-failed keeps them); an
    interrupted run resumes where it stopped. Data roots and weights files are checked
    before anything is recorded.

    With --executor slurm the trials go to Slurm as one job array (options override the
    recipe's [slurm] section; submitit logs in RUNS_DIR/../slurm); --detach returns once
    they are submitted.

    \b
    Example:
        ablate run recipes/quickstart.toml
        ablate run recipes/quickstart.toml --jobs 2 --set train.epochs=1
        ablate run recipes/quickstart.toml --jobs 4 --gpus 0,1,2,3
        ablate run recipes/quickstart.toml --trials-per-gpu 4
        ablate run recipes/quickstart.toml --executor slurm --partition gpu --gpus-per-trial 1
        ablate run recipes/quickstart.toml --until-decided --max-seeds 6
        ablate run recipes/quickstart.toml --tracking tensorboard
        ablate run recipes/quickstart.toml --jobs 2 --budget 0.5cpu-h
    """
    # the view, executors and trackers cost ~25 ms at every command's start-up
    from ablate.cli.study_view import StudyView  # lazy: only `ablate run` needs it
    from ablate.dispatch.budget import check_unit  # lazy: likewise
    from ablate.dispatch.estimate import resources_for  # lazy: likewise
    from ablate.dispatch.executor import ExecutorRequest, make_executor  # lazy: likewise
    from ablate.dispatch.prepare import (  # lazy: loads pydantic, sqlalchemy
        check_runs_root,
        load_trials,
        resolve_runs_root,
        select_trials,
    )
    from ablate.dispatch.study import (  # lazy: loads pydantic, sqlalchemy
        LoopSettings,
        RunOptions,
        StudyRunner,
        validate,
    )
    from ablate.store import Store  # lazy: loads sqlalchemy
    from ablate.trials.expand import parse_set  # lazy: loads pydantic

    echo_ignored_plugins()
    merged: list[str] = []
    recipe_obj, trials = load_trials(recipe, assignments, max_trials=max_trials, merged=merged)
    echo_warnings(merged)
    trials = select_trials(trials, trial_ids=trial_ids, variants=variants, source=recipe)
    console = make_console(stderr=True)
    _check_flags(executor, detach, slurm_flags, until_decided, rerun_failed, skip_failed)
    local_gpus, per_trial, per_gpu, trial_gib, jobs = _local_gpus(
        executor, gpus, recipe_obj, slurm_flags, jobs, trials_per_gpu)
    trial_gpus = slurm_flags.get("gpus_per_trial") if executor == "slurm" else per_trial
    resources = resources_for(executor, recipe_obj, jobs=jobs, gpus=local_gpus,
                              gpus_per_trial=trial_gpus, slurm=slurm_flags)
    check_unit(budget, resources)  # gpu-h for a CPU run: refused before the database opens
    if executor == "slurm":  # a --mem sbatch would refuse: before the database opens too
        from ablate.dispatch.slurm import resolve_spec  # lazy: loads submitit's neighbours

        resolve_spec(recipe_obj.slurm, {k: v for k, v in slurm_flags.items()
                                        if k != "gpus_per_trial"})
    given_runs_dir = runs_dir
    runs_dir = str(resolve_runs_root(runs_dir, db))
    from ablate.store import resolve_url  # lazy: loads sqlalchemy
    from ablate.store.target import check_writable_sqlite  # lazy: likewise

    check_writable_sqlite(resolve_url(db))  # the database's own refusal comes first
    check_runs_root(Path(runs_dir))  # before the database opens: it would record the study
    validate(recipe_obj, trials)  # before the database is even opened
    if tracking:  # a missing package: one line now, not a warning per trial
        from ablate.track import check_available  # lazy: only `ablate run` needs it

        check_available(tracking)
    overrides = parse_set(list(assignments), recipe=recipe_obj.path)
    loop = (LoopSettings(max_seeds=max_seeds, alpha=alpha, min_effect=min_effect,
                         spending=spending) if until_decided else None)
    if loop is not None:  # a design with no look: refused before the database opens
        loop_design(fold_seeds(recipe_obj, overrides)[0], **dataclasses.asdict(loop))
    options = RunOptions(
        runs_root=Path(runs_dir), skip_failed=skip_failed, force=force,
        lease_seconds=lease_seconds, wait=wait, tracking=tracking, resources=resources,
        budget=budget, keep=keep)
    def request(store) -> ExecutorRequest:
        return ExecutorRequest(
            recipe_obj, trials, store, runs_dir, jobs=jobs, gpus=local_gpus,
            gpus_per_trial=trial_gpus, trials_per_gpu=per_gpu, gpu_memory_gib=trial_gib,
            detach=detach, slurm={k: v for k, v in slurm_flags.items() if k != "gpus_per_trial"})

    checker = None
    if _new_database(db):
        # what execute refuses before its first trial creates no database: checked first
        # against an empty in-memory stand-in, which is what a new one holds
        stand_in = Store("sqlite://")
        _build_architectures(stand_in, recipe_obj, trials, overrides)
        if budget is not None or executor == "slurm":
            # a refused budget or Slurm submission (execute checks again; the Slurm
            # executor, the same for both, asks sbatch once)
            checker = make_executor(executor, request(stand_in)) if executor == "slurm" else None
            StudyRunner(stand_in, checker, options).check_start(recipe_obj, trials, overrides,
                                                                loop)
    store = Store(db)
    runner_executor = checker or make_executor(executor, request(store))
    view = StudyView(console, store, detached=detach)
    runner = StudyRunner(store, runner_executor, options, emit=view.show)
    try:
        with view:
            outcome = runner.execute(recipe_obj, trials, overrides, loop)
    except KeyboardInterrupt:
        console.print(_interrupted(executor, recipe_obj.name, _where(db, given_runs_dir)),
                      soft_wrap=True)  # one line: its commands are copied
        sys.exit(130)
    if detach and view.job_ids:  # nothing to submit: the summary says so
        console.print(escape(_detached(recipe_obj.name, view.job_ids, runner_executor.folder,
                                       _where(db, given_runs_dir))), soft_wrap=True)
    if not outcome.ok:
        sys.exit(1)
