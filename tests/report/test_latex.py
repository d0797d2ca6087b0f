"""``ablate report --format latex``: booktabs tables that a real pdflatex compiles."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from ablate.cli import main
from ablate.report.build import build_report
from ablate.report.latex import config_table, escape, name_cell, to_document, wrap_name
from ablate.store import Store
from tests.services.env import read_env, unavailable


def _pdflatex() -> str:
    """pdflatex with booktabs: $ABLATE_PDFLATEX, on PATH, or what tests/services/latex.sh
    installed (start-all.sh runs it); missing, the test skips, or fails under CI /
    ABLATE_REQUIRE_SERVICES=1 (tests/services/env.py)."""
    if os.environ.get("ABLATE_PDFLATEX"):
        return os.environ["ABLATE_PDFLATEX"]
    found = shutil.which("pdflatex")
    if found:
        return found
    env = read_env()
    if env.get("ABLATE_PDFLATEX"):
        return env["ABLATE_PDFLATEX"]
    unavailable("pdflatex", env.get("ABLATE_LATEX_ERROR") or "not on PATH; run 'bash "
                "tests/services/latex.sh' (as root it installs texlive; start-all.sh does)")
    raise AssertionError("unreachable")


def _compile(tex: Path) -> str:
    """Compiles ``tex``; returns the log (asserts a PDF came out, with the log if not)."""
    out = subprocess.run([_pdflatex(), "-interaction=nonstopmode", "-halt-on-error",
                          tex.name], cwd=tex.parent, capture_output=True, text=True, timeout=120)
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert out.returncode == 0, out.stdout[-3000:]
    assert tex.with_suffix(".pdf").stat().st_size > 1000
    return log


def test_escape_every_special_character():
    assert escape("a_b & 50% #1 $x {y} ~z ^w \\v") == (
        r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v")
    assert escape("inconclusive (n=2)") == "inconclusive (n=2)"
    assert escape("a_1 -> b") == r"a\_1 $\to$ b"
    assert escape("equivalent (±0.5)") == r"equivalent ($\pm$0.5)"


def test_names_wrap_at_their_seams_and_are_cut_where_they_have_none():
    assert wrap_name("conventional[head=deeplabv3]", 28) == ["conventional[head=deeplabv3]"]
    assert wrap_name("a=1/b=2,c=3 d", 4) == ["a=1/", "b=2,", "c=3", "d"]
    assert wrap_name("depth=12345", 8) == ["depth=", "12345"]
    assert wrap_name("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert wrap_name("plain -> scaled", 8) == ["plain ->", "scaled"]
    # escaped after the wrap: no escape sequence is cut
    assert name_cell("a_b&c/d", 4, "*") == r"\begin{tabular}[t]{@{}l@{}}a\_\\b\&c/\\d*\end{tabular}"
    assert name_cell("a_b", 4, "*") == r"a\_b*"


def test_quickstart_like_report_compiles(filled, tmp_path):
    db = filled.url
    out = tmp_path / "paper"
    result = CliRunner().invoke(main, ["report", "--db", db, "--study", "mnv3_mini",
                                       "--effects", "--format", "latex", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("% ablate report: booktabs tables; \\usepackage{booktabs}\n")
    assert text.count(r"\begin{tabular}") == 2 and text.count(r"\toprule") == 2
    # sorted by mIoU; best mIoU, fewest params, GFLOPs and latency in bold
    rows = [line for line in text.splitlines() if "[head=" in line and "caption" not in line]
    assert rows == [
        r"conventional[head=deeplabv3plus]$^\star$ & \textbf{61.00} $\pm$ 1.41 & 2 & 11.73 & "
        r"4.000 & 11.00 \\",
        r"proposed[head=deeplabv3plus]$^{\star\approx}$ & 59.00 $\pm$ 0.71 & 2 & 5.63 & 2.000 & "
        r"5.00 \\",
        r"conventional[head=deeplabv3] & 58.00 $\pm$ 0.00 & 2 & 11.00 & 3.000 & 8.00 \\",
        r"proposed[head=deeplabv3]$^\star$ & 56.00 $\pm$ 1.41 & 2 & \textbf{5.00} & "
        r"\textbf{1.500} & \textbf{4.00} \\",
    ]
    assert r"GFLOPs: fvcore-mac at 64x64" in text
    assert r"mean $\pm$ sample standard deviation over $n$ seeds" in text
    # effects: hand-checked in tests/cli/test_report.py (variant: -2.00 points)
    effect_rows = [line for line in text.splitlines() if line.startswith("variant & ")]
    assert len(effect_rows) == 1 and effect_rows[0].startswith("variant & conventional ")
    assert " & -2.00 & [" in effect_rows[0]
    assert r"Intervals at 98.33\,\% $= 1 - \alpha/3$" in text
    assert "wrote " in result.stderr and "wrote" not in result.stdout
    tex = out / "report.tex"
    assert tex.read_text().startswith("\\documentclass{article}")
    # the forest plot as a figure, beside the document as a PDF (and PNG, SVG)
    assert r"\ablategraphic{forest.pdf}" in tex.read_text()
    assert r"\label{fig:ablate-forest}" in tex.read_text()
    assert {f"forest.{ext}" for ext in ("pdf", "png", "svg")} <= {p.name for p in out.iterdir()}
    log = _compile(tex)
    assert "Missing character" not in log and "Undefined control sequence" not in log


def test_baseline_changes_and_qualified_pareto_marks_are_in_the_latex_table(filled, tmp_path):
    # hand-checked in tests/cli/test_report.py: proposed[head=deeplabv3plus] against
    # conventional at its head is -51.97 % params, -2.00 points [-8.35, +4.35]; its lead
    # over conventional[head=deeplabv3] is within seed noise (the terminal's ★≈)
    out = tmp_path / "paper"
    result = CliRunner().invoke(main, ["report", "--db", filled.url, "--study", "mnv3_mini",
                                       "--baseline", "conventional", "--format", "latex",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = result.stdout
    # two-line headers, so that each column is as wide as its numbers
    stacked = r"\begin{tabular}[b]{@{}r@{}}%s\\%s\end{tabular}"
    assert " & ".join(stacked % pair for pair in [
        (r"$\Delta$ Params", r"(\%)"), (r"$\Delta$ GFLOPs", r"(\%)"),
        (r"$\Delta$ Latency", r"(\%)"), (r"$\Delta$", "mIoU"), (r"95\,\%", "CI")]) in text
    rows = {line.split(" & ")[0]: line for line in text.splitlines() if "[head=" in line}
    assert rows[r"proposed[head=deeplabv3plus]$^{\star\approx}$"].endswith(
        r"& -51.97 & -50.00 & -54.55 & -2.00 & [-8.35, +4.35] \\")
    assert rows["conventional[head=deeplabv3]"].endswith(r"& +0.00 & -- \\")
    assert (r"$^{\star\approx}$ \mbox{proposed[head=}\allowbreak{}\mbox{deeplabv3plus]}: its "
            r"mIoU lead over \mbox{conventional[head=}\allowbreak{}\mbox{deeplabv3]}, which it "
            r"dominates, is inconclusive") in text
    assert (r"$\Delta$: the change against \mbox{conventional[head=}\allowbreak{}"
            r"\mbox{deeplabv3plus]}, \mbox{conventional[head=}\allowbreak{}\mbox{deeplabv3]}, "
            "params") in text
    # before: 74 pt past the landscape page with these 32-character names
    assert "Overfull \\hbox" not in _compile(out / "report.tex")


def test_long_configuration_names_fit_the_page_beside_the_baseline_columns(filled, tmp_path):
    configs = build_report(Store(filled.url, must_exist=True), ["mnv3_mini"],
                           baseline="conventional").configs
    # 60 characters without a space; before: 259 pt past the landscape page
    configs["config_name"] = [f"model.backbone=mobilenet_v3_large/model.head=lraspp,width={i:02d}"
                              for i in range(len(configs))]
    assert {len(name) for name in configs["config_name"]} == {60}
    tex = tmp_path / "long.tex"
    tex.write_text(to_document(configs))
    assert "Overfull \\hbox" not in _compile(tex)
    # lines of at most 28 characters, broken after "/" or "," where they can be
    assert (r"\begin{tabular}[t]{@{}l@{}}model.backbone=mobilenet\_v3\_\\"
            r"large/model.head=lraspp,\\width=00$^\star$\end{tabular} & ") in config_table(configs)


def test_long_names_in_captions_break_within_the_page(filled, tmp_path):
    """A study's, a baseline's and a Pareto note's names in running text break after their
    seams only (``breakable``)."""
    configs = build_report(Store(filled.url, must_exist=True), ["mnv3_mini"],
                           baseline="conventional").configs
    long = "model.backbone=mobilenet_v3_large/model.head=lraspp,aspp_channels=256,width="
    configs["study"] = "ablation_of_the_expansion_layers_of_mobilenet_v3_large_" * 2
    configs["baseline"] = long + "conventional_baseline"
    configs["config_name"] = [f"{long}{i:02d}" for i in range(len(configs))]
    configs["pareto_tie"] = long + "tied"
    assert len(configs["baseline"].iloc[0]) > 90
    text = to_document(configs)
    # pieces in boxes: TeX breaks between them, never hyphenates inside (it hyphenated
    # "mo-bilenet" and "ex-pansion" before: an underscore ends a word for hyphenation)
    assert (r"the change against \mbox{model.}\allowbreak{}\mbox{backbone=}\allowbreak{}"
            r"\mbox{mobilenet\_}\allowbreak{}\mbox{v3\_}") in text
    assert r"\mbox{ablation\_}\allowbreak{}\mbox{of\_}" in text
    tex = tmp_path / "captions.tex"
    tex.write_text(text)
    assert "Overfull \\hbox" not in _compile(tex)


def test_per_class_heat_maps_are_figures_of_the_document(filled, tmp_path):
    # --per-class wrote per_class_iou_<study>.pdf beside report.tex, which left it out
    out = tmp_path / "paper"
    result = CliRunner().invoke(main, ["report", "--db", filled.url, "--per-class", "--format",
                                       "latex", "--out", str(out)])
    assert result.exit_code == 0, result.output
    tex = (out / "report.tex").read_text()
    for study in ("mnv3_mini", "other"):
        assert rf"\ablategraphic{{per_class_iou_{study}.pdf}}" in tex
        assert rf"\label{{fig:ablate-per-class-iou-{study.replace('_', '-')}}}" in tex
    _compile(out / "report.tex")


def test_training_curves_are_a_figure_of_the_document(filled, tmp_path):
    # --curves wrote curves.pdf beside report.tex, which left it out
    out = tmp_path / "paper"
    result = CliRunner().invoke(main, ["report", "--db", filled.url, "--study", "mnv3_mini",
                                       "--curves", "--format", "latex", "--out", str(out)])
    assert result.exit_code == 0, result.output
    tex = (out / "report.tex").read_text()
    assert r"\ablategraphic{curves.pdf}" in tex and (out / "curves.pdf").is_file()
    assert r"\label{fig:ablate-curves}" in tex
    _compile(out / "report.tex")


def test_special_characters_in_names_compile(filled, tmp_path):
    configs = build_report(Store(filled.url, must_exist=True), ["mnv3_mini"]).configs
    configs["study"] = "odd_study"
    configs.loc[0, "config_name"] = "a_b & 50% #1"
    table = config_table(configs)
    assert r"a\_b \& 50\% \#1" in table
    assert r"{\mbox{odd\_}\allowbreak{}\mbox{study}: configurations." in table
    tex = tmp_path / "odd.tex"
    tex.write_text(to_document(configs))
    _compile(tex)
