"""Result files in run folders: found and ingested into the store.

A trial writes its ``result.json`` (``ablate.trials.lifecycle.TrialResult.write``) before
anything else sees it, so a result produced while the database was busy or unreachable
stays on disk and is picked up by the next ``ablate run`` or ``ablate status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ablate.trials.lifecycle import RESULT_NAME, CorruptResult, TrialResult, TrialStatus


def run_dir_for(runs_root: str | Path, study: str, trial_id: str) -> Path:
    return Path(runs_root) / _safe(study) / trial_id


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def own_result(study: str, trial_id: str, run_dir: str | Path | None) -> TrialResult | None:
    """The trial's result file if it is complete and its own; None otherwise."""
    if not run_dir:
        return None
    try:
        result = TrialResult.read(Path(run_dir) / RESULT_NAME)
    except CorruptResult:
        return None
    if result.study != study or result.trial_id != trial_id:
        return None
    return result


@dataclass(frozen=True)
class IngestReport:
    ingested: list[str]
    corrupt: list[str]


def ingest_results(store, study: str, runs_root: str | Path,
                   trial_ids: set[str] | None = None) -> IngestReport:
    """Ingest every result file of ``study`` not yet in the store (idempotent)."""
    root = Path(runs_root) / _safe(study)
    ingested, corrupt = [], []
    if not root.is_dir():
        return IngestReport(ingested, corrupt)
    statuses = store.statuses(study)
    for path in sorted(root.glob(f"*/{RESULT_NAME}")):
        tid = path.parent.name
        if tid not in statuses or statuses[tid] is TrialStatus.DONE:
            continue
        if trial_ids is not None and tid not in trial_ids:
            continue
        try:
            result = TrialResult.read(path)
        except CorruptResult as err:
            corrupt.append(str(err))
            continue
        if result.study != study or result.trial_id != tid:
            corrupt.append(f"{path}: belongs to {result.study}/{result.trial_id}")
            continue
        if not result.done and statuses[tid] is TrialStatus.FAILED:
            continue
        if store.record(result):
            ingested.append(tid)
    return IngestReport(ingested, corrupt)
