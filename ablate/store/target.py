"""Where the result database is, checked before anything is written to it.

Every way a ``--db`` / ``ABLATE_DB`` target can be wrong (a file that is not a database,
a folder, nothing listening, an unknown dialect, a driver that is not installed) becomes
one :class:`~ablate.errors.DatabaseTargetError` naming the URL, password masked, and
the cause. Read-only commands open with ``must_exist`` and so never create a database;
an empty one (a zero-length SQLite file, or no tables) they read as holding no studies.
A damaged SQLite file and a write to a read-only one are named as such
(``database_error``), wherever the driver first notices.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from ablate import extras
from ablate.errors import DatabaseTargetError, NoDatabaseError, StoreError, error_line

CONNECT_TIMEOUT_S = 5  # PostgreSQL: nothing listening or a dropped packet fails in seconds
SQLITE_HEADER = b"SQLite format 3\x00"
SIDECARS = ("-wal", "-shm")  # what SQLite keeps beside a WAL database while it is open
# SQLite's words for a file whose pages are not a valid database (SQLITE_CORRUPT, NOTADB)
DAMAGED = ("database disk image is malformed", "file is not a database")
# a write refused: SQLite's SQLITE_READONLY, PostgreSQL's read-only transaction (25006)
READ_ONLY = ("attempt to write a readonly database", "read-only transaction")
URL_HINT = "give a SQLite path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (also for URLs that do not parse):
    all of it up to the host's ``@``, the last before the path, so a password holding an
    unescaped ``@`` is not shown in part."""
    return re.sub(r"(://[^/@:]*:)[^/]*@", r"\1***@", url)


# a database URL whose "//" is missing: taken for a path, it made a file or folder named
# "sqlite:" in the working directory
_SCHEME_ALONE = re.compile(r"(sqlite|postgres(?:ql)?|mysql)(\+\w+)?:(?!//)", re.IGNORECASE)


def check_scheme(path: str) -> None:
    """Refuse a ``--db`` without ``://`` that starts as a database URL does (``sqlite:``,
    ``sqlite:/x.db``, ``postgresql:host/db``): it is a URL cut short, not a path."""
    match = _SCHEME_ALONE.match(path)
    if match:
        raise DatabaseTargetError(f"database {mask_url(path)}: malformed URL ('{match.group(0)}' "
                                  f"is not followed by //); {URL_HINT}")


def check_url(url: str) -> None:
    """Refuse a server URL with more than one ``@`` before its host: a password (or user)
    holding an unescaped ``@``. The driver would take the rest of the password for the
    host, and name it in its error."""
    authority = url.split("://", 1)[1].split("/", 1)[0] if "://" in url else ""
    if authority.count("@") > 1:
        raise DatabaseTargetError(f"database {mask_url(url)}: more than one '@' before the "
                                  "host; write an '@' of the user or password as %40")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL; None for other dialects and in-memory databases."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    return path if path and path != ":memory:" and not path.startswith("file:") else None


# database files this process has read the header of: never again. Closing any file
# descriptor of a SQLite file drops every POSIX lock the process holds on it (fcntl
# semantics; SQLite's "How To Corrupt" page, 2.2), so once a connection may be open here
# the header must not be read through another descriptor.
_CHECKED: set[str] = set()


