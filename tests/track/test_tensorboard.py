"""--tracking tensorboard: every trial's event files hold the named scalars and hparams."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate import extras
from ablate.cli import main
from ablate.store import Store
from ablate.track import TrackedTrial, open_trackers
from ablate.train.events import EpochEnded, Resumed, Stepped
from tests.install.hiding import hidden

pytest.importorskip("tensorboard", reason="pip install -e '.[tensorboard]'")


def _accumulator(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_every_trial_writes_its_scalars_and_hparams(tmp_path, tiny_recipe):
    from tensorboard.plugins.hparams import plugin_data_pb2

    db, runs = tmp_path / "tb.db", tmp_path / "runs"
    result = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(db), "--runs-dir",
                                       str(runs), "--tracking", "tensorboard"])
    assert result.exit_code == 0, result.output
    trials = Store(str(db)).trials("tiny")
    assert len(trials) == 2
    for trial in trials:
        log_dir = runs / "tiny" / trial.trial_id / "tensorboard"
        assert trial.environment["tracking"] == {"tensorboard": {"log_dir": str(log_dir)}}
        acc = _accumulator(log_dir)
        tags = set(acc.Tags()["scalars"])
        assert {"train/loss", "train/lr", "val/miou", "val/pixel_acc", "epoch/train_loss",
                "final/miou", "final/pixel_acc", "final/latency_ms"} <= tags
        # 16 images, batch 8, one epoch, log_every 1: steps 1 and 2
        assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
        assert [e.step for e in acc.Scalars("train/lr")] == [1, 2]
        assert [e.step for e in acc.Scalars("val/miou")] == [2]
        for key in ("miou", "pixel_acc", "latency_ms"):
            (final,) = acc.Scalars(f"final/{key}")
            assert final.value == pytest.approx(trial.metrics[key], rel=1e-6)
        epoch = {m.key: m.value for m in Store(str(db)).epoch_metrics("tiny", trial.trial_id)}
        assert acc.Scalars("val/miou")[0].value == pytest.approx(epoch["val_miou"], rel=1e-6)
        assert acc.Scalars("epoch/train_loss")[0].value == pytest.approx(epoch["train_loss"],
                                                                         rel=1e-6)
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]).session_start_info
        assert start.hparams["model.keep_last_expansion"].string_value == (
            "true" if trial.axes["model.keep_last_expansion"] else "false")
        assert start.hparams["seed"].number_value == 0
        experiment = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/experiment"]).experiment
        assert [m.name.tag for m in experiment.metric_infos] == [
            "final/miou", "final/pixel_acc", "final/latency_ms"]


def _session_hparams(log_dir) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = _accumulator(log_dir).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    return {key: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for key, value in start.hparams.items()}


@pytest.mark.parametrize("variant,expected", [
    ("lean_last_stage", {"model.keep_last_expansion": "true", "variant": "lean_last_stage",
                         "seed": 1.0}),
    ("base", {"model.keep_last_expansion": "true", "seed": 1.0}),  # a recipe without variants
])
def test_hparams_name_the_variant_where_the_recipe_has_variants(tmp_path, variant, expected):
    # quick-start's all_expansions and lean_last_stage trials differ in their variant only:
    # without it, the hparams view shows them as one configuration
    trial = TrackedTrial("quickstart", "t1", f"{variant}[keep_last_expansion=true]/seed=1",
                         str(tmp_path / "run"), axes={"model.keep_last_expansion": True},
                         seed=1, variant=variant)
    trackers = open_trackers(["tensorboard"], trial)
    trackers.finish({"status": "done", "final": {"miou": 0.5, "steps": 2}, "environment": {}})
    assert _session_hparams(tmp_path / "run" / "tensorboard") == expected


def _attempt(trial, events, final=None):
    """One attempt of ``trial``: its events, then its result (None: killed, no result).
    Its event file is renamed to sort after the earlier attempts' (TensorBoard reads them
    in name order; attempts in one process within one second could sort either way)."""
    log_dir = Path(trial.run_dir) / "tensorboard"
    before = set(log_dir.glob("events.out.tfevents.*"))
    trackers = open_trackers(["tensorboard"], trial)
    progress = trackers.wrap(None)
    for event in events:
        progress(event)
    if final is not None:
        trackers.finish({"status": "done", "final": final, "environment": {}})
    else:  # killed: the events were written, the writer never closed
        trackers.sinks[0].writer.close()
    (new,) = set(log_dir.glob("events.out.tfevents.*")) - before
    new.rename(log_dir / f"events.out.tfevents.{len(before):010d}.host.1.0")


def _steps(loss, *steps):
    return [Stepped(step=s, total_steps=4, epoch=1, epochs=1, loss=loss + s, lr=0.1)
            for s in steps]


def test_an_attempt_hides_what_it_logs_again(tmp_path):
    """A trial trained again from scratch (--force) shows its new values only, not both
    attempts' at the same steps; one resumed from its checkpoint at step 2 keeps steps 1-2
    of the attempt that was killed at step 3 and shows its own step 3 on."""
    trial = TrackedTrial("s", "t1", "trial-1", str(tmp_path / "run"))
    log_dir = tmp_path / "run" / "tensorboard"
    _attempt(trial, [*_steps(10, 1, 2), EpochEnded(1, 1, 2, {"val_miou": 0.1})],
             {"miou": 0.1, "steps": 2})
    _attempt(trial, [*_steps(20, 1, 2), EpochEnded(1, 1, 2, {"val_miou": 0.2})],
             {"miou": 0.2, "steps": 2})  # --force
    acc = _accumulator(log_dir)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 21), (2, 22)]
    assert [e.value for e in acc.Scalars("val/miou")] == pytest.approx([0.2])
    assert [e.value for e in acc.Scalars("final/miou")] == pytest.approx([0.2])

    _attempt(trial, _steps(30, 1, 2, 3))  # killed at step 3, its checkpoint at step 2
    _attempt(trial, [Resumed(2), *_steps(40, 3, 4)], {"miou": 0.4, "steps": 4})
    acc = _accumulator(log_dir)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [
        (1, 31), (2, 32), (3, 43), (4, 44)]
    assert [e.value for e in acc.Scalars("final/miou")] == pytest.approx([0.4])


class _Boom:
    name = "tensorboard"

    def __init__(self) -> None:
        self.calls = 0

    def event(self, event):
        self.calls += 1
        raise OSError("disk full")

    def finish(self, result):
        raise AssertionError("a stopped sink is not called again")


def test_a_failing_tracker_warns_once_and_the_events_still_flow(capsys):
    from ablate.track.sinks import Trackers

    boom = _Boom()
    trackers = Trackers(TrackedTrial("s", "t1", "trial-1", "/nowhere"), [boom], {})
    seen = []
    progress = trackers.wrap(seen.append)
    for step in (1, 2, 3):
        progress(Stepped(step=step, total_steps=3, epoch=1, epochs=1, loss=1.0, lr=0.1))
    where = trackers.finish({"status": "done", "final": {"miou": 0.5}, "environment": {}})
    assert [e.step for e in seen] == [1, 2, 3] and boom.calls == 1
    assert where == {"tensorboard": {"error": "OSError: disk full"}}
    err = capsys.readouterr().err
    assert err == ("Warning: tracker tensorboard stopped for trial trial-1: OSError: disk full; "
                   "training continues\n")


def test_a_tracker_that_cannot_start_is_a_warning(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    trackers = open_trackers(["tensorboard"], TrackedTrial("s", "t1", "trial-1",
                                                           str(blocker / "run")))
    assert trackers.sinks == [] and list(trackers.failures) == ["tensorboard"]
    assert capsys.readouterr().err.startswith("Warning: tracker tensorboard stopped for trial "
                                              "trial-1: ")


def test_unknown_or_missing_tracker_is_refused(tiny_recipe, tmp_path, monkeypatch):
    bad = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db", str(tmp_path / "x.db"),
                                    "--tracking", "neptune"])
    assert bad.exit_code == 2 and "--tracking" in bad.output
    assert "'tensorboard', 'mlflow', 'wandb'" in bad.output
    with hidden("mlflow"):
        missing = CliRunner().invoke(main, ["run", str(tiny_recipe), "--db",
                                            str(tmp_path / "x.db"), "--tracking", "mlflow"])
    assert missing.exit_code == 2
    assert missing.output.strip() == ("Error: --tracking mlflow needs mlflow: "
                                      f"{extras.install_command('mlflow')}")
    assert not (tmp_path / "x.db").exists()
