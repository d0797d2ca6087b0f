"""``ablate cost``: parameters and FLOPs of every distinct architecture in a recipe."""

from __future__ import annotations

import json
from typing import Any

import click

from ablate.cli import main
from ablate.cli.options import (
    echo_ignored_plugins,
    echo_warnings,
    fmt_int,
    json_option,
    make_console,
    max_trials_option,
    recipe_argument,
    set_option,
)
from ablate.cli.text import terminal as escape  # markup and control characters
from ablate.cost.cache import clear
from ablate.dispatch.preflight import find_problems
from ablate.errors import UserInputError, did_you_mean


def parse_resolution(text: str) -> list[int]:
    """``"512x1024"`` -> ``[512, 1024]`` (height, width)."""
    height, sep, width = text.lower().partition("x")
    if not sep or not height.strip().isdigit() or not width.strip().isdigit() or (
        int(height) == 0 or int(width) == 0
    ):
        raise UserInputError(f"--resolution: expected HxW such as 512x1024, got {text!r}")
    from ablate.recipes.schema import MAX_PIXELS  # lazy: loads pydantic

    if max(int(height), int(width)) > MAX_PIXELS:
        raise UserInputError(f"--resolution: sides up to {MAX_PIXELS}, got {text!r}")
    return [int(height), int(width)]


def _clear_cache(ctx, param, value: bool) -> None:
    """``--clear-cache``: empty the per-user cost cache and exit (no recipe needed)."""
    if not value or ctx.resilient_parsing:
        return
    folder, count = clear()
    click.echo(f"removed {count} cached architecture cost(s) from {folder}")
    ctx.exit(0)


@main.command("cost")
@click.option("--clear-cache", is_flag=True, is_eager=True, expose_value=False,
              callback=_clear_cache,
              help="Empty the per-user cost cache ablate plan and run use "
                   "($ABLATE_CACHE_DIR, else $XDG_CACHE_HOME/ablate, else ~/.cache/ablate) "
                   "and exit.")
@recipe_argument
@click.option("--trial", "trial_ids", multiple=True, metavar="ID",
              help="Only this trial (id or id prefix); repeatable.")
@click.option("--variant", "variants", multiple=True, metavar="NAME",
              help="Only this variant's trials; repeatable.")
@click.option("--resolution", metavar="HxW",
              help="Count FLOPs at this input size, e.g. 512x512 [each trial's evaluation "
                   "resolution].")
@set_option
@click.option("--diff", nargs=2, metavar="A B",
              help="Modules whose parameters or FLOPs differ between A and B "
                   "(variant names, config names or trial ids).")
@click.option("--depth", type=click.IntRange(1, 10),
              help="Module depth of the breakdown (backbone.features.16 is depth 3; default "
                   "3, and deep enough for the knocked-out modules in --diff), or of "
                   "--modules (default: every module).")
@click.option("--modules", "list_modules", is_flag=True,
              help="List each architecture's module paths (what model.remove and "
                   "model.replace name), with type and parameters.")
@click.option("--convention", default="fvcore-mac", show_default=True,
              type=click.Choice(["fvcore-mac", "torchvision-mac"]),
              help="FLOP convention: fvcore's, or torchvision's published GFLOPS "
                   "(conv/linear multiply-adds only, auxiliary heads included).")
