"""``ablate run --until-decided``: add seeds to the configurations whose effects are open.

The study becomes a group-sequential design (``ablate.analysis.design``): its looks run
from the recipe's seeds to ``max_seeds``, ``alpha`` is spent over them, and every effect
of the study is read on its repeated confidence intervals at ``alpha / family``. After
the recipe's own seeds, each round tests every effect; an effect is *decided* when its
interval excludes 0 (better or worse), its equivalence interval lies within
``±min_effect`` (equivalent), or, with a margin, its futility interval does (no effect
of the margin, at 80% power: ``ablate.analysis.rule``); it stays decided (the
intervals are running intersections of the looks) unless a later look's mean leaves
the intersection, which then gives way to that look's own interval. Every
configuration an open effect uses gets one new seed (the next integer the study has not
used), so seeds stay paired across the configurations of each effect. The loop stops
when every effect is decided, when an open configuration already has ``max_seeds``
finished seeds, when a round has a failed trial, or when the next round does not fit
the budget (``dispatch.budget``; any look is a valid stop). Done trials never run again.

The design is recorded with the study before the first round, so ``ablate report``
reads the study with the same intervals; a later run with other settings is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ablate.analysis.design import DEFAULT_SPENDING, FUTILITY_POWER, SEQUENTIAL, Design
from ablate.errors import UserInputError
from ablate.trials.lifecycle import TrialStatus

if TYPE_CHECKING:  # annotations only: the CLI imports this module at start-up
    from ablate.recipes.loader import Recipe
    from ablate.trials.expand import Trial

DEFAULT_MAX_SEEDS = 10


@dataclass(frozen=True)
class Decision:
    """Which configurations need another seed, and why (one line per effect)."""

    configs: tuple[str, ...]
    lines: tuple[str, ...]

    @property
    def settled(self) -> bool:
        return not self.configs


def _interval(row: Any) -> str:
    """The interval the verdict was read on: equivalence and futility have their own."""
    low, high = row.ci_low, row.ci_high
    if row.verdict.startswith("equivalent"):
        low, high = getattr(row, "tost_low", low), getattr(row, "tost_high", high)
    elif row.verdict.startswith("no effect"):
        low, high = getattr(row, "futility_low", low), getattr(row, "futility_high", high)
    return "no interval yet" if low != low else f"[{low:+.2f}, {high:+.2f}]"


def decide(effects: Iterable[Any]) -> Decision:
    """The configurations of every open effect (pure: effect rows in, decision out).

    ``effects``: rows with ``axis, change, estimate, ci_low, ci_high, verdict, configs``
    (``effects_table(...).itertuples()`` or ``grid_effects`` records).
    """
    from ablate.analysis.effects import is_decided  # lazy: loads numpy, pandas

    configs: dict[str, None] = {}
    lines = []
    for row in effects:
        name = f"{row.axis}: {row.change}"
        if is_decided(row.verdict):
            # the plain mean: the report's estimate is bias-adjusted (analysis.rule), and
            # the loop does not pay for that simulation at every look
            lines.append(f"decided  {name}: {row.verdict}, mean {row.estimate:+.2f} mIoU, "
                         f"interval {_interval(row)}")
            continue
        lines.append(f"open     {name}: {row.verdict}, interval {_interval(row)}")
        configs.update(dict.fromkeys(row.configs))
    return Decision(tuple(configs), tuple(lines))


def stop_reason(decision: Decision, seeds_done: dict[str, int], max_seeds: int) -> str | None:
    """Why the loop stops before another round, or None to add a seed (pure)."""
    if decision.settled:
        return "every effect is decided"
    if max((seeds_done.get(c, 0) for c in decision.configs), default=0) >= max_seeds:
        return f"--max-seeds {max_seeds} reached"
    return None


def next_seed(seeds: list[int], reserved: Iterable[int] = ()) -> int:
    """The next seed to add: above every seed used, skipping a tuned study's tuning seeds
    (its effects are read on seeds the selection never saw)."""
    seed, taken = max(seeds) + 1, set(reserved)
    while seed in taken:
        seed += 1
    return seed


@dataclass(frozen=True)
class Round:
    seed: int | None  # the seed added (None: the loop stopped before adding one)
    decision: Decision
    reason: str = ""  # why the loop stopped, on the last round
    failed: tuple[str, ...] = ()  # trials of the round run before it that failed


class RoundSummary(Protocol):
    """What the loop reads of a round it ran (``dispatch.events.RunSummary``)."""

    failed: list[str]


RunRound = Callable[["Recipe", "list[Trial]"], RoundSummary]
# (the next round's trials, what it is) -> why it must not run (``dispatch.budget``), or None
RoundGuard = Callable[["list[Trial]", str], "str | None"]


def fold_seeds(recipe, overrides: dict) -> tuple[object, dict]:
    """``--set seeds=[...]`` replaces the recipe's seeds: fold it into the recipe, so that
    each round's ``seeds=[seed]`` is not overridden back to the starting seeds."""
    if "seeds" not in overrides:
        return recipe, overrides
    return (dataclasses.replace(recipe, seeds=list(overrides["seeds"])),
            {k: v for k, v in overrides.items() if k != "seeds"})


