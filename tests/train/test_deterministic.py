"""train.deterministic: two fresh runs of a study into two databases give identical figures."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.recipes.schema import TrialSpec
from ablate.store import Store
from ablate.trials.ids import spec_dict, trial_id

TIMINGS = ("latency", "seconds", "time", "throughput")  # wall-clock figures vary by nature


def figures(db) -> dict[str, dict[str, float]]:
    return {t.name: {k: v for k, v in t.metrics.items() if not any(w in k for w in TIMINGS)}
            for t in Store(str(db)).trials("tiny")}


@pytest.mark.slow
def test_two_fresh_runs_give_bit_identical_metrics(tmp_path, tiny_recipe):
    for name in ("a", "b"):
        result = CliRunner().invoke(main, ["run", str(tiny_recipe),
                                           "--db", str(tmp_path / f"{name}.db"),
                                           "--runs-dir", str(tmp_path / f"runs_{name}")])
        assert result.exit_code == 0, result.output
    a, b = figures(tmp_path / "a.db"), figures(tmp_path / "b.db")
    assert len(a) == 2 and all("miou" in m and "train_loss" in m for m in a.values())
    assert a == b  # exact float equality, every digit


def test_deterministic_is_default_and_keeps_trial_ids():
    spec = TrialSpec()
    assert spec.train.deterministic is True
    assert "deterministic" not in spec_dict(spec)["train"]  # ids of existing studies unchanged
    off = TrialSpec.model_validate({"train": {"deterministic": False}})
    assert spec_dict(off)["train"]["deterministic"] is False
    assert trial_id(off) != trial_id(spec)
