"""Run a command in-process and check the promise made for bad input.

Exit code 2, exactly one line on stderr starting with ``Error:``, no traceback, nothing
on stdout, and no file changed or created: the recipe, the database's rows, the folder.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from click.testing import CliRunner, Result

from ablate.cli import main

VALID = """
name = "valid"
description = "a study one change away from each bad case"
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"

[base.data]
name = "shapes"
classes = 3
image_size = 32
train_images = 8
val_images = 4

[base.train]
lr = 0.01
epochs = 1
batch_size = 4

[grid]
"model.keep_last_expansion" = [true, false]

[variants.plain]
description = "as the base"
"""

# sqlite sidecar files a reader may leave beside a database; their content is not data
SIDECARS = ("-wal", "-shm", "-journal")


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=True)


def database_rows(path: Path) -> list[str]:
    """Every row of every table, as SQL text (file bytes change with WAL checkpoints)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def snapshot(folder: Path) -> dict[str, str]:
    """Each file under ``folder``: a digest of its bytes, or of its rows for a database."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            out[str(path)] = "dir"
        elif path.name.endswith(SIDECARS):
            continue
        elif path.suffix == ".db" and path.read_bytes()[:16] == b"SQLite format 3\x00":
            out[str(path)] = "rows:" + hashlib.sha256("\n".join(database_rows(path)).encode()
                                                      ).hexdigest()
        else:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_refused(result: Result, needle: str = "") -> str:
    """Exit 2 with one clean line on stderr that contains ``needle``; returns the line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("Error: "), line
    assert "Traceback" not in result.output
    assert result.stdout == "", result.stdout
    assert line.isprintable(), repr(line)  # no escape sequence reached the terminal
    assert needle in line, f"{needle!r} not in {line!r}"
    return line


def make_database(folder: Path) -> Path:
    """A database holding one planned study, to prove bad input leaves it as it was."""
    db = folder / "keep.db"
    recipe = folder / "existing.toml"
    recipe.write_text(VALID.replace('name = "valid"', 'name = "existing"'))
    from ablate.recipes.loader import load_recipe
    from ablate.store import Store
    from ablate.trials.expand import expand

    parsed = load_recipe(recipe)
    store = Store(str(db))
    store.upsert_study(parsed.name, parsed.description, str(recipe), parsed.text)
    store.register_trials(parsed.name, expand(parsed))
    store.close()
    return db


# VALID as tables of raw TOML values, so a case changes one key and stays valid TOML
TABLES: dict[str, dict[str, str]] = {
    "": {"name": '"valid"', "description": '"a study one change away from each bad case"',
         "seeds": "[0]"},
    "base.model": {"backbone": '"mobilenet_v3_small"', "head": '"lraspp"'},
    "base.data": {"name": '"shapes"', "classes": "3", "image_size": "32", "train_images": "8",
                  "val_images": "4"},
    "base.train": {"lr": "0.01", "epochs": "1", "batch_size": "4"},
    "grid": {'"model.keep_last_expansion"': "[true, false]"},
    "variants.plain": {"description": '"as the base"'},
}


def recipe_text(*changes: tuple[str, str, str | None]) -> str:
    """VALID with ``(table, key, raw TOML value)`` changes (None deletes the key)."""
    tables = {name: dict(keys) for name, keys in TABLES.items()}
    for table, key, raw in changes:
        keys = tables.setdefault(table, {})
        if raw is None:
            keys.pop(key, None)
        else:
            keys[key] = raw
    out = [f"{k} = {v}" for k, v in tables.pop("").items()]
    for name, keys in tables.items():
        out += ["", f"[{name}]"] + [f"{k} = {v}" for k, v in keys.items()]
    return "\n".join(out) + "\n"
