"""Exceptions raised by the library; only the CLI turns them into exit codes."""

from __future__ import annotations

import re


class AblateError(Exception):
    """Base class for every error ablate reports to a user without a traceback."""

    exit_code = 1


class UserInputError(AblateError):
    """A mistake in what the user gave us (recipe, option, path). Exit code 2."""

    exit_code = 2


class RecipeError(UserInputError):
    """A recipe that cannot be read or validated.

    The message always names the file and, where known, the TOML key path.
    """

    def __init__(self, path: str, message: str, key: str | None = None) -> None:
        self.path = str(path)
        self.key = key
        self.detail = message
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + message)


class StoreError(AblateError):
    """The result database could not be reached or is in an unexpected state."""


class DatabaseTargetError(StoreError):
    """``--db`` / ``ABLATE_DB`` names something that cannot be opened as a database: a
    mistake in what the user gave, so exit code 2."""

    exit_code = 2


class NoDatabaseError(DatabaseTargetError):
    """A read-only command was pointed at a path where no database exists."""


class SchemaVersionError(StoreError):
    """The database was written by another schema version."""

    exit_code = 2


class TrialFailed(AblateError):
    """A trial stopped with an error (divergence, bad configuration found late)."""


def did_you_mean(word: str, choices, preferred=()) -> str:
    """`` (did you mean 'lr'?)``: the first of ``preferred`` (a choice the caller knows is
    meant, e.g. one ``word`` starts), else the choice spelt closest to ``word``; ``""``
    when none is close."""
    import difflib  # lazy: read only when a name is wrong

    close = list(preferred)[:1] or difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_line(text: object, limit: int | None = 300) -> str:
    """The first non-empty line of ``text``, its whitespace collapsed, at most ``limit``
    characters (the middle elided, so the start and the end both show)."""
    lines = [" ".join(line.split()) for line in str(text).strip().splitlines()]
    line = next((x for x in lines if x), "")
    if limit is None or len(line) <= limit:
        return line
    keep = limit - 3
    return line[: keep - keep // 3] + "..." + line[len(line) - keep // 3:]


def error_line(err: BaseException, limit: int | None = 300, *, with_type: bool = False) -> str:
    """An exception as one line: its first line (a database driver's own message where
    SQLAlchemy wraps one), else its type's name; ``with_type`` prefixes the type."""
    line = one_line(getattr(err, "orig", None) or err, None) or type(err).__name__
    if with_type and not line.startswith(type(err).__name__):
        line = f"{type(err).__name__}: {line}"
    return one_line(line, limit)


_WORKER = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


def headline(err: BaseException) -> str:
    """``Type: message`` of an exception. One re-raised from a DataLoader worker reads
    ``Caught X in DataLoader worker process 0.`` with the cause at the end of the
    worker's traceback; the cause itself is given (a mask's path, not the wrapper)."""
    text = str(err)
    match = _WORKER.match(text)
    if match:
        name = match.group(1)
        lines = text.rstrip().splitlines()
        for i in range(len(lines) - 1, 0, -1):  # the worker's last ``module.Type: ...``
            cause = re.match(rf"(?:[\w.]+\.)?{name}: (.*)", lines[i])
            if cause:
                return f"{name}: " + "\n".join([cause.group(1), *lines[i + 1:]]).strip()
    return f"{type(err).__name__}: {text}"
