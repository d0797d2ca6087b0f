"""``ablate run --until-decided``: the options and the glue around ``dispatch.adaptive``."""

from __future__ import annotations

from collections.abc import Callable

import click

from ablate.errors import UserInputError


def until_decided_options(fn):
    """``--until-decided``, ``--max-seeds``, ``--alpha``, ``--min-effect``."""
    from ablate.dispatch.adaptive import DEFAULT_MAX_SEEDS, DEFAULT_MIN_EFFECT

    options = [
        click.option("--until-decided", is_flag=True,
                     help="After the recipe's seeds, add seeds (the next unused integers) to "
                          "the configurations whose effects are not decided yet, until every "
                          "effect is beyond seed noise or negligible, or --max-seeds."),
        click.option("--max-seeds", type=click.IntRange(2, 1000), default=DEFAULT_MAX_SEEDS,
                     show_default=True, help="With --until-decided: seeds per configuration "
                                             "at most."),
        click.option("--alpha", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.05,
                     show_default=True, help="With --until-decided: significance level "
                                             "(Holm-corrected over the study's effects)."),
        click.option("--min-effect", type=click.FloatRange(0.0, 100.0, min_open=True),
                     default=DEFAULT_MIN_EFFECT, show_default=True,
                     help="With --until-decided: an effect whose interval lies within "
                          "± this many mIoU points is decided as negligible."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def check_until_decided(until_decided: bool, detach: bool, executor: str) -> None:
    """Refuse what the loop cannot do, before anything runs."""
    if until_decided and detach:
        raise UserInputError("--until-decided: not with --detach (each round needs the "
                             "previous round's results); drop --detach and it waits for Slurm")


def continue_until_decided(recipe, assignments: tuple[str, ...], store,
                           run_round: Callable[[object, list], object], *, max_seeds: int,
                           alpha: float, min_effect: float, say: Callable[[str], None]) -> list:
    """Run the loop after the recipe's own trials; ``run_round(recipe, trials)`` runs one round."""
    from ablate.dispatch.adaptive import run_until_decided
    from ablate.trials.expand import parse_set

    return run_until_decided(recipe, parse_set(list(assignments)), store, run_round,
                             max_seeds=max_seeds, alpha=alpha, min_effect=min_effect, say=say)
