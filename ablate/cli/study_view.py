"""What ``ablate run`` shows: the study runner's events (``dispatch.study``) rendered.

Progress bars for the round and each running trial go to stderr; the round's table, the
runner's report and the ``--until-decided`` decisions go to stdout. Nothing here decides
or records anything.
"""

from __future__ import annotations

from ablate.cli.options import fmt_float, fmt_int, make_console
from ablate.cli.text import terminal as escape  # markup and control characters
from ablate.dispatch.adaptive import (
    DesignChosen,
    EffectsRead,
    FinishingRound,
    LoopStopped,
    SeedAdded,
)
from ablate.dispatch.events import (
    DrawsChosen,
    Estimated,
    Planned,
    RoundEnded,
    RunnerReport,
    TrialUpdate,
    TuningEvent,
    TuningRetried,
    TuningStarted,
    TuningStopped,
    TuningWaiting,
    Waiting,
)
from ablate.errors import one_line
from ablate.train.events import (
    Claimed,
    Ended,
    JobCancelled,
    JobStateChanged,
    Stepped,
    Submitted,
)
from ablate.trials.lifecycle import Held, Interrupted, JobDied, Lost, Trained, Unclaimed


def loop_lines(event) -> list[str]:
    """An ``--until-decided`` event (``dispatch.adaptive``) as the lines it prints."""
    if isinstance(event, DesignChosen):
        return [f"design: {event.design.describe()}"]
    if isinstance(event, EffectsRead):
        return list(event.decision.lines)
    if isinstance(event, FinishingRound):
        return [f"finishing {event.trials} trial(s) of an earlier round"]
    if isinstance(event, SeedAdded):
        return [f"seed {event.seed} for {event.trials} configuration(s): "
                f"{', '.join(event.configs)}"]
    if isinstance(event, LoopStopped):
        return [f"stopped: {event.reason}"]
    return []


def tuning_lines(event) -> list[str]:
    """A tuned study's phase events (``dispatch.tuning``) as the lines they print."""
    if isinstance(event, TuningStarted):
        return [f"tuning: {event.method}; {event.trials:,} tuning trial(s) ({event.draws} "
                f"draws x {event.configs} configuration(s) x {event.seeds} tuning seed(s); "
                "a setting drawn twice trains once)"]
    if isinstance(event, TuningRetried):
        kinds = ", ".join(f"{n} {kind}" for kind, n in event.errors.items())
        return [f"retrying {event.trials} failed tuning trial(s) once before the selection "
                f"({kinds}): not a diverged loss or a setting refused at train time, so "
                "possibly transient (a killed worker, out of memory on a shared GPU), and a "
                "failed draw would cut its configuration's tuning budget"]
    if isinstance(event, DrawsChosen):
        how = "chosen" if event.recorded else "chosen before (recorded with the study)"
        lines = [f"{how}: each configuration's best draw by mean {event.metric} over the "
                 "tuning seeds; its effects are read on the study's seeds"]
        for config, (draw, values, score) in event.chosen.items():
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            failed = event.failed_draws.get(config, 0)
            lines.append(f"  {config}: draw {draw} ({shown}), {event.metric} "
                         f"{fmt_float(score, 2)}" + (f"; {failed} of its {event.budget} draws "
                                                     "failed (no score, never chosen)"
                                                     if failed else ""))
        return lines
    if isinstance(event, TuningWaiting):
        return [f"the confirmation trials wait on {event.unfinished} unfinished tuning "
                "trial(s); run the same command again once they are finished"]
    if isinstance(event, TuningStopped):
        return [f"tuning stopped: {event.reason}"]
    return []


def waiting_line(held: int, expiry) -> str:
    when = (f"; the first lease expires at {expiry:%H:%M:%S} (database time, UTC)"
            if expiry is not None else "")
    return f"waiting for {held} trial(s) other runners hold{when}"


