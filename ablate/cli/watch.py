"""``ablate watch``: a live terminal view of a study, refreshed from the database."""

from __future__ import annotations

import sys
import time

import click
from rich.text import Text

from ablate.cli import main
from ablate.cli.options import db_option, known_studies, make_console, not_nan, runs_option
from ablate.cli.text import visible
from ablate.trials.lifecycle import TrialStatus


@main.command("watch")
@click.argument("study", required=False)
@db_option
@runs_option
@click.option("--interval", type=click.FloatRange(0.05, 3600), default=2.0, show_default=True,
              metavar="S", callback=not_nan, help="Seconds between refreshes.")
def watch(study: str | None, db: str | None, runs_dir: str | None, interval: float) -> None:
    """Live dashboard of a study: states, running trials, best so far, ETA, effects.

    Refreshes from the database every --interval seconds until no trial is pending or
    running (exit 0; Ctrl-C: exit 130). It only reads: the database is opened read-only
    and never created; each running trial's epoch, step and loss come from progress.json
    in its run folder. Without STUDY: the study recorded last. Off a terminal (a pipe, a
    log) it prints a snapshot each time something changes.

    \b
    Example:
        ablate watch quickstart
        ablate watch --db results/ablate.db --interval 5
        ablate watch mnv3_expansion --db postgresql+psycopg://user@host/ablate
    """
    try:
        _watch(study, db, runs_dir, interval)
    except KeyboardInterrupt:  # Ctrl-C is how a watch ends early: no traceback, no message
        sys.exit(130)


def _watch(study: str | None, db: str | None, runs_dir: str | None, interval: float) -> None:
    from ablate.dispatch.live import study_snapshot  # lazy: loads pandas
    from ablate.dispatch.prepare import resolve_runs_root  # lazy: loads pydantic, sqlalchemy
    from ablate.store import Store  # lazy: loads sqlalchemy

    store = Store(db, read_only=True)  # never creates, never writes, takes no write lock
    known = known_studies(store, study)
    if study is None:
        if not known:  # as ablate status says it: nothing given is wrong (exit 0)
            click.echo(f"{visible(store.display_url)} holds no studies yet; "
                       "'ablate run RECIPE' records one")
            return
        study = known[-1]
    runs_root = resolve_runs_root(runs_dir, db)
    console = make_console()

    def take():
        snap = study_snapshot(store, study, runs_root)
        if store.damage is not None:  # a damaged page met where the view shows what it can
            raise store.damage
        return snap

    snapshot = take()
    if snapshot.complete or not console.is_terminal:
        console.print(render(snapshot))
        shown = snapshot.signature()
        while not snapshot.complete:  # a pipe or a log: one snapshot per change
            time.sleep(interval)
            snapshot = take()
            if snapshot.signature() != shown or snapshot.complete:
                console.print()
                console.print(render(snapshot))
                shown = snapshot.signature()
        return
    from rich.live import Live  # lazy: loads rich.console, rich.live

    with Live(render(snapshot), console=console, auto_refresh=False) as view:
        while not snapshot.complete:
            time.sleep(interval)
            snapshot = take()
            view.update(render(snapshot), refresh=True)


def render(snap):
    """The dashboard: a headline, the running trials, the best configuration, the effects."""
    from rich.console import Group  # lazy: loads rich.console
    from rich.table import Table  # lazy: loads rich.table

    from ablate.dispatch.live import MIN_PACED_FRACTION  # lazy: loads pandas

    counts = ", ".join(f"{snap.counts[s]} {s}" for s in TrialStatus if snap.counts.get(s))
    head = Text(f"{visible(snap.study)}: {counts or 'no trials'} of {snap.total} trial(s)",
                style="bold")
    parts: list = [head]
    failed = snap.counts.get(TrialStatus.FAILED)
    if snap.complete:
        parts.append(Text("complete" + (f"; {failed} failed: 'ablate run' retries them"
                                        if failed else "")))
    elif snap.eta_s is None:
        parts.append(Text("time left: estimated once a trial has trained "
                          f"{MIN_PACED_FRACTION:.0%} of its steps"))
    elif snap.paced:
        parts.append(Text(f"time left: about {duration(snap.eta_s)}, training only (at the "
                          "running trials' pace a trial trains in "
                          f"{duration(snap.mean_trial_s)}; evaluation counts once a trial "
                          f"is done; {max(1, len(snap.running))} at a time)"))
    else:
        parts.append(Text(f"time left: about {duration(snap.eta_s)} (a trial takes "
                          f"{duration(snap.mean_trial_s)} on average; "
                          f"{max(1, len(snap.running))} at a time)"))
    if snap.preemptions:
        parts.append(Text(f"preempted or timed out: {snap.preemptions} time(s); each trial "
                          "resumes from its checkpoint (not a failure)"))
    if snap.running:
        table = Table(title="running")
        for col in ("trial", "held by", "renewed", "epoch", "step", "loss", "preempted"):
            if col in ("trial", "held by"):  # long names fold onto a second line, never cut
                table.add_column(col, overflow="fold")
            else:
                table.add_column(col, justify="right")
        for r in snap.running:
            table.add_row(Text(visible(r.name)), Text(visible(r.holder)),
                          "-" if r.renewed_s is None else f"{r.renewed_s:.0f} s ago",
                          _of(r.epoch, r.epochs), _of(r.step, r.total_steps),
                          "-" if r.loss is None else f"{r.loss:.3f}",
                          f"{r.preemptions}x" if r.preemptions else "-")
        parts.append(table)
    if snap.best is not None:
        b = snap.best
        spread = "" if b["miou_std"] is None else f" ± {b['miou_std']:.2f}"
        parts.append(Text(f"best so far: {visible(b['config_name'])}  mIoU "
                          f"{b['miou_mean']:.2f}{spread} % (n={b['n']})"))
    else:
        parts.append(Text("best so far: - (no trial done yet)"))
    if snap.effects:
        parts.append(_effects_table(snap.effects))
    elif snap.effects_error:
        parts.append(Text(f"effects: not yet ({visible(snap.effects_error)})"))
    return Group(*parts)


def _effects_table(rows: list[dict]):
    import pandas as pd  # lazy: loads pandas
    from rich.table import Table  # lazy: loads rich.table

    from ablate.report.render import interval_texts  # lazy: loads numpy, pandas

    table = Table(title="effects on mIoU so far (points)")
    # read by name: the effects table's columns change (ablate.analysis.effects)
    present = [k for k in ("axis", "change", "estimate", "ci_low", "n", "verdict") if k in rows[0]]
    headers = {"estimate": "Δ mIoU", "ci_low": "interval"}
    for key in present:
        table.add_column(headers.get(key, key),
                         justify="right" if key in ("estimate", "ci_low", "n") else "left")
    for row in rows:
        cells = []
        for key in present:
            value = row.get(key)
            if key == "estimate":
                cells.append("—" if _nan(value) else f"{value:+.2f}")
            elif key == "ci_low":
                cells.append(interval_texts(pd.Series([value]), pd.Series([row.get("ci_high")]))[0])
            elif key == "n":
                cells.append("-" if _nan(value) else f"{int(value)}")
            else:
                cells.append(Text(visible(value)))
        table.add_row(*cells)
    return table


def _nan(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _of(value, total) -> str:
    if value is None:
        return "-"
    return f"{value}/{total}" if total else str(value)


def duration(seconds: float | None) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
