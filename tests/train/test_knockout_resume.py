"""A knocked-out trial trains, resumes after a kill to the same weights, and its
checkpoint loads into the network its spec builds (not into the full one)."""

from __future__ import annotations

import pytest
import torch

from ablate.models.build import build_model
from ablate.recipes.schema import TrialSpec

from .test_resume import SPEC, Killed, kill_at, weights

# trains: the slow tier (`pytest -m "not slow"` leaves it out)
pytestmark = pytest.mark.slow

KNOCKED = TrialSpec.model_validate({
    **SPEC.model_dump(by_alias=True, exclude_defaults=True),
    "model": {**SPEC.model.model_dump(exclude_defaults=True),
              "remove": ["head.aspp.convs.1", "backbone.features.3"]},
})


@pytest.fixture
def one_thread():
    """One intra-op thread: two threads per process on the shared 2-core machine mostly
    wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_knocked_out_trial_resumes_to_the_same_weights_and_its_checkpoint_loads(
        tmp_path, one_thread):
    from ablate.train.events import Resumed
    from ablate.train.loop import train_and_evaluate

    straight = tmp_path / "straight"
    result = train_and_evaluate(KNOCKED, straight)
    assert result["final"]["steps"] == 6.0
    resumed = tmp_path / "resumed"
    with pytest.raises(Killed):
        train_and_evaluate(KNOCKED, resumed, kill_at(5))
    events = []
    again = train_and_evaluate(KNOCKED, resumed, events.append)
    assert Resumed(4) in events
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert again["final"]["miou"] == result["final"]["miou"]

    # the removed modules have no tensors; the knocked-out network takes the state dict
    # as it is, the full one misses exactly the removed modules' tensors
    assert not any(k.startswith(("head.aspp.convs.1.", "backbone.features.3.")) for k in a)
    model = build_model(KNOCKED.model, 3)
    model.load_state_dict(a, strict=True)
    full = build_model(SPEC.model, 3)
    missing, unexpected = full.load_state_dict(a, strict=False)
    assert not unexpected
    assert missing and all(k.startswith(("head.aspp.convs.1.", "backbone.features.3."))
                           for k in missing)
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32))["out"].shape == (1, 3, 32, 32)
