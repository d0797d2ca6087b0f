"""``ablate datasets``: what ``data.name`` (and ``data.builder``) may name."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from ablate.catalog import DATASETS
from ablate.cli import main
from ablate.cli.models import builder_rows, format_arguments
from ablate.cli.options import echo_ignored_plugins, json_option, make_console

# The data keys each built-in reads (beyond the transforms and loading keys all share).
BUILTIN_KEYS = {
    "shapes": ("classes", "image_size", "train_images", "val_images", "data_seed"),
    "voc2012": ("root", "sbd", "train_split", "val_split"),
    "cityscapes": ("root", "train_split", "val_split"),
    "coco": ("root", "train_split", "val_split"),
    "folder": ("root", "train_split", "val_split"),
}
DESCRIPTIONS = {
    "shapes": "embedded, generated shapes (nothing to download)",
    "voc2012": "Pascal VOC 2012 (VOCdevkit/VOC2012/...), optionally with SBD",
    "cityscapes": "Cityscapes (leftImg8bit/ and gtFine/)",
    "coco": "COCO 2017 with the 20 VOC classes (needs pycocotools)",
    "folder": "classes.txt, images/{train,val}/*.{jpg,jpeg,png}, masks/{train,val}/*.png",
}


@main.command("datasets")
@json_option
def datasets(as_json: bool) -> None:
    """List the built-in datasets and datasets from plugins.

    A recipe names one with data.name, or gives its own code with
    data.builder = "package.module:function" (called with data.args, and root= when
    data.root is set; returns (train, val) datasets of (image, mask) pairs). Plugins
    are installed packages with an "ablate.datasets" entry point.

    \b
    Example:
        ablate datasets
        ablate datasets --json
    """
    from ablate.recipes.schema import DataSpec  # lazy: loads pydantic

    defaults = DataSpec.model_fields
    builtin = [{"name": name, "description": DESCRIPTIONS.get(name, ""),
                "keys": {k: defaults[k].default for k in BUILTIN_KEYS.get(name, ())}}
               for name in DATASETS.builtin_names()]
    plugins = builder_rows(DATASETS, skip=("root",))
    echo_ignored_plugins(DATASETS)  # on stderr: the JSON on stdout stays clean
    if as_json:
        click.echo(json.dumps({"builtin": builtin, "plugins": plugins}, indent=2, default=str))
        return
    console = make_console()
    console.print("[bold]Built-in[/bold] (data.name = NAME)")
    for row in builtin:
        keys = ", ".join(f"{k}={v!r}" for k, v in row["keys"].items())
        console.print(f"  {row['name']}: {escape(row['description'])}\n    {escape(keys)}")
    console.print("[bold]Plugins[/bold] (data.name = NAME, arguments under data.args)")
    if not plugins:
        console.print("  none installed; data.builder = 'package.module:function' works too")
    for row in plugins:
        detail = row["error"] or format_arguments(row["arguments"])
        console.print(f"  {escape(row['name'])}  [dim]{escape(row['path'])} "
                      f"({escape(row['origin'])})[/dim]\n    {escape(detail)}")
