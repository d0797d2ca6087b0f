"""The flagship of docs/fair-comparisons.md, as shipped: recipes/fair_lr_shared.toml (one
shared learning rate) reports a decisive difference between two arms that compute the same
function class; recipes/fair_lr.toml (the learning rate tuned per arm) chooses learning
rates about 100x apart and calls the effect neither better nor worse. Verdicts and the
ratio are read within this run, not compared with another machine's figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "fair_lr")


def effects(db: str, study: str) -> list[dict]:
    out = CliRunner().invoke(main, ["report", "--db", db, "--study", study, "--effects",
                                    "--format", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


@pytest.fixture
def one_thread():
    """One torch thread: on a loaded 2-core machine two threads spinning against other
    processes made this study take over 15 minutes instead of about 3."""
    import torch  # lazy: loads torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_shared_lr_decides_a_difference_that_tuning_takes_away(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([EXAMPLE, os.environ.get("PYTHONPATH", "")]))
    db = str(tmp_path / "fair.db")
    for recipe in ("fair_lr_shared.toml", "fair_lr.toml"):
        out = CliRunner().invoke(main, ["run", str(ROOT / "recipes" / recipe), "--db", db,
                                        "--runs-dir", str(tmp_path / "runs")])
        assert out.exit_code == 0, out.output  # diverged tuning draws are failed draws, by design

    (shared,) = effects(db, "fair_lr_shared")["effects"]
    assert (shared["change"], shared["verdict"]) == ("plain -> scaled", "better")

    report = effects(db, "fair_lr")
    (tuned,) = report["effects"]
    assert tuned["verdict"].startswith("inconclusive")
    assert "tuned" in tuned["method"]
    chosen = report["tuning"]["fair_lr"]["chosen"]
    ratio = chosen["plain"]["values"]["train.lr"] / chosen["scaled"]["values"]["train.lr"]
    assert 30 < ratio < 300  # w = 10 v moves plain SGD's best learning rate by 10**2
