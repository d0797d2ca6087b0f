"""Thinning the run folders of a study's done trials (``ablate prune``).

``ablate run --keep`` thins each trial as it finishes; this does the same afterwards, for
studies run with ``--keep checkpoint`` or by an ablate that kept every checkpoint. Only
trials the database holds as done are touched: a pending, running, failed or
interrupted trial keeps its checkpoint to resume from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablate.dispatch.results import recorded_run_dir
from ablate.train.checkpoint import keep_finished, thinned_files, would_free
from ablate.trials.lifecycle import TrialStatus


@dataclass(frozen=True)
class PruneReport:
    done: int  # the study's done trials
    folders: int  # run folders thinned (with dry_run: that would be)
    freed: int  # bytes freed (with dry_run: that would be, exactly)
    missing: int  # done trials whose run folder is gone


def prune_done(store, study: str, runs_root: str | Path, keep: str, *,
               dry_run: bool = False) -> PruneReport:
    """Apply ``keep`` (``weights`` or ``none``) to every done trial's run folder."""
    if keep not in ("weights", "none"):
        raise ValueError(f"keep={keep!r}: allowed weights, none")
    done = store.trials(study, with_metrics=False, status=TrialStatus.DONE)
    folders = freed = missing = 0
    for record in done:
        run_dir = recorded_run_dir(runs_root, study, record.trial_id, record.run_dir)
        if not run_dir.is_dir():
            missing += 1
            continue
        if not thinned_files(run_dir, keep):
            continue
        folders += 1
        freed += (would_free if dry_run else keep_finished)(run_dir, keep)
    return PruneReport(len(done), folders, freed, missing)
