"""Display tables -> rich, Markdown and HTML; escaping of everything a user named."""

from __future__ import annotations

import base64
import hashlib
import io
import re

import pandas as pd
from rich.console import Console

from ablate.report.page import SCRIPT, Image, Section, content_security_policy, render_page
from ablate.report.render import (
    Column,
    DisplayTable,
    config_tables,
    per_class_tables,
    print_rich,
    to_csv,
    to_markdown,
)

EVIL = "<script>alert(1)</script>"


def configs(name: str = "a[bold]b[/bold]", head: str = "v3") -> pd.DataFrame:
    return pd.DataFrame({
        "study": ["s", "s"], "config_name": [name, "plain"], "variant": ["x", "y"],
        "n": [2, 1], "miou_mean": [61.0, 50.5], "miou_std": [1.5, 0.0],
        "params": [11_727_653, 1_000], "gflops": [4.0, 0.5], "latency_ms": [11.0, float("nan")],
        "flops_convention": ["fvcore-mac"] * 2, "resolution": ["64x64"] * 2,
        "pareto": [True, True], "axis:model.head": [head, True],
        "iou/cat": [80.0, 90.0], "iou/dog": [42.0, 10.0],
    })


def trials() -> pd.DataFrame:
    return pd.DataFrame({"study": ["s"] * 3})


