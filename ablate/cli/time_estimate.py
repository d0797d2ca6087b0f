"""How a study's time estimate reads (``ablate plan``, ``ablate run``): text only, the
figures come from ``dispatch.estimate``."""

from __future__ import annotations

from ablate.cli.text import terminal
from ablate.cost.estimate import Cost, Scenario, StudyEstimate, device_hours, duration

CONFIG_HEAD, CONFIG_TAIL = 20, 5  # configurations shown of a large study


def cost_text(cost: Cost, unit: str) -> str:
    """``12 trials, 7 min 12 s wall, 0.24 cpu-h`` (unknowns said as such)."""
    trials = f"{cost.trials:,.0f}" if float(cost.trials).is_integer() else f"{cost.trials:,.1f}"
    text = f"{trials} trial{'s' if cost.trials != 1 else ''}"
    if cost.trials and not cost.known:
        return f"{text}, time unknown ({cost.unknown:,} without an estimate)"
    return f"{text}, {duration(cost.wall_s)} wall, {device_hours(cost.device_h, unit)}"


def scenario_text(scenario: Scenario, unit: str, worst: bool = False) -> str:
    """``at worst (every configuration to 10 seeds): ...`` or ``if no effect (9.9 seeds
    expected): ...``: the trials still to run in that case."""
    if worst:
        return f"at worst ({scenario.label}): {cost_text(scenario.cost, unit)}"
    return (f"if {scenario.label} ({scenario.seeds:.1f} seeds expected): "
            f"{cost_text(scenario.cost, unit)}")


def estimate_table(estimate: StudyEstimate):
    """Per configuration: trials, those left, one trial's time and where it comes from."""
    from rich.table import Table  # lazy: loads rich.table

    table = Table(title=f"time on {estimate.resources.describe()}")
    for col in ("configuration", "trials", "left", "one trial", "from"):
        table.add_column(col, justify="right" if col in ("trials", "left", "one trial")
                         else "left", overflow="fold")
    rows = list(estimate.configs)
    shown: list = rows
    if len(rows) > CONFIG_HEAD + CONFIG_TAIL + 1:
        shown = rows[:CONFIG_HEAD] + [None] + rows[-CONFIG_TAIL:]
    for c in shown:
        if c is None:
            table.add_row("...", f"[dim]{len(rows) - CONFIG_HEAD - CONFIG_TAIL:,} more[/]",
                          "", "", "")
            continue
        table.add_row(terminal(c.config_name), f"{c.trials:,}", f"{c.left:,}",
                      duration(c.seconds), c.source)
    return table


def estimate_lines(estimate: StudyEstimate) -> list[str]:
    """The totals under the table: the study, what is left, the loop's cases."""
    unit = estimate.resources.unit
    lines = [f"study: {cost_text(estimate.total, unit)}; "
             f"left to run: {cost_text(estimate.left, unit)}"]
    if estimate.worst is not None:
        lines.append(f"--until-decided, to run {scenario_text(estimate.worst, unit, True)}")
        for case in estimate.expected:
            lines.append(f"--until-decided, to run {scenario_text(case, unit)}")
    lines += [f"note: {n}" for n in estimate.notes]
    if estimate.total.unknown:
        lines.append("unknown: no done trial of that architecture in the database; "
                     "'ablate plan --probe' times a few training steps of each")
    return lines


def run_line(estimate: StudyEstimate, budget=None) -> str | None:
    """``ablate run``'s one line before it starts; None when nothing is left to run."""
    unit = estimate.resources.unit
    if not estimate.left.trials and estimate.worst is None:
        return None
    text = f"estimate: {cost_text(estimate.left, unit)} on {estimate.resources.describe()}"
    if estimate.worst is not None:
        text += f"; --until-decided at worst {cost_text(estimate.worst.cost, unit)}"
    if budget is not None:
        text += f"; budget {budget.describe()}"
    return text


