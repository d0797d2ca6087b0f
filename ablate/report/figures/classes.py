"""The per-class effects as a heat map: classes x main effects, diverging around 0.

Cells whose interval excludes 0 are outlined in black and, where the values are written
in, starred: the mark does not rely on colour. Each cell carries a ``gid``
(``cell:<class row>:<effect column>``, ``mark:...``) so tests read it back.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ablate.report.figures.style import (
    DIVERGING,
    FONT,
    LINE,
    TEXT_WIDTH,
    draw_heading,
    level_text,
    new_figure,
    text_width,
    wrap,
)

MARGIN = 0.06
ROW = 0.2  # inches per class
MAX_CELL = 0.6  # inches per effect column, at most
ANNOTATE_FROM = 0.36  # inches a cell needs for its value written in


def class_effects_figure(table: pd.DataFrame, labels: dict[tuple[str, str], tuple[str, str]]):
    """``table``: one study's rows of ``ablate.analysis.per_class.per_class_effects``;
    ``labels``: ``(axis, change) -> (label, code)`` (the codes of the effects figures)."""
    from matplotlib.patches import Rectangle  # lazy: loads matplotlib

    study = str(table["study"].iloc[0])
    effects = list(dict.fromkeys(zip(table["axis"], table["change"])))
    classes = list(dict.fromkeys(table["class"]))
    index = {c: i for i, c in enumerate(classes)}
    values = np.full((len(classes), len(effects)), np.nan)
    marked = np.zeros_like(values, dtype=bool)
    for j, effect in enumerate(effects):
        rows = table[(table["axis"] == effect[0]) & (table["change"] == effect[1])]
        for c, v, x in zip(rows["class"], rows["estimate"], rows["excludes_zero"]):
            values[index[c], j] = v
            marked[index[c], j] = bool(x)
    level = float(table["ci_level"].iloc[0])
    family = int(table["family"].iloc[0])
    alpha = round((1.0 - level) * family, 6)

    fig = new_figure(TEXT_WIDTH)
    left = MARGIN + max(text_width(fig, str(c)) for c in classes) + 0.1
    bar = 0.75  # colour bar and its label
    cell_w = min(MAX_CELL, (TEXT_WIDTH - left - bar - MARGIN) / len(effects))
    names = [labels.get(e, (f"{e[0]}: {e[1]}", f"E{j + 1}")) for j, e in enumerate(effects)]
    fits = all(text_width(fig, label) <= cell_w - 0.04 for label, _ in names)
    ticks = [label if fits else code for label, code in names]
    key = [] if fits else [f"{code}: {label}" for label, code in names]
    tick_w = max(text_width(fig, t) for t in ticks)
    upright = tick_w > cell_w - 0.04  # codes wider than a cell stand on end
    ticks_h = (tick_w if upright else LINE) + 0.1
    grid_w = cell_w * len(effects)
    width = min(TEXT_WIDTH, left + grid_w + bar + MARGIN)
    inner = width - 2 * MARGIN
    title = wrap(fig, f"{study}: change in IoU per class (points, B − A)", inner, FONT + 1,
                 weight="bold")
    axes = set(table["axis"])
    note = (f"Axis {next(iter(axes))}. " if len(axes) == 1 else "") + (
            f"Outlined{' and starred' if cell_w >= ANNOTATE_FROM else ''}: the "
            f"{level_text(level)} interval (1 − {alpha:g}/{family}, Bonferroni over "
            f"{len(classes)} classes × {len(effects)} main effects) excludes 0; paired t over "
            "the seeds. Grey: not estimated.")
    notes = wrap(fig, note, inner)
    key_lines = [line for text in key for line in wrap(fig, text, inner, indent="    ")]
    top = MARGIN + LINE * 1.15 * len(title) + LINE * len(notes) + 0.08
    grid_h = ROW * len(classes)
    below = ticks_h + ((len(key_lines) + 1) * LINE if key_lines else 0.0)
    height = top + grid_h + below + MARGIN
    fig.set_size_inches(width, height)

    ax = fig.add_axes((left / width, (height - top - grid_h) / height, grid_w / width,
                       grid_h / height))
    cax = fig.add_axes(((left + grid_w + 0.12) / width, (height - top - grid_h) / height,
                        0.12 / width, grid_h / height))
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    ax.set_facecolor("#BBBBBB")  # NaN cells show the background
    image = ax.imshow(np.ma.masked_invalid(values), cmap=DIVERGING, vmin=-limit, vmax=limit,
                      aspect="auto", interpolation="nearest")
    image.set_gid("heatmap")
    ax.set_xticks(range(len(effects)), ticks, fontsize=FONT, rotation=90 if upright else 0)
    ax.set_yticks(range(len(classes)), [str(c) for c in classes], fontsize=FONT)
    ax.tick_params(length=0)
    annotate = cell_w >= ANNOTATE_FROM
    for (i, j), v in np.ndenumerate(values):
        if marked[i, j]:
            ax.add_patch(Rectangle((j - 0.45, i - 0.42), 0.9, 0.84, fill=False,
                                   edgecolor="#000000", linewidth=1.1, gid=f"mark:{i}:{j}"))
        if annotate and math.isfinite(v):
            text = f"{v:+.1f}".replace("-", "−") + ("*" if marked[i, j] else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=FONT - 0.5,
                    color="white" if abs(v) > 0.6 * limit else "black", gid=f"cell:{i}:{j}")
    colorbar = fig.colorbar(image, cax=cax)
    colorbar.set_label("Δ IoU (points)", fontsize=FONT)
    colorbar.ax.tick_params(labelsize=FONT)

    draw_heading(fig, title, notes, width, height, MARGIN)
    y = height - top - grid_h - ticks_h
    if key_lines:
        y -= LINE
        fig.text(MARGIN / width, y / height, "Key", fontsize=FONT, weight="bold")
        for line in key_lines:
            y -= LINE
            fig.text(MARGIN / width, y / height, line, fontsize=FONT, gid="key")
    return fig
