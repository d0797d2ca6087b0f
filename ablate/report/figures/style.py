"""What the effect figures share: sizes for a paper, a colour-blind safe palette, verdict
marks that do not rely on colour, text measured as drawn, and long names as short codes.

Sizes: ``TEXT_WIDTH`` is the full text width of a two-column paper (CVPR/ICCV 6.875 in;
a ``figure*``, or ``\\linewidth`` of a one-column paper's 5.5 in at 80 %), and
``COLUMN_WIDTH`` one of its columns (3.25 in). Text is 7 pt at that size.

Colours: Okabe and Ito's palette (*Color Universal Design*, 2008), told apart with every
common colour-vision deficiency; the diverging map is ColorBrewer's RdBu (Brewer,
Harrower et al.), also colour-blind safe. Verdicts differ by marker shape and by their
written text as well as by colour.
"""

from __future__ import annotations

import functools
import math
import textwrap
from dataclasses import dataclass

TEXT_WIDTH = 6.875  # inches: the text of a two-column paper (a figure* there)
COLUMN_WIDTH = 3.25  # inches: one column of it
FONT = 7.0  # points
DPI = 120  # the PNG's resolution (the HTML page); LaTeX includes the PDF
LINE = FONT * 1.45 / 72.0  # inches per line of text

# Okabe-Ito, in the order a plot takes them
OKABE_ITO = {
    "blue": "#0072B2", "vermillion": "#D55E00", "bluish green": "#009E73",
    "orange": "#E69F00", "reddish purple": "#CC79A7", "sky blue": "#56B4E9",
    "yellow": "#F0E442", "black": "#000000",
}
PALETTE = [OKABE_ITO[k] for k in ("blue", "vermillion", "bluish green", "orange",
                                  "reddish purple", "sky blue", "black")]  # yellow: too pale
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DIVERGING = "RdBu"  # ColorBrewer: red below 0, blue above
GREY = "#6E6E6E"


@dataclass(frozen=True)
class Mark:
    """How a verdict is drawn: marker shape, colour, and whether the marker is filled."""

    name: str
    marker: str
    color: str
    filled: bool


FUTILE = "no effect ≥ d (futility stop)"
MARKS = {
    "better": Mark("better", ">", OKABE_ITO["blue"], True),
    "positive": Mark("positive", ">", OKABE_ITO["blue"], True),
    "worse": Mark("worse", "<", OKABE_ITO["vermillion"], True),
    "negative": Mark("negative", "<", OKABE_ITO["vermillion"], True),
    "equivalent": Mark("equivalent", "D", OKABE_ITO["bluish green"], True),
    "inconclusive": Mark("inconclusive", "o", "#000000", False),
    # a sequential study's futility stop: weaker than equivalent, read on another interval
    FUTILE: Mark(FUTILE, "d", OKABE_ITO["bluish green"], False),
}


def mark(verdict: str) -> Mark:
    """The mark of a verdict by its first word (``equivalent (±1)``, ``inconclusive
    (n=3)``; ``no effect ≥ 2 (80% power)``: the futility stop's); any other verdict is
    drawn as inconclusive is."""
    if str(verdict).startswith("no effect"):
        return MARKS[FUTILE]
    return MARKS.get(str(verdict).split(" ")[0], MARKS["inconclusive"])


def new_figure(width: float, height: float = 1.0):
    from matplotlib.figure import Figure  # lazy: loads matplotlib

    return Figure(figsize=(width, height), dpi=DPI)


def draw_heading(fig, title: list[str], notes: list[str], width: float, height: float,
                 margin: float) -> None:
    """The title's lines in bold, then the notes' in grey, down from the top margin
    (sizes in inches)."""
    y = height - margin
    for line in title:
        y -= LINE * 1.15
        fig.text(margin / width, y / height, line, fontsize=FONT + 1, weight="bold")
    for line in notes:
        y -= LINE
        fig.text(margin / width, y / height, line, fontsize=FONT, color="#333333")


def text_width(fig, text: str, size: float = FONT, weight: str = "normal") -> float:
    """Width of ``text`` in inches as ``fig`` draws it (the same text is measured once:
    a figure of 40 rows asks for a few hundred widths, at about a millisecond each)."""
    return _width(text, size, weight, fig.dpi) if text else 0.0


