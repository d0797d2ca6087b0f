"""Configuration frames -> display tables -> terminal (rich), Markdown, CSV or JSON text.

A ``DisplayTable`` holds formatted cells plus the raw value behind each cell, so
every output (including the HTML page) shows the same columns with the same digits.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ablate.report.tables import per_class_table
from ablate.trials.lifecycle import TrialStatus
from ablate.trials.names import axis_text, stored_list, value_text

STAR = "★"
NO_SPREAD = "—"  # a spread or interval that one seed cannot give


@dataclass(frozen=True)
class Column:
    header: str
    cells: list[str]
    values: list[Any]  # raw values, for sorting in the HTML page
    numeric: bool = False


@dataclass(frozen=True)
class DisplayTable:
    title: str
    columns: list[Column]
    notes: list[str] = field(default_factory=list)
    description: str = ""
    emphasis: frozenset[tuple[int, int]] = frozenset()  # (row, column) cells in bold

    @property
    def n_rows(self) -> int:
        return len(self.columns[0].cells) if self.columns else 0


# -- number formats -----------------------------------------------------------------------

def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_value(value: Any) -> str:
    """An axis value as the configuration names spell it (``true``, ``[a,b]``; a list from
    the frame's text of it, which stays as stored for what reads it back)."""
    if _missing(value):
        return "-"
    return axis_text(value)


# -- configuration tables -----------------------------------------------------------------

def numeric_column(header: str, series: pd.Series, spec: str, missing: str = "-") -> Column:
    """Numbers formatted with ``spec`` (``",.0f"``, ``"+.2f"``); missing ones as ``missing``."""
    array = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    present = (~np.isnan(array)).tolist()
    fmt = ("{:" + spec + "}").format
    values = [v if ok else None for v, ok in zip(array.tolist(), present)]
    return Column(header, [fmt(v) if ok else missing for v, ok in zip(values, present)], values,
                  numeric=True)


def axis_headers(columns) -> dict[str, str]:
    """``axis:model.head`` -> ``head``; the full key where two axes share a last part."""
    keys = [c.removeprefix("axis:") for c in columns if c.startswith("axis:")]
    shorts = [k.rsplit(".", 1)[-1] for k in keys]
    return {f"axis:{k}": (k if shorts.count(s) > 1 else s) for k, s in zip(keys, shorts)}


def config_columns(group: pd.DataFrame) -> list[Column]:
    """The columns one study's table shows, in order."""
    cols = [
        Column("", _stars(group), [int(bool(p)) for p in group["pareto"]]),
        Column("configuration", [str(v) for v in group["config_name"]], list(group["config_name"])),
    ]
    for column, header in axis_headers(group.columns).items():
        if group[column].notna().any():
            values = list(group[column])
            cols.append(Column(header, [fmt_value(v) for v in values],
                               [None if _missing(v) else fmt_value(v) for v in values]))
    cols += [
        numeric_column("mIoU %", group["miou_mean"], ".2f"),
        numeric_column("± std", group["miou_std"], ".2f", NO_SPREAD),
        numeric_column("n", group["n"], ",.0f"),
        numeric_column("params", group["params"], ",.0f"),
        numeric_column("GFLOPs", group["gflops"], ".3f"),
        numeric_column("latency ms", group["latency_ms"], ".2f"),
    ]
    published = [  # published column, header, difference column, header, formats
        ("published_params", "pub. params", "params_vs_published", "Δ pub. params",
         ",.0f", "+,.0f"),
        ("published_gflops", "pub. GFLOPs", "gflops_vs_published", "Δ pub. GFLOPs",
         ".3f", "+.3f"),
        ("published_miou", "pub. mIoU %", "miou_vs_published", "Δ pub. mIoU",
         ".2f", "+.2f"),
    ]
    for pub, pub_header, diff, diff_header, pub_spec, diff_spec in published:
        if pub in group and pd.to_numeric(group[pub], errors="coerce").notna().any():
            cols.append(numeric_column(pub_header, group[pub], pub_spec))
            cols.append(numeric_column(diff_header, group[diff], diff_spec))
    if "baseline" in group:
        for column, header in (("params_delta_pct", "Δ params %"), ("gflops_delta_pct", "Δ GFLOPs %"),
                               ("latency_delta_pct", "Δ latency %"), ("miou_delta", "Δ mIoU")):
            cols.append(numeric_column(header, group[column], "+.2f"))
        if "miou_delta_low" in group:
            cols.append(Column("Δ mIoU CI", interval_texts(group["miou_delta_low"],
                                                       group["miou_delta_high"]),
                               _raw_values(group["miou_delta_low"]), numeric=True))
    return cols


def _stars(group: pd.DataFrame) -> list[str]:
    marks = group["pareto_mark"] if "pareto_mark" in group else [""] * len(group)
    return [STAR + str(m or "") if p else "" for p, m in zip(group["pareto"], marks)]


def interval_texts(low: pd.Series, high: pd.Series) -> list[str]:
    """``[-3.40, -0.80]``; ``—`` where there is no interval (n < 2)."""
    pairs = zip(pd.to_numeric(low, errors="coerce"), pd.to_numeric(high, errors="coerce"))
    return [NO_SPREAD if math.isnan(lo) or math.isnan(hi) else f"[{lo:+.2f}, {hi:+.2f}]"
            for lo, hi in pairs]


def _raw_values(series: pd.Series) -> list:
    return [None if math.isnan(v) else v for v in pd.to_numeric(series, errors="coerce")]


def flops_text(group: pd.DataFrame) -> str:
    """How the rows' GFLOPs were counted: ``fvcore-mac at 64x64``, ``fvcore-mac at each
    row's resolution (32x32, 48x48)``, or ``not counted (eval.flops = false)``."""
    counted = pd.to_numeric(group["gflops"], errors="coerce").notna().to_numpy()
    if not counted.any():
        return "not counted (eval.flops = false)"
    conventions = list(dict.fromkeys(str(c) for c in group["flops_convention"][counted]
                                     if not _missing(c)))
    resolutions = list(dict.fromkeys(str(r) for r in group["resolution"][counted]
                                     if not _missing(r)))
    text = " / ".join(conventions) or "convention not recorded"
    if len(conventions) > 1:
        text = f"{text} (per row)"
    if len(resolutions) == 1:
        text += f" at {resolutions[0]}"
    elif resolutions:
        text += f" at each row's resolution ({', '.join(resolutions)})"
    if not counted.all():
        text += "; - where not counted (eval.flops = false)"
    return text


def setting_notes(group: pd.DataFrame) -> list[str]:
    """One line per recipe configuration split by setting (``report.settings``)."""
    if "setting" not in group or "recipe_config" not in group:
        return []
    split = group[group["setting"].fillna("").astype(str) != ""]
    notes = []
    for recipe, rows in split.groupby("recipe_config", sort=False):
        settings = sorted(set(str(s) for s in rows["setting"]))
        if len(settings) < 2:  # --where kept one: its name says which
            continue
        how = " ".join(f"--where {part}" for part in settings[0].split(", "))
        notes.append(f"{recipe} holds trials of {len(settings)} different settings "
                     f"({'; '.join(settings)}): each is its own row, never pooled; "
                     f"keep one with {how} (or another value), or re-run the study with "
                     "one setting.")
    return notes


PARETO_UNTESTED = {  # pareto_reason -> why a ★? lead cannot be tested
    "seeds": "not testable with fewer than two seeds a side",
    "spread": "not testable: every seed gave the same difference (no spread), so no "
              "interval can be formed",
}


# a Pareto-optimal row whose mean mIoU equals that of the row it dominates: no lead to test
SAME_MIOU = "no mIoU lead (the same mean mIoU), fewer parameters than"


def pareto_why(mark: str, reason: Any) -> str:
    if mark == "≈":
        return "inconclusive: within seed noise so far"
    if mark == "✗":
        return "reversed on the seeds both ran: there it is worse"
    return PARETO_UNTESTED.get(str(reason), PARETO_UNTESTED["seeds"])


def config_notes(group: pd.DataFrame) -> list[str]:
    notes = [f"{STAR} Pareto-optimal in params vs mIoU. mIoU: one confusion matrix over the "
             f"validation set, mean ± std over seeds. GFLOPs: {flops_text(group)}. "
             "Latency: median ms, batch 1, on the device that trained the trial."]
    notes += setting_notes(group)
    if "published_source" in group:
        sources = sorted({str(s) for s in group["published_source"] if not _missing(s)})
        if sources:
            notes.append(f"pub.: published figures ({', '.join(sources)}); "
                         "Δ pub. = measured - published (mIoU in points).")
    if "baseline" in group:
        names = list(dict.fromkeys(str(b) for b in group["baseline"] if not _missing(b)))
        if names:
            notes.append(f"Δ against {', '.join(names)}: params, GFLOPs and latency in percent, "
                         "mIoU in points; Δ mIoU and its CI come from the same seeds: "
                         "paired t at 1 - alpha (95% by default) over the seeds both ran, "
                         "else Welch over all trials (— with fewer than two a side).")
    if "pareto_mark" in group:
        reasons = group["pareto_reason"] if "pareto_reason" in group else [None] * len(group)
        ties = [(n, m, t, r) for n, m, t, r in zip(group["config_name"], group["pareto_mark"],
                                                   group["pareto_tie"], reasons) if m]
        miou = dict(zip(group["config_name"], group["miou_mean"]))
        for name, mark, tie, reason in ties:
            if miou.get(name) == miou.get(tie):  # it dominates by its parameters alone
                notes.append(f"{STAR}{mark} {name}: {SAME_MIOU} {tie}.")
                continue
            why = pareto_why(mark, reason)
            notes.append(f"{STAR}{mark} {name}: its mIoU lead over {tie}, which it dominates, "
                         f"is {why}.")
    return notes


def failed_notes(trials: pd.DataFrame, study: str) -> list[str]:
    """A line naming the configurations of ``study`` whose every trial failed (no row
    shows them), with the count of failed trials; empty when there are none."""
    if trials.empty or not {"status", "config_name"} <= set(trials.columns):
        return []
    mine = trials[trials["study"] == study]
    failed = mine["status"].astype(str) == str(TrialStatus.FAILED)
    if not failed.any():
        return []
    counts = failed.groupby(mine["config_name"], sort=False).agg(["all", "sum"])
    gone = counts[counts["all"]]
    if gone.empty:
        return []
    names = ", ".join(f"{name} ({_count(int(k), 'failed trial')})"
                      for name, k in zip(gone.index, gone["sum"]))
    return [f"Not shown, every trial failed: {names}; see why with: ablate status {study}"]


def config_tables(configs: pd.DataFrame, trials: pd.DataFrame,
                  descriptions: dict[str, str] | None = None) -> list[DisplayTable]:
    """One table per study, rows in the frame's order."""
    tables = []
    descriptions = descriptions or {}
    for study, group in configs.groupby("study", sort=False):
        tables.append(DisplayTable(
            title=f"{study}: {trial_counts(group, trials)}",
            columns=config_columns(group),
            notes=config_notes(group) + failed_notes(trials, str(study)),
            description=descriptions.get(study, "").strip()))
    return tables


def trial_counts(configs: pd.DataFrame, trials: pd.DataFrame, every_study: bool = False) -> str:
    """"3 configurations, 9 trials (3 failed, 1 unfinished, not shown)": the trials the
    rows pool, then those of the same studies' configurations with a row or with none
    (every trial failed) that no row holds; a configuration a ``--where`` on the table
    left out counts in neither. ``every_study``: also the studies without a row."""
    n_done = int(pd.to_numeric(configs["n"], errors="coerce").fillna(0).sum())
    text = f"{_count(len(configs), 'configuration')}, {_count(n_done, 'trial')}"
    if trials.empty or "status" not in trials:
        return text
    mine = trials if every_study else trials[trials["study"].isin(set(configs["study"]))]
    keys = pd.MultiIndex.from_frame(mine[["study", "config_name"]])
    status = mine["status"].astype(str).to_numpy()
    with_row = keys.isin(pd.MultiIndex.from_frame(configs[["study", "config_name"]]))
    some_done = keys.isin(keys[status == TrialStatus.DONE])  # a --where left its row out
    counted = with_row | ~some_done
    failed = int((counted & (status == TrialStatus.FAILED)).sum())
    unfinished = int((counted & (status != TrialStatus.DONE)
                      & (status != TrialStatus.FAILED)).sum())
    parts = [f"{k} {word}" for k, word in ((failed, "failed"), (unfinished, "unfinished")) if k]
    return text + (f" ({', '.join(parts)}, not shown)" if parts else "")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def per_class_tables(configs: pd.DataFrame) -> list[DisplayTable]:
    """Per study: configurations x classes, IoU % (mean over seeds); best per class in bold.

    Configurations are rows, as in the configurations table: a long name keeps its own
    column (folded, never cut), where as a column header it would be cut short and two
    names that share a prefix could not be told apart.
    """
    tables = []
    for study, group in configs.groupby("study", sort=False):
        table = per_class_table(group)
        if table.empty:
            continue
        names = [str(n) for n in table.columns]
        cols = [Column("configuration", names, names)]
        for name, values in table.iterrows():
            cols.append(numeric_column(str(name), values.reset_index(drop=True), ".1f"))
        best = table.fillna(-1.0).to_numpy().argmax(axis=1)
        tables.append(DisplayTable(
            title=f"{study}: IoU per class (%)", columns=cols,
            notes=["IoU per class from the same confusion matrix as mIoU, mean over seeds; "
                   "the best configuration per class in bold."],
            emphasis=frozenset((int(row), col + 1) for col, row in enumerate(best))))
    return tables


# -- text outputs ---------------------------------------------------------------------------

def md_cell(text: str) -> str:
    if "|" in text or "\\" in text or "\n" in text:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return text


def to_markdown(tables: list[DisplayTable]) -> str:
    """GitHub-flavoured Markdown: a heading, the table, its notes; per table."""
    parts = []
    for table in tables:
        lines = [f"## {md_cell(table.title)}", ""]
        if table.description:
            lines += [md_cell(" ".join(table.description.split())), ""]
        lines.append("| " + " | ".join(md_cell(c.header) for c in table.columns) + " |")
        lines.append("|" + "|".join("---:" if c.numeric else "---" for c in table.columns) + "|")
        columns = []
        for j, col in enumerate(table.columns):
            cells = [md_cell(text) for text in col.cells] if not col.numeric else list(col.cells)
            for row, k in table.emphasis:
                if k == j:
                    cells[row] = f"**{cells[row]}**"
            columns.append(cells)
        lines += ["| " + " | ".join(row) + " |" for row in zip(*columns)]
        if table.notes:
            lines += [""] + table.notes
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


# a name longer than this (a long configuration name) folds in a rich table; shorter ones
# (``model.keep_last_expansion``) stay whole, the columns beside them go to a continued table
NAME_FOLD = 40


def print_rich(tables: list[DisplayTable], console) -> None:
    """Rich tables on ``console``; too wide ones split into column groups that fit.

    Every group repeats the leading text columns (star, configuration, axes), so a
    row stays identifiable. Cell text is never read as rich markup.
    """
    from rich.text import Text  # lazy: loads rich

    for table in tables:
        for part in _fitting_parts(table, console):
            console.print(part)
        for note in table.notes:
            console.print(Text(note))


def _rich_table(table: DisplayTable, columns: list[int], title: str | None):
    from rich.table import Table  # lazy: loads rich
    from rich.text import Text  # lazy: loads rich

    out = Table(title=Text(title) if title else None)
    for j in columns:
        col = table.columns[j]
        widest = max((len(c) for c in col.cells), default=0)
        if col.numeric:  # numbers are never cut
            out.add_column(Text(col.header), justify="right", min_width=widest)
        else:  # text wraps between words; a name (one word) folds only beyond NAME_FOLD
            word = max((len(w) for c in col.cells for w in c.split()), default=0)
            out.add_column(Text(col.header), overflow="fold",
                           min_width=min(max(word, min(widest, 16)), NAME_FOLD))
    for row in range(table.n_rows):
        out.add_row(*(Text(table.columns[j].cells[row],
                           style="bold" if (row, j) in table.emphasis else "") for j in columns))
    return out


def _rendered_width(renderable, width: int) -> int:
    """The widest line rich draws for ``renderable`` on a ``width``-column terminal."""
    from rich.cells import cell_len  # lazy: loads rich
    from rich.console import Console  # lazy: loads rich

    probe = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    probe.print(renderable, crop=False)
    return max((cell_len(line) for line in probe.file.getvalue().splitlines()), default=0)


def _fitting_parts(table: DisplayTable, console) -> list:
    lead = 0
    while lead < len(table.columns) and not table.columns[lead].numeric:
        lead += 1
    ident, groups = list(range(lead)), [[]]
    for j in range(lead, len(table.columns)):
        wider = _rich_table(table, ident + groups[-1] + [j], None)
        if groups[-1] and _rendered_width(wider, console.width) > console.width:
            groups.append([])
        groups[-1].append(j)
    titles = [table.title] + [f"{table.title} (continued)"] * (len(groups) - 1)
    return [_rich_table(table, ident + group, title) for group, title in zip(groups, titles)]


def to_csv(frame: pd.DataFrame) -> str:
    """The frame as CSV, booleans spelled ``true``/``false`` and list axes as the
    configuration names spell them, as in the other formats."""
    return text_booleans(shown_lists(frame)).to_csv(index=False)


def shown_lists(frame: pd.DataFrame, as_text: bool = True) -> pd.DataFrame:
    """``axis:`` columns' lists as the configuration names spell them
    (``[head.aspp.convs.1]``, not the frame's ``['head.aspp.convs.1']``), or (``as_text``
    false, for JSON) as the lists themselves; the frame itself (what ``--where`` and the
    analysis read) as it was."""
    out = frame
    for j, (name, series) in enumerate(frame.items()):
        if not (isinstance(name, str) and name.startswith("axis:")) or series.dtype.kind in "biufcmM":
            continue  # numbers, booleans and times hold no list
        lists = [stored_list(v) for v in series]
        if all(v is None for v in lists):
            continue
        if out is frame:
            out = frame.copy()
        out.isetitem(j, pd.Series([v if listed is None else value_text(listed) if as_text
                                   else listed for v, listed in zip(series, lists)],
                                  index=frame.index, dtype=object))
    return out


def text_booleans(frame: pd.DataFrame) -> pd.DataFrame:
    """Booleans as ``true``/``false`` text (pandas' CSV writes Python's ``True``); the
    other values, and the columns that hold no boolean, as they were."""
    out = frame
    for j, (_name, series) in enumerate(frame.items()):
        if series.dtype.kind == "b":  # numpy's bool, or pandas' nullable boolean
            values = [None if v is pd.NA else fmt_value(bool(v)) for v in series]
        elif series.dtype == object and any(isinstance(v, bool | np.bool_) for v in series):
            values = [fmt_value(bool(v)) if isinstance(v, bool | np.bool_) else v
                      for v in series]
        else:
            continue
        if out is frame:
            out = frame.copy()
        out.isetitem(j, pd.Series(values, index=frame.index, dtype=object))
    return out


def to_json(frame: pd.DataFrame) -> str:
    """Records, one object per row, list axes as JSON arrays (``["head.aspp.convs.1"]``:
    a reader tells ``["1"]`` from ``[1]``); no rows is ``[]`` (pandas writes ``[`` and ``]``
    on lines of their own with an empty one between)."""
    return "[]" if frame.empty else shown_lists(frame, as_text=False).to_json(
        orient="records", indent=2)
