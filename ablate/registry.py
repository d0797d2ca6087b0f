"""Name -> builder registries shared by models and datasets (no torch at import time).

One ``Registry`` per kind. A name resolves, in this order, to

* a built-in entry: a ``"module:function"`` import path inside ablate, imported only
  when the entry is used (so the schema can list names without importing torch);
* an entry registered at run time with ``Registry.register``;
* an installed plugin: an entry point in the registry's group (``ablate.models``,
  ``ablate.datasets``), as torchvision's ``get_model`` and mmsegmentation's
  ``Registry`` resolve names.

A reference containing ``:`` is an import path (``"package.module:function"``), as
Hydra's ``_target_``. Importing it executes the user's code.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from ablate.errors import UserInputError

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class Entry:
    """A named builder: ``target`` is an import path or the object itself."""

    name: str
    target: str | Callable[..., Any]
    origin: str  # "built-in", "registered" or the distribution that provides the plugin

    @property
    def path(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{self.target.__module__}:{self.target.__qualname__}"


def is_import_path(ref: str) -> bool:
    return bool(_IMPORT_PATH.match(ref))


def is_library(ref: str) -> bool:
    """An import path into an installed library (site-packages or the standard library,
    e.g. ``torch.nn:Identity``): versioned as a package, not hashed as the user's code.
    Found without importing; a module that cannot be found is not a library."""
    top = ref.partition(":")[0].split(".")[0]
    try:
        spec = PathFinder.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    where = [spec.origin] if spec.origin and spec.has_location else []
    where += list(spec.submodule_search_locations or [])
    roots = {Path(p).resolve() for key in ("purelib", "platlib", "stdlib", "platstdlib")
             if (p := sysconfig.get_paths().get(key))}
    return bool(where) and all(any(Path(w).resolve().is_relative_to(r) for r in roots)
                               for w in where)


class Registry:
    """Built-ins, run-time registrations and entry-point plugins of one kind."""

    def __init__(self, kind: str, key: str, builtins: dict[str, str],
                 group: str | None = None) -> None:
        self.kind = kind
        self.key = key  # the recipe key named in error messages
        self.group = group
        self._builtins = {name: Entry(name, target, "built-in") for name, target in builtins.items()}
        self._registered: dict[str, Entry] = {}
        self._plugins: dict[str, Entry] | None = None
        self._ignored: list[str] = []

    def register(self, name: str, target: str | Callable[..., Any] | None = None):
        """Register ``target`` under ``name``; without a target, decorate a function. A
        built-in's name is refused: the built-in keeps it (recipes mean the same whatever
        code ran), so the registered function would never be called."""
        if name in self._builtins:
            raise ValueError(f"{self.key}: {name!r} is a built-in {self.kind}; register "
                             "yours under another name")
        if target is None:
            def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
                self._registered[name] = Entry(name, fn, "registered")
                return fn

            return wrap
        self._registered[name] = Entry(name, target, "registered")
        return target

    def plugins(self) -> dict[str, Entry]:
        """Entry points of ``group``, read once (``refresh`` reads them again)."""
        if self._plugins is None:
            found: dict[str, Entry] = {}
            ignored: list[str] = []
            if self.group:
                for ep in importlib.metadata.entry_points(group=self.group):
                    dist = getattr(ep, "dist", None)
                    origin = f"plugin {dist.name}" if dist is not None else "plugin"
                    entry = Entry(ep.name, ep.value, origin)
                    why = self._ignored_because(entry, found.get(ep.name))
                    if why:
                        ignored.append(why)
                    found.setdefault(ep.name, entry)
            self._plugins = found
            self._ignored = ignored
        return self._plugins

    def _ignored_because(self, entry: Entry, earlier: Entry | None) -> str | None:
        """Why a plugin's entry point is not what its name resolves to (None: it is).

        A built-in keeps its name, so recipes mean the same whatever is installed; the
        plugin's author, who expected their code to run, is told which name to change."""
        what = f"{self.group} entry point {entry.name!r} ({entry.origin}: {entry.path})"
        if entry.name in self._builtins:
            return (f"{what} is ignored: {self.key} = {entry.name!r} stays the built-in "
                    f"{self.kind}; rename the entry point to use the plugin")
        if earlier is not None and (earlier.origin, earlier.path) != (entry.origin, entry.path):
            return (f"{what} is ignored: {earlier.origin} ({earlier.path}) has that name "
                    "and comes first on sys.path")
        return None

    def ignored_plugins(self) -> list[str]:
        """A line per installed entry point that a name of this registry does not reach
        (it shadows a built-in, or another plugin has its name); reads the entry points."""
        self.plugins()
        return list(self._ignored)

    def refresh(self) -> None:
        self._plugins = None

    def builtin_names(self) -> list[str]:
        return list(self._builtins)

    def entries(self) -> dict[str, Entry]:
        """Every name, built-ins first; a built-in name cannot be taken over by a plugin."""
        others = {**self.plugins(), **self._registered}
        return {**self._builtins, **{k: v for k, v in others.items() if k not in self._builtins}}

    def names(self) -> list[str]:
        return list(self.entries())

    def entry(self, name: str, builtins: bool = True) -> Entry:
        """The entry of ``name``; ``builtins=False``: a key that names user code only
        (``data.builder``), whose error lists no built-in name as allowed."""
        if name in self._builtins:  # no entry-point scan for built-ins
            return self._builtins[name]
        if name in self._registered:
            return self._registered[name]
        found = self.plugins().get(name)
        if found is None:
            names = [n for n in self.names() if builtins or n not in self._builtins]
            close = difflib.get_close_matches(name, names, n=1)
            module, _, attribute = name.rpartition(".")
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if not close and self.group and is_import_path(f"{module}:{attribute}"):
                # a module named without its function, else Hydra's _target_ spelling
                hint = _module_hint(name) or f" (did you mean '{module}:{attribute}'?)"
            allowed = ", ".join(repr(n) for n in names)
            if self.group:  # user builders may also be named by import path
                path = "an import path 'package.module:function'"
                allowed = f"{allowed} or {path}" if allowed else (
                    f"{path} (no {self.group} plugin is installed)")
            raise UserInputError(f"{self.key}: unknown {self.kind} {name!r}{hint}; "
                                 f"allowed: {allowed}")
        return found

    def path(self, ref: str) -> str:
        """The import path a name or an import path stands for."""
        return ref if is_import_path(ref) else self.entry(ref).path

    def load(self, ref: str) -> Callable[..., Any]:
        """The builder ``ref`` names (import path or registered name), imported."""
        if is_import_path(ref):
            return import_target(ref, self.key)
        entry = self.entry(ref)
        if not isinstance(entry.target, str):
            return entry.target
        with self._named(entry, self.key):
            return import_target(entry.target, self.key)

    @contextlib.contextmanager
    def _named(self, entry: Entry, key: str):
        """An error of a name's import path says which name and plugin gave the path: the
        recipe holds the name, and the typo is in the plugin's entry point."""
        try:
            yield
        except UserInputError as err:
            detail = str(err).removeprefix(f"{key}: ")
            raise UserInputError(f"{key}: {entry.name!r} ({entry.origin}: {entry.path}): "
                                 f"{detail}") from err

    def is_builtin(self, ref: str) -> bool:
        return ref in self._builtins

    def source_hash(self, ref: str) -> str | None:
        """One hash of the source files ``source_files`` lists (None: a built-in).

        Part of trial and architecture ids, so editing the user's code is a new trial.
        A module outside any package hashes as its file alone; a package, as every file
        of it.
        """
        files = self.source_files(ref)
        return None if files is None else combined_hash(files)

    def source_files(self, ref: str, key: str | None = None) -> dict[str, str] | None:
        """``{path: hash}`` of every ``*.py`` file of the package a user builder lives in
        (its top-level package, subpackages included; a module outside a package: its file
        alone), paths relative to the folder holding the package. None for built-ins.

        A builder's helpers (blocks, losses) usually sit in other modules of its package:
        hashing only the builder's file would keep results of the old helpers. Errors name
        ``key`` (default: the registry's own, such as ``data.name``).
        """
        if self.is_builtin(ref):
            return None
        # planning asks once per configuration: reuse the answer while no file or folder
        # of it changed (a stat each, instead of a path search and a walk)
        target = ref if is_import_path(ref) else self.entry(ref).path  # re-registered names
        cache_key = (self.key, ref, target, tuple(sys.path))
        cached = _FILES.get(cache_key)
        if cached is not None and all(_stamp(path) == stamp for path, stamp in cached[0]):
            return dict(cached[1])
        stamps: list[tuple[str, tuple[int, int]]] = []
        files = self._source_files(ref, stamps, key or self.key)
        _FILES[cache_key] = (stamps, files)
        return dict(files)

    def _source_files(self, ref: str, stamps: list, key: str) -> dict[str, str]:
        if not is_import_path(ref):
            entry = self.entry(ref)
            target = entry.target
            if not isinstance(target, str):
                module = getattr(target, "__module__", None)
                found = _locate(module) if module else None
                if found is None:
                    return _files(inspect.getsourcefile(target), None, key, ref, stamps)
                return _files(*found, key, ref, stamps)
            with self._named(entry, key):
                return self._path_files(target, stamps, key)
        return self._path_files(ref, stamps, key)

    def _path_files(self, ref: str, stamps: list, key: str) -> dict[str, str]:
        if not is_import_path(ref):  # a plugin's entry point that names no function
            raise UserInputError(f"{key}: {ref!r} is not an import path 'package.module:function'")
        module = ref.partition(":")[0]
        found = _locate(module)
        if found is not None:
            return _files(*found, key, ref, stamps)
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError as err:  # its parent package is missing
            raise UserInputError(f"{key}: cannot import {module!r}: {err}"
                                 f"{_not_found_hint(err.name or module)}") from err
        except Exception as err:  # a parent package that fails to import
            raise UserInputError(
                f"{key}: cannot import {module!r} ({type(err).__name__}: {err})"
            ) from err
        if spec is None:
            raise UserInputError(f"{key}: no module named {module!r}{_not_found_hint(module)}")
        return _files(spec.origin, None, key, ref, stamps)  # an import hook, a zip