@functools.lru_cache(maxsize=8192)
def _width(text: str, size: float, weight: str, dpi: float) -> float:
    width, _h, _d = _measure(dpi).get_text_width_height_descent(
        text, _font(size, weight), ismath=False)
    return width / dpi


@functools.lru_cache(maxsize=8)
def _measure(dpi: float):
    """A renderer to measure text at ``dpi`` with (its canvas size plays no part: one
    serves every figure; a new one for each string cost a tenth of a millisecond)."""
    from matplotlib.backends.backend_agg import RendererAgg  # lazy: loads matplotlib

    return RendererAgg(1, 1, dpi)


@functools.lru_cache(maxsize=64)
def _font(size: float, weight: str):
    from matplotlib.font_manager import FontProperties  # lazy: loads matplotlib

    return FontProperties(size=size, weight=weight)


def wrap(fig, text: str, width: float, size: float = FONT, indent: str = "",
         weight: str = "normal") -> list[str]:
    """``text`` broken into lines no wider than ``width`` inches (at word boundaries;
    a word longer than a line is cut)."""
    if not text:
        return [""]
    chars = max(8, int(len(text) * width / max(text_width(fig, text, size, weight), 1e-6)))
    while True:
        lines = textwrap.wrap(text, chars, subsequent_indent=indent, break_on_hyphens=False)
        if chars <= 8 or all(text_width(fig, line, size, weight) <= width for line in lines):
            return lines or [""]
        chars -= 2


def short_labels(fig, labels: list[str], codes: list[str], budget: float,
                 size: float = FONT, two_lines: bool = False
                 ) -> tuple[list[str], list[tuple[str, str]]]:
    """Labels wider than ``budget`` inches become their code (``E3``); returns the shown
    labels and the key, ``(code, label)`` for each one shortened. With ``two_lines``, an
    ``axis: change`` label that fits on two lines breaks after the colon instead."""
    shown, key = [], []
    for label, code in zip(labels, codes):
        head, colon, tail = label.partition(": ")
        if text_width(fig, label, size) <= budget:
            shown.append(label)
        elif two_lines and colon and max(text_width(fig, head + ":", size),
                                         text_width(fig, tail, size)) <= budget:
            shown.append(f"{head}:\n{tail}")
        else:
            shown.append(code)
            key.append((code, label))
    return shown, key


def effect_label(axis: str, change: str, short_axes: dict[str, str] | None = None,
                 with_axis: bool = True) -> str:
    """``axis: change`` with arrows and crosses as glyphs, dotted keys shortened (the
    change alone without ``with_axis``)."""
    names = [(short_axes or {}).get(part, part) for part in axis.split(" x ")]
    change = change.replace(" -> ", " → ").replace(") x (", ") × (")
    return f"{' × '.join(names)}: {change}" if with_axis else change


def short_axis_names(axes: list[str]) -> dict[str, str]:
    """``model.keep_last_expansion`` -> ``keep_last_expansion`` unless two axes share it."""
    parts = {a for axis in axes for a in axis.split(" x ")}
    last = [p.rsplit(".", 1)[-1] for p in parts]
    return {p: (s if last.count(s) == 1 else p) for p, s in zip(parts, last)}


def level_text(level: float) -> str:
    """``0.98333`` -> ``98.33%``; as many digits as it takes not to read 100%."""
    for digits in range(4, 9):
        text = f"{100 * level:.{digits}g}"
        if text != "100":
            return text + "%"
    return f"{100 * level}%"


def verdict_text(verdict: str, n: int) -> str:
    """The verdict without the ``n=`` a figure shows in its own column:
    ``inconclusive (n=3)`` -> ``inconclusive``, ``(n=3, zero spread)`` -> ``(zero spread)``."""
    text = str(verdict).replace(f"(n={n}, ", "(").replace(f" (n={n})", "")
    return text


def percent_text(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:+.0f}%" if abs(value) >= 10 else f"{value:+.1f}%"


def signed_text(value: float, spec: str = "+.2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec).replace("-", "−")