class StudyView:
    """Renders a study's events; ``show`` is the runner's ``emit``."""

    def __init__(self, console, store, detached: bool = False) -> None:
        self.console = console  # stderr: progress
        self.store = store
        # --detach: the run returns once its jobs are queued, before any trial moves, so
        # its bars would stay empty on the screen; its lines are still printed
        self.detached = detached
        self.progress = None  # the round's rich Progress, while a round runs
        self.overall = None
        self.tasks: dict[str, int] = {}
        self.job_ids: dict[str, str] = {}  # Slurm: trial id -> job id

    def __enter__(self) -> StudyView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def show(self, event) -> None:
        if isinstance(event, Estimated):
            from ablate.cli.time_estimate import run_line  # lazy: only when estimated

            line = run_line(event.estimate, event.budget)
            if line:
                self.console.print(escape(line))
        elif isinstance(event, Planned):
            self._planned(event)
        elif isinstance(event, TrialUpdate):
            self._trial(event.job, event.event)
        elif isinstance(event, Waiting):
            self.console.print(waiting_line(event.held, event.expiry))
        elif isinstance(event, RoundEnded):
            self.close()
            print_summary(self.store, event.study, list(event.trial_ids), event.summary)
        elif isinstance(event, RunnerReport):
            for line in event.lines:
                make_console().print(escape(line))
        elif isinstance(event, TuningEvent):
            for line in tuning_lines(event):
                make_console().print(escape(line))
        else:
            for line in loop_lines(event):
                self.console.print(escape(line))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None

    def _planned(self, event) -> None:
        from rich.progress import (  # lazy: loads rich.progress
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        if event.skipped:
            self.console.print(f"{event.skipped} trial(s) already done (or failed, with "
                               "--skip-failed): skipped.")
        if event.retried:
            self.console.print(f"Retrying {event.retried} failed trial(s) "
                               "(--skip-failed keeps them as they are).")
        self.close()
        if not event.trials:  # every trial skipped: a '0/0' bar would stand there empty
            return
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False,
            disable=self.detached)
        self.progress.__enter__()
        self.tasks = {}
        self.overall = self.progress.add_task("trials", total=event.trials)

    def _trial(self, job, event) -> None:
        progress = self.progress
        if progress is None:
            return
        if isinstance(event, Submitted | Claimed):
            label = f"  {job.name}"
            if isinstance(event, Submitted):  # Slurm: queued, claimed when it starts
                self.job_ids[job.trial_id] = event.job_id
                label += f" [job {event.job_id}]"
            elif event.resumed:
                label += f" [resumes: {event.resumed.replace('_', ' ')}]"
            # a description is markup: unescaped, "[keep_last=true]" and "[job 12_0]" vanish
            self.tasks[job.trial_id] = progress.add_task(escape(label), total=None)
            return
        task = self.tasks.get(job.trial_id)
        if isinstance(event, Ended) and not isinstance(event.outcome, Trained | JobDied):
            if task is not None:  # not trained here: held, lost, unclaimed, interrupted
                progress.remove_task(task)
            progress.console.print(_not_trained(job, event.outcome))
            progress.advance(self.overall)
            return
        if task is None:
            return
        if isinstance(event, JobStateChanged):
            progress.update(task, description=escape(f"  {job.name} [job {event.job_id} "
                                                     f"{event.state}]"))
        elif isinstance(event, JobCancelled):
            progress.remove_task(task)
            progress.console.print(f"[yellow]cancelled[/] {escape(job.name)} (job "
                                   f"{event.job_id}): back to pending")
            progress.advance(self.overall)
        elif isinstance(event, Stepped):
            progress.update(task, completed=event.step, total=event.total_steps,
                            description=escape(f"  {job.name} epoch {event.epoch}/"
                                               f"{event.epochs} loss {event.loss:.3f}"))
        elif isinstance(event, Ended):
            progress.remove_task(task)
            result = event.outcome.result
            if result.done:
                miou = result.final.get("miou", float("nan"))
                progress.console.print(f"[green]done[/]   {escape(job.name)}  mIoU {100 * miou:.2f}")
            else:
                first = result.error.splitlines()[0] if result.error else ""
                progress.console.print(f"[red]failed[/] {escape(job.name)}: {escape(first)}",
                                       soft_wrap=True)  # a long path stays on one line
            progress.advance(self.overall)


def _not_trained(job, outcome) -> str:
    """The line for a trial this runner did not train to a result."""
    from ablate.dispatch.claiming import describe_holder  # lazy: loads sqlalchemy

    name = escape(job.name)
    match outcome:
        case Held(why=why, holder=holder):
            return f"[dim]left[/]   {name}: {why} {escape(describe_holder(holder))}"
        case Lost():
            return f"[dim]left[/]   {name}: its claim was taken over by another runner"
        case Unclaimed(error=error):
            return (f"[yellow]not claimed[/] {name}: {escape(one_line(error))}; "
                    "the next run claims it")
        case Interrupted(status=status, detail=detail):
            return (f"[yellow]{status.value.replace('_', ' ')}[/] {name}: {escape(detail)}; "
                    "'ablate run' resumes it from its checkpoint")
    return f"[dim]left[/]   {name}"


def print_summary(store, study: str, trial_ids: list[str], summary) -> None:
    """The round's trials as a table (mIoU, parameters, GFLOPs, latency), and what was
    ingested from disk or could not be written."""
    from rich.table import Table  # lazy: loads rich.table

    records = {r.trial_id: r for r in store.trials(study)}
    costs = store.get_costs([r.arch_id for r in records.values()])
    ran = len(summary.done) + len(summary.failed)  # trained this round, done or failed
    ended = f" ({len(summary.done)} done, {len(summary.failed)} failed)" if ran else ""
    queued = len(summary.queued())
    queued_part = f", {queued} queued on Slurm" if queued else ""
    table = Table(title=f"{study}: {ran} run{ended}{queued_part}, {summary.skipped} skipped")
    for col in ("trial", "status", "mIoU %", "params", "GFLOPs", "latency ms"):
        table.add_column(col, justify="left" if col in ("trial", "status") else "right",
                         overflow="fold" if col == "trial" else "ellipsis")  # never two alike
    for tid in trial_ids:
        r = records.get(tid)
        if r is None:
            continue
        cost = costs.get(r.arch_id)
        miou = r.metrics.get("miou")
        table.add_row(escape(r.name), r.status.value,
                      fmt_float(100 * miou if miou is not None else None, 2),
                      fmt_int(cost.params if cost else None),
                      fmt_float(cost.gflops if cost else None),
                      fmt_float(r.metrics.get("latency_ms"), 2))
    console = make_console()
    console.print(table)
    for line in summary.corrupt:
        console.print(f"[yellow]ignored corrupt result:[/] {escape(line)}")
    if summary.recovered:
        console.print(f"ingested {len(summary.recovered)} result(s) left on disk by an earlier run")
    if summary.foreign:
        console.print(f"not ingested: {len(summary.foreign)} result file(s) in the runs folder "
                      f"written for another database ({escape(summary.foreign_db)}); left as "
                      "they are: this database trains those trials itself")
    if summary.unrecorded:
        console.print(f"[yellow]{len(summary.unrecorded)} result(s) could not be written to the "
                      "database; they are safe in their run folders and are ingested next run.[/]")
