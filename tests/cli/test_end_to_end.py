"""A real two-trial study: train, record, report, plot; then interruption and resume."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store
from ablate.train.events import Stepped

# trains and dispatches: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow


@pytest.fixture
def study(tmp_path, tiny_recipe):
    db = tmp_path / "e2e.db"
    runs = tmp_path / "runs"
    args = [str(tiny_recipe), "--db", str(db), "--runs-dir", str(runs)]
    return db, runs, args


def test_run_records_rows_and_report_plots(study, tmp_path):
    db, runs, args = study
    result = CliRunner().invoke(main, ["run", *args])
    assert result.exit_code == 0, result.output
    store = Store(str(db))
    trials = store.trials("tiny")
    assert len(trials) == 2 and {t.status for t in trials} == {"done"}
    for t in trials:
        assert 0.0 <= t.metrics["miou"] <= 1.0 and t.metrics["latency_ms"] > 0
        assert t.environment["torch"].startswith("2.14.1")
        assert (runs / "tiny" / t.trial_id / "result.json").is_file()
        assert [e.key for e in store.epoch_metrics("tiny", t.trial_id)][:1] == ["train_loss"]
    costs = store.get_costs([t.arch_id for t in trials])
    assert len(costs) == 2 and all(c.flops_convention == "fvcore-mac" for c in costs.values())

    # a second run skips both
    again = CliRunner().invoke(main, ["run", *args])
    assert again.exit_code == 0 and "2 trial(s) already done" in again.output
    assert len(Store(str(db)).trials("tiny")) == 2

    out = tmp_path / "plots"
    rep = CliRunner().invoke(main, ["report", "--db", str(db), "--pareto", "--out", str(out)])
    assert rep.exit_code == 0, rep.output
    assert "keep_last_expansion=true" in rep.output
    for stem in ("pareto_params", "pareto_gflops"):
        assert (out / f"{stem}.png").stat().st_size > 1000
        assert (out / f"{stem}.svg").read_text().startswith("<?xml")
    rows = json.loads(CliRunner().invoke(main, ["report", "--db", str(db), "--json"]).output)
    assert {r["config_name"] for r in rows} == {"keep_last_expansion=true",
                                                "keep_last_expansion=false"}
    assert all(r["n"] == 1 for r in rows)
    assert sum(r["pareto"] for r in rows) >= 1


def test_interrupted_run_resumes_without_duplicates(study, monkeypatch):
    db, runs, args = study
    from ablate.dispatch import local

    real = local.claim_and_run
    calls = []

    def interrupt_second(job, progress=None, **kwargs):
        calls.append(job.trial_id)
        if len(calls) < 2:
            return real(job, progress, **kwargs)

        def ctrl_c_after_a_checkpoint(event):  # Ctrl-C in the middle of the second trial
            if progress:
                progress(event)
            if isinstance(event, Stepped) and event.step >= 2:
                raise KeyboardInterrupt

        return real(job, ctrl_c_after_a_checkpoint, **kwargs)

    monkeypatch.setattr(local, "claim_and_run", interrupt_second)
    result = CliRunner().invoke(main, ["run", *args, "--set", "train.checkpoint_every=1"])
    assert result.exit_code == 130
    assert "run the same command again" in result.output
    statuses = Store(str(db)).statuses("tiny")
    # the interrupted trial is handed back at once: pending, free for the next runner
    assert sorted(statuses.values()) == ["done", "pending"]
    interrupted = calls[1]
    assert (runs / "tiny" / interrupted / "checkpoint.pt").is_file()

    monkeypatch.setattr(local, "claim_and_run", real)
    result = CliRunner().invoke(main, ["run", *args, "--set", "train.checkpoint_every=1"])
    assert result.exit_code == 0, result.output
    assert "1 trial(s) already done" in result.output
    trials = Store(str(db)).trials("tiny")
    assert len(trials) == 2 and {t.status for t in trials} == {"done"}
    log = (runs / "tiny" / interrupted / "claims.log").read_text()
    assert "resumed from checkpoint" in log, log
    for trial in trials:  # done: each run folder keeps its weights, not the resume state
        assert sorted(p.name for p in (runs / "tiny" / trial.trial_id).glob("*.pt")) == \
            ["weights.pt"]


def test_failing_trial_is_recorded_and_the_run_goes_on(study, monkeypatch):
    db, _runs, args = study
    from ablate.train import loop

    real = loop.train_and_evaluate
    seen = []

    def fail_first(spec, run_dir, progress=None):
        seen.append(spec)
        if len(seen) == 1:
            raise RuntimeError("out of cheese")
        return real(spec, run_dir, progress)

    monkeypatch.setattr(loop, "train_and_evaluate", fail_first)
    result = CliRunner().invoke(main, ["run", *args])
    assert result.exit_code == 1
    # the title counts what ran (2 trials), then how each ended
    assert "tiny: 2 run (1 done, 1 failed), 0 skipped" in result.output
    trials = {t.status: t for t in Store(str(db)).trials("tiny")}
    assert set(trials) == {"failed", "done"}
    assert trials["failed"].error.startswith("RuntimeError: out of cheese")
    assert "Traceback" in trials["failed"].error

    # --skip-failed keeps the failed trial as it is
    skip = CliRunner().invoke(main, ["run", *args, "--skip-failed"])
    assert skip.exit_code == 0 and "2 trial(s) already done" in skip.output
    assert "Retrying" not in skip.output
    assert {t.status for t in Store(str(db)).trials("tiny")} == {"failed", "done"}
    # the next plain run retries it, and says so
    monkeypatch.setattr(loop, "train_and_evaluate", real)
    rerun = CliRunner().invoke(main, ["run", *args])
    assert rerun.exit_code == 0, rerun.output
    assert "Retrying 1 failed trial(s)" in rerun.output
    assert "1 trial(s) already done" in rerun.output
    assert {t.status for t in Store(str(db)).trials("tiny")} == {"done"}
    assert len(seen) == 2  # the first run saw both; the retry ran the real trainer


def test_nan_loss_fails_the_trial(study, monkeypatch):
    db, _runs, args = study
    import torch

    real = torch.nn.functional.cross_entropy

    def nan_loss(*a, **k):  # a diverged model: the loss is no longer a number
        return real(*a, **k) * float("nan")

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", nan_loss)
    result = CliRunner().invoke(main, ["run", *args])
    assert result.exit_code == 1
    errors = [t.error for t in Store(str(db)).trials("tiny")]
    assert len(errors) == 2
    assert all(e and e.startswith("TrialFailed: loss became") for e in errors)


def test_two_local_worker_processes(study):
    db, runs, args = study
    result = CliRunner().invoke(main, ["run", *args, "--jobs", "2"])
    assert result.exit_code == 0, result.output
    trials = Store(str(db)).trials("tiny")
    assert {t.status for t in trials} == {"done"}
    assert len({t.environment["pid"] for t in trials}) == 2  # ran in two processes
    assert all((runs / "tiny" / t.trial_id / "result.json").is_file() for t in trials)
    for t in trials:  # each timed its latency with the other worker held at its next step
        record = t.environment["sharing"]
        assert record["mode"] == "cpu workers" and record["workers"] == 2
        assert record["latency"] == "timed alone" and t.metrics["latency_ms"] > 0


def test_rerun_failed_is_a_deprecated_no_op_and_contradicts_skip_failed(study):
    _db, _runs, args = study
    both = CliRunner().invoke(main, ["run", *args, "--rerun-failed", "--skip-failed"])
    assert both.exit_code == 2
    assert both.stderr == ("Error: --rerun-failed and --skip-failed contradict each other; "
                           "failed trials run again by default\n")
    assert "--rerun-failed" not in CliRunner().invoke(main, ["run", "--help"]).output
