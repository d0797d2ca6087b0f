"""``ablate run``: train and evaluate every trial of a recipe that is not done yet."""

from __future__ import annotations

import sys
import time

import click

from ablate.cli import main
from ablate.cli.options import (
    db_option,
    fmt_float,
    fmt_int,
    make_console,
    max_trials_option,
    not_nan,
    recipe_argument,
    runs_option,
    set_option,
)
from ablate.cli.text import terminal as escape  # markup and control characters
from ablate.cli.until_decided import (
    check_until_decided,
    continue_until_decided,
    until_decided_options,
)
from ablate.dispatch.leases import DEFAULT_LEASE_SECONDS
from ablate.errors import UserInputError

SLURM_FLAGS = ("partition", "gpus_per_trial", "cpus_per_trial", "mem", "time", "array_parallelism")


def slurm_options(fn):
    """``--partition`` ... ``--detach``: override the recipe's ``[slurm]`` section."""
    options = [
        click.option("--partition", default=None,
                     help="Slurm partition [recipe, else the cluster's default]."),
        click.option("--gpus-per-trial", type=click.IntRange(0), default=None,
                     help="GPUs per trial (more than 1: DistributedDataParallel)."),
        click.option("--cpus-per-trial", type=click.IntRange(1), default=None,
                     help="CPU cores per trial [recipe, else 2]."),
        click.option("--mem", default=None, metavar="SIZE", help="Memory per trial, e.g. 16G."),
        click.option("--time", type=click.IntRange(1), default=None, metavar="MINUTES",
                     help="Time limit per trial in minutes [recipe, else 60]."),
        click.option("--array-parallelism", type=click.IntRange(1), default=None,
                     help="At most this many trials of the array run at once [recipe, else 64]."),
        click.option("--detach", is_flag=True,
                     help="Submit to Slurm and return; follow with 'ablate status'."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


lease_option = click.option(
    "--lease-seconds", type=click.FloatRange(2, 86400), default=DEFAULT_LEASE_SECONDS, show_default=True,
    callback=not_nan, metavar="SECONDS",
    help="A claimed trial whose holder stops renewing (every SECONDS/4) is free again after "
         "this long; other runners then take it over from its checkpoint.")


def _refuse_slurm_flags(detach: bool, flags: dict) -> None:
    # --gpus-per-trial also sizes local trials (their GPU slots)
    given = [name for name in SLURM_FLAGS
             if name != "gpus_per_trial" and flags.get(name) is not None]
    if detach:
        given.append("detach")
    if given:
        raise UserInputError(f"--{given[0].replace('_', '-')}: only with --executor slurm")


def _slurm_executor(recipe, trials, store, runs_dir: str, detach: bool, flags: dict):
    """The recipe's [slurm] section under the command-line flags; refuses to submit trials
    whose earlier jobs still run (they would run twice)."""
    from pathlib import Path

    from ablate.dispatch.slurm import (  # lazy: loads pydantic, sqlalchemy, submitit
        SlurmExecutor,
        live_jobs,
        resolve_spec,
    )

    spec = resolve_spec(recipe.slurm, {k: flags.get(k) for k in SLURM_FLAGS})
    if any(s.name == recipe.name for s in store.studies()):
        live = live_jobs(store, recipe.name, [t.trial_id for t in trials])
        if live:
            jobs = ", ".join(sorted(set(live.values()))[:5])
            raise UserInputError(
                f"{len(live)} trial(s) of {recipe.name} still have Slurm jobs ({jobs}); follow "
                f"them with 'ablate status {recipe.name}' or stop them with "
                f"'ablate cancel {recipe.name}'")
    return SlurmExecutor(**spec.model_dump(), folder=Path(runs_dir).absolute().parent / "slurm",
                         detach=detach)


def _local_gpus(executor: str, gpus: str | None, recipe, flags: dict, jobs: int):
    """Local runs: the devices (``--gpus``) and devices per trial; Slurm assigns its own."""
    if executor != "local":
        if gpus is not None:
            raise UserInputError("--gpus: only with --executor local; Slurm jobs get "
                                 "--gpus-per-trial devices each")
        return [], 1
    from ablate.dispatch.gpus import runner_gpus

    devices, per_trial = runner_gpus(gpus, flags.get("gpus_per_trial"),
                                     recipe.slurm.gpus_per_trial)
    if devices and jobs > len(devices) // per_trial:  # trials never share a device
        click.echo(f"Warning: --jobs {jobs}: {len(devices)} GPU(s), {per_trial} per trial: "
                   f"at most {len(devices) // per_trial} trial(s) at a time", err=True)
    return devices, per_trial


@main.command("run")
@recipe_argument
@db_option
@set_option
@runs_option
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1),
              help="Local worker processes running trials side by side.")
