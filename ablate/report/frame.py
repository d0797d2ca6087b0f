"""Database -> pandas: one row per trial, then one row per configuration."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ablate.evaluate.runtime_keys import parse_metric_key
from ablate.report.pareto import pareto_mask
from ablate.report.settings import axis_column, split_settings
from ablate.store import read
from ablate.trials.lifecycle import TrialStatus

TRIAL_COLUMNS = [
    "study", "trial_id", "name", "config_name", "variant", "seed", "status", "preemptions",
    "params", "gflops", "flops_convention", "resolution", "latency_ms", "miou", "pixel_acc",
]
PERCENT_METRICS = ("miou", "pixel_acc")  # stored as fractions, reported in percent
CORE_METRICS = ("latency_ms", "miou", "pixel_acc")  # the figures every table needs
# where a configuration holds trials of several settings (report.settings): the recipe's
# name and what tells each setting apart
SETTING_COLUMNS = ("recipe_config", "setting")


def trials_frame(store, studies: list[str] | None = None, *, per_class: bool = False,
                 keys: list[str] | tuple[str, ...] | None = None,
                 runtimes: bool = False, tuning: bool = False,
                 settings: bool = False) -> pd.DataFrame:
    """Every trial with its final figures; mIoU and pixel accuracy in percent.

    Columns: ``TRIAL_COLUMNS``, then every other final figure without a ``/`` in its
    key (sorted), ``axis:<dotted key>`` per recipe axis and ``published_<key>`` per
    published figure. With ``per_class``, also ``iou/<class>`` in percent.
    ``keys`` reads only these final figures besides mIoU, pixel accuracy and
    latency (faster: no scan of every metric row). With ``runtimes``, also the figures
    per runtime and batch size (``latency_ms@<runtime>/bs<n>``), which reports aggregate
    per configuration themselves (``ablate.report.runtimes``).

    A tuned study's tuning trials ([tune]) are not among them: ``tuning`` reads those
    instead, with their ``tuning_draw`` (``ablate.report.tuning``).

    With ``settings`` (what reports and exports read), a configuration name that holds
    trials of different settings (another spec but the seed, or other user code) is
    split, one name per setting (``ablate.report.settings``), so ``config_frame`` never
    pools different experiments. Without it the names are the recipe's, as the run loop
    (``--until-decided``) matches them against its own trials.

    Plain queries pivoted with numpy, no per-trial Python objects: 100,000 trials
    load in one to two seconds.
    """
    with read.no_gc():
        frame = _trials_frame(store, studies, per_class, keys, runtimes, tuning, settings)
    return frame


def _trials_frame(store, studies, per_class, keys, runtimes=False,
                  tuning=False, settings=False) -> pd.DataFrame:
    names = list(dict.fromkeys(studies)) if studies else None
    joined = None if keys is None else list(dict.fromkeys([*CORE_METRICS, *keys]))
    base = read.trial_rows(store, names, joined or (), tuning=tuning)
    if base.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS + (["tuning_draw"] if tuning else []))
    if not base["pk"].is_unique:  # a figure stored twice: take the long road, last one wins
        base = read.trial_rows(store, names, tuning=tuning)
        joined = None
    study = base["study_pk"].map(read.study_names(store))
    if names is not None:  # the order asked for, then insertion order within a study
        order = np.argsort(study.map({name: i for i, name in enumerate(names)}).to_numpy(),
                           kind="stable")
        base, study = base.iloc[order].reset_index(drop=True), study.iloc[order].reset_index(drop=True)
    if joined is None:
        metrics = _wide_metrics(base["pk"], read.final_metrics(
            store, names, per_class=per_class, runtimes=runtimes))
    else:
        metrics = {key: base[f"metric:{key}"].astype(float) for key in joined
                   if key in CORE_METRICS or base[f"metric:{key}"].notna().any()}
        if per_class or runtimes:
            metrics.update(_wide_metrics(base["pk"], read.final_metrics(
                store, names, per_class=per_class, keys=[], runtimes=runtimes)))

    def metric(key: str) -> pd.Series:
        if key in metrics:
            return metrics.pop(key)
        return pd.Series(np.nan, index=base.index)

    cost = _costs(store).reindex(base["arch_id"]).reset_index(drop=True)
    frame = pd.DataFrame({
        "study": study, "trial_id": base["trial_id"], "name": base["name"],
        "config_name": base["config_name"], "variant": base["variant"], "seed": base["seed"],
        "status": base["status"], "preemptions": base["preemptions"].fillna(0).astype(int),
        "params": cost["params"],
        "gflops": cost["gflops"],
        "flops_convention": cost["flops_convention"],
        "resolution": cost["resolution"],
        "latency_ms": metric("latency_ms"),
        "miou": 100.0 * metric("miou"),
        "pixel_acc": 100.0 * metric("pixel_acc"),
    })
    if tuning:
        frame["tuning_draw"] = base["tuning_draw"].astype(int)
    extras = {k: v for k, v in metrics.items()
              if ("/" not in k or (runtimes and parse_metric_key(k) is not None))
              and k not in frame.columns}
    per_class_cols = {k: 100.0 * v for k, v in metrics.items() if k.startswith("iou/")}
    parts = [frame, pd.DataFrame(extras, index=base.index)[sorted(extras)],
             _json_columns(base["axes"], "axis:", stringify_lists=True),
             _json_columns(base["published"], "published_", stringify_lists=False)]
    if per_class_cols:
        parts.append(pd.DataFrame(per_class_cols, index=base.index)[sorted(per_class_cols)])
    frame = pd.concat(parts, axis=1)
    if settings and not tuning:  # a tuning trial's draws differ on purpose
        frame = split_settings(store, frame, base["pk"], names)
    return frame


def _costs(store) -> pd.DataFrame:
    """The cost cache by arch id, with ``gflops`` and ``resolution`` ("512x1024")."""
    costs = read.costs(store)
    costs["gflops"] = costs["flops"] / 1e9
    costs["resolution"] = [f"{h}x{w}" for h, w in zip(costs["resolution_h"], costs["resolution_w"])]
    return costs.set_index("arch_id")


def epoch_frame(store, trials: pd.DataFrame,
                keys: tuple[str, ...] = ("train_loss", "val_miou")) -> pd.DataFrame:
    """Per-epoch figures of ``trials``: ``study, trial_id, config_name, epoch, step, key, value``.

    Validation mIoU and pixel accuracy in percent, like the final figures.
    """
    columns = ["study", "trial_id", "config_name", "epoch", "step", "key", "value"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    long = read.epoch_metrics(store, list(dict.fromkeys(trials["study"])), list(keys))
    long = long.merge(trials[["study", "trial_id", "config_name"]], on=["study", "trial_id"])
    percent = long["key"].isin([f"val_{k}" for k in PERCENT_METRICS])
    long.loc[percent, "value"] = long.loc[percent, "value"] * 100.0
    return long[columns]


def _wide_metrics(pks: pd.Series, long: pd.DataFrame) -> dict[str, pd.Series]:
    """``pk, key, value`` rows -> one float column per key, aligned with ``pks``."""
    if long.empty:
        return {}
    rows = pd.Index(pks).get_indexer(long["pk"])
    if (rows < 0).any():  # figures of trials not read (a tuned study's other phase)
        long, rows = long[rows >= 0], rows[rows >= 0]
    codes, keys = pd.factorize(long["key"])
    table = np.full((len(pks), len(keys)), np.nan)
    table[rows, codes] = long["value"].to_numpy(dtype=float)  # a repeated key: the last wins
    return {key: pd.Series(table[:, i], index=pks.index) for i, key in enumerate(keys)}


def _json_columns(texts: pd.Series, prefix: str, *, stringify_lists: bool) -> pd.DataFrame:
    """JSON objects (as text) -> one column per key; each distinct text parsed once."""
    codes, uniques = pd.factorize(texts, use_na_sentinel=True)
    parsed = []
    for text in uniques:
        value = json.loads(text) if isinstance(text, str) else text
        value = value if isinstance(value, dict) else {}
        if stringify_lists:
            value = {k: str(v) if isinstance(v, list) else v for k, v in value.items()}
        parsed.append({f"{prefix}{k}": v for k, v in value.items()})
    table = pd.DataFrame.from_records(parsed) if parsed else pd.DataFrame()
    if table.empty:
        return pd.DataFrame(index=texts.index)
    if stringify_lists:  # axes: an epoch count of 2 stays 2 beside a study without it
        for column in table.columns[table.dtypes.map(lambda d: d.kind == "f").to_numpy()]:
            table[column] = axis_column([p.get(column) for p in parsed], table.index)
    if (codes < 0).any():  # NULL texts (code -1) take an all-missing row
        table.loc[len(table)] = None
        codes = np.where(codes < 0, len(table) - 1, codes)
    return table.iloc[codes].set_axis(texts.index, axis=0)


def config_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count over seeds per configuration; Pareto marked.

    ``miou_std`` is NaN for a configuration with one finished seed.

    A configuration is optimal when no other has both fewer parameters and a higher
    mean mIoU (or equal on one and better on the other). Per-class ``iou/<class>``
    columns, when the trials have them, become their mean over seeds. Published
    figures come with the measured minus published difference: ``params_vs_published``
    (exact), ``gflops_vs_published`` and ``miou_vs_published`` (points).
    """
    done = trials[trials["status"] == TrialStatus.DONE]
    if done.empty and not set(CONFIG_INPUTS) <= set(done.columns):
        return pd.DataFrame(columns=["study", "config_name", "variant", "n", "miou_mean",
                                     "miou_std", "params", "gflops", "latency_ms", "pareto"])
    # no trial done yet: the same columns as with some (a CSV's header does not change)
    keys = ["study", "config_name"]
    axis_cols = [c for c in done.columns if c.startswith(("axis:", "published_"))
                 or c in SETTING_COLUMNS]
    grouped = done.groupby(keys, sort=False)
    out = grouped.agg(
        variant=("variant", "first"), n=("seed", "count"),
        miou_mean=("miou", "mean"), miou_std=("miou", "std"),
        pixel_acc=("pixel_acc", "mean"), params=("params", "first"), gflops=("gflops", "first"),
        flops_convention=("flops_convention", "first"), resolution=("resolution", "first"),
        latency_ms=("latency_ms", "median"),
        # frames built elsewhere (tests, notebooks) may lack the count: then so does this
        **({"preemptions": ("preemptions", "sum")} if "preemptions" in done else {}),
    ).reset_index()
    if axis_cols:
        firsts = grouped[axis_cols].first().reset_index(drop=True)
        out = pd.concat([out, firsts], axis=1)
    class_cols = [c for c in done.columns if c.startswith("iou/")]
    if class_cols:
        out = pd.concat([out, grouped[class_cols].mean().reset_index(drop=True)], axis=1)
    # one seed has no spread to show: NaN ("—", null in JSON), never 0
    out["pareto"] = pareto_mask(out[["params", "miou_mean"]].astype(float).values, (False, True))
    for measured, published, diff in PUBLISHED_DIFFS:
        if published in out:
            out[diff] = out[measured] - pd.to_numeric(out[published], errors="coerce")
    return out


# the columns of a trials frame (``trials_frame``) that a configuration's row is built from
CONFIG_INPUTS = ("study", "config_name", "variant", "seed", "miou", "pixel_acc", "params",
                 "gflops", "flops_convention", "resolution", "latency_ms")

# measured column, published column, difference column (measured - published)
PUBLISHED_DIFFS = (
    ("params", "published_params", "params_vs_published"),
    ("gflops", "published_gflops", "gflops_vs_published"),
    ("miou_mean", "published_miou", "miou_vs_published"),
)
