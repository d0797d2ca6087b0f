"""ablate status: what each trial is doing and, for a failed one, why."""

from __future__ import annotations

from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes.loader import parse_recipe
from ablate.store import Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult
from tests.conftest import TINY_RECIPE


def test_status_says_why_each_failed_trial_failed(tmp_path):
    db = str(tmp_path / "s.db")
    store = Store(db)
    trials = expand(parse_recipe(TINY_RECIPE, "tiny.toml"))
    store.upsert_study("tiny")
    store.register_trials("tiny", trials)
    failed = trials[0]
    who = {"host": "h", "pid": 1, "executor": "local", "job_id": None}
    claim = store.claim("tiny", failed.trial_id, who, lease_seconds=600)
    root = "/data/" + "deep/" * 30  # a line longer than the 160 columns of a non-terminal
    error = (f"UserInputError: {root}VOCdevkit/VOC2012/JPEGImages/2007_000001.jpg: "
             "unreadable image: Truncated File Read\nTraceback (most recent call last):\n ...")
    assert store.record(TrialResult.failure("tiny", failed.trial_id, error, name=failed.name,
                                            claim_epoch=claim.epoch))
    out = CliRunner().invoke(main, ["status", "tiny", "--db", db,
                                    "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code == 0, out.output
    # the report's "see why with: ablate status tiny" found only the table before; one
    # line, not folded at the console's width, so the path can be copied
    assert out.output.splitlines()[-1] == (
        f"failed {failed.name}: UserInputError: {root}VOCdevkit/VOC2012/JPEGImages/"
        "2007_000001.jpg: unreadable image: Truncated File Read")
    assert sum(line.startswith("failed ") for line in out.output.splitlines()) == 1


def test_a_narrow_terminal_shows_every_trial_name_whole(tmp_path, monkeypatch):
    """At 72 columns the table cut 'lean_last_stage[keep_last_expansion=true]/seed=0' and
    '.../seed=1' to the same 'lean_last_stage[keep_l…', beside six columns of '-' that a
    local CPU study never fills."""
    from rich.console import Console

    from ablate.cli import status

    db = str(tmp_path / "s.db")
    store = Store(db)
    trials = expand(parse_recipe("""
        name = "narrow"
        seeds = [0, 1]
        [base.data]
        name = "shapes"
        [grid]
        "model.keep_last_expansion" = [true, false]
        [variants.lean_last_stage]
        "model.expansion" = [1, 2, 3]
        """, "narrow.toml"))
    store.upsert_study("narrow")
    store.register_trials("narrow", trials)
    monkeypatch.setattr(status, "make_console", lambda: Console(width=72, record=True))
    out = CliRunner().invoke(main, ["status", "narrow", "--db", db,
                                    "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert max(len(line) for line in lines) <= 72
    assert "…" not in out.output and "Slurm state" not in out.output
    cells = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    for trial in trials:  # folded over lines, every character of every name is there
        assert trial.name in cells
