"""Result files: written atomically by a trial, ingested into the store by the driver.

A result that was produced while the database was busy or unreachable stays on disk
and is picked up by the next ``ablate run`` or ``ablate status``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULT_NAME = "result.json"
RESULT_FORMAT = 1
REQUIRED_KEYS = ("format", "study", "trial_id", "status")


class CorruptResult(Exception):
    pass


def run_dir_for(runs_root: str | Path, study: str, trial_id: str) -> Path:
    return Path(runs_root) / _safe(study) / trial_id


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_result(run_dir: str | Path, result: dict[str, Any]) -> Path:
    """Temporary file, fsync, rename: readers see the whole file or none of it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RESULT_NAME
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"format": RESULT_FORMAT, **result}, fh, indent=1, default=_jsonable)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_result(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            result = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptResult(f"{path}: unreadable result file ({err})") from None
    if not isinstance(result, dict) or any(k not in result for k in REQUIRED_KEYS):
        raise CorruptResult(f"{path}: result file lacks {', '.join(REQUIRED_KEYS)}")
    if result["format"] != RESULT_FORMAT or result["status"] not in ("done", "failed"):
        raise CorruptResult(f"{path}: unknown result format or status")
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
        if tid not in statuses or statuses[tid] == "done":
            continue
        if trial_ids is not None and tid not in trial_ids:
            continue
        try:
            result = read_result(path)
        except CorruptResult as err:
            corrupt.append(str(err))
            continue
        if result["study"] != study or result["trial_id"] != tid:
            corrupt.append(f"{path}: belongs to {result['study']}/{result['trial_id']}")
            continue
        if result["status"] == "failed" and statuses[tid] == "failed":
            continue
        if store.ingest_result(result):
            ingested.append(tid)
    return IngestReport(ingested, corrupt)
