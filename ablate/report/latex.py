"""LaTeX tables (booktabs) of a report: configurations and effects, ready for a paper.

``--format latex`` prints the tables (a fragment for ``\\input``; needs
``\\usepackage{booktabs}``) and writes ``OUT/report.tex``, a document that compiles on
its own with pdflatex. Every name from a recipe or the database goes through ``escape``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.report.outputs import write_text
from ablate.report.render import SAME_MIOU, flops_text, fmt_value, pareto_why

# LaTeX's special characters, then the non-ASCII ones the reports use (pdflatex's
# default fonts have no glyph for them in text mode)
_ESCAPES = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "—": "---", "–": "--", "≈": r"$\approx$",
    "✗": r"$\times$", "×": r"$\times$", "★": r"$\star$", "≥": r"$\geq$", "≤": r"$\leq$",
    "α": r"$\alpha$", "\n": " ",
}
MISSING = "--"
PREAMBLE = "\n".join([
    r"\documentclass{article}",
    r"\usepackage[T1]{fontenc}",
    r"\usepackage[utf8]{inputenc}",
    r"\usepackage{booktabs}",
    r"\usepackage{graphicx}",
    r"\usepackage[margin=2cm,landscape]{geometry}",
    # a figure at its own size (they are drawn for a paper's width, text at 7 pt), shrunk
    # only when it is wider than the line or taller than the page (40 effects)
    r"\newsavebox{\ablatebox}",
    r"\newcommand{\ablategraphic}[1]{\sbox{\ablatebox}{\includegraphics{#1}}%",
    r"  \ifdim\wd\ablatebox>\linewidth\relax"
    r"\includegraphics[width=\linewidth,height=0.85\textheight,keepaspectratio]{#1}%",
    r"  \else\ifdim\ht\ablatebox>0.85\textheight\relax"
    r"\includegraphics[width=\linewidth,height=0.85\textheight,keepaspectratio]{#1}%",
    r"  \else\usebox{\ablatebox}\fi\fi}",
])


def escape(text: Any) -> str:
    """Text as LaTeX typesets it literally: ``a_b & 5%`` -> ``a\\_b \\& 5\\%``."""
    parts = str(text).split("->")  # an effect's change "A -> B": an arrow, not "-\\textgreater"
    return r"$\to$".join("".join(_ESCAPES.get(ch, ch) for ch in part) for part in parts)


# Names as lines of at most this many characters, so that a table of long configuration
# names fits the landscape page of report.tex (about 680 pt wide): a name cell is a
# column of lines, broken after "/", ",", "]" or a space, else after "=", "_" or ".".
NAME_WIDTH = 60
NAME_WIDTH_BASELINE = 28  # beside the --baseline columns, whose headers are two lines
_STRONG_BREAK = re.compile(r"(?<=[/,\] ])")
_WEAK_BREAK = re.compile(r"(?<=[=_.])")


def _seams(text: str, width: int | None = None) -> list[str]:
    """``text`` cut after its strong seams (``/ , ]`` or a space) and, in a part longer than
    ``width`` (None: in every part), after its weak ones (``= _ .``)."""
    return [piece for part in _STRONG_BREAK.split(text)
            for piece in (_WEAK_BREAK.split(part) if width is None or len(part) > width
                          else [part]) if piece]


def wrap_name(text: Any, width: int) -> list[str]:
    """``text`` as lines of at most ``width`` characters, broken where a name has
    seams (``a=1/b=2,c`` after the ``/``, then after ``=``), a longer piece cut."""
    text = str(text)
    if len(text) <= width:
        return [text]
    pieces = [piece[i:i + width] for piece in _seams(text, width)
              for i in range(0, len(piece), width)]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1] + piece.rstrip()) > width:
            lines.append("")
        lines[-1] += piece
    return [line.strip() for line in lines if line.strip()]


def breakable(text: Any) -> str:
    """A name inside running text (a caption), escaped, that breaks across lines only
    after the seams ``wrap_name`` breaks at: each piece in an ``\\mbox``, so TeX never
    hyphenates inside a name (``mobile-net_v3`` would read as another name), with
    ``\\allowbreak`` between pieces (a long name would otherwise be hyphenated or run
    past the page)."""
    out = []
    for piece in _seams(str(text)):
        word = piece.rstrip(" ")
        if word:
            out.append(rf"\mbox{{{escape(word)}}}")
        out.append(" " if word != piece else r"\allowbreak{}")
    return "".join(out).removesuffix(r"\allowbreak{}")


def name_cell(text: Any, width: int, mark: str = "") -> str:
    """A table cell of a (long) name: escaped, one line, or a top-aligned column of
    lines (``wrap_name``); ``mark`` (LaTeX) follows its last line."""
    lines = [escape(line) for line in wrap_name(text, width)]
    if len(lines) == 1:
        return lines[0] + mark
    body = r"\\".join(lines)
    return rf"\begin{{tabular}}[t]{{@{{}}l@{{}}}}{body}{mark}\end{{tabular}}"


def _two_lines(header: str) -> str:
    """A right-aligned column's header on two lines (split at its last space), so the
    column is as wide as its numbers: ``Params (M)`` over ``Params`` / ``(M)``."""
    top, sep, bottom = header.rpartition(" ")
    if not sep:
        return header
    return rf"\begin{{tabular}}[b]{{@{{}}r@{{}}}}{top}\\{bottom}\end{{tabular}}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value: Any, spec: str) -> str:
    return MISSING if _missing(value) else format(float(value), spec)


def _bold_rows(values: pd.Series, best: str) -> set[int]:
    """Positions of the best value of a column (every tie), by ``best`` = max or min."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float).reset_index(drop=True)
    if numbers.notna().sum() < 2:  # nothing to single out
        return set()
    target = numbers.max() if best == "max" else numbers.min()
    return set(numbers.index[numbers == target])


