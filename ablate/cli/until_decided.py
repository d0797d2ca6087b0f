"""``ablate run --until-decided``: the options and the glue around ``dispatch.adaptive``."""

from __future__ import annotations

import click

from ablate.analysis.design import DEFAULT_SPENDING, SPENDING
from ablate.cli.options import given, not_nan, option_name
from ablate.dispatch.adaptive import DEFAULT_MAX_SEEDS
from ablate.errors import UserInputError

# the options that only shape the --until-decided loop (its design)
LOOP_OPTIONS = ("max_seeds", "alpha", "min_effect", "spending")


def until_decided_options(fn):
    """``--until-decided``, ``--max-seeds``, ``--alpha``, ``--min-effect``, ``--spending``."""

    options = [
        click.option("--until-decided", is_flag=True,
                     help="After the recipe's seeds, add seeds (the next unused integers) to "
                          "the configurations whose effects are not decided yet, until every "
                          "effect is better, worse or equivalent within --min-effect, or "
                          "--max-seeds. A group-sequential design: its error rate holds "
                          "whenever the loop stops."),
        click.option("--max-seeds", type=click.IntRange(2, 100), default=DEFAULT_MAX_SEEDS,
                     show_default=True, help="With --until-decided: seeds per configuration "
                                             "at most (the design's last look)."),
        click.option("--alpha", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.05,
                     show_default=True, callback=not_nan, help="With --until-decided: the chance that any "
                                             "verdict of the study is wrong, at most."),
        click.option("--min-effect", type=click.FloatRange(0.0, 100.0, min_open=True),
                     default=None, metavar="POINTS", callback=not_nan,
                     help="With --until-decided: the margin in mIoU points. An effect "
                          "whose 1-2alpha/m interval lies within ± this is equivalent; one "
                          "the futility stop shows smaller than this is 'no effect >= d "
                          "(80% power)' and gets no more seeds. No default: without it only "
                          "better/worse decide."),
        click.option("--spending", type=click.Choice(SPENDING), default=DEFAULT_SPENDING,
                     show_default=True,
                     help="With --until-decided: how alpha is spent over the looks "
                          "(pocock stops earlier on large effects, with less power at the end)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def check_until_decided(until_decided: bool, detach: bool, executor: str) -> None:
    """Refuse what the loop cannot do, before anything runs."""
    if until_decided and detach:
        raise UserInputError("--until-decided: not with --detach (each round needs the "
                             "previous round's results): keep the loop alive in tmux or screen, "
                             "or as a job of its own (sbatch --wrap 'ablate run ... "
                             "--until-decided --executor slurm'); if it stops, the same command "
                             "continues where it stopped")


def check_loop_options(until_decided: bool) -> None:
    """``--max-seeds``, ``--alpha``, ``--min-effect`` and ``--spending`` set the loop's
    design: given without ``--until-decided`` they would be ignored. One line naming both
    options, exit 2 (as ``ablate report`` refuses an option it would not use)."""
    if until_decided:
        return
    ctx = click.get_current_context()
    for name in LOOP_OPTIONS:
        if given(ctx, name):
            raise click.UsageError(f"{option_name(ctx, name)} needs --until-decided (it sets "
                                   "the loop that adds seeds; without the loop it would be "
                                   "ignored)")