_HASHES: dict[tuple[str, int, int], str] = {}
# (registry key, reference, sys.path) -> ((path, stamp) of every file and folder read, files)
_FILES: dict[tuple, tuple[list[tuple[str, tuple[int, int]]], dict[str, str]]] = {}


def _stamp(path: str) -> tuple[int, int]:
    """(mtime, size) of a file or folder; (-1, -1) when it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


def combined_hash(files: dict[str, str]) -> str:
    """One hash of ``{path: hash}``: a lone file's own hash, else of the sorted pairs."""
    if len(files) == 1:
        return next(iter(files.values()))
    text = "".join(f"{path}\0{digest}\n" for path, digest in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _locate(module: str) -> tuple[str, str | None] | None:
    """(source file of ``module``, folder of its top-level package or None) found on
    ``sys.path`` without importing anything.

    ``importlib.util.find_spec`` would import the parent packages, and a package that
    imports torch costs seconds; planning a study whose costs are cached needs neither.
    None when the plain path search cannot tell (an import hook, a zip): the caller
    falls back to ``find_spec``.
    """
    parts = module.split(".")
    loaded = sys.modules.get(module)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        if not origin:
            return None
        top = sys.modules.get(parts[0])
        locations = list(getattr(top, "__path__", None) or [])
        return origin, _package_folder(origin, locations)
    path = None
    spec = None
    top_locations: list[str] = []
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        spec = PathFinder.find_spec(name, path)
        if spec is None:
            return None
        path = spec.submodule_search_locations
        if depth == 1:
            top_locations = list(path or [])
    origin = getattr(spec, "origin", None)
    if not origin or not Path(origin).is_file():
        return None
    return origin, _package_folder(origin, top_locations)


def _package_folder(origin: str, locations: list[str]) -> str | None:
    """The top-level package folder holding ``origin`` (a namespace package may have
    several: the one with the file), or None for a module outside a package."""
    resolved = Path(origin).resolve()
    for location in locations:
        if resolved.is_relative_to(Path(location).resolve()):
            return location
    return None


def _files(origin: str | None, package: str | None, key: str, ref: str,
           stamps: list[tuple[str, tuple[int, int]]]) -> dict[str, str]:
    """``{path: hash}`` of the package's ``*.py`` files, or of ``origin`` alone; every file
    and folder read goes into ``stamps``."""
    if not origin or not Path(origin).is_file():
        raise UserInputError(f"{key}: {ref!r} has no source file to hash")
    if package is None:
        stamps.append((origin, _stamp(origin)))
        return {Path(origin).name: _file_hash(origin)}
    root = Path(package)
    out = {}
    for folder, subfolders, names in os.walk(root):
        stamps.append((folder, _stamp(folder)))  # a file added or removed changes it
        # caches and hidden folders (.git, .venv) are not the package's code
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__" and not d.startswith("."))
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                stamps.append((path, _stamp(path)))
                out[Path(path).relative_to(root.parent).as_posix()] = _file_hash(path)
    return out


def _file_hash(path: str) -> str:
    stat = Path(path).stat()
    cache_key = (path, stat.st_mtime_ns, stat.st_size)
    if cache_key not in _HASHES:
        _HASHES[cache_key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return _HASHES[cache_key]


def import_target(path: str, key: str) -> Callable[..., Any]:
    """Import ``"package.module:attribute"``; every failure is one line naming ``key``."""
    if not is_import_path(path):
        raise UserInputError(f"{key}: {path!r} is not an import path 'package.module:function'")
    module_name, _, attribute = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise UserInputError(
            f"{key}: cannot import {module_name!r}: {err}"
            f"{_not_found_hint(err.name or module_name)}"
        ) from err
    except Exception as err:
        raise UserInputError(
            f"{key}: importing {module_name!r} raised {type(err).__name__}: {err}"
        ) from err
    done: list[str] = []
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise UserInputError(f"{key}: module {module_name!r} has no attribute "
                                 f"{attribute!r}{_did_you_mean(obj, part, done)}")
        obj = getattr(obj, part)
        done.append(part)
    if not callable(obj):
        raise UserInputError(f"{key}: {path} is a {type(obj).__name__}, not a function")
    return obj


def _not_found_hint(module: str) -> str:
    """Where to look for a module that is not found ("" when its package is found and
    only the module is missing). The ``ablate`` script does not put the current folder on
    ``sys.path``, so a package lying there is named, with the two ways to make it
    importable."""
    top = module.split(".")[0]
    if top != module:
        with contextlib.suppress(ImportError, ValueError):
            if importlib.util.find_spec(top) is not None:  # the package is there, not the module
                return ""
    here = Path.cwd()
    on_path = {Path(p or ".").resolve() for p in sys.path}
    if here.resolve() not in on_path and ((here / top).is_dir() or (here / f"{top}.py").is_file()):
        return (f" ({top} is in the current folder, which is not on sys.path: run with "
                "PYTHONPATH=. or pip install -e its package)")
    return " (is its package installed or on PYTHONPATH?)"


def _module_hint(name: str) -> str | None:
    """`` (did you mean 'pkg.nets:build'?)`` where ``name`` is a module on ``sys.path``
    rather than a function: splitting it at its last dot, as for Hydra's spelling, would
    send the user to a module attribute. Its functions are read from its source (``ast``,
    nothing imported); None where ``name`` is no module found that way."""
    found = _locate(name)
    if found is None:
        return None
    try:
        tree = ast.parse(Path(found[0]).read_bytes())
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    public = [node.name for node in tree.body
              if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_")]
    if len(public) == 1:
        return f" (did you mean '{name}:{public[0]}'?)"
    listed = ", ".join(public[:6]) + (", ..." if len(public) > 6 else "")
    functions = f"; it defines {listed}" if public else ""
    return f" ({name!r} is a module: name its function, '{name}:FUNCTION'{functions})"


def _did_you_mean(obj: Any, missing: str, done: list[str]) -> str:
    """``; did you mean 'build'?`` naming the public callable of ``obj`` closest to the
    missing attribute (its dotted path under the module), or nothing."""
    names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
    close = difflib.get_close_matches(missing, names, n=1)
    return f"; did you mean {'.'.join([*done, close[0]])!r}?" if close else ""


def keyword_names(fn: Callable[..., Any]) -> list[str] | None:
    """The names a builder takes by keyword, to check a recipe's ``args`` against before
    calling it (a TypeError says less); None where any name goes (``**kwargs``) or the
    signature cannot be read (a builtin or C function: the call decides)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return [name for name, p in params.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def arguments(fn: Callable[..., Any], skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A builder's keyword arguments and defaults, for ``ablate models``/``datasets``."""
    out = []
    for param in inspect.signature(fn).parameters.values():
        if param.name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is param.empty else param.default
        out.append({"name": param.name, "default": default,
                    "required": param.default is param.empty})
    return out