@json_option
@max_trials_option
def cost(recipe: str, trial_ids: tuple[str, ...], variants: tuple[str, ...],
         resolution: str | None, assignments: tuple[str, ...], diff: tuple[str, str] | None,
         depth: int | None, list_modules: bool, convention: str, as_json: bool,
         max_trials: int) -> None:
    """Parameters and FLOPs of each distinct architecture in RECIPE.

    Trials that differ only in training settings share an architecture and are
    costed once. FLOPs are counted at the evaluation resolution, by default in
    fvcore's convention (one multiply-add = one FLOP; batch norm and upsampling
    counted; the training-only auxiliary head not).

    \b
    Example:
        ablate cost recipes/mnv3_expansion.toml
        ablate cost recipes/mnv3_expansion.toml --diff conventional proposed
        ablate cost recipes/aspp_leave_one_out.toml --modules --depth 3
        ablate cost recipes/aspp_leave_one_out.toml --diff 'remove=[]' 'remove=[head.aspp.convs.4]'
        ablate cost recipes/torchvision_baselines.toml --variant lraspp_mobilenet_v3_large --json
        ablate cost --clear-cache
    """
    from ablate.cost.analyse import analyse_spec  # lazy: loads pydantic
    from ablate.dispatch.prepare import blame  # lazy: loads pydantic
    from ablate.recipes.loader import load_recipe  # lazy: loads pydantic
    from ablate.trials.expand import expand, parse_set  # lazy: loads pydantic

    echo_ignored_plugins()
    loaded = load_recipe(recipe)
    overrides = parse_set(list(assignments), recipe=loaded.path)
    if resolution is not None:
        overrides["eval.resolution"] = parse_resolution(resolution)
    trials = expand(loaded, overrides, max_trials=max_trials)

    # counting needs no data and no weights: what `run` would refuse of the trials
    # costed (not of the variants left out) is only a warning, printed after the
    # figures (and not at all when the command itself fails)
    if diff:
        if trial_ids or variants or list_modules:
            raise UserInputError("--diff names its two sides; drop --trial/--variant/--modules")
        sides = [_resolve(trials, name, loaded.path) for name in diff]
        warnings = find_problems([t for side in sides for t in side], loaded.path)
        depth = depth or max([3, *(_knockout_depth(side[0].spec) for side in sides)])
        reports = []
        for side in sides:
            with blame(loaded.path, side[0]):
                reports.append(analyse_spec(side[0].spec, depth=depth, convention=convention))
        rows = diff_rows(reports[0], reports[1])
        if as_json:
            click.echo(json.dumps(_diff_json(diff, sides, reports, rows), indent=2))
        else:
            _print_diff(diff, sides, reports, rows)
        echo_warnings(warnings)
        return

    selected = _select(trials, trial_ids, variants, loaded.path)
    warnings = find_problems(selected, loaded.path)
    if list_modules:
        _list_modules(selected, depth, as_json, loaded.path)
        echo_warnings(warnings)
        return
    depth = depth or 3
    results = []
    for group in _by_architecture(selected):
        with blame(loaded.path, group[0]):
            results.append((group, analyse_spec(group[0].spec, depth=depth,
                                                convention=convention)))
    if as_json:
        click.echo(json.dumps([_arch_json(group, report) for group, report in results], indent=2))
    else:
        for group, report in results:
            _print_arch(group, report)
    echo_warnings(warnings)


def _knockout_depth(spec) -> int:
    """The depth at which a spec's knocked-out modules show as rows of their own."""
    paths = [*spec.model.remove, *(r.path for r in spec.model.replace)]
    return max((p.count(".") + 1 for p in paths), default=0)


def _list_modules(trials: list, depth: int | None, as_json: bool, source: str) -> None:
    from ablate.cost.analyse import module_rows  # lazy: loads torch
    from ablate.dispatch.prepare import blame  # lazy: loads pydantic

    groups = []
    for group in _by_architecture(trials):
        with blame(source, group[0]):
            groups.append((group, module_rows(group[0].spec, depth)))
    if as_json:
        click.echo(json.dumps([{"name": g[0].config_name, "arch_id": g[0].arch_id,
                                "modules": rows} for g, rows in groups], indent=2))
        return
    from rich.table import Table  # lazy: loads rich.table

    console = make_console()
    for group, rows in groups:
        console.print(f"[bold]{escape(group[0].config_name)}[/bold]  arch {group[0].arch_id}")
        table = Table("module (model.remove / model.replace path)", "type", "params",
                      show_edge=False)
        for row in rows:
            kind = row["type"] + (f" (removed: {row['removed']})" if row["removed"] else "")
            table.add_row(escape(row["path"]), escape(kind), f"{row['params']:,}")
        console.print(table)
        console.print()


