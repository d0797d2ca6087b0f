"""The HTML report in headless Chromium: loads offline without errors, images drawn,
tables sort, nothing a user named runs as script; a screenshot is kept in tmp_path."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from tests.report.browser import Chromium
from tests.report.fake_store import add_study

# starts a headless browser: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow

SERVICE = Path(__file__).resolve().parents[1] / "services" / "chromium.sh"
EVIL = "<script>alert(1)</script>"
RECIPE = """
name = "xss"
description = "<img src=x onerror=alert(2)> & friends"
seeds = [0, 1]
[base.data]
name = "shapes"
classes = 3
[grid]
"data.root" = ["<img src=x onerror=alert(3)>", "plain"]
[variants."<script>alert(1)</script>"]
model.keep_last_expansion = true
published = { params = 1000, miou = 60.0, source = "<b>paper</b>" }
[variants.small]
model.keep_last_expansion = false
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser's path; installed by tests/services/chromium.sh when missing."""
    try:
        done = subprocess.run(["bash", str(SERVICE)], capture_output=True, text=True, timeout=900)
        reason = done.stderr.strip().splitlines()[-1:] if done.returncode else None
    except (OSError, subprocess.TimeoutExpired) as err:
        done, reason = None, [str(err)]
    if reason is not None:
        message = f"headless Chromium unavailable: {' '.join(reason) or 'chromium.sh failed'}"
        if os.environ.get("CI") or os.environ.get("ABLATE_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def page(tmp_path) -> Path:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.MonkeyPatch.context() as mp:  # a database written before names were checked
        mp.setattr("ablate.recipes.loader.check_name", lambda source, where, name: name)
        trials = expand(parse_recipe(RECIPE, "xss.toml"))
        figures = {}
        for i, name in enumerate(dict.fromkeys(t.config_name for t in trials)):
            figures[name] = (1_000 * (i + 1), 10**9 * (i + 1), [(0.5 + 0.02 * i, 2.0 + i)] * 2)
        add_study(store, RECIPE, "xss", figures, trials)
    out = tmp_path / "html"
    result = CliRunner().invoke(main, ["report", "--db", str(tmp_path / "x.db"), "--format",
                                       "html", "--per-class", "--curves", "--baseline", "small",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "report.html"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_renders_offline_without_errors(chromium, page, tmp_path):
    text = page.read_text()
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    with Chromium(chromium, tmp_path / "profile") as browser:
        browser.load(page.as_uri())
        images = browser.evaluate(
            "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight,"
            " i.width, i.height])")
        names = browser.evaluate(
            "Array.from(document.querySelector('table.sortable').tBodies[0].rows)"
            ".map(r => r.cells[1].textContent)")
        click_miou = (
            "(() => { const t = document.querySelector('table.sortable');"
            " Array.from(t.tHead.rows[0].cells).find(c => c.textContent === 'mIoU %').click();"
            " return Array.from(t.tBodies[0].rows).map(r => r.cells[1].textContent); })()")
        ascending, descending = browser.evaluate(click_miou), browser.evaluate(click_miou)
        scripts = browser.evaluate("document.scripts.length")
        browser.screenshot(tmp_path / "report.png")
        problems = browser.problems()
    assert problems == []
    assert len(images) == 6  # every seed, Pareto params / GFLOPs / latency, heatmap, curves
    assert all(complete and w > 0 and h > 0 and dw > 0 and dh > 0
               for complete, w, h, dw, dh in images), images
    assert scripts == 1
    # names arrive as text; default order is mIoU, best first; clicking its header sorts
    # ascending, a second click descending
    assert names == ["small[root=plain]", "small[root=<img src=x onerror=alert(3)>]",
                     f"{EVIL}[root=plain]", f"{EVIL}[root=<img src=x onerror=alert(3)>]"]
    assert ascending == names[::-1] and descending == names
    assert png_size(tmp_path / "report.png") == (1280, 2000)


def test_effect_figures_render_in_the_offline_page(chromium, filled, tmp_path):
    """--effects --per-class: every seed, the forest plot, P(B > A) and the per-class heat
    map are drawn in the page, with their tables, and the browser reports no error."""
    out = tmp_path / "html"
    result = CliRunner().invoke(main, ["report", "--db", filled.url, "--study", "mnv3_mini",
                                       "--format", "html", "--effects", "--per-class",
                                       "--curves", "--min-effect", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Chromium(chromium, tmp_path / "profile") as browser:
        browser.load((out / "report.html").as_uri())
        images = browser.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth,"
            " i.naturalHeight, i.width])")
        headings = browser.evaluate(
            "Array.from(document.querySelectorAll('h2, h3')).map(h => h.textContent)")
        browser.screenshot(tmp_path / "effects.png")
        problems = browser.problems()
    assert problems == []
    alts = [alt for alt, *_ in images]
    for start in ("mnv3_mini: validation mIoU of every seed", "mnv3_mini: effect of each axis "
                  "on mIoU (forest plot)", "mnv3_mini: probability of improvement",
                  "mnv3_mini: change in IoU of each class"):
        assert sum(alt.startswith(start) for alt in alts) == 1, (start, alts)
    assert len(images) == 9  # those 4, Pareto x 3, IoU per class, curves
    assert all(complete and w > 0 and h > 0 and shown > 0
               for _alt, complete, w, h, shown in images), images
    # a figure at the paper's text width (6.875 in at 120 dpi) is shown at that size, as
    # its PNG was: 825 pixels, not the SVG's own 96 per inch (660)
    forest = next(i for i in images if i[0].startswith("mnv3_mini: effect of each axis"))
    assert forest[2] == 660 and forest[4] == 825
    assert headings[:5] == ["Configurations", "mnv3_mini: 4 configurations, 8 trials",
                            "Every seed", "Effects of each axis",
                            "mnv3_mini: effects of each axis on mIoU"]
    assert "mnv3_mini: probability of improvement" in headings
    assert "mnv3_mini: effect of each axis on the IoU of each class" in headings
