"""A tuned study's failed tuning trials ([tune]): before the selection, one that failed in
the run's tuning round with an error not known to be deterministic is run once more in
the same ``ablate run``; a diverged loss, a setting refused at train time and
``--skip-failed`` are not retried."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.store import Store
from ablate.trials.lifecycle import TrialStatus

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "fair_lr")

# 2 configurations x 2 draws x 1 tuning seed, then 2 x 1 seed
RECIPE = """
name = "tuned"
seeds = [0]
[base.model]
builder = "flaky_model:build"
[base.model.args]
width = 4
[base.data]
name = "shapes"
classes = 3
image_size = 16
train_images = 12
val_images = 8
[base.train]
optimizer = "sgd"
lr = 0.01
momentum = 0.9
iterations = 2
batch_size = 4
log_every = 1
[base.eval]
batch_size = 8
latency = false
flops = false
[variants.plain]
"model.args.scale" = 1.0
[variants.scaled]
"model.args.scale" = 10.0
[tune]
budget = 2
seeds = [2]
RANGES
"""
LR = '"train.lr" = { log_uniform = [1e-3, 1e-1] }'

# the example's model; its first training step in the study raises, once: a transient
# error (a worker killed, a GPU shared with another job out of memory). ``diverge=1``: its
# outputs, and so the loss, are nan in training (a learning rate far too high)
FLAKY = '''
from pathlib import Path

import torch
from fair_lr.model import build as plain_build
from torch import nn

MARKER = Path(MARKER_PATH)


class Flaky(nn.Module):
    def __init__(self, inner, diverge):
        super().__init__()
        self.inner, self.diverge = inner, diverge

    def forward(self, x):
        training = self.training and torch.is_grad_enabled()
        if training and not MARKER.exists():
            MARKER.write_text("failed once")
            raise RuntimeError("CUDA out of memory (another job on this GPU)")
        out = self.inner(x)
        return out * float("nan") if training and self.diverge else out


def build(*, num_classes, width=16, scale=1.0, diverge=0):
    return Flaky(plain_build(num_classes=num_classes, width=width, scale=scale), diverge)
'''


@pytest.fixture
def study(tmp_path, monkeypatch):
    """Writes the recipe with ``ranges`` and the flaky model; returns the run's arguments."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "flaky_model.py").write_text(
        FLAKY.replace("MARKER_PATH", repr(str(tmp_path / "failed_once"))))
    for path in (EXAMPLE, str(models)):
        monkeypatch.syspath_prepend(path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [EXAMPLE, str(models), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    sys.modules.pop("flaky_model", None)  # another test's, with its own marker

    def write(ranges: str = LR, *extra: str) -> list[str]:
        recipe = tmp_path / "tuned.toml"
        recipe.write_text(RECIPE.replace("RANGES", ranges))
        return ["run", str(recipe), "--db", str(tmp_path / "t.db"),
                "--runs-dir", str(tmp_path / "runs"), *extra]

    yield write
    sys.modules.pop("flaky_model", None)


def tuning_trials(args: list[str]) -> dict[str, tuple[TrialStatus, int, str]]:
    """Each tuning trial's name -> (status, attempts, the first line of its error)."""
    store = Store(args[args.index("--db") + 1])
    return {r.name: (r.status, r.attempts, (r.error or "").split("\n")[0])
            for r in store.trials("tuned") if r.tuning_draw is not None}


def selection(args: list[str]) -> dict:
    return Store(args[args.index("--db") + 1]).study_tunings(["tuned"])["tuned"]["selection"]


@pytest.mark.slow
def test_a_transient_failure_is_retried_once_and_its_draw_is_scored(study):
    args = study()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert ("retrying 1 failed tuning trial(s) once before the selection (1 RuntimeError): "
            "not a diverged loss or a setting refused at train time, so possibly transient "
            "(a killed worker, out of memory on a shared GPU), and a failed draw would cut "
            "its configuration's tuning budget") in out, out
    trials = tuning_trials(args)
    assert {n: s for n, (s, _, _) in trials.items()} == {
        "plain/draw=0/seed=2": TrialStatus.DONE, "plain/draw=1/seed=2": TrialStatus.DONE,
        "scaled/draw=0/seed=2": TrialStatus.DONE, "scaled/draw=1/seed=2": TrialStatus.DONE}
    assert sorted(a for _, a, _ in trials.values()) == [1, 1, 1, 2]  # one retry, no more
    # the selection reads every draw: none failed
    assert all(v is not None for row in selection(args)["scores"].values() for v in row)
    assert "failed (no score" not in out


@pytest.mark.slow
def test_skip_failed_accepts_the_failure_and_does_not_retry(study):
    args = study(LR, "--skip-failed")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "retrying" not in result.output
    trials = tuning_trials(args)
    failed = {n: v for n, v in trials.items() if v[0] == TrialStatus.FAILED}
    assert [(a, e) for _, a, e in failed.values()] == [
        (1, "RuntimeError: CUDA out of memory (another job on this GPU)")]
    (name,) = failed
    config = name.split("/")[0]
    assert sum(v is None for v in selection(args)["scores"][config]) == 1
    assert f"{config}: draw" in result.output and "1 of its 2 draws failed" in result.output


@pytest.mark.slow
@pytest.mark.parametrize(("ranges", "error"), [
    # a setting whose loss diverges: TrialFailed, in train.loop.finite_mean
    ('"model.args.diverge" = { choice = [0, 1] }', "TrialFailed: loss became nan"),
    # a batch size larger than the training set (its 80% kept by the holdout)
    ('"train.batch_size" = { choice = [4, 64] }', "UserInputError: train.batch_size: 64 is "
                                                  "larger than the training set"),
])
def test_a_deterministic_failure_is_not_retried(study, ranges, error):
    args = study(ranges)
    Path(args[args.index("--db") + 1]).parent.joinpath("failed_once").write_text("")  # no flake
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "retrying" not in result.output
    failed = {n: (a, e) for n, (s, a, e) in tuning_trials(args).items()
              if s == TrialStatus.FAILED}
    assert len(failed) == 2  # the same draw, in each configuration
    assert all(a == 1 and e.startswith(error) for a, e in failed.values()), failed
    assert all(sum(v is None for v in row) == 1 for row in selection(args)["scores"].values())


def test_the_retry_line_names_the_count_and_the_errors():
    from ablate.cli.study_view import tuning_lines
    from ablate.dispatch.events import TuningRetried

    assert tuning_lines(TuningRetried(3, {"OutOfMemoryError": 2, "worker process exited "
                                              "with code -9 without a result": 1})) == [
        "retrying 3 failed tuning trial(s) once before the selection (2 OutOfMemoryError, 1 "
        "worker process exited with code -9 without a result): not a diverged loss or a "
        "setting refused at train time, so possibly transient (a killed worker, out of "
        "memory on a shared GPU), and a failed draw would cut its configuration's tuning "
        "budget"]


def test_the_tuning_line_counts_the_tuning_seeds():
    # it read "16 tuning trial(s) (4 draws x 2 configuration(s) x tuning seeds, ...)": a
    # product that did not give its count
    from ablate.cli.study_view import tuning_lines
    from ablate.dispatch.events import TuningStarted

    assert tuning_lines(TuningStarted("s", "best of 4 draws", 4, 2, 16, 2)) == [
        "tuning: best of 4 draws; 16 tuning trial(s) (4 draws x 2 configuration(s) x 2 "
        "tuning seed(s); a setting drawn twice trains once)"]


def test_the_error_kinds_name_the_exception_or_the_first_words():
    from ablate.dispatch.tuning import _error_kinds

    assert _error_kinds([
        "torch.OutOfMemoryError: CUDA out of memory.\nTraceback ...",
        "RuntimeError: disk\nTraceback", "RuntimeError: again",
        "worker process exited with code -9 without a result", None]) == {
        "torch.OutOfMemoryError": 1, "RuntimeError": 2,
        "worker process exited with code -9 without a result": 1, "no error recorded": 1}
