"""Runtimes in reports: latency per runtime and batch size, ratio to eager, output parity.

Trials that set ``eval.runtimes`` / ``eval.latency_batch_sizes`` store figures under keys
such as ``latency_ms@onnxruntime/bs8`` (``ablate.evaluate.runtime_keys``). Here they
become configuration columns with the same names, so ``--x``, ``--sort`` and ``--where``
take them like any other column:

- ``latency_ms@<runtime>/bs<n>``: median over seeds, milliseconds per batch;
- ``x_eager@<runtime>/bs<n>``: that latency over eager's at the same batch size;
- ``parity_max_abs@<runtime>`` (max over seeds), ``parity_agree@<runtime>`` (percent of
  pixels, min over seeds), ``miou@<runtime>`` (percent, mean), ``parity_miou_diff@<runtime>``
  (points, mean), ``parity_ok@<runtime>`` and ``supported@<runtime>`` (1 only if every
  seed's is 1); ``unsupported@<runtime>`` holds the reason a runtime could not run.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ablate.evaluate.runtime_keys import PARITY_MIOU_TOLERANCE, RUNTIMES, parse_metric_key
from ablate.report.plots import new_figure, plain_log_ticks, plain_number
from ablate.report.render import Column, DisplayTable, numeric_column
from ablate.trials.lifecycle import TrialStatus

# figure -> (aggregate over seeds, scale)
AGGREGATES = {
    "latency_ms": ("median", 1.0), "latency_ms_p90": ("median", 1.0),
    "prepare_seconds": ("median", 1.0), "parity_max_abs": ("max", 1.0),
    "parity_max_rel": ("max", 1.0), "parity_agree": ("min", 100.0), "miou": ("mean", 100.0),
    "parity_miou_diff": ("mean", 100.0), "parity_ok": ("min", 1.0), "supported": ("min", 1.0),
}
BATCH_TICKS = 12  # latency by batch size: up to this many batch sizes each get a tick


def runtime_figures(store, trials: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Long frame ``study, config_name, key, figure, runtime, batch_size, value`` of the
    finished ``trials``, and each (study, trial id)'s runtime details from its environment."""
    from ablate.store.read import runtime_metrics  # lazy: loads sqlalchemy

    columns = ["study", "config_name", "key", "figure", "runtime", "batch_size", "value"]
    done = trials[trials["status"] == TrialStatus.DONE] if not trials.empty else trials
    if done.empty:
        return pd.DataFrame(columns=columns), {}
    rows, envs = runtime_metrics(store, list(dict.fromkeys(done["study"])))
    details = {}
    for study, trial_id, text in envs:
        env = json.loads(text) if isinstance(text, str) and text not in ("", "null") else {}
        if isinstance(env, dict) and env.get("runtimes"):
            details[(study, trial_id)] = env["runtimes"]
    configs = dict(zip(zip(done["study"], done["trial_id"]), done["config_name"]))
    records = []
    for study, trial_id, key, value in rows:
        config = configs.get((study, trial_id))
        parsed = ("latency_threads", "", None) if key == "latency_threads" else parse_metric_key(key)
        if config is None or parsed is None:
            continue
        records.append((study, config, key, *parsed, value))
    return pd.DataFrame.from_records(records, columns=columns), details


