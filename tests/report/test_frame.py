"""trials_frame / config_frame on a store filled by hand (tests/report/fake_store.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ablate.report.frame import TRIAL_COLUMNS, config_frame, epoch_frame, trials_frame
from ablate.store import Store

CONV_PLUS = "conventional[head=deeplabv3plus]"
PROP_PLUS = "proposed[head=deeplabv3plus]"
CONV_V3 = "conventional[head=deeplabv3]"
PROP_V3 = "proposed[head=deeplabv3]"


def pct(value):
    return None if value is None else 100.0 * value


def records_frame(store, studies=None) -> pd.DataFrame:
    """The former per-record implementation, kept here as the reference."""
    records = []
    for study in studies or [s.name for s in store.studies()]:
        records += store.trials(study)
    costs = store.get_costs([r.arch_id for r in records])
    rows = []
    for r in records:
        cost = costs.get(r.arch_id)
        row = {
            "study": r.study, "trial_id": r.trial_id, "name": r.name,
            "config_name": r.config_name, "variant": r.variant, "seed": r.seed,
            "status": r.status, "preemptions": r.preemptions,
            "params": cost.params if cost else None,
            "gflops": cost.gflops if cost else None,
            "flops_convention": cost.flops_convention if cost else None,
            "resolution": "x".join(map(str, cost.resolution)) if cost else None,
            "latency_ms": r.metrics.get("latency_ms"), "miou": pct(r.metrics.get("miou")),
            "pixel_acc": pct(r.metrics.get("pixel_acc")),
        }
        for key, value in r.metrics.items():
            if key not in ("miou", "pixel_acc", "latency_ms") and "/" not in key:
                row.setdefault(key, value)
        for key, value in r.axes.items():
            row[f"axis:{key}"] = value if not isinstance(value, list) else str(value)
        for key, value in (r.published or {}).items():
            row[f"published_{key}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def test_hand_checked_rows(filled):
    frame = trials_frame(filled)
    assert list(frame.columns) == [
        *TRIAL_COLUMNS, "steps", "train_loss", "axis:model.head", "published_params",
        "published_miou", "published_source"]
    assert len(frame) == 10 and list(frame["study"]) == ["mnv3_mini"] * 8 + ["other"] * 2
    row = frame[(frame["config_name"] == CONV_PLUS) & (frame["seed"] == 1)].iloc[0]
    assert row["name"] == f"{CONV_PLUS}/seed=1" and row["variant"] == "conventional"
    assert row["status"] == "done" and row["params"] == 11_727_653 and row["gflops"] == 4.0
    assert row["flops_convention"] == "fvcore-mac" and row["resolution"] == "64x64"
    assert row["latency_ms"] == 12.0 and row["miou"] == pytest.approx(60.0)
    assert row["pixel_acc"] == pytest.approx(90.0) and row["train_loss"] == 0.5
    assert row["axis:model.head"] == "deeplabv3plus"
    assert row["published_params"] == 11_745_643 and row["published_miou"] == 62.24
    assert row["published_source"] == "Kim et al. 2025, Table 1"
    pending = frame[frame["status"] == "pending"].iloc[0]
    assert pending["study"] == "other" and math.isnan(pending["miou"])


def test_fast_path_equals_the_record_path(filled):
    fast = trials_frame(filled)
    slow = records_frame(filled)
    pd.testing.assert_frame_equal(fast, slow[fast.columns], check_dtype=False)
    assert set(fast.columns) == set(slow.columns)


def test_study_order_is_the_order_asked_for(filled):
    frame = trials_frame(filled, ["other", "mnv3_mini", "other"])
    assert list(frame["study"]) == ["other"] * 2 + ["mnv3_mini"] * 8
    pd.testing.assert_frame_equal(frame, records_frame(filled, ["other", "mnv3_mini"])[frame.columns],
                                  check_dtype=False)


def test_keys_reads_only_the_table_figures(filled):
    full = trials_frame(filled)
    lean = trials_frame(filled, keys=())
    assert "train_loss" not in lean.columns
    pd.testing.assert_frame_equal(lean, full[lean.columns])
    with_loss = trials_frame(filled, keys=["train_loss", "model.head"])
    assert "train_loss" in with_loss and "model.head" not in with_loss  # no such figure


def test_per_class_columns_in_percent(filled):
    frame = trials_frame(filled, ["mnv3_mini"], per_class=True)
    row = frame[(frame["config_name"] == PROP_V3) & (frame["seed"] == 0)].iloc[0]
    assert row["iou/background"] == pytest.approx(75.0)
    assert row["iou/circle"] == pytest.approx(45.0) and row["iou/square"] == pytest.approx(45.0)
    assert "iou/background" not in trials_frame(filled)
    lean = trials_frame(filled, ["mnv3_mini"], per_class=True, keys=())
    pd.testing.assert_frame_equal(lean, frame[lean.columns])


def test_empty_store(tmp_path):
    frame = trials_frame(Store(f"sqlite:///{tmp_path / 'e.db'}"))
    assert list(frame.columns) == TRIAL_COLUMNS and frame.empty
    assert config_frame(frame).empty


def test_config_frame_by_hand(filled):
    configs = config_frame(trials_frame(filled, ["mnv3_mini"], per_class=True)).set_index("config_name")
    assert list(configs.index) == [CONV_PLUS, CONV_V3, PROP_PLUS, PROP_V3]
    assert configs.loc[CONV_PLUS, "miou_mean"] == pytest.approx(61.0)
    assert configs.loc[CONV_PLUS, "miou_std"] == pytest.approx(math.sqrt(2.0))
    assert configs.loc[CONV_V3, "miou_std"] == 0.0
    assert configs.loc[CONV_PLUS, "latency_ms"] == 11.0  # median of 10 and 12
    assert list(configs["n"]) == [2, 2, 2, 2]
    assert list(configs["pareto"]) == [True, False, True, True]  # CONV_V3: PROP_PLUS is better
    assert configs.loc[CONV_PLUS, "params_vs_published"] == -17_990
    assert configs.loc[PROP_PLUS, "params_vs_published"] == 0
    assert configs.loc[CONV_V3, "miou_vs_published"] == pytest.approx(58.0 - 62.24)
    assert configs.loc[PROP_V3, "iou/background"] == pytest.approx(76.0)


def test_config_frame_counts_only_finished_trials(filled):
    configs = config_frame(trials_frame(filled, ["other"]))
    assert configs[["config_name", "n", "miou_mean"]].values.tolist() == [["base", 1, 50.0]]


def test_epoch_frame(filled):
    trials = trials_frame(filled, ["mnv3_mini"])
    epochs = epoch_frame(filled, trials[trials["config_name"] == PROP_V3])
    assert list(epochs.columns) == ["study", "trial_id", "config_name", "epoch", "step", "key",
                                    "value"]
    seed0 = epochs[epochs["trial_id"] == trials[(trials["config_name"] == PROP_V3) &
                                                (trials["seed"] == 0)]["trial_id"].iloc[0]]
    assert seed0[["epoch", "step", "key"]].values.tolist() == [
        [1, 2, "train_loss"], [1, 2, "val_miou"], [2, 4, "train_loss"], [2, 4, "val_miou"]]
    assert seed0["value"].tolist() == pytest.approx([1.0, 27.5, 0.5, 55.0])  # val mIoU in %