def loop_design(recipe, *, max_seeds: int, alpha: float, min_effect: float | None,
                spending: str = DEFAULT_SPENDING) -> Design:
    """The loop's design; a margin brings the futility stop (80% power at the margin).
    A last look before the first (``max_seeds`` below the starting seeds) is refused: its
    design has no look, so no effect could ever get an interval."""
    if max_seeds < len(recipe.seeds):
        raise UserInputError(
            f"--max-seeds {max_seeds}: below the {len(recipe.seeds)} seeds the study starts "
            "from (the recipe's seeds, or --set seeds), so the design would have no look; "
            f"give --max-seeds {len(recipe.seeds)} or more, or fewer starting seeds")
    return Design(SEQUENTIAL, alpha=alpha, min_effect=min_effect, max_seeds=max_seeds,
                  start_seeds=len(recipe.seeds), spending=spending,
                  futility_power=FUTILITY_POWER if min_effect else None)


def record_design(store, study: str, design: Design, *, write: bool = True) -> Design:
    """Record the loop's design with the study, or refuse one that differs from it
    (``write=False``: only refuse, before anything runs); the design to run. A study
    grown before the futility stop existed goes on without it, and one with a futility
    stop keeps its beta spending, as it was planned."""
    data = store.study_designs([study]).get(study)
    recorded = Design.from_json(data)
    if recorded is not None and "futility_power" not in data:
        design = dataclasses.replace(design, futility_power=None)
    elif recorded is not None and recorded.futility and design.futility:
        # the futility stop's spending is not a user's setting: a study keeps the one it
        # was planned with (hsd(-2) before the default became hsd(1))
        design = dataclasses.replace(design, futility_gamma=recorded.futility_gamma)
    if recorded is None:
        if write:
            store.set_study_design(study, design.to_json())
    elif recorded != design:
        raise UserInputError(
            f"--until-decided: study {study!r} was grown with {recorded.describe()}; its "
            f"intervals hold for that design only. Run it with the same settings "
            f"(--max-seeds {recorded.max_seeds} --alpha {recorded.alpha:g}"
            + (f" --min-effect {recorded.min_effect:g}" if recorded.min_effect else "")
            + f" and {recorded.start_seeds} starting seed(s)), or start a new study")
    return design


@dataclass(frozen=True)
class LoopStart:
    """Where the loop starts: the recipe with ``--set seeds`` folded in, the other
    overrides, and the design (checked against the one recorded with the study)."""

    recipe: Recipe
    overrides: dict
    design: Design


def start_loop(store, recipe, overrides: dict, *, max_seeds: int = DEFAULT_MAX_SEEDS,
               alpha: float = 0.05, min_effect: float | None = None,
               spending: str = DEFAULT_SPENDING) -> LoopStart:
    """The loop's starting point, once, before anything runs: a study grown before under
    other settings is refused here. Nothing is written (``run_until_decided`` records
    the design once the study exists)."""
    recipe, overrides = fold_seeds(recipe, overrides)
    design = loop_design(recipe, max_seeds=max_seeds, alpha=alpha, min_effect=min_effect,
                         spending=spending)
    design = record_design(store, recipe.name, design, write=False)
    return LoopStart(recipe, overrides, design)


@dataclass(frozen=True)
class DesignChosen:
    """The loop's design, recorded with the study before its first round."""

    design: Design


