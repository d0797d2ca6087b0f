"""Training curves grouped by configuration: the mean over seeds with a min-max band, or
every seed's own line in its configuration's colour.

A configuration's colour and line style come from the Okabe-Ito palette cycled with
line styles (7 colours x 4 styles), so no two of 28 configurations look alike, also in
grey. The legend stands under the axes, where it can hide no line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ablate.report.figures.style import (
    FONT,
    LINE,
    LINESTYLES,
    PALETTE,
    TEXT_WIDTH,
    new_figure,
    text_width,
    wrap,
)

LEGEND_UP_TO = 12  # lines in colour (and in the legend); the others thin and grey
PANEL_HEIGHT = 2.6  # inches
BAND = "min-max over seeds"


def line_style(k: int) -> dict:
    """The ``k``-th configuration's colour and line style."""
    return {"color": PALETTE[k % len(PALETTE)],
            "linestyle": LINESTYLES[(k // len(PALETTE)) % len(LINESTYLES)]}


def curves_figure(epochs: pd.DataFrame, *, by: str = "config", x: str = "epoch"):
    """Train loss and validation mIoU against ``x`` (epoch or step).

    ``epochs`` has ``label, trial_id, epoch, step, key, value`` rows (val mIoU in %).
    ``by="config"``: per label (configuration) the mean over its seeds, with the band
    from the lowest to the highest seed at each ``x``. ``by="trial"``: one thin line per
    trial (seed) in its configuration's colour, the seed-by-seed view. Configurations
    past ``LEGEND_UP_TO`` (by final validation mIoU) are thin grey lines without a
    legend entry (one artist: fast, and still shows the spread).
    """
    from matplotlib.collections import LineCollection  # lazy: loads matplotlib
    from matplotlib.lines import Line2D  # lazy: loads matplotlib
    from matplotlib.ticker import MaxNLocator  # lazy: loads matplotlib

    names = _config_order(epochs, x)
    colour = {name: line_style(k) for k, name in enumerate(names[:LEGEND_UP_TO])}
    fig = new_figure(TEXT_WIDTH)
    handles = [Line2D([], [], linewidth=1.2, **colour[n]) for n in colour]
    rows = _legend_rows(fig, list(colour), TEXT_WIDTH - 0.3)
    legend_h = rows * LINE * 1.3 + 0.1 if rows else 0.0
    title = ("training curves: mean over seeds per configuration, band: " + BAND
             if by == "config" else "training curves: one line per seed, coloured by configuration")
    if len(names) > len(colour):
        title += f"; the {len(colour)} best of {len(names)} in colour"
    title_lines = wrap(fig, title, TEXT_WIDTH - 0.2, FONT + 1, weight="bold")
    top = 0.12 + len(title_lines) * LINE * 1.15 + 0.2
    height = top + PANEL_HEIGHT + 0.45 + legend_h
    fig.set_size_inches(TEXT_WIDTH, height)
    bottom = (0.45 + legend_h) / height
    axes = [fig.add_axes((0.08, bottom, 0.39, PANEL_HEIGHT / height)),
            fig.add_axes((0.59, bottom, 0.39, PANEL_HEIGHT / height))]
    panels = (("train_loss", "train loss"), ("val_miou", "validation mIoU (%)"))
    for ax, (key, label) in zip(axes, panels):
        data = epochs[epochs["key"] == key].dropna(subset=[x])
        grey = []
        keys = ["label", "trial_id"] if by == "trial" else ["label"]
        stats = data.groupby([*keys, x], sort=False)["value"].agg(["mean", "min", "max"])
        drawn: set[str] = set()
        for line_key, group in stats.groupby(level=keys, sort=False):
            name = line_key[0] if isinstance(line_key, tuple) else line_key
            steps = group.index.get_level_values(x)
            if name not in colour:
                grey.append(np.column_stack([steps, group["mean"]]))
                continue
            first = name not in drawn
            drawn.add(name)
            if by == "trial":
                ax.plot(steps, group["mean"], linewidth=0.8, alpha=0.85, **colour[name],
                        label=name if first else "_nolegend_")
                continue
            ax.plot(steps, group["mean"], marker="o", markersize=2.2, linewidth=1.2,
                    label=name, **colour[name])
            if (group["max"] > group["min"]).any():
                ax.fill_between(steps, group["min"], group["max"], alpha=0.18,
                                color=colour[name]["color"], linewidth=0)
        if grey:
            ax.add_collection(LineCollection(grey, colors="0.6", linewidths=0.6, alpha=0.5,
                                             zorder=0))
            ax.autoscale_view()
        ax.set_xlabel(x, fontsize=FONT)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label, fontsize=FONT)
        ax.tick_params(labelsize=FONT)
        ax.grid(True, alpha=0.3, linewidth=0.5)
    for k, line in enumerate(title_lines):
        fig.text(0.1 / TEXT_WIDTH, (height - 0.12 - (k + 1) * LINE * 1.15) / height, line,
                 fontsize=FONT + 1, weight="bold")
    if handles:
        fig.legend(handles, list(colour), loc="upper left", fontsize=FONT, frameon=False,
                   bbox_to_anchor=(0.06, (legend_h + 0.02) / height),
                   ncol=math.ceil(len(handles) / rows), borderaxespad=0.0, handlelength=2.2)
    return fig


def _config_order(epochs: pd.DataFrame, x: str) -> list[str]:
    """Configurations (labels), best final validation mIoU (mean over seeds) first."""
    val = epochs[epochs["key"] == "val_miou"].dropna(subset=[x])
    last = val[val[x] == val.groupby(["label", "trial_id"])[x].transform("max")]
    final = last.groupby("label", sort=False)["value"].mean()
    labels = list(dict.fromkeys(epochs["label"]))
    final = final.reindex(labels).sort_values(ascending=False, na_position="last", kind="stable")
    return [str(name) for name in final.index]


def _legend_rows(fig, names: list[str], inner: float) -> int:
    if not names:
        return 0
    widths = [text_width(fig, n) + 0.5 for n in names]
    for rows in range(1, len(names) + 1):
        ncol = math.ceil(len(names) / rows)
        if sum(max(widths[c * rows:(c + 1) * rows], default=0.0) for c in range(ncol)) <= inner:
            return rows
    return len(names)
