"""``ablate run --until-decided``: add seeds to the configurations whose effects are open.

After the recipe's own seeds, each round tests every effect of the study
(``ablate.analysis.effects``), and an effect counts as *decided* when it is beyond
seed noise, or when its Holm interval lies inside ``±min_effect`` mIoU points (it
is negligible, and more seeds would only confirm that). Every configuration an
open effect uses gets one new seed (the next integer the study has not used), so
seeds stay paired across the configurations of each effect. The loop stops when
every effect is decided, when an open configuration already has ``max_seeds``
finished seeds, or when a round has a failed trial. Done trials never run again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas and the statistics load only when the loop runs (fast --help)
    import pandas as pd

DEFAULT_MAX_SEEDS = 10
DEFAULT_MIN_EFFECT = 1.0  # mIoU points


@dataclass(frozen=True)
class Decision:
    """Which configurations need another seed, and why (one line per effect)."""

    configs: tuple[str, ...]
    lines: tuple[str, ...]

    @property
    def settled(self) -> bool:
        return not self.configs


def decide(effects: pd.DataFrame, min_effect: float = DEFAULT_MIN_EFFECT) -> Decision:
    """The configurations of every open effect (pure: effects table in, decision out)."""
    from ablate.analysis.effects import BEYOND

    configs: dict[str, None] = {}
    lines = []
    for row in effects.itertuples(index=False):
        low, high = row.ci_holm_low, row.ci_holm_high
        name = f"{row.axis}: {row.change}"
        if row.verdict == BEYOND:
            lines.append(f"decided  {name}: {row.estimate:+.2f} mIoU, beyond seed noise "
                         f"(Holm p {row.p_holm:.3g})")
            continue
        if not math.isnan(low) and -min_effect <= low and high <= min_effect:
            lines.append(f"decided  {name}: negligible, interval [{low:+.2f}, {high:+.2f}] "
                         f"inside ±{min_effect:g}")
            continue
        why = ("fewer than two seeds pair up" if math.isnan(low) else
               f"within seed noise, interval [{low:+.2f}, {high:+.2f}] reaches past "
               f"±{min_effect:g}")
        lines.append(f"open     {name}: {why}")
        configs.update(dict.fromkeys(row.configs))
    return Decision(tuple(configs), tuple(lines))


@dataclass
class Round:
    seed: int | None  # the seed added (None: the loop stopped before adding one)
    decision: Decision
    reason: str = ""  # why the loop stopped, on the last round


def run_until_decided(recipe, overrides: dict, store, run: Callable[[object, list], object], *,
                      max_seeds: int = DEFAULT_MAX_SEEDS, alpha: float = 0.05,
                      min_effect: float = DEFAULT_MIN_EFFECT,
                      say: Callable[[str], None] = print) -> list[Round]:
    """Add seeds round by round until every effect of ``recipe``'s study is decided.

    ``run(recipe, trials)`` runs trials (``driver.run_study`` with the caller's
    executor) and returns its summary. Each decision line goes to ``say``.
    """
    from ablate.analysis.effects import effects_table
    from ablate.report.frame import trials_frame
    from ablate.trials.expand import expand

    # `--set seeds=[...]` replaces the recipe's seeds: fold it into the recipe, so that
    # each round's `seeds=[seed]` is not overridden back to the starting seeds
    if "seeds" in overrides:
        recipe = dataclasses.replace(recipe, seeds=list(overrides["seeds"]))
        overrides = {k: v for k, v in overrides.items() if k != "seeds"}
    rounds: list[Round] = []
    while True:
        frame = trials_frame(store, [recipe.name])
        seeds = sorted(set(int(s) for s in frame["seed"]) | set(recipe.seeds))
        # only this recipe's trials (with --set, other trials can share a configuration name)
        ours = {t.trial_id for t in expand(dataclasses.replace(recipe, seeds=seeds), overrides)}
        frame = frame[frame["trial_id"].isin(ours)]
        decision = decide(effects_table(frame, alpha=alpha), min_effect)
        for line in decision.lines:
            say(line)
        if decision.settled:
            rounds.append(Round(None, decision, "every effect is decided"))
            break
        done = frame[(frame["status"] == "done") & frame["config_name"].isin(decision.configs)]
        most = int(done.groupby("config_name")["seed"].nunique().max()) if len(done) else 0
        if most >= max_seeds:
            rounds.append(Round(None, decision, f"--max-seeds {max_seeds} reached"))
            break
        seed = max(seeds) + 1
        wanted = set(decision.configs)
        trials = [t for t in expand(dataclasses.replace(recipe, seeds=[seed]), overrides)
                  if t.config_name in wanted]
        if not trials:  # cannot happen for a recipe's own configurations; never loop idle
            rounds.append(Round(None, decision, "no trial to add"))
            break
        say(f"seed {seed} for {len(trials)} configuration(s): {', '.join(sorted(wanted))}")
        rounds.append(Round(seed, decision))
        summary = run(dataclasses.replace(recipe, seeds=[*recipe.seeds, seed]), trials)
        if getattr(summary, "failed", None):
            rounds.append(Round(None, decision, f"{len(summary.failed)} trial(s) failed"))
            break
    say(f"stopped: {rounds[-1].reason}")
    return rounds
