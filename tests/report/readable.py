"""Checks that a figure is readable: every text inside the figure, no two texts overlapping,
no text outside an axes covering it; measured on the drawn bounding boxes (Agg)."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg


def drawn_texts(fig) -> list:
    """(artist, bbox) of every visible, non-empty text the figure draws."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = list(fig.texts)
    for legend in fig.legends:
        texts += legend.get_texts()
    for ax in fig.axes:
        texts += ax.texts + [ax.xaxis.label, ax.yaxis.label, ax.title]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            low, high = min(low, high), max(low, high)
            for tick in axis.get_major_ticks():
                if low - 1e-9 <= tick.get_loc() <= high + 1e-9 and tick.label1.get_visible():
                    texts.append(tick.label1)
    return [(t, t.get_window_extent(renderer)) for t in texts
            if t.get_visible() and t.get_text().strip()]


def _drawn_ticks(axis) -> list:
    """(location, label) of each labelled tick, major and minor, inside the view, in order."""
    FigureCanvasAgg(axis.figure).draw()
    low, high = sorted(axis.get_view_interval())
    ticks = [(tick.get_loc(), tick.label1) for tick in axis.get_major_ticks()
             + axis.get_minor_ticks() if tick.label1.get_visible() and tick.label1.get_text()]
    return sorted((t for t in ticks if low - 1e-9 <= t[0] <= high + 1e-9), key=lambda t: t[0])


def tick_labels(axis) -> list[str]:
    """The tick labels as drawn, major and minor, left to right (bottom to top)."""
    return [label.get_text() for _, label in _drawn_ticks(axis)]


def crowded_ticks(axis, gap: float = 2.0) -> list[tuple[str, str]]:
    """Neighbouring tick labels drawn closer than ``gap`` pixels (or overlapping)."""
    renderer = axis.figure.canvas.get_renderer()
    boxes = [(label.get_text(), label.get_window_extent(renderer))
             for _, label in _drawn_ticks(axis)]
    along = (lambda b: (b.x0, b.x1)) if axis.axis_name == "x" else (lambda b: (b.y0, b.y1))
    return [(a, b) for (a, box_a), (b, box_b) in zip(boxes, boxes[1:])
            if along(box_b)[0] - along(box_a)[1] < gap]


def problems(fig, inside_axes_ok=lambda text: False) -> list[str]:
    """What is cut or overlapping, as text (empty: readable)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    boxes = drawn_texts(fig)
    out = []
    for text, box in boxes:
        if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5:
            out.append(f"cut: {text.get_text()!r} {box.bounds} in {width}x{height}")
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if w > 0.5 and h > 0.5:
                out.append(f"overlap: {a.get_text()!r} and {b.get_text()!r}")
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        for text, box in boxes:
            if text in ax.texts and inside_axes_ok(text):
                continue
            w = min(box.x1, frame.x1) - max(box.x0, frame.x0)
            h = min(box.y1, frame.y1) - max(box.y0, frame.y0)
            if w > 0.5 and h > 0.5:
                out.append(f"covers axes: {text.get_text()!r}")
    return out
