"""A per-user cache of architecture costs, so ``ablate plan`` without a database (or with
one that has not seen an architecture yet) does not count parameters and FLOPs again;
and of timed training probes (``ablate.cost.probe``, in ``probes/`` beside ``costs/``).

Entries live in ``<cache dir>/costs/<code version>/<arch_id>.json``. The cache dir is
``$ABLATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ablate``, else ``~/.cache/ablate``. The
code version hashes the counting code (``ablate/cost``), the built-in model builders
(``ablate/models``, which decide what is counted) and the versions of torch,
torchvision and fvcore: any change there starts an empty folder, so stale figures are
never reused. ``arch_id`` already covers the model spec, class count, resolution and
user model code.

A cache is never worth an error: unreadable or corrupt entries are ignored (and
recomputed by the caller), failed writes are dropped. Writes are atomic (a temporary
file renamed into place), so concurrent planners never see half an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from ablate import atomic
from ablate.paths import expand_user

CACHE_ENV = "ABLATE_CACHE_DIR"
FORMAT = 1
# packages whose code or version changes what is counted
_SOURCES = ("cost", "models")
_DISTRIBUTIONS = ("torch", "torchvision", "fvcore")


def cache_dir() -> Path:
    """``$ABLATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ablate``, else ``~/.cache/ablate``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return expand_user(env, CACHE_ENV)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "ablate"


@cache
def code_version() -> str:
    """Hash of the counting code and the libraries it counts with (once per process)."""
    return version_of(Path(__file__).resolve().parents[1])  # the ablate package


def version_of(root: Path) -> str:
    """Hash of ``root``'s ``cost`` and ``models`` sources and the library versions."""
    digest = hashlib.sha256()
    for package in _SOURCES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    for name in _DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}={version}\0".encode())
    return digest.hexdigest()[:16]


def _folder(kind: str = "costs") -> Path:
    return cache_dir() / kind / code_version()


def load(arch_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The cached cost of each of ``arch_ids`` that has a readable entry."""
    folder = _folder()
    if not folder.is_dir():
        return {}
    out = {}
    for arch_id in dict.fromkeys(arch_ids):
        entry = _read(folder / f"{arch_id}.json", arch_id)
        if entry is not None:
            out[arch_id] = entry
    return out


def _read(path: Path, arch_id: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, truncated, not UTF-8
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    cost = data.get("cost")
    if not isinstance(cost, dict) or cost.get("arch_id") != arch_id:
        return None
    return cost


def save(arch_id: str, cost: dict[str, Any]) -> None:
    """Store ``cost`` (JSON-able) for ``arch_id``; silently nothing when that fails."""
    if not _safe_name(arch_id):
        return
    _write(_folder(), arch_id, json.dumps({"format": FORMAT, "cost": {**cost, "arch_id": arch_id}}))


def _write(folder: Path, name: str, payload: str) -> None:
    # a read-only home or a full disk costs a recount next time, nothing more
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        atomic.write_text(folder / f"{name}.json", payload)


def load_entry(kind: str, key: str) -> dict[str, Any] | None:
    """The entry ``key`` of ``kind`` (e.g. ``probes``), None if missing or unreadable."""
    if not _safe_name(key):
        return None
    try:
        data = json.loads((_folder(kind) / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    entry = data.get("entry")
    return entry if isinstance(entry, dict) else None


def save_entry(kind: str, key: str, entry: dict[str, Any]) -> None:
    """Store ``entry`` (JSON-able) as ``key`` of ``kind``; silently nothing when that fails."""
    if _safe_name(key):
        _write(_folder(kind), key, json.dumps({"format": FORMAT, "key": key, "entry": entry}))


def clear() -> tuple[Path, int]:
    """Remove every cached cost (all code versions): (the folder, entries removed)."""
    folder = cache_dir() / "costs"
    count = sum(1 for _ in folder.rglob("*.json")) if folder.is_dir() else 0
    shutil.rmtree(folder, ignore_errors=True)
    return folder, count


def _safe_name(arch_id: str) -> bool:
    """An arch id is a hex digest; anything else must not become a path."""
    return bool(arch_id) and all(c in "0123456789abcdef" for c in arch_id)
