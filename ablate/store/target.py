"""Where the result database is, checked before anything is written to it.

Every way a ``--db`` / ``ABLATE_DB`` target can be wrong (a file that is not a database,
a folder, nothing listening, an unknown dialect, a driver that is not installed) becomes
one :class:`~ablate.errors.DatabaseTargetError` naming the URL, password masked, and
the cause. Read-only commands open with ``must_exist`` and so never create a database;
an empty one (a zero-length SQLite file, or no tables) they read as holding no studies.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import inspect

from ablate import extras
from ablate.errors import DatabaseTargetError, NoDatabaseError, error_line

CONNECT_TIMEOUT_S = 5  # PostgreSQL: nothing listening or a dropped packet fails in seconds
SQLITE_HEADER = b"SQLite format 3\x00"
URL_HINT = "give a SQLite path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (also for URLs that do not parse)."""
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)


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
    return DatabaseTargetError(f"database {mask_url(url)}: cannot connect: {error_line(err, 200)}")


def connect_args(url: str) -> dict[str, Any]:
    """Driver options that bound how long a first connection may take."""
    if url.startswith("postgresql"):
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def has_tables(engine: Any) -> bool:
    """False for a database with no tables at all: an empty one, which holds no studies."""
    return bool(inspect(engine).get_table_names())