@dataclass(frozen=True)
class EffectsRead:
    """Every effect read at this look: decided or open (``Decision.lines``)."""

    decision: Decision


@dataclass(frozen=True)
class FinishingRound:
    """An earlier round was cut short (killed, detached): its trials run first."""

    trials: int


@dataclass(frozen=True)
class SeedAdded:
    """The next look: ``seed`` for the configurations of the open effects."""

    seed: int
    configs: tuple[str, ...]
    trials: int


@dataclass(frozen=True)
class LoopStopped:
    reason: str


LoopEvent = DesignChosen | EffectsRead | FinishingRound | SeedAdded | LoopStopped


def run_until_decided(start: LoopStart, store, run: RunRound, *,
                      emit: Callable[[LoopEvent], None] = lambda event: None,
                      guard: RoundGuard | None = None) -> list[Round]:
    """Add seeds round by round until every effect of the study is decided.

    ``start`` is ``start_loop``'s; its design is recorded with the study first.
    ``run(recipe, trials)`` runs trials (``StudyRunner.run``) and returns its summary.
    What the loop reads and decides goes to ``emit`` as ``LoopEvent``s. ``guard`` (a
    budget) may stop the loop before a round: the looks so far are a valid stop.
    """
    from ablate.analysis.effects import effects_table  # lazy: loads numpy, pandas
    from ablate.report.frame import trials_frame  # lazy: loads numpy, pandas, sqlalchemy
    from ablate.trials.expand import expand  # lazy: loads pydantic

    recipe, overrides, design = start.recipe, start.overrides, start.design
    record_design(store, recipe.name, design)
    emit(DesignChosen(design))
    rounds: list[Round] = []
    while True:
        frame = trials_frame(store, [recipe.name])
        seeds = sorted(set(int(s) for s in frame["seed"]) | set(recipe.seeds))
        # only this recipe's trials (with --set, other trials can share a configuration name)
        ours = {t.trial_id for t in expand(dataclasses.replace(recipe, seeds=seeds), overrides)}
        frame = frame[frame["trial_id"].isin(ours)]
        table = effects_table(frame, designs={recipe.name: design}, report=False)
        decision = decide(table.itertuples(index=False))
        emit(EffectsRead(decision))
        done = frame[frame["status"] == TrialStatus.DONE]
        finished = frame["status"].isin([TrialStatus.DONE, TrialStatus.FAILED])
        unfinished = set(frame.loc[~finished, "trial_id"])
        if unfinished:  # a round cut short (killed, detached): finish it before deciding more
            trials = [t for t in expand(dataclasses.replace(recipe, seeds=seeds), overrides)
                      if t.trial_id in unfinished]
            stop = guard(trials, "the unfinished round") if guard is not None else None
            if stop:
                rounds.append(Round(None, decision, stop))
                break
            emit(FinishingRound(len(trials)))
            summary = run(dataclasses.replace(recipe, seeds=seeds), trials)
            if summary.failed:
                rounds.append(Round(None, decision, f"{len(summary.failed)} trial(s) failed",
                                    tuple(summary.failed)))
                break
            continue
        reason = stop_reason(decision, done.groupby("config_name")["seed"].nunique().to_dict(),
                             design.max_seeds)
        if reason:
            rounds.append(Round(None, decision, reason))
            break
        seed = next_seed(seeds, recipe.tune.settings.seeds if recipe.tune else ())
        wanted = set(decision.configs)
        trials = [t for t in expand(dataclasses.replace(recipe, seeds=[seed]), overrides)
                  if t.config_name in wanted]
        if not trials:  # cannot happen for a recipe's own configurations; never loop idle
            rounds.append(Round(None, decision, "no trial to add"))
            break
        stop = guard(trials, f"seed {seed}") if guard is not None else None
        if stop:
            rounds.append(Round(None, decision, stop))
            break
        emit(SeedAdded(seed, tuple(sorted(wanted)), len(trials)))
        summary = run(dataclasses.replace(recipe, seeds=[*recipe.seeds, seed]), trials)
        rounds.append(Round(seed, decision, failed=tuple(summary.failed)))
        if summary.failed:
            rounds.append(Round(None, decision, f"{len(summary.failed)} trial(s) failed"))
            break
    emit(LoopStopped(rounds[-1].reason))
    return rounds
