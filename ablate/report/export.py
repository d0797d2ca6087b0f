"""Per-trial tables as files: CSV, Parquet (needs pyarrow) or Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import extras
from ablate.errors import UserInputError
from ablate.report.frame import trials_frame
from ablate.report.outputs import write_atomic
from ablate.report.render import fmt_value, md_cell
from ablate.report.tables import filter_rows, parse_where
from ablate.store.read import study_descriptions


def require_studies(store, studies, prefix: str = "") -> dict[str, str]:
    """Each study's description; a study the database does not hold is one line
    (``prefix``: the option or argument that named it, e.g. ``"--study: "``) naming the
    database and the studies it holds, as ``ablate status`` says it."""
    known = study_descriptions(store)
    for study in studies:
        if study not in known:
            raise store.unknown_study(study, known, prefix)
    return known


def export_frame(store, study: str, where: list[str] | tuple[str, ...] = (),
                 prefix: str = "") -> pd.DataFrame:
    """Every trial of ``study`` with every final figure, per-class IoU included
    (``prefix``: what named the study, in the line refusing an unknown one)."""
    require_studies(store, [study], prefix)
    # every final figure: per class and per runtime and batch size too
    frame = trials_frame(store, [study], per_class=True, runtimes=True, settings=True)
    return filter_rows(frame, parse_where(where))


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    if extras.missing("parquet"):
        raise UserInputError(extras.needs("--parquet", "parquet"))
    safe = arrow_safe(frame)
    write_atomic(path, lambda tmp: safe.to_parquet(tmp, index=False))  # whole or not at all


def arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of mixed Python types (an axis of 3, "all" and [1, 2]) become text, a
    boolean among them ``true``/``false`` as the other formats spell it."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype != object:
            continue
        kinds = {type(v) for v in out[column] if not _missing(v)}
        if len(kinds) > 1:
            out[column] = [None if _missing(v) else fmt_value(v) for v in out[column]]
        else:
            out[column] = [None if _missing(v) else v for v in out[column]]
    return out


def to_markdown_text(frame: pd.DataFrame, title: str) -> str:
    """One Markdown table, a row per trial; numbers without spurious digits."""
    header = "| " + " | ".join(md_cell(str(c)) for c in frame.columns) + " |"
    align = "|" + "|".join("---:" if frame[c].dtype.kind in "fiu" else "---"
                           for c in frame.columns) + "|"
    rows = ["| " + " | ".join(md_cell(_cell(v)) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([f"# {md_cell(title)}", "", header, align, *rows]) + "\n"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        value = float(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)
