"""A killed trial resumes from its checkpoint and ends with the same weights."""

from __future__ import annotations

import pytest
import torch

from ablate.recipes.schema import TrialSpec
from ablate.train.checkpoint import CHECKPOINT_NAME
from ablate.train.events import Resumed, Stepped
from ablate.train.loop import train_and_evaluate

# trains: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow

SPEC = TrialSpec.model_validate({
    "model": {"backbone": "mobilenet_v3_small", "head": "deeplabv3plus", "bn_momentum": 0.1},
    "data": {"name": "shapes", "classes": 3, "image_size": 32, "train_images": 24,
             "val_images": 8},
    "train": {"optimizer": "sgd", "lr": 0.05, "epochs": 2, "batch_size": 8, "log_every": 1,
              "checkpoint_every": 2},
    "eval": {"latency": False, "batch_size": 8},
    "seed": 3,
})


class Killed(Exception):
    pass


def kill_at(step: int):
    def progress(event):
        if isinstance(event, Stepped) and event.step == step:
            raise Killed

    return progress


def weights(run_dir):
    return torch.load(run_dir / CHECKPOINT_NAME, weights_only=False)["model"]


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    straight = tmp_path / "straight"
    result = train_and_evaluate(SPEC, straight)
    assert result["final"]["steps"] == 6.0

    resumed = tmp_path / "resumed"
    with pytest.raises(Killed):  # 3 steps an epoch: killed mid-epoch 2, last checkpoint step 4
        train_and_evaluate(SPEC, resumed, kill_at(5))
    events = []
    again = train_and_evaluate(SPEC, resumed, events.append)
    assert Resumed(4) in events
    steps = [e.step for e in events if isinstance(e, Stepped)]
    assert steps == [5, 6]  # only the two steps not yet checkpointed were trained
    assert len(again["epochs"]) == 2
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert again["final"]["miou"] == result["final"]["miou"]


def test_checkpoint_of_another_spec_is_not_used(tmp_path):
    train_and_evaluate(SPEC, tmp_path)
    other = SPEC.model_copy(update={"seed": 4})
    events = []
    train_and_evaluate(other, tmp_path, events.append)
    assert not any(isinstance(e, Resumed) for e in events)


def test_loss_falls_on_a_tiny_problem(tmp_path):
    spec = SPEC.model_copy(update={"train": SPEC.train.model_copy(
        update={"epochs": 6, "checkpoint_every": 0, "optimizer": "adamw", "lr": 0.003})})
    result = train_and_evaluate(spec, tmp_path)
    losses = [e["metrics"]["train_loss"] for e in result["epochs"]]
    assert losses[-1] < 0.8 * losses[0]


def test_a_resumed_trial_removes_the_temporary_files_of_saves_a_kill_cut_short(tmp_path):
    from ablate import atomic

    with pytest.raises(Killed):
        train_and_evaluate(SPEC, tmp_path, kill_at(3))
    # two saves killed half-way (one per preemption), and an older ablate's fixed name
    dead = [atomic.temporary_name(tmp_path / CHECKPOINT_NAME) for _ in range(2)]
    dead.append(tmp_path / f"{CHECKPOINT_NAME}.tmp")
    for path in dead:
        path.write_bytes(b"half a checkpoint")
    events = []
    train_and_evaluate(SPEC, tmp_path, events.append)
    assert Resumed(2) in events
    assert not any(path.exists() for path in dead)
    assert atomic.temporaries(tmp_path / CHECKPOINT_NAME) == []
