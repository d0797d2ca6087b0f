"""Each run's time estimate beside what it took (``ablate report --estimates``).

``ablate run`` records its estimate when its first round starts (``Store.record_estimate``):
the figures it showed, made from what was known then. Stored rather than recomputed,
because after the run its own trials are measurements (a recomputed estimate would
partly be the actual time) and the probe cache and ``--jobs`` are not recorded anywhere
else. The actual figures are read from the trials: those the run started (from its
estimate's time to the next run's), their span from the run's start to the last result,
and their device-hours (time x devices, as ``--budget`` counts them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ablate.cost.estimate import device_count
from ablate.cost.throughput import CPU
from ablate.store import EstimateRecord, TrialTime

COLUMNS = ("study", "started", "executor", "case", "trials_estimated", "trials",
           "wall_estimated_s", "wall_s", "wall_ratio", "device_h_estimated", "device_h", "unit")


def estimate_rows(estimates: list[EstimateRecord], times: list[TrialTime]) -> list[dict[str, Any]]:
    """One row per recorded estimate, with the actual figures of the trials its run
    started (``times``: finished trials of the same studies)."""
    rows = []
    by_study: dict[str, list[EstimateRecord]] = {}
    for record in estimates:
        by_study.setdefault(record.study, []).append(record)
    for study, records in by_study.items():
        records = sorted(records, key=lambda r: r.created_at)
        mine = [t for t in times if t.study == study and t.started_at and t.finished_at]
        for i, record in enumerate(records):
            until = records[i + 1].created_at if i + 1 < len(records) else None
            ran = [t for t in mine if t.started_at >= record.created_at
                   and (until is None or t.started_at < until)]
            rows.append(_row(record, ran))
    return rows


def _row(record: EstimateRecord, ran: list[TrialTime]) -> dict[str, Any]:
    data = record.estimate
    resources = data.get("resources") or {}
    kind = resources.get("kind", CPU)
    fallback = int(resources.get("devices_per_trial") or 1)
    case, cost = "recipe's trials", data.get("left") or {}
    if data.get("worst"):  # --until-decided: the loop's worst case bounds the run
        case, cost = "--until-decided worst case", data["worst"]["cost"]
    end: datetime | None = max((t.finished_at for t in ran), default=None)
    wall = (end - record.created_at).total_seconds() if end is not None else None
    device_h = sum((t.seconds or 0.0) * device_count(t.environment, kind, fallback)
                   for t in ran) / 3600.0 if ran else None
    wall_estimated = cost.get("wall_s")
    return {
        "study": record.study, "started": record.created_at.isoformat(timespec="seconds"),
        "executor": resources.get("executor"), "case": case,
        "trials_estimated": cost.get("trials"), "trials": len(ran),
        "wall_estimated_s": wall_estimated, "wall_s": wall,
        "wall_ratio": wall / wall_estimated if wall is not None and wall_estimated else None,
        "device_h_estimated": cost.get("device_h"), "device_h": device_h,
        "unit": data.get("unit"),
    }
