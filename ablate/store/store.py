"""The result store: one class over any SQLAlchemy URL (SQLite by default)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from sqlalchemy.pool import NullPool, StaticPool

from ablate.clock import utc_now
from ablate.errors import StoreError, UserInputError
from ablate.paths import expand_user
from ablate.store import target
from ablate.store.claims import ClaimsMixin, db_now, lease_is_live, superseded, trial_job
from ablate.store.models import Base, CostRow, MetricRow, StudyRow, TrialRow
from ablate.store.records import CostRecord, EpochMetric, StudyRecord, TrialRecord
from ablate.store.schema import SCHEMA_HEAD, ensure_schema, is_ablate_revision
from ablate.store.timings import TimingsMixin
from ablate.trials.lifecycle import TrialResult, TrialStatus, Verb, advance, interruption, sources

DEFAULT_URL = "sqlite:///results/ablate.db"
SQLITE_BUSY_TIMEOUT_MS = 60_000


def resolve_url(url: str | None) -> str:
    """``--db`` wins, then ``ABLATE_DB``, then ``results/ablate.db``; bare paths become SQLite.

    A SQLite path's ``~`` is expanded, as for every other path (``ABLATE_DB=~/x.db`` in
    quotes, ``--db=~/x.db``: no shell expands those); SQLite itself would create a folder
    named ``~`` in the working directory, with the runs folder in the home folder. A URL
    cut short (``sqlite:/x.db``) is refused, not taken for a path."""
    url = url or os.environ.get("ABLATE_DB") or DEFAULT_URL
    if "://" not in url:
        target.check_scheme(url)
        url = f"sqlite:///{url}"
    path = target.sqlite_path(url)
    if path and path.startswith("~"):
        url = f"sqlite:///{expand_user(path, f'database {target.mask_url(url)}')}"
    return url




class Store(ClaimsMixin, TimingsMixin):
    """Studies, trials, metrics and cost; trial claims (``ablate.store.claims``); trial
    times and run estimates (``ablate.store.timings``). Every method is one transaction."""

    def __init__(self, url: str | None = None, *, create: bool = True,
                 must_exist: bool = False, read_only: bool = False) -> None:
        """Open (by default create) the database; ``must_exist``: read-only commands,
        which neither create a database nor write a schema into an empty one.
        ``read_only`` (implies both): connections that cannot write and take no write
        lock (``ablate watch`` polls while runners write). ``create=False`` alone
        (``ablate db upgrade``) opens a database of any schema: the caller checks it.

        A SQLite file this process cannot write (``target.sqlite_writable``) is read
        read-only by the commands that only read (``must_exist``), their best-effort
        writes skipped (the cost cache); one that would record results in it is refused.
        Read-only, a SQLite file creates no file beside it (``_use_sqlite_reader``).
        """
        must_exist, create = must_exist or read_only, create and not read_only
        self.url = resolve_url(url)
        self.display_url = target.mask_url(self.url)  # what messages show: no password
        target.check_url(self.url)
        self.damage: StoreError | None = None  # the first damaged page any query met
        # an empty database (a zero-length SQLite file, or no tables) holds no studies: a
        # read-only command answers as on a new database, reading an in-memory stand-in,
        # and leaves the real one as it is (connecting would write a header and a WAL)
        self.empty = target.check_sqlite_file(self.url, must_exist) and must_exist
        self.read_only = read_only
        if self.empty:
            self._use(_empty_stand_in())
            return
        writable = target.sqlite_writable(self.url)
        if not writable and create and not must_exist:
            raise target.read_only_error(self.url)
        self.read_only = read_only or not writable
        try:
            if self.read_only and target.sqlite_path(self.url):
                self._use_sqlite_reader()
            elif self.read_only:
                self._use(_read_only_engine(self.url))
            else:
                self._use(_make_engine(self.url))
        except (SQLAlchemyError, ImportError, ValueError, TypeError, OSError) as err:
            raise target.engine_error(self.url, err) from None
        try:  # the first connection, so every unreachable target fails here, readably
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except (SQLAlchemyError, ImportError, OSError) as err:
            raise target.connect_error(self.url, err) from None
        if must_exist and not target.has_tables(self.engine, self.display_url):
            self.close()
            self.empty = True
            self._use(_empty_stand_in())
        elif create or read_only:  # refuses a damaged, foreign, older or newer database
            ensure_schema(self.engine, self.display_url, create=create and not self.read_only)

    def _use(self, engine, *others, pick=None) -> None:
        """Transactions on ``engine``; with ``others``, on the one ``pick()`` names at
        the start of each transaction."""
        self._engines = (engine, *others)
        self._makers = {e: sessionmaker(e, expire_on_commit=False) for e in self._engines}
        self._pick = pick or (lambda: engine)

    def _use_sqlite_reader(self) -> None:
        """A SQLite file read only, that gets no file beside it from this process.

        SQLite in WAL mode creates ``-wal`` and ``-shm`` files beside a database even for a
        ``mode=ro`` connection, and a read-only connection cannot remove them again: left
        by ``ablate watch`` or a report, they would belong to whoever read (another user
        of a shared folder: then the owner's runner could not open its own database). So
        each transaction first looks: a file nobody has open (no -wal/-shm) is read as
        immutable, through a connection of its own (no lock, no file; nothing can change
        under a snapshot that lasts one transaction, since a writer that starts
        meanwhile writes its -wal, not the database file, until it checkpoints); one that
        a writer has open is read live, with ``mode=ro``, through the writer's -wal and
        -shm. A watcher thus follows a runner that starts or stops while it polls."""
        live = _read_only_engine(self.url)
        still = _read_only_engine(self.url, immutable=True)
        self._use(live, still, pick=lambda: live if target.has_sidecars(self.url) else still)

    @property
    def engine(self):
        """The engine the next transaction runs on."""
        return self._pick()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        session = self._makers[self.engine]()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as err:
            with contextlib.suppress(SQLAlchemyError):  # a damaged file may fail this too
                session.rollback()
            error = target.database_error(self.display_url, err)
            if target.is_damaged(err) and self.damage is None:
                self.damage = error  # a caller that shows what it can still says so after
            raise error from err
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()

    # -- studies and trials -------------------------------------------------------------

    def upsert_study(self, name: str, description: str = "", recipe_path: str = "",
                     recipe_text: str = "") -> StudyRecord:
        for attempt in range(2):  # two writers may create the same study at once
            try:
                with self.session() as s:
                    row = s.scalar(select(StudyRow).where(StudyRow.name == name))
                    if row is None:
                        row = StudyRow(name=name, description=description, recipe_path=recipe_path,
                                       recipe_text=recipe_text, created_at=utc_now())
                        s.add(row)
                    elif recipe_text:
                        row.description, row.recipe_path = description, recipe_path
                        row.recipe_text = recipe_text
                    s.flush()
                    return _study_record(row)
            except StoreError as err:
                if attempt or not isinstance(err.__cause__, IntegrityError):
                    raise
        raise AssertionError("unreachable")

    def study_designs(self, studies: list[str] | None = None) -> dict[str, dict]:
        """The recorded design of each study that has one (``ablate.analysis.design``)."""
        with self.session() as s:
            query = select(StudyRow.name, StudyRow.design).where(StudyRow.design.is_not(None))
            if studies is not None:
                query = query.where(StudyRow.name.in_(studies))
            return {name: dict(design) for name, design in s.execute(query) if design}

    def set_study_design(self, study: str, design: dict[str, Any]) -> None:
        with self.session() as s:
            _study_row(s, study).design = dict(design)

    def study_tunings(self, studies: list[str] | None = None) -> dict[str, dict]:
        """The recorded tuning of each tuned study (``ablate.dispatch.tuning``)."""
        with self.session() as s:
            query = select(StudyRow.name, StudyRow.tuning).where(StudyRow.tuning.is_not(None))
            if studies is not None:
                query = query.where(StudyRow.name.in_(studies))
            return {name: dict(tuning) for name, tuning in s.execute(query) if tuning}

    def set_study_tuning(self, study: str, tuning: dict[str, Any]) -> None:
        with self.session() as s:
            _study_row(s, study).tuning = dict(tuning)

    def register_trials(self, study: str, trials: list[Any]) -> int:
        """Add trials (``ablate.trials.expand.Trial``) not yet known; returns how many."""
        from ablate.trials.ids import spec_dict  # lazy: loads pydantic

        with self.session() as s:
            # runners registering one study at once take turns (PostgreSQL: a row lock on the
            # study; SQLite's BEGIN IMMEDIATE already serialises writers): each then sees the
            # others' trials instead of inserting them twice (a unique-key error)
            study_row = s.scalar(select(StudyRow).where(StudyRow.name == study).with_for_update())
            if study_row is None:
                study_row = _study_row(s, study)  # raises: no such study
            known = set(s.scalars(select(TrialRow.trial_id).where(TrialRow.study_id == study_row.id)))
            added = 0
            for t in trials:
                if t.trial_id in known:
                    continue
                s.add(TrialRow(
                    study_id=study_row.id, trial_id=t.trial_id, name=t.name,
                    config_name=t.config_name, variant=t.variant, seed=t.seed, axes=t.axes,
                    spec=spec_dict(t.spec), arch_id=t.arch_id,
                    published=t.published.model_dump(exclude_none=True) if t.published else None,
                    status=TrialStatus.PENDING, attempts=0, created_at=utc_now(),
                    tuning_draw=getattr(t, "tuning_draw", None),
                ))
                known.add(t.trial_id)
                added += 1
            return added

    def statuses(self, study: str) -> dict[str, TrialStatus]:
        with self.session() as s:
            rows = s.execute(
                select(TrialRow.trial_id, TrialRow.status).join(StudyRow)
                .where(StudyRow.name == study)
            )
            return {tid: TrialStatus(status) for tid, status in rows}

    def submitted(self, study: str, trial_id: str, run_dir: str | None = None,
                  job_id: str | None = None) -> bool:
        """A Slurm job was queued for the trial: running, with no holder or lease until the
        job starts and claims it (the claims made before are void, as after ``reset``).
        False (nothing changed) when it is done or held, or when that very job has claimed
        it already (a task of a large array can start, claim and even end before its
        submission is recorded)."""
        with self.session() as s:
            row = _trial_row(s, study, trial_id, for_update=True)
            if row.status == TrialStatus.DONE or lease_is_live(row, db_now(s)):
                return False  # a holder trains it now; the submitted job will find it held
            if job_id and (row.holder or {}).get("job_id") == job_id:
                return False  # the job started first: its claim says where the trial is
            row.status = advance(row.status, Verb.SUBMIT, trial_id)
            row.started_at, row.error = utc_now(), None
            _void_claims(row)  # queued: claimed when it starts, by this job or a runner
            row.run_dir = run_dir or row.run_dir
            row.job_id = job_id or row.job_id
            return True

    def reset(self, study: str, trial_ids: list[str]) -> None:
        """Forget the outcome of trials (``--force``, a cancelled job): pending, figures
        deleted (a checkpoint in the run folder is the caller's to keep or remove). The
        claim epoch moves on, so no claim made before can renew, hand back or record the
        trial (its job may run on for a while after ``scancel``). The holder goes;
        ``job_id`` stays, so that job, if it is still starting, cannot claim the trial
        (``claims._cancelled_job``)."""
        with self.session() as s:
            for tid in trial_ids:
                _reset_row(s, _trial_row(s, study, tid, for_update=True))

    def reset_job(self, study: str, trial_id: str, job_id: str) -> bool:
        """Slurm job ``job_id`` was cancelled: reset its trial (as ``reset``) if the trial is
        still that job's, queued for it, held by it, or stopped with it and waiting for its
        requeue. False (nothing changed) when it is recorded or reset already, or queued as
        another job or held by another holder since: a late cancellation must not undo
        them."""
        with self.session() as s:
            row = _trial_row(s, study, trial_id, for_update=True)
            if row.status not in _JOB_STATES or trial_job(row) != job_id:
                return False
            _reset_row(s, row)
            return True

    def interrupt_job(self, study: str, trial_id: str, job_id: str,
                      status: TrialStatus) -> bool:
        """Slurm says the trial's job ``job_id`` ended preempted or timed out, for good (not
        requeued): the trial is ``status`` until a later run resumes it. False when the
        trial is no longer that job's (recorded, or claimed by another holder since)."""
        verb = interruption(status)
        with self.session() as s:
            row = _trial_row(s, study, trial_id, for_update=True)
            if row.status not in sources(verb) or trial_job(row) != job_id:
                return False
            row.status = advance(row.status, verb, trial_id)
            row.lease_expires_at = None
            row.preemptions += 1
            return True

    def record(self, result: TrialResult, *, dead_job: str | None = None) -> bool:
        """Record a trial's result (from its result file, or a dead job's failure); once:
        False if it is recorded already, or if it was trained under a claim that was taken
        over or reset since (``claims.superseded``). ``dead_job``: the failure of that
        Slurm job, recorded only while the trial is still running for it."""
        with self.session() as s:
            row = _trial_row(s, result.study, result.trial_id, for_update=True)
            if row.status == TrialStatus.DONE \
                    or superseded(row, result.claim_epoch, db_now(s), dead_job):
                return False
            for metric in list(row.metrics):
                s.delete(metric)
            s.flush()
            verb = Verb.RECORD_DONE if result.done else Verb.RECORD_FAILED
            row.status = advance(row.status, verb, result.trial_id)
            row.error = result.error
            row.environment = _plain(result.environment)
            row.weights_report = _plain(result.weights_report)
            row.run_dir = result.run_dir or row.run_dir
            row.started_at = _parse_time(result.started_at) or row.started_at
            row.finished_at = _parse_time(result.finished_at) or utc_now()
            row.lease_expires_at = None
            for key, value in result.final.items():
                s.add(MetricRow(trial_pk=row.id, epoch=None, step=None, key=key, value=float(value)))
            for entry in result.epochs:
                for key, value in entry["metrics"].items():
                    s.add(MetricRow(trial_pk=row.id, epoch=int(entry["epoch"]),
                                    step=entry.get("step"), key=key, value=float(value)))
            return True

    # -- reading ------------------------------------------------------------------------

    def studies(self) -> list[StudyRecord]:
        with self.session() as s:
            return [_study_record(r) for r in s.scalars(select(StudyRow).order_by(StudyRow.id))]

    def unknown_study(self, study: str, known: Iterable[str], prefix: str = "") -> UserInputError:
        """The one line refusing a study this database does not hold (``prefix``: the
        option or argument that named it), with the database and the studies it holds."""
        return UserInputError(f"{prefix}no study {study!r} in {self.display_url}; known: "
                              f"{', '.join(known) or 'none yet'}")

    def trials(self, study: str | None = None, *, with_metrics: bool = True,
               status: TrialStatus | None = None) -> list[TrialRecord]:
        with self.session() as s:
            query = select(TrialRow).join(StudyRow).order_by(TrialRow.id)
            if study is not None:
                query = query.where(StudyRow.name == study)
            if status is not None:
                query = query.where(TrialRow.status == status)
            query = query.options(selectinload(TrialRow.study))
            rows = list(s.scalars(query))
            finals = self._final_metrics(s, [r.id for r in rows]) if with_metrics else {}
            return [_trial_record(r, finals.get(r.id, {})) for r in rows]

    def _final_metrics(self, s: Session, pks: list[int]) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for chunk in _chunks(pks, 900):
            rows = s.execute(
                select(MetricRow.trial_pk, MetricRow.key, MetricRow.value)
                .where(MetricRow.trial_pk.in_(chunk), MetricRow.epoch.is_(None))
            )
            for pk, key, value in rows:
                out.setdefault(pk, {})[key] = value
        return out

    def epoch_metrics(self, study: str, trial_id: str) -> list[EpochMetric]:
        with self.session() as s:
            row = _trial_row(s, study, trial_id)
            rows = s.scalars(
                select(MetricRow).where(MetricRow.trial_pk == row.id, MetricRow.epoch.is_not(None))
                .order_by(MetricRow.epoch, MetricRow.id)
            )
            return [EpochMetric(trial_id, m.epoch, m.step, m.key, m.value) for m in rows]

    # -- cost cache ---------------------------------------------------------------------

    def get_costs(self, arch_ids: list[str]) -> dict[str, CostRecord]:
        with self.session() as s:
            out = {}
            for chunk in _chunks(sorted(set(arch_ids)), 900):
                for row in s.scalars(select(CostRow).where(CostRow.arch_id.in_(chunk))):
                    out[row.arch_id] = _cost_record(row)
            return out

    def put_cost(self, cost: CostRecord) -> None:
        """Cache an architecture's cost: best-effort, skipped where the database cannot be
        written (a read-only file: planning only reads) or another writer cached it first."""
        if self.read_only:
            return
        try:
            with self.session() as s:
                if s.get(CostRow, cost.arch_id) is not None:
                    return
                s.add(CostRow(
                    arch_id=cost.arch_id, params=cost.params, params_by_module=cost.params_by_module,
                    flops=cost.flops, flops_by_module=cost.flops_by_module,
                    flops_convention=cost.flops_convention, resolution_h=cost.resolution[0],
                    resolution_w=cost.resolution[1], extra=cost.extra, created_at=utc_now(),
                ))
        except StoreError as err:  # another writer cached the same architecture first
            if not isinstance(err.__cause__, IntegrityError) \
                    and not target.is_read_only(err.__cause__ or err):
                raise


def _make_engine(url: str):
    if url.startswith("sqlite"):
        path = target.sqlite_path(url)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL: readers never block the writer
            # pysqlite would BEGIN only at the first write, so a session's reads ran outside
            # its transaction (two processes could both ingest one result); _begin below
            # starts the transaction instead
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if _wants_wal(cur):
                _set_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # take the write lock up front: waits (busy timeout), never fails
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, connect_args=target.connect_args(url))