def _select(trials: list, trial_ids: tuple[str, ...], variants: tuple[str, ...],
            path: str) -> list:
    known = list(dict.fromkeys(t.variant for t in trials))
    for name in variants:
        if name not in known:
            raise UserInputError(f"--variant: {path} has no variant {name!r}; "
                                 f"variants: {', '.join(known)}")
    for tid in trial_ids:
        if not any(t.trial_id.startswith(tid) for t in trials):
            raise UserInputError(f"--trial: no trial of {path} has id {tid!r} "
                                 "(see `ablate plan` for the ids)")
    return [
        t for t in trials
        if (not variants or t.variant in variants)
        and (not trial_ids or any(t.trial_id.startswith(tid) for tid in trial_ids))
    ]


def _by_architecture(trials: list) -> list[list]:
    groups: dict[str, list] = {}
    for trial in trials:
        groups.setdefault(trial.arch_id, []).append(trial)
    return list(groups.values())


def _resolve(trials: list, name: str, path: str) -> list:
    """The trials of the one architecture ``name`` denotes (trial id, config or variant)."""
    for match in (
        lambda t: t.trial_id == name or t.name == name,
        lambda t: len(name) >= 4 and t.trial_id.startswith(name),
        lambda t: t.config_name == name,
        lambda t: t.variant == name,
    ):
        hits = [t for t in trials if match(t)]
        if hits:
            groups = _by_architecture(hits)
            if len(groups) > 1:
                configs = ", ".join(g[0].config_name for g in groups)
                raise UserInputError(f"--diff: {name!r} covers {len(groups)} architectures; "
                                     f"name one of: {configs}")
            return groups[0]
    variants = ", ".join(dict.fromkeys(t.variant for t in trials))
    configs = list(dict.fromkeys(t.config_name for t in trials))
    hint = did_you_mean(name, configs)  # a grid value off by one
    raise UserInputError(f"--diff: {name!r} is not a variant, config or trial id of {path}"
                         f"{hint}; variants: {variants}")


def diff_rows(a, b) -> list[dict[str, Any]]:
    """Modules (at the breakdown depth) whose parameters or FLOPs differ, in model order."""
    modules = _modules(a, b)
    rows = []
    for module in modules:
        row = {
            "module": module,
            "params_a": a.params_by_module.get(module, 0),
            "params_b": b.params_by_module.get(module, 0),
            "flops_a": a.flops_by_module.get(module, 0),
            "flops_b": b.flops_by_module.get(module, 0),
        }
        if row["params_a"] != row["params_b"] or row["flops_a"] != row["flops_b"]:
            rows.append(row)
    return rows


def _modules(*reports) -> list[str]:
    """Module keys of the breakdowns in model order; the model's own forward last."""
    keys = dict.fromkeys(k for r in reports for k in [*r.params_by_module, *r.flops_by_module])
    return sorted(keys, key=lambda k: k == "<root>")


def _arch_json(group: list, report) -> dict[str, Any]:
    first = group[0]
    published = first.published.model_dump(exclude_none=True) if first.published else None
    return {
        "name": first.config_name,
        "variant": first.variant,
        "configs": list(dict.fromkeys(t.config_name for t in group)),
        "trial_ids": [t.trial_id for t in group],
        **report.to_dict(),
        "published": published,
    }


def _diff_json(names, sides, reports, rows) -> dict[str, Any]:
    def side(name, group, report):
        return {"name": name, "config": group[0].config_name, "arch_id": report.arch_id,
                "params": report.params, "flops": report.flops, "gflops": report.gflops,
                "flops_convention": report.flops_convention,
                "resolution": list(report.resolution)}

    return {"a": side(names[0], sides[0], reports[0]), "b": side(names[1], sides[1], reports[1]),
            "rows": rows}


