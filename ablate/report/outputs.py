"""Where ``ablate report`` and ``ablate export`` write: checked before any work, each file
written whole or not at all, never over the results database.

A target that cannot be written (its folder missing, a file where a folder should be, no
permission) is one :class:`~ablate.errors.UserInputError` naming the option, the path
and the operating system's reason. Files are written to a temporary file beside the
target that then replaces it, so a failed write leaves the old file (or none) in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ablate import atomic
from ablate.errors import UserInputError
from ablate.store.target import SIDECARS, sqlite_path

# SQLite keeps a database's not yet checkpointed writes and its locks in these files
DATABASE_SIBLINGS = ("", *SIDECARS, "-journal")


def reason(err: OSError) -> str:
    """The operating system's words for ``err`` ("Not a directory"), without the path."""
    return err.strerror or str(err) or type(err).__name__


def database_files(url: str) -> list[str]:
    """The real paths of a SQLite database and its journal files; none for a server."""
    path = sqlite_path(url)
    if path is None:
        return []
    real = os.path.realpath(path)
    return [real + suffix for suffix in DATABASE_SIBLINGS]


def is_database(path: str | Path, database: Iterable[str]) -> bool:
    """Whether writing ``path`` would write the database or one of its journal files (the
    same path after links, or a hard link to one of them)."""
    real = os.path.realpath(path)
    for other in database:
        if real == other:
            return True
        with contextlib.suppress(OSError):
            if os.path.samefile(real, other):
                return True
    return False


def refuse_database(option: str, path: str | Path, database: Iterable[str]) -> None:
    if is_database(path, database):
        raise UserInputError(f"{option} {path}: that is the results database (or its journal);"
                             " give another file (nothing was written)")


def check_file(option: str, path: str | Path, database: Iterable[str] = ()) -> None:
    """Refuse, before any work, an output file that is the database or cannot be written:
    its folder missing or a file, or no permission to write there."""
    refuse_database(option, path, database)
    folder = os.path.dirname(os.path.realpath(path))
    try:
        mode = os.stat(folder).st_mode
        problem = (None if stat.S_ISDIR(mode) else errno.ENOTDIR)
    except OSError as err:
        problem = err.errno or errno.ENOENT
    if problem is None and os.path.lexists(path) and not os.access(path, os.W_OK):
        problem = errno.EACCES
    elif problem is None and not os.access(folder, os.W_OK | os.X_OK):
        problem = errno.EACCES
    if problem is not None:
        raise UserInputError(f"{option} {path}: cannot write: {os.strerror(problem)} "
                             "(nothing was written)")


@contextlib.contextmanager
def out_folder(option: str, path: str | Path) -> Iterator[Path]:
    """The output folder, created now (before any work) with its missing parents; those
    it created are removed again if they are still empty when the block ends."""
    folder = Path(path)
    missing = [p for p in (folder, *folder.parents) if not p.exists() and not p.is_symlink()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as err:
        _remove_empty(missing)
        what = "cannot create the folder" if folder in missing else "cannot write in it"
        raise UserInputError(f"{option} {path}: {what}: {reason(err)} "
                             "(nothing was written)") from None
    try:
        yield folder
    finally:
        _remove_empty(missing)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` fills a temporary file beside ``path`` that then replaces it
    (``ablate.atomic``); on any error the temporary file goes and ``path`` is as it was.
    A target that is not a regular file (``/dev/null``, a pipe) is written in place; a
    link, through it. Raises the ``OSError`` with ``filename`` set to ``path``."""
    real = os.path.realpath(path)
    try:
        if os.path.exists(real) and not os.path.isfile(real):
            write(real)
        else:
            atomic.write_file(real, lambda tmp: write(str(tmp)))
    except OSError as err:
        err.filename = str(path)
        raise


def write_text(path: str | Path, text: str, newline: str | None = None) -> None:
    """``text`` as UTF-8, written whole or not at all (``newline`` as for ``open``)."""
    def write(target: str) -> None:
        with open(target, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)

    write_atomic(path, write)