def check_sqlite_file(url: str, must_exist: bool) -> bool:
    """Refuse a SQLite target that is a folder or not a database, without touching it;
    True for a zero-length file, which SQLite reads as an empty database.

    SQLite itself would open any file and only fail at the first query, after creating
    its journal files beside it; the 16-byte header tells a database apart first. Each
    file is checked once per process, before any connection to it exists.
    """
    path = sqlite_path(url)
    if path is None or os.path.realpath(path) in _CHECKED:
        return False
    p = Path(path)
    shown = mask_url(url)
    if p.is_dir():
        raise DatabaseTargetError(f"database {shown}: {path} is a folder, not a database file")
    if not p.exists():
        parent = next((a for a in p.absolute().parents if a.exists()), None)
        if parent is not None and not parent.is_dir():
            raise DatabaseTargetError(f"database {shown}: {parent} is a file, not a folder")
        if must_exist:
            raise NoDatabaseError(f"database {shown}: no database at {path} (nothing was "
                                  "created); 'ablate run RECIPE' creates one")
        _CHECKED.add(os.path.realpath(path))  # the store creates it: a database by construction
        return False
    try:
        with open(p, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as err:
        raise DatabaseTargetError(f"database {shown}: cannot read {path}: "
                                  f"{err.strerror or err}") from None
    if head and head != SQLITE_HEADER:
        raise DatabaseTargetError(f"database {shown}: {path} is not a SQLite database "
                                  "(left as it is)")
    if head:
        _CHECKED.add(os.path.realpath(path))
    return not head


def engine_error(url: str, err: BaseException) -> DatabaseTargetError:
    """``create_engine`` failed: unknown dialect, missing driver or a malformed URL."""
    shown = mask_url(url)
    text = error_line(err, 200)
    name = type(err).__name__
    if name == "NoSuchModuleError":
        dialect = url.split("://", 1)[0]
        return DatabaseTargetError(f"database {shown}: unknown dialect {dialect!r}; {URL_HINT}")
    if isinstance(err, ImportError):
        hint = extras.install_command("postgres") if url.startswith("postgresql") \
            else "install it"
        return DatabaseTargetError(f"database {shown}: its driver is not installed ({text}); "
                                   f"{hint}")
    return DatabaseTargetError(f"database {shown}: malformed URL ({text}); {URL_HINT}")


def connect_error(url: str, err: BaseException) -> DatabaseTargetError:
    """The first connection failed: nothing listening, bad credentials, not a database."""
    if is_damaged(err):
        return damaged_error(url, err)
    return DatabaseTargetError(f"database {mask_url(url)}: cannot connect: {error_line(err, 200)}")


def connect_args(url: str) -> dict[str, Any]:
    """Driver options that bound how long a first connection may take."""
    if url.startswith("postgresql"):
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def has_tables(engine: Any, url: str) -> bool:
    """False for a database with no tables at all: an empty one, which holds no studies."""
    try:
        return bool(inspect(engine).get_table_names())
    except SQLAlchemyError as err:  # a damaged file fails at its first page read
        raise database_error(url, err) from None


# -- what an error from the database means ------------------------------------------------


def _driver(err: BaseException) -> BaseException:
    """The driver's own exception that SQLAlchemy wraps (or ``err`` itself)."""
    return getattr(err, "orig", None) or err


def is_damaged(err: BaseException) -> bool:
    """SQLite found pages that are not a valid database: the file itself is damaged."""
    orig = _driver(err)
    return isinstance(orig, sqlite3.DatabaseError) and any(m in str(orig) for m in DAMAGED)


def is_read_only(err: BaseException) -> bool:
    """A write was refused because the database (or this connection to it) is read-only."""
    return any(m in str(_driver(err)) for m in READ_ONLY)


def is_missing_table(err: BaseException) -> bool:
    orig = _driver(err)
    return "no such table" in str(orig) or getattr(orig, "sqlstate", None) == "42P01"


def damaged_error(url: str, err: BaseException) -> DatabaseTargetError:
    """One line naming the damaged database, SQLite's own words, and what to do."""
    shown = mask_url(url)
    path = sqlite_path(url)
    if path:
        p = Path(path)
        copy = p.with_name(f"{p.stem}.recovered{p.suffix}")
        hint = (f"restore it from a backup, or copy out what is still readable: sqlite3 "
                f"{shlex.quote(path)} .recover | sqlite3 {shlex.quote(str(copy))}")
    else:
        hint = "restore it from a backup"
    return DatabaseTargetError(f"database {shown} is damaged (sqlite: {error_line(err, 120)}); "
                               f"{hint}")


def read_only_error(url: str, err: BaseException | None = None) -> DatabaseTargetError:
    """A database this command would write to cannot be written: refused before anything
    (``err`` None), or a write refused by the driver (rolled back): one line."""
    shown = mask_url(url)
    path = sqlite_path(url)
    fix = "make the file and its folder writable, or give another --db" if path else \
        "give a database this user may write, or another --db"
    if err is None:
        return DatabaseTargetError(f"database {shown}: {path or 'it'} is read-only (this command "
                                   f"writes to it); {fix}")
    return DatabaseTargetError(f"database {shown}: cannot write it ({error_line(err, 120)}); "
                               f"nothing was recorded; {fix}")


def database_error(url: str, err: BaseException) -> StoreError:
    """Any error from the database as one line: damaged and read-only ones named as such."""
    if is_damaged(err):
        return damaged_error(url, err)
    if is_read_only(err):
        return read_only_error(url, err)
    return StoreError(f"database {mask_url(url)}: {type(err).__name__}: {error_line(err, None)}")


# -- a SQLite file this process cannot write ------------------------------------------------


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def has_sidecars(url: str) -> bool:
    """A -wal or -shm file beside the SQLite database: it is (or was) open somewhere."""
    path = sqlite_path(url)
    return bool(path) and any(os.path.exists(path + s) for s in SIDECARS)


def folder_writable(url: str) -> bool:
    path = sqlite_path(url)
    return path is None or os.access(_folder(path), os.W_OK | os.X_OK)


def check_writable_sqlite(url: str) -> None:
    """What opening a SQLite target to record results in would refuse (a folder, not a
    database, read-only), refused now without creating or touching anything: a command
    that checks other inputs (``ablate run``'s runs folder) names the database first."""
    check_sqlite_file(url, must_exist=False)
    if not sqlite_writable(url):
        raise read_only_error(url)


def sqlite_writable(url: str) -> bool:
    """False for an existing SQLite database this process cannot write: the file is
    read-only (mode bits, an immutable file, a read-only mount), or its folder is and
    SQLite could not create its -wal and -shm files there. True for other dialects and
    for a file still to be created. (``os.access``: no descriptor of the file is opened.)"""
    path = sqlite_path(url)
    if path is None or not os.path.exists(path):
        return True
    if not os.access(path, os.W_OK):
        return False
    return folder_writable(url) or all(os.access(path + s, os.W_OK) for s in SIDECARS)
