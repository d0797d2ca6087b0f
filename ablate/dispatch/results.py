"""Result files in run folders: found and ingested into the store.

A trial writes its ``result.json`` (``ablate.trials.lifecycle.TrialResult.write``) before
anything else sees it, so a result produced while the database was busy or unreachable
stays on disk and is picked up by the next ``ablate run`` or ``ablate status``.

Each study's folder in the runs folder says whose study it is: ``database.json``, written
by the first ``ablate run`` that uses it, names the study and when the database created
it (with the database, for people). A database ingests result files only from its own
study's folder, so that two databases whose runs folders are one (two SQLite files in one
folder, every PostgreSQL database with the default runs folder) never ingest each
other's results; when the folder ``RUNS/STUDY`` belongs to another database's study,
this database's trials run in ``RUNS/STUDY.TAG`` (``TAG``: a hash of its study's
identity) instead. A study folder without ``database.json`` (written by an older ablate)
is read as before.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ablate import atomic
from ablate.errors import UserInputError
from ablate.store.target import sqlite_path
from ablate.trials.lifecycle import RESULT_NAME, CorruptResult, TrialResult, TrialStatus

OWNER_NAME = "database.json"  # in a study's folder: the database study it belongs to
OWNER_FORMAT = 1


def run_dir_for(runs_root: str | Path, study: str, trial_id: str) -> Path:
    """A trial's run folder in the study's plain folder (``study_root`` picks the folder
    of a given database's study)."""
    return Path(runs_root) / _safe(study) / trial_id


def recorded_run_dir(runs_root: str | Path, study: str, trial_id: str,
                     recorded: str | None) -> Path:
    """The run folder the database recorded for a trial, or, where that is not a folder
    from here (relative to another working directory), its namesake under ``runs_root``
    in the same study folder (``RUNS/STUDY`` or ``RUNS/STUDY.TAG``)."""
    if recorded:
        path = Path(recorded)
        if path.is_dir():
            return path
        moved = Path(runs_root) / path.parent.name / trial_id
        if path.parent.name and moved.is_dir():
            return moved
    return run_dir_for(runs_root, study, trial_id)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass(frozen=True)
class StudyOwner:
    """A database's study, as its study folder records it: the study's name and when the
    database created it (which no other database's study of that name shares), and the
    database, masked, for messages."""

    study: str
    created_at: str
    database: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.study, self.created_at

    @property
    def tag(self) -> str:
        """The suffix of this study's folder when the plain one is another database's."""
        return hashlib.sha256(f"{self.study}\0{self.created_at}".encode()).hexdigest()[:8]

    def to_json(self) -> dict[str, object]:
        return {"format": OWNER_FORMAT, "study": self.study, "created_at": self.created_at,
                "database": self.database}


def study_owner(store, study: str) -> StudyOwner | None:
    """The store's study ``study`` as a folder owner; None when the store lacks it."""
    for record in store.studies():
        if record.name == study:
            return StudyOwner(study, record.created_at.isoformat(), shown_database(store))
    return None


def shown_database(store) -> str:
    """The store's database for people: its masked URL, a SQLite file's path absolute."""
    shown = getattr(store, "display_url", "")
    path = sqlite_path(shown)
    return f"sqlite:///{Path(path).absolute()}" if path else shown


_FOREIGN = StudyOwner("", "unreadable")  # a database.json that cannot be read: not ours


def folder_owner(root: Path) -> StudyOwner | None:
    """Whose study ``root`` is (None: no ``database.json``, an older ablate's folder)."""
    try:
        with open(root / OWNER_NAME, encoding="utf-8") as fh:
            data = json.load(fh)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return _FOREIGN
    if not isinstance(data, dict) or not isinstance(data.get("created_at"), str):
        return _FOREIGN
    return StudyOwner(str(data.get("study", "")), data["created_at"],
                      str(data.get("database", "")))


def _mark(root: Path, owner: StudyOwner) -> bool:
    """Write ``root/database.json`` for ``owner`` unless there is one: whole (temporary
    file, then a hard link that fails if another runner marked it first). True if written."""
    root.mkdir(parents=True, exist_ok=True)
    with atomic.temporary_beside(root / OWNER_NAME) as tmp:
        tmp.write_text(json.dumps(owner.to_json(), indent=1), encoding="utf-8")
        atomic.sync_file(tmp)
        try:
            os.link(tmp, root / OWNER_NAME)
        except FileExistsError:
            return False
    atomic.sync_folder(root)
    return True


def _candidates(runs_root: str | Path, study: str, owner: StudyOwner) -> tuple[Path, Path]:
    plain = Path(runs_root) / _safe(study)
    return plain, plain.with_name(f"{plain.name}.{owner.tag}")


def unwritable_runs_folder(root: Path, problem: str) -> UserInputError:
    """The one line for a runs folder that cannot be written, whichever check finds it."""
    return UserInputError(f"runs folder {root}: cannot write it ({problem}); give a writable "
                          "--runs-dir")


def study_root(runs_root: str | Path, study: str, owner: StudyOwner) -> Path:
    """The folder of ``owner``'s run folders, marked as its own: ``RUNS/STUDY`` unless that
    is another database's study's, else ``RUNS/STUDY.TAG``. A plain folder an older
    ablate wrote (no ``database.json``) is taken as this study's."""
    plain, tagged = _candidates(runs_root, study, owner)
    for root in (plain, tagged):
        for _ in range(2):  # unmarked: mark it, unless another runner marks it first
            found = folder_owner(root)
            if found is not None:
                break
            try:
                if _mark(root, owner):
                    return root
            except OSError as err:
                raise unwritable_runs_folder(root, err.strerror or str(err)) from None
        if found is not None and found.key == owner.key:
            return root
    return tagged  # a hash collision with yet another study: share as before


@dataclass(frozen=True)
class IngestReport:
    ingested: list[str]
    corrupt: list[str]
    # result files of trials not done here that were written for another database's
    # study (its folder's database.json says so): left as they are, never ingested
    foreign: list[str] = field(default_factory=list)
    foreign_db: str = ""  # the database the foreign files were written for, as it was shown


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


def ingest_results(store, study: str, runs_root: str | Path,
                   trial_ids: set[str] | None = None) -> IngestReport:
    """Ingest every result file of the store's ``study`` not yet in the store (idempotent),
    from its own study folder: ``RUNS/STUDY`` when that is this study's (or unmarked),
    and ``RUNS/STUDY.TAG``. Files in another database's study folder are counted in
    ``foreign`` and left alone."""
    ingested: list[str] = []
    corrupt: list[str] = []
    foreign: list[str] = []
    owner = study_owner(store, study)
    if owner is None:
        return IngestReport(ingested, corrupt, foreign)
    statuses = None
    foreign_db = ""
    for root in _candidates(runs_root, study, owner):
        if not root.is_dir():
            continue
        found = folder_owner(root)
        theirs = found is not None and found.key != owner.key
        if theirs:
            foreign_db = found.database or str(root / OWNER_NAME)
        if statuses is None:
            statuses = store.statuses(study)
        for path in sorted(root.glob(f"*/{RESULT_NAME}")):
            tid = path.parent.name
            if tid not in statuses or statuses[tid] is TrialStatus.DONE:
                continue
            if trial_ids is not None and tid not in trial_ids:
                continue
            if theirs:
                foreign.append(tid)
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
                statuses[tid] = result.status
    # a trial found in another database's folder and then in its own counts as ingested
    return IngestReport(ingested, corrupt, [t for t in foreign if t not in ingested], foreign_db)
