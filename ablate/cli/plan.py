"""``ablate plan``: what a recipe expands to, and what it costs, without training."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from ablate.cli import main
from ablate.cli.options import (
    db_option,
    fmt_float,
    fmt_int,
    json_option,
    make_console,
    recipe_argument,
    set_option,
)


@main.command("plan")
@recipe_argument
@db_option
@set_option
@json_option
@click.option("--no-cost", is_flag=True, help="Skip counting parameters and FLOPs.")
def plan(recipe: str, db: str | None, assignments: tuple[str, ...], as_json: bool,
         no_cost: bool) -> None:
    """Dry run: list every trial of RECIPE with its id, status and cost.

    \b
    Example:
        ablate plan recipes/quickstart.toml
        ablate plan recipes/mnv3_expansion.toml --set data.name=shapes --json
    """
    from ablate.dispatch.driver import compute_costs, load_trials
    from ablate.dispatch.preflight import find_problems
    from ablate.trials.ids import eval_resolution

    recipe_obj, trials = load_trials(recipe, assignments)
    store = _existing_store(db)
    statuses = store.statuses(recipe_obj.name) if store and _has_study(store, recipe_obj.name) else {}
    cached = store.get_costs([t.arch_id for t in trials]) if store else {}
    costs = {} if no_cost else compute_costs(trials, cached, source=recipe_obj.path)
    # plan needs no data and no weights: what `run` would refuse is only a warning here
    warnings = find_problems(trials, recipe_obj.path)
    if store is not None:
        for arch_id, cost in costs.items():
            if arch_id not in cached:
                store.put_cost(cost)
    rows = []
    for t in trials:
        cost = costs.get(t.arch_id)
        rows.append({
            "trial_id": t.trial_id, "name": t.name, "variant": t.variant,
            "status": statuses.get(t.trial_id, "pending"), "seed": t.seed,
            "params": cost.params if cost else None,
            "gflops": cost.gflops if cost else None,
            "flops_convention": cost.flops_convention if cost else None,
            "resolution": list(cost.resolution if cost else eval_resolution(t.spec)),
            "arch_id": t.arch_id,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        _warn(warnings)
        return
    from rich.table import Table

    table = Table(title=f"{recipe_obj.name}: {len(rows)} trials, "
                  f"{len({r['arch_id'] for r in rows})} architectures")
    for col in ("trial id", "name", "status", "params", "GFLOPs"):
        table.add_column(col, justify="right" if col in ("params", "GFLOPs") else "left",
                         overflow="fold")
    for r in rows:
        table.add_row(r["trial_id"], escape(r["name"]), r["status"], fmt_int(r["params"]),
                      fmt_float(r["gflops"]))
    console = make_console()
    console.print(table)
    if rows and rows[0]["flops_convention"]:
        h, w = rows[0]["resolution"]
        console.print(f"GFLOPs: {rows[0]['flops_convention']} at the evaluation resolution "
                      f"({h}x{w} for the first trial).")
    _warn(warnings)


def _warn(warnings: list[str]) -> None:
    """One line on stderr per missing run-time input (stdout stays a clean table/JSON)."""
    for line in warnings:
        click.echo(f"Warning: {line}", err=True)


def _existing_store(db: str | None):
    """Planning never creates a database; it reads one if it is there."""
    from pathlib import Path

    from ablate.store import Store, resolve_url

    url = resolve_url(db)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not Path(path).is_file():
            return None
    return Store(url)


def _has_study(store, name: str) -> bool:
    return any(s.name == name for s in store.studies())