def add_runtime_columns(store, trials: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """``configs`` with one column per runtime figure (see the module docstring)."""
    long, details = runtime_figures(store, trials)
    long = long[long["figure"].isin(list(AGGREGATES) + ["latency_threads"])]
    asked = long[long["figure"] == "latency_ms"]
    if configs.empty or not ((asked["runtime"] != "eager") | (asked["batch_size"] != 1)).any():
        return configs  # eager at batch 1 only: latency_ms says it all
    trivial = (long["runtime"] == "eager") & long["figure"].isin(["prepare_seconds", "supported"])
    long = long[~trivial]
    wide = {}
    for (study, config, key, figure), group in long.groupby(
            ["study", "config_name", "key", "figure"], sort=False):
        how, scale = AGGREGATES.get(figure, ("median", 1.0))
        wide.setdefault((study, config), {})[key] = float(getattr(group["value"], how)()) * scale
    for row in wide.values():
        for key in list(row):
            parsed = parse_metric_key(key)
            if parsed and parsed[0] == "latency_ms" and parsed[2] is not None \
                    and parsed[1] != "eager":
                eager = row.get(f"latency_ms@eager/bs{parsed[2]}")
                if eager:
                    row[f"x_eager@{parsed[1]}/bs{parsed[2]}"] = row[key] / eager
    config_of = dict(zip(zip(trials["study"], trials["trial_id"]), trials["config_name"]))
    for (study, trial_id), runtimes in details.items():
        config = config_of.get((study, trial_id))
        for runtime, detail in runtimes.items():
            if isinstance(detail, dict) and detail.get("status") == "unsupported" and config:
                wide.setdefault((study, config), {}).setdefault(
                    f"unsupported@{runtime}", detail.get("reason", ""))
    extra = pd.DataFrame.from_dict(wide, orient="index")
    extra = extra[sorted(extra.columns, key=_column_order)]
    index = pd.MultiIndex.from_frame(configs[["study", "config_name"]])
    extra = extra.reindex(index).reset_index(drop=True)
    extra.index = configs.index
    return pd.concat([configs, extra.drop(columns=[c for c in extra if c in configs])], axis=1)


def _column_order(key: str) -> tuple:
    parsed = parse_metric_key(key) or (key, "", None)
    figure, runtime, bs = parsed if parsed[0] != "unsupported" else ("~", key.split("@")[1], None)
    rank = RUNTIMES.index(runtime) if runtime in RUNTIMES else -1
    return (figure, rank, bs or 0)


def runtime_configs(configs: pd.DataFrame) -> list[tuple[str, str, list[int]]]:
    """(study, runtime, batch sizes) that the configurations' columns hold, in runtime order."""
    seen: dict[tuple[str, str], set[int]] = {}
    for column in configs.columns:
        parsed = parse_metric_key(column) if isinstance(column, str) else None
        if not parsed or parsed[0] not in ("latency_ms", "unsupported", "supported"):
            continue
        for study in configs.loc[configs[column].notna(), "study"].unique():
            sizes = seen.setdefault((study, parsed[1]), set())
            if parsed[2] is not None:
                sizes.add(parsed[2])
    ordered = sorted(seen, key=lambda k: (k[0], RUNTIMES.index(k[1])))
    return [(study, runtime, sorted(seen[(study, runtime)])) for study, runtime in ordered]


def runtime_tables(configs: pd.DataFrame) -> list:
    """Per study: one row per configuration x runtime, latency (ms and x eager) per batch
    size, then parity against eager. Empty when no trial measured a runtime other than
    eager or a batch size other than 1."""
    found = runtime_configs(configs)
    tables = []
    for study in dict.fromkeys(s for s, _, _ in found):
        runtimes = [(r, sizes) for s, r, sizes in found if s == study]
        sizes = sorted({b for _, bs in runtimes for b in bs})
        if [r for r, _ in runtimes] == ["eager"] and sizes == [1]:
            continue
        group = configs[configs["study"] == study]
        rows = [(config, runtime) for config in group["config_name"] for runtime, _ in runtimes]
        frame = group.set_index("config_name")

        def per_runtime(figure: str, bs: int | None = None, frame=frame, rows=rows) -> pd.Series:
            tail = f"/bs{bs}" if bs is not None else ""
            return _values(frame, [(c, f"{figure}@{r}{tail}") for c, r in rows])

        cols = [Column("configuration", [c for c, _ in rows], [c for c, _ in rows]),
                Column("runtime", [r for _, r in rows], [r for _, r in rows])]
        for bs in sizes:
            cols.append(numeric_column(f"bs {bs} ms", per_runtime("latency_ms", bs), ".1f"))
            cols.append(numeric_column(f"bs {bs} x eager", per_runtime("x_eager", bs), ".2f"))
        cols.append(numeric_column("max |Δ logit|", per_runtime("parity_max_abs"), ".1e"))
        cols.append(numeric_column("same class %", per_runtime("parity_agree"), ".3f"))
        cols.append(numeric_column("mIoU", per_runtime("miou"), ".2f"))
        cols.append(numeric_column("Δ mIoU", per_runtime("parity_miou_diff"), "+.2f"))
        verdicts = [_verdict(frame, config, runtime) for config, runtime in rows]
        cols.append(Column("parity", verdicts, verdicts))
        threads = sorted({int(t) for t in
                          _values(frame, [(c, "latency_threads") for c, _ in rows]).dropna()})
        notes = [
            "Latency: median ms of one forward pass of the whole batch after warm-up, median "
            "over seeds; x eager: over eager's at the same batch size (below 1 is faster); "
            f"intra-op threads: {', '.join(map(str, threads)) or '-'}.",
            "Parity against eager on the evaluation images: largest absolute logit "
            "difference, share of pixels with the same predicted class, the runtime's mIoU "
            f"and its difference to eager's (points); 'ok' within {100 * PARITY_MIOU_TOLERANCE:g} "
            "points and with the same output shape.",
        ]
        tables.append(DisplayTable(title=f"{study}: runtimes and batch sizes", columns=cols,
                                   notes=notes))
    return tables


def _values(frame: pd.DataFrame, cells: list[tuple[str, str]]) -> pd.Series:
    """The numbers at (configuration, column) cells; NaN where the column is absent."""
    values = [frame.at[config, key] if key in frame else np.nan for config, key in cells]
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")


def _verdict(frame: pd.DataFrame, config: str, runtime: str) -> str:
    reason = frame.at[config, f"unsupported@{runtime}"] if f"unsupported@{runtime}" in frame else None
    if isinstance(reason, str) and reason:
        return f"unsupported: {reason}"
    if runtime == "eager":
        return "reference"
    ok = frame.at[config, f"parity_ok@{runtime}"] if f"parity_ok@{runtime}" in frame else np.nan
    if pd.isna(ok):
        return "-"
    return "ok" if ok == 1.0 else "DIFFERS"


def latency_by_batch_figure(configs: pd.DataFrame):
    """Milliseconds per batch against batch size, one line per configuration x runtime
    (log-log), the shape of a table of inference time by batch size per runtime; a tick
    at each batch size measured, plain numbers on both axes."""
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    styles = {"eager": "-", "compile": "--", "onnxruntime": "-.", "tensorrt": ":"}
    multi_study = configs["study"].nunique() > 1
    for study, runtime, sizes in runtime_configs(configs):
        group = configs[configs["study"] == study]
        for _, row in group.iterrows():
            points = [(bs, row.get(f"latency_ms@{runtime}/bs{bs}")) for bs in sizes]
            points = [(bs, v) for bs, v in points if v is not None and not pd.isna(v)]
            if not points:
                continue
            name = f"{study}: {row['config_name']}" if multi_study else row["config_name"]
            xs, ys = zip(*points)
            ax.plot(xs, ys, styles.get(runtime, "-"), marker="o", label=f"{name} · {runtime}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    sizes = sorted({bs for _, _, bs_list in runtime_configs(configs) for bs in bs_list})
    if 0 < len(sizes) <= BATCH_TICKS:  # a tick at each batch size measured: 1, 2, 4, 8, 16
        ax.set_xticks(sizes, [plain_number(bs) for bs in sizes])
        ax.set_xticks([], minor=True)
    else:
        plain_log_ticks(ax.xaxis)
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency per batch (ms, median)")
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:  # under the axes, where it can hide no point (a slow batch of 1 is top left)
        from ablate.report.figures.style import text_width  # lazy: loads matplotlib

        widest = max(text_width(fig, line.get_label(), 7) for line in ax.lines) + 0.5
        columns = 2 if len(ax.lines) > 4 and 2 * widest <= 6.6 else 1
        rows = -(-len(ax.lines) // columns)
        fig.set_size_inches(7.0, 4.5 + 0.17 * rows)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=columns,
                  frameon=False, borderaxespad=0.0)
    fig.tight_layout()
    return fig


def has_runtime_latency(configs: pd.DataFrame) -> bool:
    """True when some configuration has a latency at a batch size other than 1 or a
    runtime other than eager: the latency-by-batch figure then says something."""
    return any(r != "eager" or sizes != [1] for _, r, sizes in runtime_configs(configs))
