"""``ablate cancel``: stop a study's Slurm jobs; their trials resume on the next run."""

from __future__ import annotations

import click

from ablate.cli import main
from ablate.cli.options import db_option, known_studies, runs_option


@main.command("cancel")
@click.argument("study")
@db_option
@runs_option
def cancel(study: str, db: str | None, runs_dir: str | None) -> None:
    """Cancel the running Slurm jobs of STUDY and mark their trials pending.

    A later 'ablate run' resumes them from their checkpoints. Results that arrived
    before the cancellation are recorded.

    \b
    Example:
        ablate cancel quickstart
    """
    from ablate.dispatch.prepare import resolve_runs_root  # lazy: loads pydantic, sqlalchemy
    from ablate.dispatch.slurm import cancel_study  # lazy: loads pydantic, sqlalchemy, submitit
    from ablate.store import Store  # lazy: loads sqlalchemy

    store = Store(db, must_exist=True)  # never creates a database
    known_studies(store, study)
    cancelled = cancel_study(store, study, str(resolve_runs_root(runs_dir, db)))
    if not cancelled:
        click.echo(f"{study}: no running Slurm jobs")
        return
    click.echo(f"{study}: cancelled {len(cancelled)} trial(s); they are pending again "
               f"(resume with 'ablate run')")