@click.option("--skip-failed", is_flag=True,
              help="Keep failed trials as they are (by default they run again).")
@click.option("--rerun-failed", is_flag=True, hidden=True,
              help="Deprecated: failed trials run again by default; accepted and ignored.")
@click.option("--force", is_flag=True, help="Run every trial again, done ones included.")
@click.option("--trial", "trial_ids", multiple=True, metavar="ID", help="Only this trial (repeatable).")
@click.option("--variant", "variants", multiple=True, metavar="NAME", help="Only this variant.")
@click.option("--executor", default="local", show_default=True,
              type=click.Choice(["local", "slurm"]), help="Where trials run.")
@click.option("--gpus", default=None, metavar="LIST",
              help="Local GPUs this runner uses, by index: 0,2,3 or all [every visible "
                   "one]; each trial takes --gpus-per-trial of them.")
@lease_option
@click.option("--wait", is_flag=True,
              help="Wait for trials that other live runners hold: until they are recorded, "
                   "or their leases expire and this runner takes them over. (A holder "
                   "whose process died on this machine is taken over at once anyway.)")
@click.option("--tracking", "tracking", multiple=True, type=click.Choice(["tensorboard", "mlflow"]),
              help="Also log each trial to TensorBoard (event files in its run folder) or "
                   "MLflow ($MLFLOW_TRACKING_URI); repeatable. Off by default.")
