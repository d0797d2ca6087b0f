"""The documentation cannot drift from the code: the recipe key reference is the schema's,
every command has help with an example and a row in README's command table, and every
command line the docs and recipes show parses with the options it uses."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes import schema

ROOT = Path(__file__).resolve().parents[1]
RECIPES_MD = ROOT / "docs" / "recipes.md"
README = ROOT / "README.md"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_recipe_keys", ROOT / "docs" / "gen_recipe_keys.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_recipe_keys", module)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


def _documented_rows(block: str) -> dict[str, list[tuple[str, str]]]:
    """Section title -> (key, default) rows of the key tables in a marked block."""
    tables: dict[str, list[tuple[str, str]]] = {}
    title = None
    for line in block.splitlines():
        if line.endswith(":") and not line.startswith("|"):
            title = line
            tables[title] = []
        elif line.startswith("| `") and title is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            tables[title].append((cells[0].strip("`"), cells[1]))
    return tables


def test_recipe_key_block_is_the_generated_one():
    text = RECIPES_MD.read_text()
    assert GEN.marked_block(text) == GEN.generate(), (
        "docs/recipes.md's key table differs from the schema: run "
        ".venv/bin/python docs/gen_recipe_keys.py --write")


@pytest.mark.parametrize("where,model", [(w, m) for _, w, m in GEN.SECTIONS], ids=lambda v: str(v))
def test_every_schema_key_and_default_is_documented(where, model):
    """Read the marked block itself (not the generator): each field of the schema is a row
    with its default, and each row of the section is a field of the schema."""
    block = GEN.marked_block(RECIPES_MD.read_text())
    title = next(t for t, w, _ in GEN.SECTIONS if w == where) + ":"
    rows = dict(_documented_rows(block)[title])
    fields = {info.alias or name: info for name, info in model.model_fields.items()
              if (model.__name__, name) not in GEN.NOT_KEYS}
    assert set(rows) == set(fields), f"{where}: documented {sorted(rows)} vs schema {sorted(fields)}"
    for key, info in fields.items():
        shown = GEN.toml_value(info.default)
        assert rows[key] in (shown, f"`{shown}`"), (where, key, rows[key], info.default)


def test_top_level_keys_are_the_loaders():
    from ablate.recipes.loader import TOP_LEVEL_KEYS

    rows = _documented_rows(GEN.marked_block(RECIPES_MD.read_text()))["Top level:"]
    assert [k for k, _ in rows] == list(TOP_LEVEL_KEYS)


def test_generator_refuses_a_schema_key_without_a_meaning(monkeypatch):
    meanings = dict(GEN.MEANING)
    del meanings["train.lr"]
    monkeypatch.setattr(GEN, "MEANING", meanings)
    with pytest.raises(KeyError, match="train.lr"):
        GEN.generate()


def test_generator_refuses_a_meaning_for_a_key_the_schema_lacks(monkeypatch):
    monkeypatch.setattr(GEN, "MEANING", {**GEN.MEANING, "train.lr_typo": "nothing"})
    with pytest.raises(KeyError, match="lr_typo"):
        GEN.generate()


def test_a_changed_default_shows_in_the_generated_block(monkeypatch):
    field = schema.TrainSpec.model_fields["log_every"]
    monkeypatch.setattr(field, "default", 11)
    assert "| `log_every` | `11` |" in GEN.generate()
    assert GEN.generate() != GEN.marked_block(RECIPES_MD.read_text())


def test_schema_types_read_as_words():
    block = GEN.generate()
    assert "| `lr` | `0.01` | number in (0, 10] |" in block
    assert "| `momentum` | `0.9` | number in [0, 1) |" in block
    assert '| `optimizer` | `"sgd"` | "sgd", "adamw" |' in block
    assert '| `backbone` | `"mobilenet_v3_large"` | "mobilenet_v3_large", "mobilenet_v3_small"' in block
    assert "| `lambda` | `0.1` | number in [0, 100] |" in block  # the alias, not sparsity_weight
    assert "| `seed` |" not in block  # set from `seeds`, never a key


def _commands(group: click.Group = main, prefix: str = "ablate") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            out += _commands(command, path)
        else:
            out.append((path, command))
    return out


COMMANDS = _commands()


def test_the_command_list_is_not_empty():
    names = [path for path, _ in COMMANDS]
    assert {"ablate plan", "ablate run", "ablate report", "ablate db upgrade"} <= set(names)


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(main, [*path.split()[1:], "--help"])
    assert result.exit_code == 0, result.output
    match = re.search(r"^\s*Example:\n((?:\s+ablate .*\n)+)", result.output, re.MULTILINE)
    assert match, f"{path} --help has no 'Example:' block"
    for line in match.group(1).splitlines():
        assert line.strip().startswith(path + " ") or line.strip() == path, (path, line)
        assert "  " not in line.strip(), (path, line)  # a docstring's \ continuation shows so


def _readme_command_table() -> list[list[str]]:
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| command |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_every_command_is_in_readmes_table_with_an_example(path):
    rows = {row[0].strip("`").split(" [")[0].split(" RECIPE")[0].split(" STUDY")[0]: row
            for row in _readme_command_table()}
    assert path in rows, f"{path} has no row in README.md's command table"
    example = rows[path][-1].strip("`")
    assert example.startswith(path), (path, example)


def test_readme_table_lists_no_command_that_does_not_exist():
    paths = {p for p, _ in COMMANDS}
    for row in _readme_command_table():
        command = row[0].strip("`").split(" [")[0].split(" RECIPE")[0].split(" STUDY")[0]
        assert command in paths, f"README lists {command}, which is not a command"


def test_docs_links_resolve():
    """Every relative link of README.md and docs/*.md names a file that exists."""
    broken = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_the_lifecycle_table_in_the_docs_is_the_code_s():
    from ablate.trials.lifecycle import table_text

    text = (ROOT / "docs" / "architecture.md").read_text()
    assert f"```\n{table_text()}\n```" in text


def _documented_command_lines() -> list[tuple[str, str]]:
    """(where, command line) of every ``ablate ...`` line in a fenced code block of README
    and docs/, and in the recipes' comments: what users copy and paste."""
    found = []
    sources = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "recipes").glob("*.toml"))]
    for doc in sources:
        fenced = doc.suffix == ".toml"
        held, start = "", 0
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            if doc.suffix == ".md" and line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if line.endswith("\\"):  # continued on the next line
                held, start = held + line[:-1] + " ", start or number
                continue
            line, number, held, start = held + line, start or number, "", 0
            text = line.strip().removeprefix("#").strip().removeprefix("$ ")
            if fenced and re.match(r"^(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?ablate [a-z]", text):
                found.append((f"{doc.relative_to(ROOT)}:{number}", text))
    return found


DOCUMENTED = _documented_command_lines()


def test_the_docs_show_commands():
    assert len(DOCUMENTED) > 50


@pytest.mark.parametrize(("where", "line"), DOCUMENTED, ids=[w for w, _ in DOCUMENTED])
def test_every_documented_command_line_parses(where, line, monkeypatch):
    """Each command and option a documented line uses exists and takes the values shown
    (parsed by click as typed; files need not exist and nothing runs: the callbacks of
    eager options, such as ``cost --clear-cache``, are left out)."""
    import shlex

    words = shlex.split(line, comments=True)
    for stop in ("|", ">", "&&", ";", "2>&1"):  # the shell's part of the line
        if stop in words:
            words = words[:words.index(stop)]
    words = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    assert words[0].endswith("ablate"), (where, line)
    command: click.Command = main
    args = words[1:]
    while isinstance(command, click.Group) and args and args[0] in command.commands:
        command, args = command.commands[args[0]], args[1:]
    assert command is not main, f"{where}: no such command in {line!r}"
    for param in command.params:
        if param.is_eager:
            monkeypatch.setattr(param, "callback", None)
    try:
        command.make_context(command.name, list(args))
    except click.BadParameter as err:
        if not isinstance(err.param.type, click.Path):  # a file of the user's: not here
            pytest.fail(f"{where}: {line!r}: {err.format_message()}")
    except click.UsageError as err:
        pytest.fail(f"{where}: {line!r}: {err.format_message()}")


def _shipped_axes() -> set[str]:
    """Every key a shipped recipe varies: what ``--where`` can name on its studies."""
    from ablate.recipes.loader import load_recipe

    keys: set[str] = set()
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        recipe = load_recipe(path)
        keys.update(recipe.grid)
        for group in recipe.zips:
            keys.update(group)
        if recipe.knockout is not None:
            keys.add("model.remove")
    return keys


def _where_keys_shown() -> list[tuple[str, str]]:
    """(where, KEY) of each dotted ``--where KEY=...`` in a documented command line and in
    a command's --help example."""
    lines = list(DOCUMENTED) + [(path, line.strip()) for path, command in COMMANDS
                                for line in (command.help or "").splitlines()]
    return [(where, key) for where, line in lines
            for key in re.findall(r"--where ([\w.]+\.[\w]+)!?=", line)]


def test_every_where_shown_names_an_axis_of_a_shipped_recipe():
    """A dotted --where key is a column only where a study varies it: an example that
    names a key no shipped recipe varies fails on every study a reader has."""
    shown = _where_keys_shown()
    assert shown, "no --where example found"
    axes = _shipped_axes()
    assert [(where, key) for where, key in shown if key not in axes] == []


def _recipe_snippets(page: str) -> list[tuple[str, str]]:
    """The page's ``toml`` blocks that are whole recipes (a plugin's pyproject.toml is not)."""
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)
    return [(f"docs/{page} toml block {i}", text) for i, text in enumerate(blocks)
            if "[project" not in text]


# extending.md's recipe builds the example's U-Net (examples/custom_unet on the path)
RECIPE_SNIPPETS = _recipe_snippets("recipes.md") + _recipe_snippets("extending.md")


@pytest.mark.parametrize(("where", "text"), RECIPE_SNIPPETS, ids=[w for w, _ in RECIPE_SNIPPETS])
def test_every_recipe_snippet_plans(where, text, tmp_path, monkeypatch):
    """What the recipe pages show, copied into a file, is a recipe ablate accepts: its keys,
    one setter per key, and each architecture built on the meta device (plan --no-cost).
    (fair-comparisons.md's block shows the ``[tune]`` section's keys alone, not a recipe;
    tests/recipes/test_tune.py covers them.)"""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "custom_unet"))
    recipe = tmp_path / "snippet.toml"
    recipe.write_text(text)
    result = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost",
                                       "--db", str(tmp_path / "r.db")])
    assert result.exit_code == 0, f"{where}: {result.output}"


def test_fair_comparisons_tune_block_plans_on_extending_md_s_recipe(tmp_path, monkeypatch):
    """fair-comparisons.md's ``[tune]`` block, copied under extending.md's recipe (a user
    model whose ``model.args.width`` no axis sets), plans: its keys and ranges are the
    code's, and the two phases are counted as the page says (k x configurations x tuning
    seeds, then configurations x seeds)."""
    tune = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "fair-comparisons.md").read_text(),
                      re.S)
    (_, recipe_text), = _recipe_snippets("extending.md")
    assert len(tune) == 1 and tune[0].startswith("[tune]")
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "custom_unet"))
    recipe = tmp_path / "tuned.toml"
    recipe.write_text(recipe_text + "\n" + tune[0])
    result = CliRunner().invoke(main, ["plan", str(recipe), "--no-cost", "--json",
                                       "--db", str(tmp_path / "t.db")])
    assert result.exit_code == 0, result.output
    names = [row["name"] for row in json.loads(result.stdout)]
    assert len([n for n in names if "/draw=" in n]) == 8 * 2 * 1  # budget x skips x seeds
    assert len([n for n in names if "/draw=" not in n]) == 2  # skips x the study's seeds


def _ids_leave_out() -> list[str]:
    """The keys recipes.md says count in a trial id only when set off their default."""
    text = " ".join(RECIPES_MD.read_text().split())
    match = re.search(r"the ids of older recipes stay valid: (.*?)\)\.", text)
    assert match, "recipes.md no longer lists the keys a trial id leaves out at their default"
    return re.findall(r"`([\w.]+)`", match.group(1))


def _left_out_at_default(model: type, prefix: str = "") -> set[str]:
    """Every key of the schema left out of the spec (so of the trial id) at its default."""
    from pydantic import BaseModel

    keys = set()
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        if info.exclude_if is not None:
            keys.add(key)
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys |= _left_out_at_default(info.annotation, key + ".")
    return keys


def test_the_keys_a_trial_id_leaves_out_are_the_schema_s():
    assert set(_ids_leave_out()) == _left_out_at_default(schema.TrialSpec)


def test_a_trial_id_recomputed_from_the_page_is_the_one_plan_gives(tmp_path):
    """The page's definition, from the page alone: the keys tables' defaults (unset is
    null, a table's own table nested), less the keys it says count only when set, and
    the seed, hashed as it says, is the id ``ablate plan`` gives a recipe that sets
    nothing and one that writes every default out."""
    import hashlib
    import tomllib

    left_out = set(_ids_leave_out())
    tables = _documented_rows(GEN.marked_block(RECIPES_MD.read_text()))
    spec: dict = {"seed": 0}
    written = []
    for title, rows in tables.items():
        section = re.match(r"`([\w.]+)`", title)
        if not section or section.group(1) not in {"model", "model.selective", "data", "train",
                                                   "eval"}:
            continue
        node = spec
        for part in section.group(1).split("."):
            node = node.setdefault(part, {})
        written.append(f"[base.{section.group(1)}]")
        for key, shown in rows:
            if shown == "`(table below)`":
                continue
            value = None if shown == "unset" else tomllib.loads(f"v = {shown.strip('`')}")["v"]
            if value is not None and value != {}:
                written.append(f"{key} = {shown.strip('`')}")
            if f"{section.group(1)}.{key}" not in left_out:
                node[key] = value
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha256(text.encode()).hexdigest()[:12]
    for name, recipe in (("empty", ""), ("written", "\n".join(written) + "\n")):
        path = tmp_path / f"{name}.toml"
        path.write_text(recipe)
        result = CliRunner().invoke(main, ["plan", str(path), "--no-cost", "--json",
                                           "--db", str(tmp_path / "r.db")])
        assert result.exit_code == 0, result.output
        assert [row["trial_id"] for row in json.loads(result.stdout)] == [expected], name


def test_the_datasets_table_has_a_row_per_built_in_dataset():
    """recipes.md's layout table: every built-in ``data.name`` (``folder`` was missing)."""
    from ablate.catalog import DATASETS

    text = RECIPES_MD.read_text()
    table = text[text.index("| `data.name` | layout under `data.root` |"):]
    rows = re.findall(r"^\| `(\w+)` \|", table.split("\n\n")[0], re.M)
    assert sorted(rows) == sorted(DATASETS.builtin_names())