def estimate_options(fn):
    """``ablate plan``'s executor, parallelism and probe options (as ``ablate run``'s)."""
    import click

    options = [
        click.option("--executor", default="local", show_default=True,
                     type=click.Choice(["local", "slurm"]),
                     help="Where the estimated trials run: its parallelism and devices."),
        click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1),
                     help="local: trials side by side (ablate run --jobs)."),
        click.option("--gpus-per-trial", type=click.IntRange(0), default=None,
                     help="GPUs per trial [recipe's [slurm], else 1 locally, 0 on Slurm]."),
        click.option("--cpus-per-trial", type=click.IntRange(1), default=None,
                     help="slurm: CPU cores per trial (its CPU-hours) [recipe, else 2]."),
        click.option("--array-parallelism", type=click.IntRange(1), default=None,
                     help="slurm: trials at once at most [recipe, else 64]."),
        click.option("--probe", is_flag=True,
                     help="Time a few training steps of each architecture that has no done "
                          "trial (cached per user); seconds each on a GPU, longer for a "
                          "large model on the CPU."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def plan_estimate(store, recipe, trials, assignments, flags: dict, settled=()):
    """``ablate plan``'s estimate from its options: (the estimate, each trial's seconds
    and source by trial id). Probes say which architecture they time, on stderr.
    ``settled``: trials that run no more (``estimate_study``)."""
    import click

    from ablate.dispatch.adaptive import fold_seeds, loop_design  # lazy: like the rest
    from ablate.dispatch.estimate import (  # lazy: loads pydantic
        estimate_study,
        plan_gpus,
        resources_for,
        throughputs,
        trial_estimates,
    )
    from ablate.trials.expand import parse_set  # lazy: loads pydantic

    executor = flags["executor"]
    gpus, per_trial = plan_gpus(flags["gpus_per_trial"], recipe) if executor == "local" \
        else ([], flags["gpus_per_trial"])
    resources = resources_for(executor, recipe, jobs=flags["jobs"], gpus=gpus,
                              gpus_per_trial=per_trial,
                              slurm={k: flags[k] for k in ("cpus_per_trial",
                                                           "array_parallelism")})
    design = None
    if flags["until_decided"]:
        folded, _ = fold_seeds(recipe, parse_set(list(assignments), recipe=recipe.path))
        design = loop_design(folded, max_seeds=flags["max_seeds"], alpha=flags["alpha"],
                             min_effect=flags["min_effect"], spending=flags["spending"])

    def probing(trial) -> None:
        click.echo(f"probing {trial.config_name} ({trial.arch_id[:12]}) on "
                   f"{resources.describe()}...", err=True)

    found = throughputs(store, trials, resources, probe=flags["probe"], on_probe=probing)
    estimate = estimate_study(store, recipe, trials, resources, design=design, found=found,
                              settled=settled)
    return estimate, trial_estimates(trials, found, resources)


def print_estimates(store, studies: list[str] | None, fmt: str) -> None:
    """``ablate report --estimates``: a table (or JSON) of each run's estimate and actual."""
    import json

    import click

    from ablate.cost.estimate import device_hours, duration
    from ablate.report.estimates import estimate_rows  # lazy: only with --estimates

    records = store.estimates(studies)
    times = [t for study in dict.fromkeys(r.study for r in records)
             for t in store.trial_times(study=study)]
    rows = estimate_rows(records, times)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt != "table":
        raise click.UsageError(f"--estimates: --format table or json, not {fmt}")
    if not rows:
        click.echo("No run has recorded an estimate yet (ablate run records one when it "
                   "starts).")
        return
    from rich.table import Table  # lazy: loads rich.table

    from ablate.cli.options import make_console

    table = Table(title="estimate against actual, per run")
    for col in ("study", "started (UTC)", "executor", "estimated for", "trials est./ran",
                "wall est.", "wall", "actual/est.", "device-h est.", "device-h"):
        table.add_column(col, overflow="fold")
    for r in rows:
        ratio = "-" if r["wall_ratio"] is None else f"{r['wall_ratio']:.2f}"
        estimated = r["trials_estimated"]
        table.add_row(terminal(r["study"]), r["started"], str(r["executor"]), r["case"],
                      f"{estimated:g}/{r['trials']}" if estimated is not None else
                      f"-/{r['trials']}", duration(r["wall_estimated_s"]),
                      duration(r["wall_s"]), ratio,
                      device_hours(r["device_h_estimated"], r["unit"] or ""),
                      device_hours(r["device_h"], r["unit"] or ""))
    make_console().print(table)
