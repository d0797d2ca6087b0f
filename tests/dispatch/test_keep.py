"""What a done trial's run folder keeps of its checkpoint (``ablate run --keep``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ablate import atomic
from ablate.dispatch.entry import TrialJob, run_trial
from ablate.train.checkpoint import (
    CHECKPOINT_NAME,
    WEIGHTS_NAME,
    keep_finished,
    save_checkpoint,
    would_free,
)
from ablate.train.events import Stepped
from ablate.trials.lifecycle import DEFAULT_KEEP, KEEP_CHOICES

SPEC = {
    "model": {"backbone": "mobilenet_v3_small", "head": "lraspp"},
    "data": {"name": "shapes", "classes": 3, "image_size": 32, "train_images": 8,
             "val_images": 4, "workers": 0},
    "train": {"optimizer": "adamw", "lr": 0.01, "epochs": 1, "batch_size": 4, "device": "cpu"},
    "eval": {"latency": False},
    "seed": 3,
}


def _checkpoint(path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(path / CHECKPOINT_NAME, {
        "spec": {"seed": 1}, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "step": 7, "history": [], "rng": torch.get_rng_state()})
    return model.state_dict()


def test_weights_keeps_the_spec_model_and_step_and_drops_the_resume_state(tmp_path):
    model = _checkpoint(tmp_path)
    whole = (tmp_path / CHECKPOINT_NAME).stat().st_size
    # saves killed half-way: a checkpoint's (ablate.atomic's name), an older ablate's thinning
    left = atomic.temporary_name(tmp_path / CHECKPOINT_NAME)
    left.write_bytes(b"partial")
    (tmp_path / (WEIGHTS_NAME + ".tmp")).write_bytes(b"half")
    predicted = {keep: would_free(tmp_path, keep) for keep in ("checkpoint", "weights", "none")}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        left.name, CHECKPOINT_NAME, WEIGHTS_NAME + ".tmp"]
    freed = keep_finished(tmp_path, "weights")
    assert predicted == {"checkpoint": 0, "weights": freed, "none": whole + 7 + 4}
    assert not (tmp_path / CHECKPOINT_NAME).exists()
    assert freed == whole + 7 + 4 - (tmp_path / WEIGHTS_NAME).stat().st_size > 0
    kept = torch.load(tmp_path / WEIGHTS_NAME, weights_only=True)
    assert set(kept) == {"spec", "model", "step"}
    assert kept["spec"] == {"seed": 1} and kept["step"] == 7
    assert kept["model"].keys() == model.keys()
    assert all(torch.equal(kept["model"][k], model[k]) for k in model)
    assert sorted(p.name for p in tmp_path.iterdir()) == [WEIGHTS_NAME]  # no temporary left


def test_checkpoint_keeps_it_whole_and_none_removes_it(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _checkpoint(tmp_path / "a")
    before = (tmp_path / "a" / CHECKPOINT_NAME).read_bytes()
    assert keep_finished(tmp_path / "a", "checkpoint") == 0
    assert (tmp_path / "a" / CHECKPOINT_NAME).read_bytes() == before
    _checkpoint(tmp_path / "b")
    whole = (tmp_path / "b" / CHECKPOINT_NAME).stat().st_size
    assert keep_finished(tmp_path / "b", "none") == whole
    assert list((tmp_path / "b").iterdir()) == []


def test_no_checkpoint_is_left_alone_and_an_unknown_choice_is_refused(tmp_path):
    keep_finished(tmp_path, "weights")  # a trial that wrote none (or thinned already)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / (WEIGHTS_NAME + ".tmp")).write_bytes(b"half")  # a thinning killed half-way
    assert keep_finished(tmp_path, "weights") == 4
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="allowed checkpoint, weights, none"):
        keep_finished(tmp_path, "all")
    assert KEEP_CHOICES == ("checkpoint", "weights", "none") and DEFAULT_KEEP == "weights"


@pytest.mark.slow
def test_a_done_trial_keeps_the_weights_it_trained_and_a_failed_one_its_checkpoint(tmp_path):
    whole = run_trial(TrialJob("k", "t1", "t1", SPEC, str(tmp_path / "whole"), keep="checkpoint"))
    thin = run_trial(TrialJob("k", "t1", "t1", SPEC, str(tmp_path / "thin")))  # the default
    gone = run_trial(TrialJob("k", "t1", "t1", SPEC, str(tmp_path / "gone"), keep="none"))
    assert whole.done and thin.done and gone.done
    assert thin.final["miou"] == whole.final["miou"] == gone.final["miou"]
    checkpoint = torch.load(tmp_path / "whole" / CHECKPOINT_NAME, weights_only=False)
    assert {"optimizer", "scaler", "rng"} <= set(checkpoint)
    assert not (tmp_path / "thin" / CHECKPOINT_NAME).exists()
    weights = torch.load(tmp_path / "thin" / WEIGHTS_NAME, weights_only=True)
    assert weights["step"] == checkpoint["step"] == 2 and weights["spec"] == checkpoint["spec"]
    assert weights["model"].keys() == checkpoint["model"].keys()
    assert all(torch.equal(weights["model"][k], checkpoint["model"][k]) for k in weights["model"])
    assert sorted(p.name for p in (tmp_path / "gone").glob("*.pt")) == []
    assert (tmp_path / "thin" / "result.json").is_file()  # written before the checkpoint went


    def fail_at_step_3(event):  # in the second epoch, after the first one's checkpoint
        if isinstance(event, Stepped) and event.step == 3:
            raise RuntimeError("diverged")

    two_epochs = {**SPEC, "train": {**SPEC["train"], "epochs": 2, "log_every": 1}}
    failed = run_trial(TrialJob("k", "t2", "t2", two_epochs, str(tmp_path / "failed")),
                       progress=fail_at_step_3)
    assert not failed.done and "diverged" in failed.error
    kept = torch.load(tmp_path / "failed" / CHECKPOINT_NAME, weights_only=False)
    assert kept["step"] == 2 and "optimizer" in kept  # whole: its rerun resumes from it
    assert not (tmp_path / "failed" / WEIGHTS_NAME).exists()


def test_run_refuses_an_unknown_keep_in_one_line(tiny_recipe, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "run", str(tiny_recipe), "--db", str(tmp_path / "d.db"),
         "--keep", "all"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'all' is not one of 'checkpoint', 'weights', 'none'" in done.stderr
    assert not (tmp_path / "d.db").exists()


@pytest.mark.slow
def test_prune_thins_done_trials_only_and_says_what_it_freed(tiny_recipe, tmp_path):
    from click.testing import CliRunner

    from ablate.cli import main
    from ablate.dispatch.prune import prune_done
    from ablate.store import Store

    db, runs = tmp_path / "d.db", tmp_path / "runs"
    where = ["--db", str(db), "--runs-dir", str(runs)]
    ran = CliRunner().invoke(main, ["run", str(tiny_recipe), *where, "--keep", "checkpoint"])
    assert ran.exit_code == 0, ran.output
    store = Store(str(db))
    done, pending = sorted(store.statuses("tiny"))
    store.reset("tiny", [pending])  # as if it had not finished: it keeps its checkpoint
    folder = {tid: runs / "tiny" / tid for tid in (done, pending)}
    trained = torch.load(folder[done] / CHECKPOINT_NAME, weights_only=False)
    size = (folder[done] / CHECKPOINT_NAME).stat().st_size
    before = sorted(p.name for p in folder[done].iterdir())

    dry_report = prune_done(store, "tiny", runs, "weights", dry_run=True)
    dry = CliRunner().invoke(main, ["prune", "tiny", *where, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert sorted(p.name for p in folder[done].iterdir()) == before  # nothing changed
    assert (folder[done] / CHECKPOINT_NAME).stat().st_size == size

    thin = CliRunner().invoke(main, ["prune", "tiny", *where])
    assert thin.exit_code == 0, thin.output
    kept = torch.load(folder[done] / WEIGHTS_NAME, weights_only=True)
    freed = size - (folder[done] / WEIGHTS_NAME).stat().st_size
    assert 0 < freed < 1e9 and dry_report.freed == freed  # the dry run's figure, exactly
    assert dry.output == (f"tiny: 1 done trial(s); would thin 1 run folder(s) to weights.pt "
                          f"alone, freeing {freed / 1e6:.1f} MB\n")
    assert thin.output == (f"tiny: 1 done trial(s); thinned 1 run folder(s) to weights.pt "
                           f"alone, {freed / 1e6:.1f} MB freed\n")
    assert not (folder[done] / CHECKPOINT_NAME).exists()
    assert all(torch.equal(kept["model"][k], trained["model"][k]) for k in trained["model"])
    assert (folder[done] / "result.json").is_file()
    assert (folder[pending] / CHECKPOINT_NAME).is_file()  # not done: left whole
    assert not (folder[pending] / WEIGHTS_NAME).exists()

    again = CliRunner().invoke(main, ["prune", "tiny", *where])  # nothing left to thin
    assert again.output == ("tiny: 1 done trial(s); thinned 0 run folder(s) to weights.pt "
                            "alone, 0.0 MB freed\n")
    none = CliRunner().invoke(main, ["prune", "tiny", *where, "--keep", "none"])
    assert none.exit_code == 0 and "thinned 1 run folder(s) to no model file" in none.output
    assert sorted(p.name for p in folder[done].glob("*.pt")) == []
    assert (folder[pending] / CHECKPOINT_NAME).is_file()
    assert store.statuses("tiny") == {done: "done", pending: "pending"}  # the database as it was

    # a done trial's folder moved away: the line says where it was looked for
    folder[done].rename(tmp_path / "elsewhere")
    gone = CliRunner().invoke(main, ["prune", "tiny", *where, "--dry-run"])
    assert gone.output == ("tiny: 1 done trial(s); would thin 0 run folder(s) to weights.pt "
                           f"alone, freeing 0.0 MB; 1 run folder(s) not found, as recorded or "
                           f"under {runs} (--runs-dir names another runs folder)\n")


def test_prune_names_an_unknown_study_and_a_missing_database_in_one_line(tiny_recipe, tmp_path):
    from click.testing import CliRunner

    from ablate.cli import main

    missing = CliRunner().invoke(main, ["prune", "tiny", "--db", str(tmp_path / "no.db")])
    assert missing.exit_code == 2 and "no database at" in missing.output
    assert not (tmp_path / "no.db").exists()
    from ablate.store import Store

    Store(str(tmp_path / "d.db"))  # an empty database
    unknown = CliRunner().invoke(main, ["prune", "tiny", "--db", str(tmp_path / "d.db")])
    assert unknown.exit_code == 2
    assert "STUDY: no study 'tiny'" in unknown.output and "known: none yet" in unknown.output
    assert len(unknown.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_trial_that_cannot_be_thinned_stays_done_with_its_whole_checkpoint(
        tmp_path, monkeypatch, capsys):
    import errno

    import ablate.train.checkpoint as checkpoint

    def disk_full(run_dir, keep):  # the weights half written, then the disk is full
        def half(tmp):
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")

        atomic.write_file(run_dir / WEIGHTS_NAME, half)

    monkeypatch.setattr(checkpoint, "keep_finished", disk_full)
    result = run_trial(TrialJob("k", "t3", "t3", SPEC, str(tmp_path / "full")))
    assert result.done and result.error is None
    assert sorted(p.name for p in (tmp_path / "full").glob("*.pt*")) == [CHECKPOINT_NAME]
    assert atomic.temporaries(tmp_path / "full" / WEIGHTS_NAME) == []
    assert "ablate: trial t3: checkpoint kept whole (OSError: [Errno 28] No space left on " \
           "device)" in capsys.readouterr().err
