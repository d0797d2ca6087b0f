"""A tuned study's figure: the tuning curves (expected best selection score after n draws,
per configuration, with a band) beside the effect at every draw.

Left: one line per configuration (colour and line style as the training curves give
them), its band shaded, a ring on the score of the chosen draw at n = k. Right: each
effect's value at every draw as points, the tuned effect (read on the study's seeds) as
a vertical line, so a reader sees at once whether the conclusion holds across the draws.
"""

from __future__ import annotations

import numpy as np

from ablate.report.figures.curves import line_style
from ablate.report.figures.style import FONT, LINE, TEXT_WIDTH, new_figure, wrap

PANEL_HEIGHT = 2.6  # inches
ROW = 0.28  # inches per effect in the right panel


def tuning_figure(view, metric_name: str):
    """The figure of one ``report.tuning.TuningView``."""
    from matplotlib.ticker import MaxNLocator  # lazy: loads matplotlib

    effects = view.draw_effects
    has_effects = effects is not None and not effects.empty
    fig = new_figure(TEXT_WIDTH)
    title = (f"{view.study}: tuning curves (expected best {metric_name} of n draws, band ± 1 "
             "sd, unbiased without replacement)"
             + ("; right: each effect at every draw, the tuned effect as a line"
                if has_effects else ""))
    title_lines = wrap(fig, title, TEXT_WIDTH - 0.2, FONT + 1, weight="bold")
    top = 0.12 + len(title_lines) * LINE * 1.15 + 0.15
    rows = len(effects) if has_effects else 0
    panel = max(PANEL_HEIGHT, rows * ROW + 0.4)
    height = top + panel + 0.5
    fig.set_size_inches(TEXT_WIDTH, height)
    bottom = 0.45 / height
    width = 0.40 if has_effects else 0.86
    ax = fig.add_axes((0.08, bottom, width, panel / height))
    for k, (config, group) in enumerate(view.curves.groupby("config", sort=False)):
        style = line_style(k)
        ax.plot(group["draws"], group["expected"], marker="o", markersize=2.4, linewidth=1.2,
                label=str(config), **style)
        ax.fill_between(group["draws"], group["low"], group["high"], alpha=0.18,
                        color=style["color"], linewidth=0)
        if config in view.chosen:
            score = view.scores.loc[config, view.chosen[config]]
            ax.plot([view.budget], [score], marker="o", markersize=7, markerfacecolor="none",
                    markeredgecolor=style["color"], linestyle="none")
    ax.set_xlabel("draws n", fontsize=FONT)
    ax.set_ylabel(f"expected best {metric_name} (%)", fontsize=FONT)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=FONT)
    ax.grid(True, alpha=0.3, linewidth=0.5)
    ax.legend(fontsize=FONT, frameon=False, loc="lower right")
    if has_effects:
        _effects_panel(fig.add_axes((0.62, bottom, 0.35, panel / height)), effects)
    for k, line in enumerate(title_lines):
        fig.text(0.1 / TEXT_WIDTH, (height - 0.12 - (k + 1) * LINE * 1.15) / height, line,
                 fontsize=FONT + 1, weight="bold")
    return fig


def _effects_panel(ax, effects) -> None:
    draws = [c for c in effects.columns if c.startswith("draw_")]
    labels = [f"{a}: {c}" for a, c in zip(effects["axis"], effects["change"])]
    for i, row in enumerate(effects.itertuples(index=False)):
        values = np.array([getattr(row, d) for d in draws], dtype=float)
        y = len(labels) - 1 - i
        ax.plot(values, np.full(len(values), y), linestyle="none", marker="o", markersize=3.5,
                markerfacecolor="none", markeredgecolor="#000000", alpha=0.8)
        if row.tuned == row.tuned:
            ax.plot([row.tuned, row.tuned], [y - 0.35, y + 0.35], color="#0072B2", linewidth=2)
        # the effect's name above its row, inside the panel (no room for it at the left)
        ax.text(0.01, y + 0.22, labels[i], fontsize=FONT - 1, ha="left", va="bottom",
                transform=ax.get_yaxis_transform())
        ax.text(0.99, y + 0.22, f"{row.agree} of {row.of} agree", fontsize=FONT - 1,
                transform=ax.get_yaxis_transform(), ha="right", va="bottom")
    ax.axvline(0, color="#6E6E6E", linewidth=0.8)
    ax.set_yticks([])
    ax.set_ylim(-0.6, len(labels) - 0.1)
    ax.set_xlabel("Δ mIoU (points), B minus A", fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(True, axis="x", alpha=0.3, linewidth=0.5)
