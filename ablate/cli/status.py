"""``ablate status``: record finished Slurm trials and show where each trial is."""

from __future__ import annotations

import click

from ablate.cli import main
from ablate.cli.options import db_option, fmt_float, known_studies, make_console, runs_option
from ablate.cli.text import terminal as escape  # markup and control characters
from ablate.cli.text import visible
from ablate.errors import one_line
from ablate.trials.lifecycle import TrialStatus


@main.command("status")
@click.argument("study", required=False)
@db_option
@runs_option
def status(study: str | None, db: str | None, runs_dir: str | None) -> None:
    """Ingest finished results and show each trial's status and Slurm job.

    Result files written since the last look are recorded; a job that ended without
    one is recorded as failed with the tail of its log. Each failed trial's error
    follows the table, one line each. Without STUDY: every study.

    \b
    Example:
        ablate status quickstart
        ablate status --db postgresql+psycopg://user@host/ablate
    """
    from ablate.dispatch.prepare import resolve_runs_root  # lazy: loads pydantic, sqlalchemy
    from ablate.dispatch.slurm import follow_study  # lazy: loads pydantic, sqlalchemy, submitit
    from ablate.store import Store  # lazy: loads sqlalchemy

    store = Store(db, must_exist=True)  # never creates a database
    known = known_studies(store, study)
    console = make_console()
    if not known:  # say so rather than print nothing
        click.echo(f"{visible(store.display_url)} holds no studies yet; "
                   "'ablate run RECIPE' records one")
    for name in [study] if study else known:
        _print_study(console, store, follow_study(store, name, str(resolve_runs_root(runs_dir, db))))


def _claim_columns(record, now) -> tuple[str, str]:
    """Who holds a running trial and when its lease was last renewed ("12 s ago"); an
    expired lease says so (the next runner takes the trial over)."""
    from ablate.dispatch.claiming import describe_holder  # lazy: loads sqlalchemy

    if record.status is not TrialStatus.RUNNING or not record.holder:
        return "-", "-"
    renewed = "-"
    if record.heartbeat_at is not None:
        renewed = f"{max(0, int((now - record.heartbeat_at).total_seconds()))} s ago"
    if record.lease_expires_at is not None and record.lease_expires_at <= now:
        renewed += " (lease expired)"
    return describe_holder(record.holder), renewed


def _gpus_column(environment: dict | None) -> str:
    """The physical GPUs a trial trained on and their name: ``2,3 NVIDIA H200``."""
    env = environment or {}
    ids, names = env.get("gpus") or [], env.get("gpu_names") or []
    if not ids:
        return "-"
    return f"{','.join(map(str, ids))} {' / '.join(dict.fromkeys(map(str, names)))}".strip()


def _print_study(console, store, follow) -> None:
    from rich.table import Table  # lazy: loads rich.table

    from ablate.dispatch.slurm import read_job_info  # lazy: loads pydantic, sqlalchemy, submitit

    records = store.trials(follow.study)
    counts: dict[TrialStatus, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    title = f"{follow.study}: " + ", ".join(f"{counts[s]} {s}" for s in TrialStatus
                                            if counts.get(s))
    columns = ("trial", "status", "preempted", "job id", "Slurm state", "held by", "renewed",
               "GPUs", "mIoU %")
    now = store.database_time()
    rows = []
    for r in records:
        miou = r.metrics.get("miou")
        holder, renewed = _claim_columns(r, now)
        rows.append((escape(r.name), r.status.value,
                     f"{r.preemptions}x" if r.preemptions else "-", r.job_id or "-",
                     follow.slurm_states.get(r.trial_id, "-"), escape(holder), renewed,
                     escape(_gpus_column(r.environment)),
                     fmt_float(100 * miou if miou is not None else None, 2)))
    # a column with nothing in any row (a local CPU study has no job, Slurm state, GPUs)
    # leaves its width to the trial names, which fold rather than end in '…' where the
    # terminal is narrow: two trials must never read the same
    keep = [i for i, col in enumerate(columns)
            if col in ("trial", "status", "mIoU %") or any(row[i] != "-" for row in rows)]
    table = Table(title=title)
    for i in keep:
        col = columns[i]
        table.add_column(col, justify="right" if col in ("mIoU %", "preempted") else "left",
                         overflow="fold" if col == "trial" else "ellipsis")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    for line in follow.corrupt:
        console.print(f"[yellow]ignored corrupt result:[/] {escape(line)}")
    if follow.ingested:
        console.print(f"recorded {len(follow.ingested)} finished result(s)")
    by_id = {r.trial_id: r for r in records}
    for tid in follow.died:
        rec = by_id[tid]
        info = read_job_info(rec.run_dir)
        where = f"; log: {info.paths().stderr}" if info else ""
        error = one_line(rec.error or f"{rec.status}: no error recorded")
        console.print(f"[red]failed[/] {escape(rec.name)}: {escape(error)}{where}",
                      soft_wrap=True)
    for rec in records:  # why each failed trial failed (the report sends users here)
        if rec.status is TrialStatus.FAILED and rec.trial_id not in follow.died:
            error = one_line(rec.error or "no error recorded")
            console.print(f"[red]failed[/] {escape(rec.name)}: {escape(error)}", soft_wrap=True)
    for tid in follow.requeue:
        console.print(f"[yellow]pending[/] {escape(by_id[tid].name)}: its job was cancelled; "
                      "'ablate run' runs it again")
    for tid in follow.unclaimed:
        console.print(f"[yellow]pending[/] {escape(by_id[tid].name)}: its job could not claim it "
                      "(a database error; nothing was trained); 'ablate run' runs it again")
    for tid in follow.interrupted:
        rec = by_id[tid]
        console.print(f"[yellow]{rec.status.value.replace('_', ' ')}[/] {escape(rec.name)}: the "
                      "cluster stopped its job; 'ablate run' resumes it from its checkpoint")
