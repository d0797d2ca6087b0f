"""Figures: Pareto fronts, per-class IoU heatmap, training curves.

Each ``*_figure`` function returns a matplotlib ``Figure`` built without pyplot (no
global state, nothing shown); ``save_figure`` writes it as PNG and SVG and
``figure_svg`` gives the SVG bytes the HTML page embeds; ``figure_png`` the PNG bytes
trackers take.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.report.figures.curves import curves_figure  # noqa: F401 (re-exported)
from ablate.report.outputs import write_atomic
from ablate.report.pareto import frontier_steps, pareto_mask

AXIS_LABELS = {
    "params": "parameters",
    "gflops": "GFLOPs",
    "latency_ms": "latency (ms, batch 1)",
    "miou_mean": "mIoU (%)",
}
LABEL_ALL_UP_TO = 40  # with more points only the Pareto-optimal ones are labelled,
FRONT_LABELS = 12  # and at most this many of those, spread along the front
ANNOTATE_UP_TO = 150  # heatmap cells that get their value written in
DPI = 120


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # lazy: loads matplotlib

    return Figure(figsize=(width, height), dpi=DPI)


def pareto_figure(configs: pd.DataFrame, x: str, *, y: str = "miou_mean", log_x: bool = False):
    """``y`` against ``x``: frontier as a step line, dominated points faded, std error bars."""
    data = configs.dropna(subset=[x, y])
    if log_x:
        data = data[data[x].astype(float) > 0]
    fig = new_figure(7.5, 5.0)
    ax = fig.subplots()
    yerr = data["miou_std"].astype(float) if y == "miou_mean" and "miou_std" in data else None
    if not data.empty:
        xs, ys = data[x].astype(float), data[y].astype(float)
        on_front = np.array(pareto_mask(np.column_stack([xs, ys]), (False, True)))
        for mask, style in ((~on_front, {"color": "tab:gray", "alpha": 0.35, "label": "dominated"}),
                            (on_front, {"color": "tab:blue", "label": "Pareto-optimal"})):
            if mask.any():
                ax.errorbar(xs[mask], ys[mask], yerr=None if yerr is None else yerr[mask],
                            fmt="o", markersize=5, capsize=2, elinewidth=0.8, **style)
        fx, fy = frontier_steps(xs[on_front].tolist(), ys[on_front].tolist())
        ax.step(fx, fy, where="post", color="tab:blue", linewidth=1.2)
        labelled = _labelled(xs.to_numpy(), on_front, len(data) <= LABEL_ALL_UP_TO)
        names = data["config_name"].astype(str)
        if "study" in data and data["study"].nunique() > 1:
            names = data["study"].astype(str) + ": " + names
        position = _fraction(xs, log_x)
        notes = []
        for name, px, py, front, where, label in zip(names, xs, ys, on_front, position, labelled):
            if label:
                note = ax.annotate(name, (px, py), textcoords="offset points", xytext=(4, 4),
                                   ha="left", va="bottom", fontsize=7,
                                   alpha=1.0 if front else 0.5)
                notes.append((note, where > 0.7))  # right-most labels grow to the left
    x_label, y_label = (AXIS_LABELS.get(c, c.removeprefix("axis:")) for c in (x, y))
    ax.set_xlabel(x_label + (" (log)" if log_x else ""))
    # the figure alone (a PNG in a paper) says what its bars are, not only the caption
    bars = yerr is not None and bool(yerr.notna().any())
    ax.set_ylabel(y_label + (", mean ± std over seeds" if bars else ""))
    if log_x:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
    elif x == "params":
        from matplotlib.ticker import EngFormatter  # lazy: loads matplotlib

        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 5M, not 0.5 x 1e7
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # outside the axes: it can never hide a point
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    ax.set_title(f"{y_label.split(' (')[0]} against {x_label}")
    fig.subplots_adjust(left=0.1, right=0.8, bottom=0.11, top=0.93)  # tight_layout: +0.1 s
    if not data.empty and notes:
        _place_labels(fig, ax, notes, np.column_stack([xs, ys]))
    return fig


def plain_log_ticks(axis) -> None:
    """A log axis labelled with plain numbers (1, 2, 5, 10, 20; 5M for parameters), not
    matplotlib's ``2×10^1``; besides the decades, as many of the ticks between them as
    fit without crowding: every one, else 2 and 5, else 3 (see ``_between_labels``)."""
    from matplotlib.ticker import Formatter  # lazy: loads matplotlib

    class PlainLog(Formatter):
        def __init__(self, minor: bool):
            self.minor, self.shown = minor, None

        def set_locs(self, locs):
            self.shown = _between_labels(self.axis) if self.minor else None

        def __call__(self, x, pos=None):
            if x <= 0 or (self.shown is not None and not np.isclose(self.shown, x).any()):
                return ""
            return plain_number(x)

    axis.set_major_formatter(PlainLog(minor=False))
    axis.set_minor_formatter(PlainLog(minor=True))
    # the minor labels on the major ones' line: a minor tick is shorter, its pad makes it up
    major, minor = axis.get_major_ticks()[0], axis.get_minor_ticks()[0]
    axis.set_tick_params(which="minor", pad=major.get_pad() + major.get_tick_padding()
                         - minor.get_tick_padding())


LOG_LABELS = ((1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 5), (1, 3), (1,))  # densest first


def _between_labels(axis) -> np.ndarray:
    """The minor ticks to label: those of the densest of ``LOG_LABELS`` whose labels,
    with the major ticks', keep a gap between neighbours (measured on the axis as laid
    out, the labels' text at 0.6 em a character); none beyond a few decades."""
    low, high = sorted(axis.get_view_interval())
    if low <= 0 or high <= low:
        return np.zeros(0)
    inside = lambda ticks: np.array([t for t in ticks if low <= t <= high and t > 0])  # noqa: E731
    majors, minors = inside(axis.get_majorticklocs()), inside(axis.get_minorticklocs())
    box = axis.axes.get_position()
    width, height = axis.axes.figure.get_size_inches()
    along = box.width * width if axis.axis_name == "x" else box.height * height
    size = axis.majorTicks[0].label1.get_fontsize() / 72.0  # inches (tick_params may set it)
    leading = np.floor(np.log10(minors) + 1e-9) if len(minors) else minors
    digits = np.round(minors / 10.0 ** leading) if len(minors) else minors
    for labels in LOG_LABELS:
        chosen = minors[np.isin(digits, labels)]
        ticks = np.sort(np.concatenate([majors, chosen]))
        where = (np.log10(ticks) - np.log10(low)) / (np.log10(high) - np.log10(low)) * along
        if axis.axis_name == "x":
            half = np.array([len(plain_number(t)) for t in ticks]) * 0.6 * size / 2
            need = half[1:] + half[:-1] + size  # a character's gap at least
        else:
            need = np.full(max(len(ticks) - 1, 0), 1.5 * size)
        if np.all(np.diff(where) >= need):
            return chosen
    return np.zeros(0)


