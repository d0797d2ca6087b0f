"""``ablate models``: what ``model.backbone``/``model.head``/``model.builder`` may name."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape

from ablate.catalog import BACKBONES, HEADS, MODELS
from ablate.cli import main
from ablate.cli.options import echo_ignored_plugins, json_option, make_console
from ablate.errors import UserInputError
from ablate.registry import arguments

KNOCKOUT_KEYS = ("remove", "replace")  # read for every model, built-in or not
# what ablate.models.selective.check_selective_spec accepts (a test keeps them equal;
# importing it here would load torch for a listing)
SELECTIVE_BACKBONES = ("resnet50", "resnet101")
SELECTIVE_HINT = ("model.selective.enabled = true: content-adaptive down-sampling with a mask "
                  "net, on head 'deeplabv3' at output_stride 8 with backbone "
                  + " or ".join(SELECTIVE_BACKBONES))
KNOCKOUT_HINT = ("model.remove = [PATH, ...] / model.replace = [{path, by, args}] knock "
                 "submodules out by their dotted path; list the paths with "
                 "`ablate cost RECIPE --modules`")


def builder_rows(registry, skip: tuple[str, ...]) -> list[dict[str, Any]]:
    """Plugins and registered builders with their arguments; an entry that does not
    import is listed with its error instead of stopping the listing."""
    rows = []
    for name, entry in registry.entries().items():
        if registry.is_builtin(name):
            continue
        row: dict[str, Any] = {"name": name, "origin": entry.origin, "path": entry.path,
                               "arguments": [], "error": None}
        try:
            row["arguments"] = arguments(registry.load(name), skip=skip)
        except UserInputError as err:
            row["error"] = str(err)
        rows.append(row)
    return rows


def format_arguments(args: list[dict[str, Any]]) -> str:
    return ", ".join(a["name"] if a["required"] else f"{a['name']}={a['default']!r}"
                     for a in args)


@main.command("models")
@json_option
def models(as_json: bool) -> None:
    """List the built-in backbones and heads, and model builders from plugins.

    A recipe names a built-in model by model.backbone and model.head, or its own with
    model.builder = "package.module:function" (or a plugin's name) and model.args.
    Plugins are installed packages with an "ablate.models" entry point. Any of them
    can have submodules knocked out by path (model.remove, model.replace, [knockout]);
    `ablate cost RECIPE --modules` lists the paths of a recipe's networks.

    \b
    Example:
        ablate models
        ablate models --json
    """
    from ablate.recipes.schema import ModelSpec, SelectiveSpec  # lazy: loads pydantic

    keys = {name: info.default for name, info in ModelSpec.model_fields.items()
            if name not in ("builder", "args", "selective", *KNOCKOUT_KEYS)}
    data = {
        "builtin": {"backbones": BACKBONES.names(), "heads": HEADS.names(),
                    "keys": {k: (v.model_dump() if hasattr(v, "model_dump") else v)
                             for k, v in keys.items()}},
        "builders": builder_rows(MODELS, skip=("num_classes",)),
        "selective": {"hint": SELECTIVE_HINT, "backbones": list(SELECTIVE_BACKBONES),
                      "keys": {info.alias or name: info.default  # execution too
                               for name, info in SelectiveSpec.model_fields.items()}},
        "knockout": KNOCKOUT_HINT,
    }
    echo_ignored_plugins(MODELS)  # on stderr: the JSON on stdout stays clean
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    console = make_console()
    console.print("[bold]Built-in[/bold] (model.builder unset)")
    console.print(f"  model.backbone: {', '.join(data['builtin']['backbones'])}")
    console.print(f"  model.head:     {', '.join(data['builtin']['heads'])}")
    console.print("  keys: " + escape(", ".join(f"{k}={v!r}" for k, v in keys.items())))
    console.print("[bold]Builders[/bold] (model.builder = NAME, arguments under model.args; "
                  "num_classes is passed by ablate)")
    if not data["builders"]:
        console.print("  none installed; any 'package.module:function' import path works")
    for row in data["builders"]:
        detail = row["error"] or format_arguments(row["arguments"])
        console.print(f"  {escape(row['name'])}  [dim]{escape(row['path'])} "
                      f"({escape(row['origin'])})[/dim]\n    {escape(detail)}")
    console.print("[bold]Selective down-sampling[/bold] (built-in, model.selective)")
    console.print(f"  {escape(SELECTIVE_HINT)}")
    console.print("  keys: " + escape(", ".join(f"{k}={v!r}" for k, v in
                                                 data["selective"]["keys"].items())))
    console.print("[bold]Knock-out[/bold] (any model)")
    console.print(f"  {escape(KNOCKOUT_HINT)}")
