"""Files written whole or not at all: a temporary file beside the target, renamed over it.

Every file ablate rewrites while others may read it (``result.json``, checkpoints,
``slurm.json``, ``progress.json``, cached costs, reports) goes through here. The
temporary file has a name no other writer uses (``.NAME.RANDOM.tmp``, hidden), so two
processes writing one path at once (a requeued Slurm job and its leftover copy finishing
the same trial) never write into each other's file: readers see one writer's whole file.
On any error the temporary file goes and the target is as it was.

It imports nothing of ablate: the lowest layer, usable from every package.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"
_RANDOM_BYTES = 6  # the name's random part: 12 hex digits


def temporary_name(path: str | Path) -> Path:
    """A fresh name for a temporary file beside ``path``: ``.NAME.RANDOM.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{secrets.token_hex(_RANDOM_BYTES)}{TEMPORARY_SUFFIX}")


def temporaries(path: str | Path) -> list[Path]:
    """The temporary files beside ``path`` that writers of it left (a writer killed
    half-way leaves its own; one still writing has one too)."""
    path = Path(path)
    random = "[0-9a-f]" * (2 * _RANDOM_BYTES)
    return sorted(path.parent.glob(f".{_glob_escape(path.name)}.{random}{TEMPORARY_SUFFIX}"))


@contextlib.contextmanager
def temporary_beside(path: str | Path) -> Iterator[Path]:
    """A new empty file beside ``path`` (created with the permissions ``open`` would give
    it, or ``path``'s own where it exists), removed when the block ends unless the block
    renamed it away."""
    path = Path(path)
    mode = _existing_mode(path)
    while True:
        tmp = temporary_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
            break
        except FileExistsError:  # 48 random bits taken: draw again
            continue
    try:
        if mode is not None:
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_file(path: str | Path, write: Callable[[Path], None], *, durable: bool = False) -> None:
    """``write(tmp)`` fills a temporary file beside ``path`` (it may open ``tmp`` itself,
    or hand it to a library that writes paths), which then replaces ``path``. A link is
    written through: its target is replaced. ``durable``: the file's data, then the
    rename, are on disk before this returns (fsync of the file and of its folder), so a
    crash of the machine leaves the old file or the new one."""
    real = Path(os.path.realpath(path))
    with temporary_beside(real) as tmp:
        write(tmp)
        if durable:
            sync_file(tmp)
        os.replace(tmp, real)
    if durable:
        sync_folder(real.parent)


def write_text(path: str | Path, text: str, *, durable: bool = False,
               newline: str | None = None) -> None:
    """``text`` as UTF-8, written whole or not at all (``newline`` as for ``open``)."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)

    write_file(path, write, durable=durable)


def write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> None:
    write_file(path, lambda tmp: tmp.write_bytes(data), durable=durable)


def sync_file(path: str | Path) -> None:
    """The file's data on disk (fsync through a descriptor of our own: any descriptor of
    a file flushes what every other one wrote)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(folder: str | Path) -> None:
    """A rename or a new link in ``folder`` on disk. Best effort: some file systems
    refuse to fsync a folder, and the file itself is already in place."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _existing_mode(path: Path) -> int | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else None


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
