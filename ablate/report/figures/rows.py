"""A chart of labelled rows: per row a marker, an interval, points and text columns.

The forest plot, the probability-of-improvement panel and the every-seed plot are all
this chart. The layout is computed in inches from text measured as drawn (not guessed),
so labels, columns and the key never overlap or leave the figure: rows take a fixed
height, labels wider than their share become codes listed in a key under the plot, and
the figure grows in height with the rows (40 rows: about 12 in).

Every data artist carries a ``gid`` (``estimate:<row>``, ``interval:<row>``,
``points:<row>``, ``cell:<row>:<column>``, ``reference``, ``band``), so tests read the
positions back and compare them with the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ablate.report.figures.style import (
    FONT,
    GREY,
    LINE,
    TEXT_WIDTH,
    draw_heading,
    new_figure,
    short_labels,
    wrap,
)
from ablate.report.figures.style import text_width as measure

MIN_PLOT = 1.6  # inches the axes keep; labels shorten to codes before the axes shrink more
PAD = 0.18  # inches between text columns
MARGIN = 0.06  # inches at the figure's edges


@dataclass(frozen=True)
class Row:
    label: str
    code: str  # shown instead of the label when it does not fit ("E3")
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    marker: str = "o"
    color: str = "#000000"
    filled: bool = True
    points: tuple[float, ...] = ()
    point_kinds: tuple[int, ...] = ()  # index into Chart.point_styles, one per point
    cells: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chart:
    title: str
    xlabel: str
    headers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # lines under the title (wrapped to the width)
    reference: float | None = None  # a vertical line (0, or 0.5)
    band: tuple[float, float] | None = None  # a shaded x range (the margin)
    band_label: str = ""
    xlim: tuple[float, float] | None = None
    separator: int | None = None  # a rule above this row (interactions start)
    legend: tuple[tuple[str, dict], ...] = ()  # (text, Line2D keywords)
    point_styles: tuple[dict, ...] = ({"marker": "o", "color": GREY, "fill": False},)
    point_offset: float = 0.3  # rows below the interval (0: on the row's line)
    width: float = TEXT_WIDTH
    row_height: float = 0.3  # inches per row
    key_title: str = "Key"


def _columns(fig, rows: list[Row], headers: tuple[str, ...]) -> list[float]:
    widths = []
    for j, header in enumerate(headers):
        cells = [measure(fig, r.cells[j]) for r in rows if j < len(r.cells)]
        widths.append(max([measure(fig, header, weight="bold"), *cells]) + PAD)
    return widths


def _limits(rows: list[Row], chart: Chart) -> tuple[float, float]:
    if chart.xlim is not None:
        return chart.xlim
    values = [v for r in rows for v in (r.estimate, r.low, r.high, *r.points)]
    values += [chart.reference] if chart.reference is not None else []
    values += list(chart.band or ())
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (-1.0, 1.0)
    span = high - low or max(abs(high), 1.0)
    return low - 0.06 * span, high + 0.06 * span


def _swarm(xs: np.ndarray, base: float, step: float, tolerance: float) -> np.ndarray:
    """y of each point: ``base`` unless an earlier point lies within ``tolerance`` in x,
    then the next free level of ``base, base + step, base - step``."""
    ys = np.full(len(xs), base)
    levels = (base, base + step, base - step)
    placed: list[tuple[float, float]] = []
    for k in np.argsort(xs, kind="stable"):
        for level in levels:
            if all(abs(xs[k] - x) > tolerance or y != level for x, y in placed):
                break
        else:
            level = base  # three coincide: they share the base level
        ys[k] = level
        placed.append((xs[k], level))
    return ys


def row_chart(rows: list[Row], chart: Chart):
    """The figure; its height follows from the rows, the notes and the key."""
    from matplotlib.lines import Line2D  # lazy: loads matplotlib
    from matplotlib.patches import Patch  # lazy: loads matplotlib
    from matplotlib.transforms import blended_transform_factory  # lazy: loads matplotlib

    fig = new_figure(chart.width)
    width = chart.width
    columns = _columns(fig, rows, chart.headers)
    right = sum(columns)
    budget = width - 2 * MARGIN - right - MIN_PLOT - 0.08
    shown, key = short_labels(fig, [r.label for r in rows], [r.code for r in rows], budget,
                              two_lines=chart.row_height >= 0.28)  # room for two lines
    label_w = max((measure(fig, line) for s in shown for line in s.split("\n")),
                  default=0.0) + 0.08
    plot_w = width - 2 * MARGIN - label_w - right
    inner = width - 2 * MARGIN

    title = wrap(fig, chart.title, inner, FONT + 1, weight="bold")
    notes = [line for note in chart.notes for line in wrap(fig, note, inner)]
    key_lines = [line for code, label in key
                 for line in wrap(fig, f"{code}: {label}", inner, indent="    ")]
    handles = _legend_handles(chart, Line2D, Patch)
    legend_rows = _legend_rows(fig, handles, inner)

    top = MARGIN + len(title) * LINE * 1.15 + len(notes) * LINE + (0.22 if chart.headers else 0.08)
    axes_h = len(rows) * chart.row_height + 0.1
    below = 0.42 + legend_rows * LINE * 1.25 + (0.06 if legend_rows else 0.0)
    key_h = (len(key_lines) + 1) * LINE if key_lines else 0.0
    height = top + axes_h + below + key_h + MARGIN
    fig.set_size_inches(width, height)

    left = MARGIN + label_w
    ax = fig.add_axes((left / width, (height - top - axes_h) / height, plot_w / width,
                       axes_h / height))
    xlim = _limits(rows, chart)
    _draw_rows(ax, rows, chart, xlim, plot_w)
    ax.set_yticks(range(len(rows)), shown, fontsize=FONT)
    ax.set_ylim(len(rows) - 0.5 + (0.2 if chart.point_offset else 0.0), -0.6)
    ax.set_xlim(*xlim)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(chart.xlabel, fontsize=FONT)
    ax.grid(True, axis="x", alpha=0.25, linewidth=0.5)

    draw_heading(fig, title, notes, width, height, MARGIN)
    cells = blended_transform_factory(fig.transFigure, ax.transData)
    x = left + plot_w + PAD
    for j, header in enumerate(chart.headers):
        fig.text(x / width, (height - top + 0.05) / height, header, fontsize=FONT,
                 weight="bold", gid=f"header:{j}")
        for i, row in enumerate(rows):
            if j < len(row.cells):
                ax.text(x / width, i, row.cells[j], transform=cells, fontsize=FONT,
                        va="center", gid=f"cell:{i}:{j}", clip_on=False)
        x += columns[j]

    y = height - top - axes_h - 0.42
    if handles:
        ncol = math.ceil(len(handles) / legend_rows)
        fig.legend([h for h, _ in handles], [t for _, t in handles], loc="upper left",
                   bbox_to_anchor=(MARGIN / width, y / height), ncol=ncol, frameon=False,
                   fontsize=FONT, handlelength=1.6, columnspacing=1.2, borderaxespad=0.0,
                   borderpad=0.0, handletextpad=0.4)
        y -= legend_rows * LINE * 1.25 + 0.06
    if key_lines:
        y -= LINE
        fig.text(MARGIN / width, y / height, chart.key_title, fontsize=FONT, weight="bold")
        for line in key_lines:
            y -= LINE
            fig.text(MARGIN / width, y / height, line, fontsize=FONT, gid="key")
    return fig


def _draw_rows(ax, rows: list[Row], chart: Chart, xlim: tuple[float, float],
               plot_w: float) -> None:
    if chart.band is not None:
        ax.axvspan(*chart.band, color="#DDDDDD", alpha=0.7, linewidth=0, zorder=0, gid="band")
    if chart.reference is not None:
        ax.axvline(chart.reference, color="#000000", linewidth=0.8, zorder=1, gid="reference")
    if chart.separator is not None:
        ax.axhline(chart.separator - 0.5, color=GREY, linewidth=0.6, linestyle=":")
    tolerance = 4.0 / 72.0 * (xlim[1] - xlim[0]) / plot_w  # a marker's width in x units
    for i, row in enumerate(rows):
        if math.isfinite(row.low) and math.isfinite(row.high):
            ax.plot([row.low, row.high], [i, i], color=row.color, linewidth=1.4,
                    solid_capstyle="butt", zorder=3, gid=f"interval:{i}")
        if math.isfinite(row.estimate):
            ax.plot([row.estimate], [i], linestyle="none", marker=row.marker, markersize=5.5,
                    color=row.color, markerfacecolor=row.color if row.filled else "white",
                    markeredgewidth=1.1, zorder=4, gid=f"estimate:{i}")
        if row.points:
            xs = np.asarray(row.points, dtype=float)
            base = i + chart.point_offset
            ys = _swarm(xs, base, 0.1, tolerance) if chart.point_offset else np.full(len(xs), base)
            kinds = np.asarray(row.point_kinds or [0] * len(xs))
            for kind in dict.fromkeys(kinds.tolist()):
                style = chart.point_styles[kind % len(chart.point_styles)]
                pick = kinds == kind
                ax.plot(xs[pick], ys[pick], linestyle="none", marker=style["marker"],
                        markersize=3.6, color=style["color"], markeredgewidth=0.8,
                        markerfacecolor=style["color"] if style.get("fill", True) else "none",
                        alpha=0.9, zorder=2, gid=f"points:{i}:{kind}")


def _legend_handles(chart: Chart, Line2D, Patch) -> list[tuple]:
    handles = [(Line2D([], [], **{"linestyle": "none", "markersize": 5, **kw}), text)
               for text, kw in chart.legend]
    if chart.band is not None:
        handles.append((Patch(color="#DDDDDD"), chart.band_label))
    return handles


def _legend_rows(fig, handles: list[tuple], inner: float) -> int:
    """Rows the legend needs so that it fits the width (each entry: handle + text)."""
    if not handles:
        return 0
    widths = [measure(fig, text) + 0.45 for _, text in handles]
    for rows in range(1, len(handles) + 1):
        ncol = math.ceil(len(handles) / rows)
        # matplotlib fills the columns top to bottom, each as wide as its widest entry
        cols = [max(widths[c * rows:(c + 1) * rows], default=0.0) for c in range(ncol)]
        if sum(cols) <= inner:
            return rows
    return len(handles)