def _gflops(flops: int | None) -> str:
    return "-" if flops is None else f"{flops / 1e9:,.3f}"


def _print_arch(group: list, report) -> None:
    from rich.table import Table  # lazy: loads rich.table

    first = group[0]
    configs = list(dict.fromkeys(t.config_name for t in group))
    height, width = report.resolution
    params_note = ""
    if first.published is not None and first.published.params is not None:
        delta = report.params - first.published.params
        params_note = (f" (published {first.published.params:,}: "
                       f"{'match' if delta == 0 else f'differs by {delta:+,}'})")
    console = make_console()
    console.print(f"[bold]{escape(first.config_name)}[/bold]  arch {report.arch_id}  "
                  f"{report.num_classes} classes  trials: {len(group)}"
                  + (f"  configs: {', '.join(configs)}" if len(configs) > 1 else ""))
    console.print(f"  params {report.params:,}{params_note}")
    console.print(f"  GFLOPs {_gflops(report.flops)} ({report.flops_convention}, "
                  f"{height}x{width})")
    if report.uncounted:  # fvcore has no formula for them: the figure is a lower bound
        calls = ", ".join(f"{op} x{n}" for op, n in sorted(report.uncounted.items()))
        console.print(f"  GFLOPs leave out calls {report.flops_convention} has no formula for: "
                      f"{escape(calls)} (their multiply-adds are not counted)")
    if report.extra:  # selective down-sampling: the figures that stand for its cost
        extra = report.extra
        console.print(
            f"  selective: mask net {extra['gflops_mask_net']:.3f}, dense (all full-res) "
            f"{extra['gflops_dense']:.3f}, all down-sampled {extra['gflops_low_path']:.3f}, "
            f"plain OS-8 {extra['gflops_os8']:.3f}, plain OS-16 {extra['gflops_os16']:.3f} "
            "GFLOPs; effective GFLOPs are measured per trial from its mask density. "
            "Module rows count the dense training emulation (both paths). FLOPs are not "
            "time: a latency saving is only measured per trial on its own device "
            "(latency_ratio_os8 with eval.latency).")
    table = Table("module", "params", "GFLOPs", show_edge=False)
    for module in _modules(report):
        table.add_row(module, fmt_int(report.params_by_module.get(module, 0)),
                      _gflops(report.flops_by_module.get(module, 0)))
    table.add_row("[bold]total[/bold]", f"{report.params:,}", _gflops(report.flops))
    console.print(table)
    console.print()


def _print_diff(names, sides, reports, rows) -> None:
    from rich.table import Table  # lazy: loads rich.table

    a, b = reports
    console = make_console()
    for label, name, group, report in zip("AB", names, sides, reports):
        height, width = report.resolution
        config = group[0].config_name  # the name given, and the configuration it picked
        named = escape(name) if config == name else f"{escape(name)}: {escape(config)}"
        console.print(f"{label} = {named}  arch {report.arch_id}  "
                      f"params {report.params:,}  GFLOPs {_gflops(report.flops)} "
                      f"({report.flops_convention}, {height}x{width})")
    # the change in FLOPs exactly: a knocked-out branch of a small network is < 0.001 GFLOPs
    table = Table("module", "params A", "params B", "params B-A", "GFLOPs A", "GFLOPs B",
                  "FLOPs B-A", show_edge=False)
    for row in rows + [{"module": "[bold]total[/bold]", "params_a": a.params,
                        "params_b": b.params, "flops_a": a.flops or 0, "flops_b": b.flops or 0}]:
        table.add_row(
            row["module"], f"{row['params_a']:,}", f"{row['params_b']:,}",
            f"{row['params_b'] - row['params_a']:+,}", _gflops(row["flops_a"]),
            _gflops(row["flops_b"]), f"{row['flops_b'] - row['flops_a']:+,}",
        )
    console.print(table)
