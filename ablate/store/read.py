"""The store's read API for reports and exports: one SQL query per table into pandas.

``Store.trials()`` builds one frozen record per trial, which is right for the run
loop but too slow for a report over 100,000 trials. These queries read the same
rows as plain columns: the DBAPI cursor's tuples go straight into numpy/pandas,
skipping SQLAlchemy's per-row objects (4-5x faster). No ORM object leaves this
module (the ORM rows stay inside ``ablate.store``), and the queries run inside
``store.session()``, so a database error still arrives as a ``StoreError``.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd
from sqlalchemy import String, and_, cast, or_, select
from sqlalchemy.orm import aliased

from ablate.heap import no_gc  # also report.frame's, as read.no_gc
from ablate.store.models import CostRow, MetricRow, StudyRow, TrialRow
from ablate.trials.lifecycle import TrialStatus


def trial_rows(store, studies: list[str] | None,
               metric_keys: list[str] | tuple[str, ...] = (), *,
               tuning: bool = False) -> pd.DataFrame:
    """Trials, one row each, in study order then insertion order: the trials a study
    compares, or (``tuning``) a tuned study's tuning trials, with their ``tuning_draw``.

    ``axes`` and ``published`` come back as JSON text (parsed once per distinct
    value by the caller); ``pk`` is the trials table's primary key; ``study_pk``
    and ``arch_id`` point into ``study_names`` and ``costs``. Each of
    ``metric_keys`` adds the final figure as column ``metric:<key>``, read through
    the (trial, key) index instead of scanning every metric row.
    """
    query = (
        select(
            TrialRow.id.label("pk"), TrialRow.study_id.label("study_pk"), TrialRow.trial_id,
            TrialRow.name, TrialRow.config_name, TrialRow.variant, TrialRow.seed, TrialRow.status,
            TrialRow.preemptions, TrialRow.tuning_draw,
            cast(TrialRow.axes, String).label("axes"),
            cast(TrialRow.published, String).label("published"), TrialRow.arch_id,
        )
        .where(TrialRow.tuning_draw.is_not(None) if tuning else TrialRow.tuning_draw.is_(None))
        .order_by(TrialRow.study_id, TrialRow.id)
    )
    for i, key in enumerate(metric_keys):
        metric = aliased(MetricRow, name=f"m{i}")
        query = query.outerjoin(metric, and_(metric.trial_pk == TrialRow.id, metric.key == key,
                                             metric.epoch.is_(None)))
        query = query.add_columns(metric.value.label(f"metric:{key}"))
    if studies is not None:
        query = query.where(TrialRow.study_id.in_(
            select(StudyRow.id).where(StudyRow.name.in_(studies)).scalar_subquery()))
    return _read(store, query)


def study_names(store) -> dict[int, str]:
    return {s.id: s.name for s in store.studies()}


def study_descriptions(store) -> dict[str, str]:
    return {s.name: s.description for s in store.studies()}


def costs(store) -> pd.DataFrame:
    """The cost cache: ``arch_id, params, flops, flops_convention, resolution_h/w``."""
    return _read(store, select(CostRow.arch_id, CostRow.params, CostRow.flops,
                               CostRow.flops_convention, CostRow.resolution_h,
                               CostRow.resolution_w))


def final_metrics(store, studies: list[str] | None, *, per_class: bool,
                  keys: list[str] | None = None, runtimes: bool = False) -> pd.DataFrame:
    """Final figures in long form: ``pk, key, value``.

    Every key without ``/`` (or only ``keys``), plus the per-class ``iou/...`` ones
    with ``per_class`` and those per runtime and batch size (``latency_ms@onnxruntime/bs8``)
    with ``runtimes``.
    """
    query = select(MetricRow.trial_pk.label("pk"), MetricRow.key, MetricRow.value).where(
        MetricRow.epoch.is_(None))
    wanted = MetricRow.key.not_like("%/%") if keys is None else MetricRow.key.in_(keys)
    if per_class:
        wanted = or_(wanted, MetricRow.key.like("iou/%"))
    if runtimes:
        wanted = or_(wanted, MetricRow.key.like("%@%/bs%"))
    query = query.where(wanted)
    if studies is not None:
        query = query.join(TrialRow, MetricRow.trial_pk == TrialRow.id).join(
            StudyRow, TrialRow.study_id == StudyRow.id).where(StudyRow.name.in_(studies))
    return _read(store, query)


def epoch_metrics(store, studies: list[str], keys: list[str]) -> pd.DataFrame:
    """Per-epoch figures ``study, trial_id, epoch, step, key, value`` of the named keys."""
    query = (
        select(StudyRow.name.label("study"), TrialRow.trial_id, MetricRow.epoch, MetricRow.step,
               MetricRow.key, MetricRow.value)
        .join(TrialRow, MetricRow.trial_pk == TrialRow.id)
        .join(StudyRow, TrialRow.study_id == StudyRow.id)
        .where(MetricRow.epoch.is_not(None), MetricRow.key.in_(keys), StudyRow.name.in_(studies))
        .order_by(TrialRow.id, MetricRow.epoch, MetricRow.id)
    )
    return _read(store, query)


def runtime_metrics(store, studies: list[str]) -> tuple[list[tuple], list[tuple]]:
    """Final runtime figures of ``studies``: ``(study, trial_id, key, value)`` rows of keys
    with ``@`` and ``latency_threads``, and ``(study, trial_id, environment JSON text)``
    of their done trials."""
    with store.session() as s:
        rows = s.execute(
            select(StudyRow.name, TrialRow.trial_id, MetricRow.key, MetricRow.value)
            .join(TrialRow, MetricRow.trial_pk == TrialRow.id)
            .join(StudyRow, TrialRow.study_id == StudyRow.id)
            .where(MetricRow.epoch.is_(None), StudyRow.name.in_(studies),
                   or_(MetricRow.key.like("%@%"), MetricRow.key == "latency_threads"))
        ).all()
        envs = s.execute(
            select(StudyRow.name, TrialRow.trial_id, cast(TrialRow.environment, String))
            .join(StudyRow, TrialRow.study_id == StudyRow.id)
            .where(StudyRow.name.in_(studies), TrialRow.status == TrialStatus.DONE)
        ).all()
    return [tuple(r) for r in rows], [tuple(e) for e in envs]


def _read(store, query) -> pd.DataFrame:
    with store.session() as session, no_gc():
        result = session.connection().execute(query)
        names = list(result.keys())
        rows = result.cursor.fetchall()  # plain DBAPI tuples; the queries need no type processing
        result.close()
        return pd.DataFrame(rows, columns=names)


# -- the settings a configuration's trials ran (``ablate.report.settings``) --------------

def seedless_hash(spec: str | bytes | None) -> int | None:
    """A 64-bit hash of a stored spec (JSON text) without its seed.

    A spec is stored with its seed as the last key (``..., "seed": 3}``): trimming the
    digits and the closing brace leaves the spec without its seed, unparsed (fast).
    Any other text is parsed and written again in canonical form.
    """
    if spec is None:
        return None
    text = spec.encode() if isinstance(spec, str) else bytes(spec)
    trimmed = text.rstrip(b"0123456789} ")
    if not trimmed.endswith(b'"seed":'):
        value = json.loads(text)
        if isinstance(value, dict):
            value.pop("seed", None)
        from ablate.trials.ids import canonical_json  # lazy: loads pydantic (rare path)

        trimmed = b"\x00" + canonical_json(value).encode()  # never equal to a trimmed text
    return int.from_bytes(hashlib.blake2b(trimmed, digest_size=8).digest(), "big",
                          signed=True)


def setting_fingerprints(store, names: list[str] | None) -> pd.DataFrame:
    """``pk, spec_hash, code`` of every compared trial: the hash of its spec without the
    seed (``seedless_hash``; on PostgreSQL md5 of the jsonb without ``seed``) and the
    user code it ran (canonical JSON text of ``environment.code``; None when not
    recorded)."""
    from sqlalchemy import func  # lazy: only reports that split settings

    dialect = store.engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB  # lazy

        spec = func.md5(cast(cast(TrialRow.spec, JSONB).op("-")("seed"), String))
        code = cast(cast(TrialRow.environment, JSONB).op("->")("code"), String)
    elif dialect == "sqlite":  # hashed by seedless_hash, registered on the connection
        spec = func.ablate_seedless_hash(TrialRow.spec)
        code = func.json_extract(TrialRow.environment, "$.code")
    else:  # hashed here
        spec = cast(TrialRow.spec, String)
        code = cast(TrialRow.environment, String)
    query = select(TrialRow.id, spec, code).where(TrialRow.tuning_draw.is_(None))
    if names is not None:
        query = query.where(TrialRow.study_id.in_(
            select(StudyRow.id).where(StudyRow.name.in_(names)).scalar_subquery()))
    with store.session() as session:
        connection = session.connection()
        if dialect == "sqlite":
            connection.connection.driver_connection.create_function(
                "ablate_seedless_hash", 1, seedless_hash, deterministic=True)
        result = connection.execute(query)
        rows = result.cursor.fetchall()
        result.close()
    out = pd.DataFrame(rows, columns=["pk", "spec_hash", "code"])
    if dialect not in ("postgresql", "sqlite"):
        out["spec_hash"] = out["spec_hash"].map(seedless_hash)
        out["code"] = out["code"].map(_code_of)
    return out


def _code_of(environment: str | None) -> str | None:
    env = json.loads(environment) if isinstance(environment, str) else None
    code = env.get("code") if isinstance(env, dict) else None
    if not code:
        return None
    from ablate.trials.ids import canonical_json  # lazy: loads pydantic

    return canonical_json(code)


def seedless_specs(store, pks: list[int]) -> dict[int, dict]:
    """The stored specs of these trials (by primary key), parsed, without their seed."""
    out = {}
    with store.session() as session:
        for start in range(0, len(pks), 500):
            query = select(TrialRow.id, cast(TrialRow.spec, String)).where(
                TrialRow.id.in_(pks[start:start + 500]))
            for pk, text in session.connection().execute(query):
                spec = json.loads(text) if isinstance(text, str) else {}
                spec = spec if isinstance(spec, dict) else {}
                spec.pop("seed", None)
                out[int(pk)] = spec
    return out