def _table(caption: str, label: str, align: str, header: list[str],
           rows: list[list[str]], tight: bool = False) -> str:
    """``tight``: 4 pt between columns instead of 6 (a wide table; local to the float)."""
    lines = [r"\begin{table}[htbp]", r"\centering", r"\small",
             *([r"\setlength{\tabcolsep}{4pt}"] if tight else []),
             rf"\caption{{{caption}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(header) + r" \\",
             r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _label(study: str, what: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in study)
    return f"tab:ablate-{safe}-{what}"


# columns of the configuration table: frame column, header, format, best
CONFIG_NUMBERS = (
    ("n", r"$n$", ",.0f", None),
    ("params", "Params (M)", ".2f", "min"),
    ("gflops", "GFLOPs", ".3f", "min"),
    ("latency_ms", "Latency (ms)", ".2f", "min"),
)


# a Pareto-optimal row's mark: plain, or its lead over what it dominates not shown
# (render.pareto_why says which), as in the terminal table
_STARS = {"": r"$^\star$", "≈": r"$^{\star\approx}$", "✗": r"$^{\star\times}$",
          "?": r"$^{\star?}$"}
# --baseline: frame column, header (the change against the baseline row)
BASELINE_NUMBERS = (
    ("params_delta_pct", r"$\Delta$ Params (\%)"),
    ("gflops_delta_pct", r"$\Delta$ GFLOPs (\%)"),
    ("latency_delta_pct", r"$\Delta$ Latency (\%)"),
    ("miou_delta", r"$\Delta$ mIoU"),
)


def _star(row: pd.Series) -> str:
    if not bool(row.get("pareto")):
        return ""
    mark = row.get("pareto_mark")
    return _STARS.get("" if _missing(mark) else str(mark), _STARS[""])


def _star_notes(group: pd.DataFrame) -> str:
    """A sentence per Pareto-optimal row whose lead is not shown (the terminal's notes)."""
    if "pareto_mark" not in group:
        return ""
    notes = []
    miou = dict(zip(group["config_name"], group["miou_mean"]))
    for _i, row in group.iterrows():
        mark = row.get("pareto_mark")
        if bool(row.get("pareto")) and not _missing(mark) and str(mark):
            if miou.get(row["config_name"]) == miou.get(row["pareto_tie"]):
                notes.append(f" {_STARS.get(str(mark), _STARS[''])} "
                             f"{breakable(row['config_name'])}: {escape(SAME_MIOU)} "
                             f"{breakable(row['pareto_tie'])}.")
                continue
            why = pareto_why(str(mark), row.get("pareto_reason"))
            notes.append(f" {_STARS.get(str(mark), _STARS[''])} {breakable(row['config_name'])}: "
                         f"its mIoU lead over {breakable(row['pareto_tie'])}, which it "
                         f"dominates, is {escape(why)}.")
    return "".join(notes)


def _baseline(group: pd.DataFrame) -> list[str]:
    """The baselines the rows are compared with (``--baseline``), in order."""
    if "baseline" not in group:
        return []
    return list(dict.fromkeys(str(b) for b in group["baseline"] if not _missing(b)))


def config_table(group: pd.DataFrame, alpha: float = 0.05) -> str:
    """One study's configurations: mIoU mean ± std (n seeds), params, GFLOPs, latency;
    the best of each column in bold, Pareto-optimal rows starred; with ``--baseline``
    each row's change against it (costs in percent, mIoU in points with its
    ``1 - alpha`` interval)."""
    group = group.reset_index(drop=True)
    study = str(group["study"].iloc[0])
    baselines = _baseline(group)
    bold = {"miou_mean": _bold_rows(group["miou_mean"], "max")}
    for column, _h, _f, best in CONFIG_NUMBERS:
        if best:
            bold[column] = _bold_rows(group[column], best)
    width = NAME_WIDTH_BASELINE if baselines else NAME_WIDTH
    rows = []
    for i, row in group.iterrows():
        name = name_cell(row["config_name"], width, _star(row))
        miou = _num(row["miou_mean"], ".2f")
        if i in bold["miou_mean"]:
            miou = rf"\textbf{{{miou}}}"
        if not _missing(row["miou_std"]):
            miou += rf" $\pm$ {row['miou_std']:.2f}"
        cells = [name, miou]
        for column, _h, spec, _b in CONFIG_NUMBERS:
            value = row[column] / 1e6 if column == "params" and not _missing(row[column]) \
                else row[column]
            text = _num(value, spec)
            cells.append(rf"\textbf{{{text}}}" if i in bold.get(column, ()) else text)
        if baselines:
            cells += [_num(row[column], "+.2f") for column, _h in BASELINE_NUMBERS]
            low, high = row.get("miou_delta_low"), row.get("miou_delta_high")
            cells.append(MISSING if _missing(low) or _missing(high) else
                         f"[{low:+.2f}, {high:+.2f}]")
        rows.append(cells)
    caption = (
        f"{breakable(study)}: configurations. mIoU in percent on the validation set (one "
        r"confusion matrix over the set), mean $\pm$ sample standard deviation over $n$ "
        r"seeds (no spread with one seed). Params in millions; GFLOPs: "
        f"{escape(flops_text(group))}; latency: median over seeds in ms, batch 1. "
        r"Best of each column in bold; $^\star$: Pareto-optimal in params vs mIoU."
        + _star_notes(group))
    header = ["Configuration", r"mIoU (\%)"] + [h for _c, h, _f, _b in CONFIG_NUMBERS]
    if baselines:
        level = f"{100 * (1 - alpha):.4g}"
        caption += (
            rf" $\Delta$: the change against {', '.join(map(breakable, baselines))}, params, GFLOPs "
            rf"and latency in percent, mIoU in points with its {level}\,\% interval (paired "
            "t over the seeds both ran, else Welch; -- with fewer than two seeds a side).")
        header += [h for _c, h in BASELINE_NUMBERS] + [rf"{level}\,\% CI"]
        header = header[:1] + [_two_lines(h) for h in header[1:]]
    align = "l" + "r" * (len(header) - 1)
    return _table(caption, _label(study, "configs"), align, header, rows, tight=bool(baselines))


def effects_table(group: pd.DataFrame) -> str:
    """One study's effects: axis, change, estimate with its interval, p, n, verdict."""
    group = group.reset_index(drop=True)
    study = str(group["study"].iloc[0])
    level = float(group["ci_level"].iloc[0])
    family = int(group["family"].iloc[0])
    unit = str(group["unit"].iloc[0])
    rows = []
    for _i, row in group.iterrows():
        interval = (MISSING if _missing(row["ci_low"]) else
                    f"[{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]")
        rows.append([name_cell(row["axis"], NAME_WIDTH_BASELINE),
                     name_cell(row["change"], NAME_WIDTH), _num(row["estimate"], "+.2f"),
                     interval, _num(row["p_adj"], ".3g"), _num(row["n"], ",.0f"),
                     escape(row["verdict"])])
    caption = (
        f"{breakable(study)}: effect of each axis on mIoU, in {escape(unit)} (B minus A; "
        r"main effect: mean over the other axes' cells, interaction: difference of "
        rf"differences). Intervals at {100 * level:.4g}\,\% $= 1 - \alpha/{family}$ over "
        f"the {family} effect(s) of this study (Bonferroni); p adjusted likewise. Verdict: "
        "better/worse when the interval excludes 0, equivalent when the "
        r"$1 - 2\alpha/m$ interval (two one-sided tests) lies within the stated margin, "
        "no effect $\\geq d$ when the sequential design's futility stop decided it, else "
        "inconclusive at $n$ seeds.")
    header = ["Axis", "Change", r"$\Delta$ mIoU", f"{100 * level:.4g}\\,\\% CI",
              r"$p$ (adj.)", r"$n$", "Verdict"]
    return _table(caption, _label(study, "effects"), "llrrrrl", header, rows)


def tuned_table(view) -> str:
    """A tuned study's chosen values (``report.tuning.TuningView``): one row per
    configuration, with the score at its draw and its failed draws."""
    keys = list(view.ranges)
    rows = []
    for config in view.scores.index:
        j = view.chosen.get(config)
        values = ["--" if j is None else escape(_short(view.draws[j][k])) for k in keys]
        score = view.scores.loc[config, j] if j is not None else float("nan")
        rows.append([name_cell(config, NAME_WIDTH), *values, MISSING if j is None else str(j),
                     _num(score, ".2f"), str(int(view.scores.loc[config].isna().sum()))])
    caption = breakable(view.study) + escape(
        f": each configuration tuned with the same {view.budget} draws; {view.method}. The "
        "score at the chosen draw is biased upward (the best of several); the effects are "
        "read on the study's own seeds.")
    header = ["Configuration", *(escape(k) for k in keys), "Draw", "Score", "Failed"]
    return _table(caption, _label(view.study, "tuning"), "l" + "r" * (len(keys) + 3),
                  header, rows)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else fmt_value(value)  # true, not True


def report_tables(configs: pd.DataFrame, effects: pd.DataFrame | None = None,
                  tuning: dict | None = None, alpha: float = 0.05) -> list[str]:
    """Per study, its configurations table, then its effects table when there is one,
    and a tuned study's chosen values."""
    tables = []
    if configs.empty:
        return tables
    for study, group in configs.groupby("study", sort=False):
        tables.append(config_table(group, alpha))
        if effects is not None and not effects.empty:
            mine = effects[effects["study"] == study]
            if not mine.empty:
                tables.append(effects_table(mine))
        if tuning and study in tuning:
            tables.append(tuned_table(tuning[study]))
    return tables


def to_latex(configs: pd.DataFrame, effects: pd.DataFrame | None = None,
             tuning: dict | None = None, alpha: float = 0.05) -> str:
    """The tables as a fragment (``\\input`` it; needs ``\\usepackage{booktabs}``)."""
    tables = report_tables(configs, effects, tuning, alpha)
    head = "% ablate report: booktabs tables; \\usepackage{booktabs}\n"
    return head + "\n\n".join(tables) + "\n"


def figure(stem: str, caption: str) -> str:
    """A figure environment around ``<stem>.pdf`` (beside the document) at its own size,
    shrunk to fit the page if need be (``\\ablategraphic`` of the preamble); the label is
    ``fig:ablate-<stem>``."""
    return "\n".join([r"\begin{figure}[htbp]", r"\centering",
                      rf"\ablategraphic{{{stem}.pdf}}",
                      rf"\caption{{{escape(caption)}}}", rf"\label{{{_figure_label(stem)}}}",
                      r"\end{figure}"])


def _figure_label(stem: str) -> str:
    return "fig:ablate-" + "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in stem)


def to_document(configs: pd.DataFrame, effects: pd.DataFrame | None = None,
                figures: list[tuple[str, str]] | tuple = (), tuning: dict | None = None,
                alpha: float = 0.05) -> str:
    """A whole document around the tables (and ``figures``: ``(stem, caption)`` of PDFs
    written beside it), for pdflatex."""
    body = to_latex(configs, effects, tuning, alpha) + "".join(
        "\n" + figure(stem, caption) + "\n" for stem, caption in figures)
    return PREAMBLE + "\n\\begin{document}\n\n" + body + "\n\\end{document}\n"


def write_tex(configs: pd.DataFrame, effects: pd.DataFrame | None, out_dir: str | Path,
              figures: list[tuple[str, str]] | tuple = (), tuning: dict | None = None,
              alpha: float = 0.05) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.tex"
    write_text(path, to_document(configs, effects, figures, tuning, alpha))  # whole or not at all
    return path
