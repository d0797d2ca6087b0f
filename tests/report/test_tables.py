"""Baseline deltas, --where, --sort and the per-class table, on frames built by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ablate.errors import UserInputError
from ablate.report.tables import (
    add_baseline,
    canonical,
    filter_rows,
    parse_where,
    per_class_table,
    sort_rows,
)


def configs() -> pd.DataFrame:
    """Two variants x two heads, one other study; the figures of tests/report/fake_store.py."""
    rows = [
        ("s", "conventional[head=plus]", "conventional", "plus", 11_727_653, 4.0, 11.0, 61.0),
        ("s", "conventional[head=v3]", "conventional", "v3", 11_000_000, 3.0, 8.0, 58.0),
        ("s", "proposed[head=plus]", "proposed", "plus", 5_632_933, 2.0, 5.0, 59.0),
        ("s", "proposed[head=v3]", "proposed", "v3", 5_000_000, 1.5, 4.0, 56.0),
        ("t", "base", "base", None, 1_000, None, 1.0, 50.0),
    ]
    frame = pd.DataFrame(rows, columns=["study", "config_name", "variant", "axis:model.head",
                                        "params", "gflops", "latency_ms", "miou_mean"])
    frame["iou/cat"] = [70.0, 60.0, 65.0, 50.0, math.nan]
    frame["axis:model.expansion"] = ["[1, 2]", "[1, 2]", 3, "all", None]
    return frame


def test_baseline_variant_is_matched_on_the_axes():
    out = add_baseline(configs(), "conventional").set_index("config_name")
    assert out.loc["proposed[head=plus]", "baseline"] == "conventional[head=plus]"
    assert out.loc["proposed[head=v3]", "baseline"] == "conventional[head=v3]"
    # (5,632,933 - 11,727,653) / 11,727,653 = -51.9688 %; (2 - 4) / 4; (5 - 11) / 11; 59 - 61
    assert out.loc["proposed[head=plus]", "params_delta_pct"] == pytest.approx(-51.968795461)
    assert out.loc["proposed[head=plus]", "gflops_delta_pct"] == -50.0
    assert out.loc["proposed[head=plus]", "latency_delta_pct"] == pytest.approx(-54.5454545)
    assert out.loc["proposed[head=plus]", "miou_delta"] == -2.0
    # (5,000,000 - 11,000,000) / 11,000,000; (1.5 - 3) / 3; (4 - 8) / 8; 56 - 58
    assert out.loc["proposed[head=v3]", ["params_delta_pct", "gflops_delta_pct",
                                         "latency_delta_pct", "miou_delta"]].tolist() == \
        pytest.approx([-54.5454545, -50.0, -50.0, -2.0])
    assert out.loc["conventional[head=v3]", "miou_delta"] == 0.0
    # the other study has no baseline: no deltas
    assert pd.isna(out.loc["base", "baseline"]) and math.isnan(out.loc["base", "miou_delta"])


def test_baseline_by_configuration_name():
    out = add_baseline(configs(), "conventional[head=plus]").set_index("config_name")
    assert set(out["baseline"].dropna()) == {"conventional[head=plus]"}
    # (11,000,000 - 11,727,653) / 11,727,653 = -727,653 / 11,727,653 = -6.2046 %
    assert out.loc["conventional[head=v3]", "params_delta_pct"] == pytest.approx(-6.204591831)
    assert out.loc["proposed[head=v3]", "miou_delta"] == -5.0


def test_unknown_baseline_names_the_choices():
    with pytest.raises(UserInputError, match=r"--baseline: no configuration or variant 'nope'; "
                                             r"known: base, conventional, "):
        add_baseline(configs(), "nope")


def test_zero_baseline_cost_gives_nan_not_inf():
    frame = configs()
    frame.loc[0, "gflops"] = 0.0
    out = add_baseline(frame, "conventional[head=plus]")
    assert math.isnan(out.loc[1, "gflops_delta_pct"])


@pytest.mark.parametrize("where,names", [
    (["model.head=v3"], ["conventional[head=v3]", "proposed[head=v3]"]),
    (["model.head!=v3"], ["conventional[head=plus]", "proposed[head=plus]", "base"]),
    (["variant=proposed", "head=plus"], ["proposed[head=plus]"]),  # as the header names it
    (["head!=v3", "expansion=3"], ["proposed[head=plus]"]),
    (["variant=proposed", "nope=plus"], []),  # no such column: see the error test
    (["params=5000000"], ["proposed[head=v3]"]),  # 5000000 == 5_000_000.0
    (["model.expansion=[1, 2]"], ["conventional[head=plus]", "conventional[head=v3]"]),
    (["model.expansion=3"], ["proposed[head=plus]"]),
    (["model.expansion=all", "miou_mean=56"], ["proposed[head=v3]"]),
])
def test_where(where, names):
    if where == ["variant=proposed", "nope=plus"]:
        with pytest.raises(UserInputError, match="--where: no column 'nope'; columns: study, "):
            filter_rows(configs(), parse_where(where))
        return
    assert filter_rows(configs(), parse_where(where))["config_name"].tolist() == names


def test_a_short_name_several_axes_end_in_is_refused_with_their_full_names():
    frame = configs().assign(**{"axis:train.head": "x"})
    message = ("'head' is short for several axes: model.head, train.head; give the full name")
    with pytest.raises(UserInputError, match=f"^--where: {message}$"):
        filter_rows(frame, parse_where(["head=v3"]))
    with pytest.raises(UserInputError, match=f"^--sort: {message}$"):
        sort_rows(frame, "head", False)
    kept = filter_rows(frame, parse_where(["model.head=v3"]))  # the full name still works
    assert kept["config_name"].tolist() == ["conventional[head=v3]", "proposed[head=v3]"]


def test_where_parsing():
    assert [str(c) for c in parse_where(["a.b=1", "c!= x "])] == ["a.b=1", "c!=x"]
    with pytest.raises(UserInputError, match="--where: expected KEY=VALUE or KEY!=VALUE, got 'x'"):
        parse_where(["x"])


def test_canonical_spelling():
    assert canonical(True) == "true" and canonical(1) == canonical(1.0) == "1.0"
    assert canonical(None) is None and canonical(math.nan) is None
    assert canonical("deeplabv3") == "deeplabv3"
    assert canonical([1, 2]) == canonical([1.0, 2]) == canonical("[1, 2]") == "[1.0,2.0]"
    assert canonical("[not a literal") == "[not a literal"


@pytest.mark.parametrize("typed", ["[head.aspp.convs.1]", "['head.aspp.convs.1']",
                                   '["head.aspp.convs.1"]', "[ head.aspp.convs.1 ]"])
def test_where_on_a_knockout_axis_as_the_configuration_name_spells_it(typed):
    # the frame holds model.remove as the list's text; the configuration name spells it
    # remove=[head.aspp.convs.1], which matched nothing (an empty report, no error)
    frame = pd.DataFrame({"config_name": ["remove=[]", "remove=[head.aspp.convs.1]"],
                          "axis:model.remove": ["[]", "['head.aspp.convs.1']"]})
    kept = filter_rows(frame, parse_where([f"model.remove={typed}"]))
    assert kept["config_name"].tolist() == ["remove=[head.aspp.convs.1]"]
    kept = filter_rows(frame, parse_where(["model.remove!=[]"]))
    assert kept["config_name"].tolist() == ["remove=[head.aspp.convs.1]"]


def test_sort():
    frame = configs()
    assert sort_rows(frame, None, False)["miou_mean"].tolist() == [61.0, 59.0, 58.0, 56.0, 50.0]
    assert sort_rows(frame, "params", False)["params"].tolist()[:2] == [1_000, 5_000_000]
    assert sort_rows(frame, "gflops", True)["gflops"].tolist()[:4] == [4.0, 3.0, 2.0, 1.5]
    assert math.isnan(sort_rows(frame, "gflops", True)["gflops"].iloc[-1])  # NaN last
    mixed = sort_rows(frame, "model.expansion", False)["axis:model.expansion"].tolist()
    assert mixed == [3, "[1, 2]", "[1, 2]", "all", None]  # mixed types compare as text
    short = sort_rows(frame, "expansion", False)  # the name the table's header shows
    assert short["axis:model.expansion"].tolist() == mixed
    with pytest.raises(UserInputError, match="--sort: no column 'nope'"):
        sort_rows(frame, "nope", False)


def test_per_class_table():
    table = per_class_table(configs())
    assert table.index.tolist() == ["cat"] and table.index.name == "class"
    assert table.loc["cat"].tolist()[:4] == [70.0, 60.0, 65.0, 50.0]
    assert per_class_table(configs().drop(columns="iou/cat")).empty
