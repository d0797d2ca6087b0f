"""Trial times and run estimates: what ``ablate plan``'s time estimate, ``ablate run
--budget`` and the report's estimate-against-actual table read and write.

A mixin of ``Store`` (as ``claims`` is): every method is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from ablate.store.claims import db_now
from ablate.store.models import EstimateRow, MetricRow, StudyRow, TrialRow
from ablate.store.records import EstimateRecord, TrialTime
from ablate.trials.lifecycle import TrialStatus

_FINISHED = (TrialStatus.DONE, TrialStatus.FAILED)
_CHUNK = 900


class TimingsMixin:
    def trial_times(self, *, study: str | None = None, arch_ids: Iterable[str] | None = None,
                    statuses: Iterable[TrialStatus] = _FINISHED) -> list[TrialTime]:
        """Finished trials (by default) of ``study`` or of any study with one of
        ``arch_ids``, with their span, steps, batch size and environment."""
        steps = aliased(MetricRow)
        query = (
            select(StudyRow.name, TrialRow.trial_id, TrialRow.config_name, TrialRow.arch_id,
                   TrialRow.seed, TrialRow.status, TrialRow.started_at, TrialRow.finished_at,
                   steps.value, TrialRow.spec, TrialRow.environment)
            .join(StudyRow, StudyRow.id == TrialRow.study_id)
            .outerjoin(steps, and_(steps.trial_pk == TrialRow.id, steps.key == "steps",
                                   steps.epoch.is_(None)))
            .where(TrialRow.status.in_(list(statuses)))
            .order_by(TrialRow.id)
        )
        if study is not None:
            query = query.where(StudyRow.name == study)
        queries = [query]
        if arch_ids is not None:  # in chunks: SQLite allows a few hundred parameters
            wanted = sorted(set(arch_ids))
            queries = [query.where(TrialRow.arch_id.in_(wanted[i:i + _CHUNK]))
                       for i in range(0, len(wanted), _CHUNK)]
        out = []
        with self.session() as s:  # type: ignore[attr-defined]
            for chunk in queries:
                out += [TrialTime(name, tid, config, arch, seed, TrialStatus(status), started,
                                  finished, value, _batch_size(spec), dict(env) if env else None)
                        for name, tid, config, arch, seed, status, started, finished, value,
                        spec, env in s.execute(chunk)]
        return out

    def record_estimate(self, study: str, estimate: dict[str, Any]) -> EstimateRecord:
        """Keep what a run estimated, stamped with the database's time now."""
        with self.session() as s:  # type: ignore[attr-defined]
            row = s.scalar(select(StudyRow).where(StudyRow.name == study))
            if row is None:
                raise KeyError(study)
            at = db_now(s)
            s.add(EstimateRow(study_id=row.id, created_at=at, estimate=dict(estimate)))
            return EstimateRecord(study, at, dict(estimate))

    def estimates(self, studies: list[str] | None = None) -> list[EstimateRecord]:
        """Every recorded estimate, by study then time."""
        query = (select(StudyRow.name, EstimateRow.created_at, EstimateRow.estimate)
                 .join(StudyRow, StudyRow.id == EstimateRow.study_id)
                 .order_by(StudyRow.id, EstimateRow.created_at, EstimateRow.id))
        if studies is not None:
            query = query.where(StudyRow.name.in_(studies))
        with self.session() as s:  # type: ignore[attr-defined]
            return [EstimateRecord(name, at, dict(data)) for name, at, data in s.execute(query)]


def _batch_size(spec: Any) -> int | None:
    try:
        value = spec["train"]["batch_size"]
    except (TypeError, KeyError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