@slurm_options
@max_trials_option
@until_decided_options
def run(recipe: str, db: str | None, assignments: tuple[str, ...], runs_dir: str | None,
        jobs: int, skip_failed: bool, rerun_failed: bool, force: bool,
        trial_ids: tuple[str, ...], variants: tuple[str, ...],
        executor: str, detach: bool, lease_seconds: float, max_trials: int,
        until_decided: bool, max_seeds: int, alpha: float, min_effect: float | None,
        spending: str, gpus: str | None = None, wait: bool = False,
        tracking: tuple[str, ...] = (), **slurm_flags) -> None:
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
        ablate run recipes/quickstart.toml --executor slurm --partition gpu --gpus-per-trial 1
        ablate run recipes/quickstart.toml --until-decided --max-seeds 6
        ablate run recipes/quickstart.toml --tracking tensorboard
    """
    from ablate.dispatch.driver import (  # lazy: loads pydantic, sqlalchemy
        load_trials,
        resolve_runs_root,
        run_study,
        select_trials,
    )
    from ablate.dispatch.executor import make_executor
    from ablate.store import Store  # lazy: loads sqlalchemy

    recipe_obj, trials = load_trials(recipe, assignments, max_trials=max_trials)
    trials = select_trials(trials, trial_ids=trial_ids, variants=variants)
    console = make_console(stderr=True)
    if executor != "slurm":
        _refuse_slurm_flags(detach, slurm_flags)
    check_until_decided(until_decided, detach, executor)
    local_gpus, per_trial = _local_gpus(executor, gpus, recipe_obj, slurm_flags, jobs)
    if rerun_failed and skip_failed:
        raise UserInputError("--rerun-failed and --skip-failed contradict each other; "
                             "failed trials run again by default")
    runs_dir = str(resolve_runs_root(runs_dir, db))
    from ablate.dispatch.preflight import require_inputs

    require_inputs(trials, recipe_obj.path)  # before the database is even opened
    if tracking:  # a missing package: one line now, not a warning per trial
        from ablate.track import check_available

        check_available(tracking)
    store = Store(db)
    if until_decided:  # a study grown before under other settings: refuse before running
        from ablate.dispatch.adaptive import fold_seeds, loop_design, record_design
        from ablate.trials.expand import parse_set

        start, _ = fold_seeds(recipe_obj, parse_set(list(assignments)))
        record_design(store, recipe_obj.name, loop_design(
            start, max_seeds=max_seeds, alpha=alpha, min_effect=min_effect,
            spending=spending), write=False)
    if executor == "slurm":
        runner = _slurm_executor(recipe_obj, trials, store, runs_dir, detach, slurm_flags)
    else:
        runner = make_executor(executor, jobs=jobs, gpus=local_gpus, gpus_per_trial=per_trial)
    from ablate.track import finish_study, start_study

    tracking_options = start_study(tracking, recipe_obj.name)  # MLflow: experiment, parent
    view = _ProgressView(console)
    try:
        with view:
            summary = run_study(recipe_obj, trials, store, runner, runs_root=runs_dir,
                                skip_failed=skip_failed, force=force, preflight=False,
                                lease_seconds=lease_seconds, on_event=view.on_event,
                                on_plan=view.on_plan, wait=wait,
                                on_wait=lambda n, expiry: console.print(_waiting(n, expiry)),
                                tracking=tracking, tracking_options=tracking_options)
    except KeyboardInterrupt:
        if executor == "slurm":
            console.print(f"[yellow]Interrupted.[/] The Slurm jobs keep running. Follow them with "
                          f"'ablate status {recipe_obj.name}' (it records their results), or "
                          f"stop them with 'ablate cancel {recipe_obj.name}'.")
            sys.exit(130)
        console.print("[yellow]Interrupted.[/] Finished trials are recorded; run the same "
                      "command again to finish the rest (trials resume from checkpoints).")
        sys.exit(130)
    if detach:
        submitted = [t for t in trials if view.job_ids.get(t.trial_id)]
        console.print(f"Submitted {len(submitted)} trial(s) to Slurm. Follow them with "
                      f"'ablate status {recipe_obj.name}'; cancel with "
                      f"'ablate cancel {recipe_obj.name}'.")
    _print_summary(store, recipe_obj.name, [t.trial_id for t in trials], summary)
    from ablate.dispatch.claiming import runner_report  # lazy: loads sqlalchemy

    for line in runner_report(store, recipe_obj.name, summary):
        make_console().print(escape(line))
    if until_decided and not summary.failed:
        def run_round(round_recipe, round_trials):
            view = _ProgressView(console)
            with view:
                done = run_study(round_recipe, round_trials, store, runner, runs_root=runs_dir,
                                 skip_failed=skip_failed, preflight=False,
                                 lease_seconds=lease_seconds, on_event=view.on_event,
                                 on_plan=view.on_plan, tracking=tracking,
                                 tracking_options=tracking_options)
            _print_summary(store, round_recipe.name, [t.trial_id for t in round_trials], done)
            summary.failed += done.failed
            return done

        continue_until_decided(recipe_obj, assignments, store, run_round, max_seeds=max_seeds,
                               alpha=alpha, min_effect=min_effect, spending=spending,
                               say=lambda line: console.print(escape(line)))
    finish_study(tracking_options, store, recipe_obj.name, failed=bool(summary.failed))
    if summary.failed:
        sys.exit(1)


def _waiting(held: int, expiry) -> str:
    when = (f"; the first lease expires at {expiry:%H:%M:%S} (database time, UTC)"
            if expiry is not None else "")
    return f"waiting for {held} trial(s) other runners hold{when}"


class _ProgressView:
    """Rich progress: trials done of total, each running trial's epoch, step and ETA."""

    def __init__(self, console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        self.overall = None
        self.tasks: dict[str, int] = {}
        self.job_ids: dict[str, str] = {}  # Slurm
        self.started = time.perf_counter()

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_plan(self, jobs, skipped: int, retried: int = 0) -> None:
        if skipped:
            self.progress.console.print(f"{skipped} trial(s) already done (or failed, with "
                                        "--skip-failed): skipped.")
        if retried:
            self.progress.console.print(f"Retrying {retried} failed trial(s) "
                                        "(--skip-failed keeps them as they are).")
        self.overall = self.progress.add_task("trials", total=len(jobs))

    def on_event(self, job, event) -> None:
        kind = event["kind"]
        if kind == "start":
            label = f"  {job.name}"
            if event.get("job_id"):  # Slurm: submitted, not yet running
                self.job_ids[job.trial_id] = event["job_id"]
                label += f" [job {event['job_id']}]"
            self.tasks[job.trial_id] = self.progress.add_task(label, total=None)
        task = self.tasks.get(job.trial_id)
        if kind == "finish" and event["result"]["status"] in ("held", "lost"):  # claims
            if task is not None:
                self.progress.remove_task(task)
            from ablate.dispatch.claiming import describe_holder

            result = event["result"]
            self.progress.console.print(
                f"[dim]left[/]   {escape(job.name)}: {result.get('held_status')} "
                f"{escape(describe_holder(result.get('holder')))}")
            self.progress.advance(self.overall)
            return
        if task is None:
            return
        if kind == "state":
            self.progress.update(task, description=f"  {job.name} [job {event['job_id']} "
                                 f"{event['state']}]")
        elif kind == "cancelled":
            self.progress.remove_task(task)
            self.progress.console.print(f"[yellow]cancelled[/] {escape(job.name)} (job "
                                        f"{event['job_id']}): back to pending")
            self.progress.advance(self.overall)
        elif kind == "step":
            self.progress.update(
                task, completed=event["step"], total=event["total_steps"],
                description=f"  {job.name} epoch {event['epoch']}/{event['epochs']} "
                f"loss {event['loss']:.3f}")
        elif kind == "finish":
            self.progress.remove_task(task)
            result = event["result"]
            if result["status"] == "done":
                miou = result["final"].get("miou", float("nan"))
                self.progress.console.print(f"[green]done[/]   {escape(job.name)}  mIoU {100 * miou:.2f}")
            else:
                first = (result.get("error") or "").splitlines()[0] if result.get("error") else ""
                self.progress.console.print(f"[red]failed[/] {escape(job.name)}: {escape(first)}")
            self.progress.advance(self.overall)


def _print_summary(store, study: str, trial_ids: list[str], summary) -> None:
    from rich.table import Table

    records = {r.trial_id: r for r in store.trials(study)}
    costs = store.get_costs([r.arch_id for r in records.values()])
    table = Table(title=f"{study}: {len(summary.done)} run, {summary.skipped} skipped, "
                  f"{len(summary.failed)} failed")
    for col in ("trial", "status", "mIoU %", "params", "GFLOPs", "latency ms"):
        table.add_column(col, justify="left" if col in ("trial", "status") else "right")
    for tid in trial_ids:
        r = records.get(tid)
        if r is None:
            continue
        cost = costs.get(r.arch_id)
        miou = r.metrics.get("miou")
        table.add_row(escape(r.name), r.status, fmt_float(100 * miou if miou is not None else None, 2),
                      fmt_int(cost.params if cost else None),
                      fmt_float(cost.gflops if cost else None),
                      fmt_float(r.metrics.get("latency_ms"), 2))
    console = make_console()
    console.print(table)
    for line in summary.corrupt:
        console.print(f"[yellow]ignored corrupt result:[/] {escape(line)}")
    if summary.recovered:
        console.print(f"ingested {len(summary.recovered)} result(s) left on disk by an earlier run")
    if summary.unrecorded:
        console.print(f"[yellow]{len(summary.unrecorded)} result(s) could not be written to the "
                      "database; they are safe in their run folders and are ingested next run.[/]")
