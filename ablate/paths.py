"""Paths the user gives (recipe keys, options, environment variables), ``~`` expanded."""

from __future__ import annotations

import os
from pathlib import Path

from ablate.errors import UserInputError


def expand_user(path: str | os.PathLike[str], what: str) -> Path:
    """``Path(path).expanduser()``, as a shell expands ``~`` and ``~user``. Python raises
    RuntimeError for a ``~user`` of no known user (or ``~`` without a home folder): that
    is one line naming ``what``, the key or option that gave the path, and so is a path
    of spaces alone (``ABLATE_RUNS_DIR=" "`` made a folder named by spaces)."""
    if not str(path).strip():
        raise UserInputError(f"{what}: is blank (spaces only); give a path")
    try:
        return Path(path).expanduser()
    except RuntimeError:
        head = str(path).split(os.sep, 1)[0]
        raise UserInputError(f"{what}: {path}: cannot expand {head!r} (no such user, or no "
                             "home folder)") from None


def not_found(path: str | os.PathLike[str]) -> str:
    """``"PATH not found"``, or where ``path`` (or the folder on its path that is missing)
    is a link whose target is gone, a git-annex or DVC file not fetched or a dataset
    moved, what it links to: ``"PATH is a link to TARGET, which does not exist"``.
    Only read when a path was not found."""
    path = Path(path)
    for part in [path, *path.parents]:
        try:
            if part.is_symlink() and not part.exists():
                gone = f"a link to {os.readlink(part)}, which does not exist"
                return f"{path} is {gone}" if part == path else \
                    f"{path} not found ({part} is {gone})"
            if part.exists():
                break
        except OSError:
            break
    return f"{path} not found"