def rich_text(tables, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    print_rich(tables, console)
    return console.file.getvalue()


def test_columns_and_cells():
    (table,) = config_tables(configs(), trials(), {"s": "  about s  "})
    assert table.title == "s: 2 configurations, 3 trials" and table.description == "about s"
    assert [c.header for c in table.columns] == [
        "", "configuration", "head", "mIoU %", "± std", "n", "params", "GFLOPs", "latency ms"]
    cells = {c.header: c.cells for c in table.columns}
    assert cells["head"] == ["v3", "true"] and cells["params"] == ["11,727,653", "1,000"]
    assert cells["latency ms"] == ["11.00", "-"] and cells["mIoU %"] == ["61.00", "50.50"]
    assert table.columns[6].values == [11727653.0, 1000.0] and table.columns[8].values[1] is None


def test_csv_spells_booleans_as_json_does_and_leaves_other_columns_alone():
    frame = configs()[["config_name", "n", "latency_ms", "pareto", "axis:model.head"]]
    frame = frame.assign(maybe=pd.array([None, False], dtype="boolean"))
    before = frame.copy()
    assert to_csv(frame).splitlines() == [
        "config_name,n,latency_ms,pareto,axis:model.head,maybe",
        "a[bold]b[/bold],2,11.0,true,v3,",
        "plain,1,,true,true,false"]
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame keeps its booleans


def test_rich_prints_names_verbatim_and_splits_wide_tables():
    text = rich_text(config_tables(configs(), trials()), 200)
    assert "a[bold]b[/bold]" in text and "(continued)" not in text
    narrow = rich_text(config_tables(configs(), trials()), 60)
    assert "s: 2 configurations, 3 trials (continued)" in narrow
    assert "11,727,653" in narrow and "…" not in narrow  # numbers are never cut
    parts = narrow.count("s: 2 configurations, 3 trials")
    assert parts >= 2 and narrow.count("plain") == parts  # each part repeats the names


def test_markdown_escapes_pipes_and_bolds_the_best_class():
    text = to_markdown(config_tables(configs(name="a|b"), trials()))
    assert "| ★ | a\\|b | v3 | 61.00 | 1.50 | 2 | 11,727,653 | 4.000 | 11.00 |" in text
    per_class = to_markdown(per_class_tables(configs(name="a|b")))
    assert per_class.splitlines()[2:6] == [  # configurations as rows, like the main table
        "| configuration | cat | dog |", "|---|---:|---:|", "| a\\|b | 80.0 | **42.0** |",
        "| plain | **90.0** | 10.0 |"]


def test_html_escapes_every_user_string():
    tables = config_tables(configs(name=EVIL, head='"><img src=x onerror=alert(2)>'), trials(),
                           {"s": "<b>description</b> & more"})
    tables[0] = DisplayTable(f"{EVIL}: title", tables[0].columns, [f"note {EVIL}"],
                             tables[0].description)
    page = render_page(f"report {EVIL}", [Section(f"h {EVIL}", tables,
                                                  [Image(f"caption {EVIL}", b"<svg/>")])],
                       meta=EVIL)
    assert EVIL not in page and "<img src=x" not in page and "<b>description" not in page
    assert page.count("<script") == 1  # ours, at the end
    # <title>, <h1>, meta, section, table title, note, alt, caption, cell's data-v and text
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 10
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;b&gt;description&lt;/b&gt; &amp; more" in page
    svg = base64.b64encode(b"<svg/>").decode()
    assert f'src="data:image/svg+xml;base64,{svg}"' in page


def test_content_security_policy_allows_only_our_script():
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    policy = content_security_policy()
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    page = render_page("t", [])
    assert re.search(r"<script>(.*)</script>", page, re.S).group(1) == SCRIPT
    assert "http" not in page.replace('http-equiv="Content-Security-Policy"', "")


def test_html_table_cells_carry_sort_values():
    table = DisplayTable("t", [Column("name", ["x", "y"], ["x", "y"]),
                               Column("n", ["1,000", "-"], [1000.0, None], numeric=True)])
    page = render_page("t", [Section("s", [table])])
    assert '<tr><td data-v="x">x</td><td class="num" data-v="1000.0">1,000</td></tr>' in page
    assert '<td class="num" data-v="">-</td>' in page
    assert '<table class="sortable"><thead><tr><th scope="col">name</th>' in page


def test_rich_keeps_names_whole_and_wraps_text_between_words():
    """An axis such as ``model.keep_last_expansion`` is one word: it was folded at 16
    characters (``model.keep_last_expansi`` / ``on``) in a table wider than the console;
    now the numbers go to a continued table, and phrases still wrap at their spaces."""
    axis = "model.keep_last_expansion"
    change = "(all_expansions -> lean_last_stage) x (true -> false)"
    table = DisplayTable("s: effects", [
        Column("axis", [axis], [axis]), Column("change", [change], [change]),
        *(Column(f"figure {i}", ["+1.90"], [1.9], numeric=True) for i in range(12))])
    text = rich_text([table], 100)
    assert "(continued)" in text and text.count(axis) == text.count("s: effects")
    assert re.search(r"│ \(all_expansions ->\s+│", text)  # wrapped between words
    assert all(len(line) <= 100 for line in text.splitlines())


def test_list_axes_show_as_the_configuration_names_spell_them_in_every_format():
    """The frame holds a list axis as Python's text (``['head.aspp.convs.2']``, what
    ``--where`` and the knock-out analysis read back); the table, Markdown, CSV, JSON,
    the effects' changes and LaTeX showed that text, not ``[head.aspp.convs.2]``."""
    import json

    from ablate.analysis.effects import effects_table
    from ablate.report.latex import report_tables
    from ablate.report.render import to_json
    from ablate.report.tables import filter_rows, parse_where

    frame = configs().assign(**{"axis:model.remove": ["['head.aspp.convs.2']", "[]"],
                                "axis:model.aspp_rates": ["[2, 3, 4]", "['a', 'b c']"]})
    before = frame.copy()
    (table,) = config_tables(frame, trials(), {})
    cells = {c.header: c.cells for c in table.columns}
    assert cells["remove"] == ["[head.aspp.convs.2]", "[]"]
    assert cells["aspp_rates"] == ["[2,3,4]", "[a,b c]"]
    markdown = to_markdown([table])
    assert "| [head.aspp.convs.2] |" in markdown and "'" not in markdown
    assert to_csv(frame).splitlines()[1].endswith(',[head.aspp.convs.2],"[2,3,4]"')
    shown = json.loads(to_json(frame))
    assert [r["axis:model.remove"] for r in shown] == [["head.aspp.convs.2"], []]  # JSON lists
    assert [r["axis:model.aspp_rates"] for r in shown] == [[2, 3, 4], ["a", "b c"]]
    pd.testing.assert_frame_equal(frame, before)  # the stored text stands ...
    kept = filter_rows(frame, parse_where(["model.remove=[head.aspp.convs.2]"]))
    assert kept["config_name"].tolist() == ["a[bold]b[/bold]"]  # ... and --where reads it
    # an effect of a list axis names its levels as the configurations do, in LaTeX too
    rows = [{"study": "s", "config_name": f"rates={rates}", "variant": "base", "seed": seed,
             "status": "done", "miou": 50.0 + seed + 2.0 * j, "params": 1.0, "gflops": 1.0,
             "latency_ms": 1.0, "axis:model.aspp_rates": text}
            for j, (rates, text) in enumerate((("[2,3,4]", "[2, 3, 4]"),
                                                ("[a,b c]", "['a', 'b c']")))
            for seed in range(3)]
    effects = effects_table(pd.DataFrame(rows))
    assert effects["change"].tolist() == ["[2,3,4] -> [a,b c]"]
    latex = "\n".join(report_tables(frame, effects))
    assert "[2,3,4]" in latex and "[a,b c]" in latex
    assert "[2, 3, 4]" not in latex and "['a'" not in latex