def plain_number(x: float) -> str:
    """0.05, 2, 50, 2000, then 20k, 5M (as the linear params axis writes them)."""
    if x >= 1e4:
        from matplotlib.ticker import EngFormatter  # lazy: loads matplotlib

        return EngFormatter(sep="")(float(f"{x:.6g}"))
    return np.format_float_positional(float(f"{x:.6g}"), trim="-")


# label offsets in points (dx, dy, ha, va): beside, above or below the point
_PLACES = [(4, 4, "left", "bottom"), (-4, 4, "right", "bottom"), (4, -4, "left", "top"),
           (-4, -4, "right", "top"), (7, 0, "left", "center"), (-7, 0, "right", "center"),
           (0, 8, "center", "bottom"), (0, -8, "center", "top")]
_PLACES += [(dx, dy * 3 if dy else 14, ha, va) for dx, dy, ha, va in _PLACES[:4]]  # farther
_PLACES += [(dx, dy * 6 if dy else 28, ha, va) for dx, dy, ha, va in _PLACES[:4]]


def _place_labels(fig, ax, notes: list, points: np.ndarray, marker_px: float = 5.0) -> None:
    """Move each label to the first place where it covers no point, no earlier label
    and stays inside the axes; where none is free, the place that overlaps least, and
    a label that would still cover a point or leave the axes is left out (the tables
    name every point)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: loads matplotlib

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    ax.autoscale_view()
    centers = ax.transData.transform(points)
    radius = marker_px * fig.dpi / 72.0 / 2.0 + 1.0
    dots = np.column_stack([centers - radius, centers + radius])  # x0, y0, x1, y1
    frame = ax.get_window_extent(renderer)
    taken: list[np.ndarray] = []
    for note, prefer_left in notes:
        places = _PLACES[1:2] + _PLACES[:1] + _PLACES[2:] if prefer_left else _PLACES
        best, best_cost = None, np.inf
        for dx, dy, ha, va in places:
            note.set_position((dx, dy))
            note.set_ha(ha)
            note.set_va(va)
            box = note.get_window_extent(renderer)
            rect = np.array([box.x0, box.y0, box.x1, box.y1])
            covers = _overlap(rect, dots).sum() + _outside(rect, frame)
            cost = covers * 10 + _overlap(rect, np.array(taken)).sum()
            if cost < best_cost:
                best, best_cost = (dx, dy, ha, va, rect, covers), cost
            if cost == 0:
                break
        dx, dy, ha, va, rect, covers = best
        if covers > 0:
            note.remove()
            continue
        note.set_position((dx, dy))
        note.set_ha(ha)
        note.set_va(va)
        taken.append(rect)


def _overlap(rect: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Overlap areas (pixels) of ``rect`` with each row of ``boxes`` (x0, y0, x1, y1)."""
    if boxes.size == 0:
        return np.zeros(0)
    w = np.minimum(rect[2], boxes[:, 2]) - np.maximum(rect[0], boxes[:, 0])
    h = np.minimum(rect[3], boxes[:, 3]) - np.maximum(rect[1], boxes[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _outside(rect: np.ndarray, frame) -> float:
    """Pixels by which ``rect`` leaves the axes (a label must stay inside)."""
    return float(max(0.0, frame.x0 - rect[0]) + max(0.0, rect[2] - frame.x1)
                 + max(0.0, frame.y0 - rect[1]) + max(0.0, rect[3] - frame.y1)) * 100.0


def _labelled(xs: np.ndarray, on_front: np.ndarray, label_all: bool) -> np.ndarray:
    """Which points get a name: all of few, else front points (evenly spread if many)."""
    if label_all:
        return np.ones(len(xs), dtype=bool)
    front = np.flatnonzero(on_front)
    if len(front) > FRONT_LABELS:
        front = front[np.argsort(xs[front], kind="stable")]
        front = front[np.linspace(0, len(front) - 1, FRONT_LABELS).round().astype(int)]
    out = np.zeros(len(xs), dtype=bool)
    out[front] = True
    return out


def _fraction(xs: pd.Series, log_x: bool) -> np.ndarray:
    """Where each x lies between the smallest and the largest, 0 to 1."""
    values = np.log10(xs.to_numpy(dtype=float)) if log_x else xs.to_numpy(dtype=float)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros(len(values))


def per_class_figure(table: pd.DataFrame, title: str = "IoU per class (%)"):
    """Heatmap, classes (rows) x configurations (columns), values annotated when few.

    The figure is sized from the label lengths (7 pt text is about 0.06 in a
    character) instead of ``tight_layout``, which costs a second with 40 names.
    """
    from matplotlib.figure import Figure  # lazy: loads matplotlib

    n_classes, n_configs = table.shape
    char = 0.06  # measured: 0.052-0.058 in a character of 7 pt DejaVu Sans, plus margin
    left = 0.25 + char * max((len(str(c)) for c in table.index), default=1)
    bottom = 0.25 + char * max((len(str(c)) for c in table.columns), default=1)
    cell_w, cell_h = (0.45, 0.3)
    width, height = max(cell_w * n_configs, 2.5), max(cell_h * n_classes, 1.0)
    fig_w, fig_h = left + width + 1.2, bottom + height + 0.45
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    ax = fig.add_axes((left / fig_w, bottom / fig_h, width / fig_w, height / fig_h))
    cax = fig.add_axes(((left + width + 0.15) / fig_w, bottom / fig_h, 0.15 / fig_w,
                        height / fig_h))
    values = table.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis",
                      vmin=0.0, vmax=100.0)
    ax.set_xticks(range(n_configs), [str(c) for c in table.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(n_classes), [str(c) for c in table.index], fontsize=7)
    if values.size <= ANNOTATE_UP_TO:
        for (i, j), value in np.ndenumerate(values):
            if value == value:
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if value < 60 else "black")
    fig.colorbar(image, cax=cax, label="IoU (%)")
    ax.set_title(title, fontsize=9)
    return fig


def save_figure(fig, out_dir: str | Path, stem: str,
                suffixes: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """``<stem>.png`` and ``<stem>.svg`` (or ``suffixes``) under ``out_dir``; returns the
    paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{suffix}" for suffix in suffixes]
    for path, suffix in zip(paths, suffixes, strict=True):  # each whole or not at all
        write_atomic(path, lambda tmp, suffix=suffix: fig.savefig(tmp, format=suffix))
    return paths


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def figure_svg(fig) -> bytes:
    """SVG with text drawn as glyph outlines (matplotlib's default ``svg.fonttype``): the
    page shows the labels exactly as they were measured when the figure was laid out,
    whatever fonts the browser has. About twice as fast to write as a PNG of the same
    figure (``bench/bench_report.py``), and sharp at any zoom. No date and fixed element
    ids, so the same figure gives the same bytes."""
    import matplotlib

    # written as text and encoded once: into a bytes buffer each of the SVG writer's
    # small writes (150,000 for a report's figures) went through a codecs encoder (2 %)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "ablate"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue().encode("utf-8")