def _wants_wal(cur) -> bool:
    """A new database, or one of a schema this ablate knows, that is not yet in WAL mode.
    Any other file keeps its journal mode: switching writes its header, and it is about
    to be refused (not ablate's, a newer ablate's) and must be left as it was."""
    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return False
    tables = {row[0] for row in cur.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return True
    if "alembic_version" not in tables:
        return False
    try:
        revision = cur.execute("SELECT max(version_num) FROM alembic_version").fetchone()[0]
    except sqlite3.OperationalError:  # an alembic_version of something else's making
        return False
    return isinstance(revision, str) and is_ablate_revision(revision) and revision <= SCHEMA_HEAD


def _set_wal(cur) -> None:
    """Switch to WAL, waiting while another process does the same. On a fresh file the
    switch needs an exclusive lock and SQLite answers "database is locked" at once, without
    its busy handler (two runners starting on one new database), so wait here instead."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _read_only_engine(url: str, *, immutable: bool = False):
    """SQLite opened with ``mode=ro`` (a write fails) and a deferred BEGIN (no write lock:
    it never waits for a runner, nor makes one wait); other dialects in read-only sessions.
    ``immutable``: SQLite takes no locks and creates no -wal/-shm files (for a file that
    nobody is writing), each transaction on a new connection (SQLite keeps an immutable
    file's pages across the transactions of one connection)."""
    path = target.sqlite_path(url)
    if path is None:
        if url.startswith("postgresql"):
            return create_engine(url, pool_pre_ping=True, connect_args=target.connect_args(url),
                                 execution_options={"postgresql_readonly": True})
        return create_engine(url, pool_pre_ping=True, connect_args=target.connect_args(url))
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    engine = create_engine(f"sqlite:///file:{quote(str(Path(path).absolute()))}?{flags}&uri=true",
                           connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                           **({"poolclass": NullPool} if immutable else {}))

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    @event.listens_for(engine, "begin")
    def _begin(conn):  # one snapshot per session, without a write lock
        conn.exec_driver_sql("BEGIN")

    return engine


def _empty_stand_in():
    """An in-memory database with ablate's tables and no rows: what an empty one reads as."""
    engine = create_engine("sqlite://", poolclass=StaticPool,
                           connect_args={"check_same_thread": False})
    Base.metadata.create_all(engine)
    return engine


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _plain(value: Any) -> dict[str, Any] | None:
    """A mapping as the JSON column stores it."""
    return None if value is None else dict(value)


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _study_row(s: Session, name: str) -> StudyRow:
    row = s.scalar(select(StudyRow).where(StudyRow.name == name))
    if row is None:
        raise StoreError(f"no study named {name!r} in the database")
    return row


# a trial a Slurm job may still have: queued or held by it, or stopped with it (its requeue)
_JOB_STATES = frozenset({TrialStatus.RUNNING} | {s for s in TrialStatus if s.interrupted})


def _reset_row(s: Session, row: TrialRow) -> None:
    for metric in list(row.metrics):
        s.delete(metric)
    row.status = advance(row.status, Verb.RESET, row.trial_id)
    row.error, row.finished_at = None, None
    _void_claims(row)


def _void_claims(row: TrialRow) -> None:
    """No claim made so far may renew, hand back or record the trial: a claimed trial's
    epoch moves on (a trial nobody claimed since it was last voided has no such claim,
    and its next claim keeps the next number). The holder and lease go."""
    if row.holder is not None:
        row.claim_epoch = (row.claim_epoch or 0) + 1
    row.holder, row.lease_expires_at = None, None


def _trial_row(s: Session, study: str, trial_id: str, for_update: bool = False) -> TrialRow:
    query = select(TrialRow).join(StudyRow).where(StudyRow.name == study,
                                                  TrialRow.trial_id == trial_id)
    if for_update:  # writers of one trial (run + status ingesting one result) take turns
        query = query.with_for_update(of=TrialRow)
    row = s.scalar(query)
    if row is None:
        raise StoreError(f"no trial {trial_id} in study {study!r}")
    return row


def _study_record(row: StudyRow) -> StudyRecord:
    return StudyRecord(row.id, row.name, row.description, row.recipe_path, row.created_at)


def _trial_record(row: TrialRow, metrics: dict[str, float]) -> TrialRecord:
    return TrialRecord(
        study=row.study.name, trial_id=row.trial_id, name=row.name, config_name=row.config_name,
        variant=row.variant, seed=row.seed, axes=row.axes, spec=row.spec, arch_id=row.arch_id,
        status=TrialStatus(row.status), error=row.error, published=row.published,
        run_dir=row.run_dir, attempts=row.attempts, preemptions=row.preemptions or 0,
        tuning_draw=row.tuning_draw,
        job_id=row.job_id, environment=row.environment, weights_report=row.weights_report,
        started_at=row.started_at, finished_at=row.finished_at, metrics=metrics,
        holder=row.holder, heartbeat_at=row.heartbeat_at, lease_expires_at=row.lease_expires_at,
    )


def _cost_record(row: CostRow) -> CostRecord:
    return CostRecord(
        arch_id=row.arch_id, params=row.params, params_by_module=row.params_by_module,
        flops=row.flops, flops_by_module=row.flops_by_module,
        flops_convention=row.flops_convention, resolution=(row.resolution_h, row.resolution_w),
        extra=row.extra,
    )
