"""``ablate prune``: thin the run folders of a study's done trials."""

from __future__ import annotations

from pathlib import Path

import click

from ablate.cli import main
from ablate.cli.options import db_option, known_studies, runs_option


@main.command("prune")
@click.argument("study")
@db_option
@runs_option
@click.option("--keep", default="weights", show_default=True,
              type=click.Choice(["weights", "none"]),
              help="What each done trial's run folder keeps: the model's weights alone "
                   "(weights.pt, in place of the whole checkpoint), or no model file.")
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing.")
def prune(study: str, db: str | None, runs_dir: str | None, keep: str, dry_run: bool) -> None:
    """Thin the run folders of STUDY's done trials to what --keep names.

    For studies run with 'ablate run --keep checkpoint' or by an ablate that kept every
    checkpoint (what 'ablate run' now does as each trial finishes). Trials that are not
    done keep their checkpoints, to resume from; result files and logs stay.

    \b
    Example:
        ablate prune quickstart --dry-run
        ablate prune quickstart
        ablate prune quickstart --keep none
    """
    from ablate.dispatch.prepare import resolve_runs_root  # lazy: loads pydantic, sqlalchemy
    from ablate.dispatch.prune import prune_done  # lazy: loads torch
    from ablate.store import Store  # lazy: loads sqlalchemy

    store = Store(db, must_exist=True)  # never creates a database
    known_studies(store, study)
    runs_root = resolve_runs_root(runs_dir, db)
    report = prune_done(store, study, runs_root, keep, dry_run=dry_run)
    what = "weights.pt alone" if keep == "weights" else "no model file"
    size = _size(report.freed)
    line = (f"{study}: {report.done} done trial(s); " + (
        f"would thin {report.folders} run folder(s) to {what}, freeing {size}"
        if dry_run else f"thinned {report.folders} run folder(s) to {what}, {size} freed"))
    if report.missing:  # moved, deleted, or under another runs folder than this one
        line += (f"; {report.missing} run folder(s) not found, as recorded or under "
                 f"{Path(runs_root).absolute()} (--runs-dir names another runs folder)")
    click.echo(line)


def _size(n_bytes: int) -> str:
    """Bytes as GB (from 1 GB) or MB, the unit a run folder's size is read in."""
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"
