"""Pretrained weights: partial loading with a report; never a download."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.errors import UserInputError
from ablate.models.build import build_model
from ablate.models.weights import imagenet_path, load_weights
from ablate.recipes.schema import ModelSpec


def mnv3(keep_last: bool, **fields):
    return build_model(ModelSpec(keep_last_expansion=keep_last, **fields), 21)


def test_backbone_state_dict_loads_partially(tmp_path):
    source = mnv3(True)
    path = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), path)
    target = mnv3(False)
    report = load_weights(target, ModelSpec(keep_last_expansion=False, weights_path=str(path)))

    assert report["target"] == "backbone"
    assert report["source"] == str(path)
    features16 = [k for k in source.backbone.state_dict() if k.startswith("features.16.")]
    assert len(features16) == 6  # conv weight + BN weight, bias, mean, var, batches
    assert report["unexpected"] == features16
    assert report["skipped"] == [] and report["missing"] == []
    assert report["counts"]["loaded"] == len(target.backbone.state_dict())
    assert torch.equal(target.backbone.features[15].block[0][0].weight,
                       source.backbone.features[15].block[0][0].weight)


def test_whole_model_state_dict_skips_reshaped_aspp(tmp_path):
    source = mnv3(True)
    path = tmp_path / "model.pth"
    torch.save({"model": source.state_dict()}, path)  # a trainer checkpoint
    target = mnv3(False)
    report = load_weights(target, ModelSpec(keep_last_expansion=False, weights_path=str(path)))

    assert report["target"] == "model"
    assert all(k.startswith("backbone.features.16.") for k in report["unexpected"])
    assert len(report["unexpected"]) == 6
    # ASPP branches that read the 960 (now 160) channels change shape; the rest load.
    assert set(report["skipped"]) == {
        "head.aspp.convs.0.0.weight", "head.aspp.convs.1.0.weight",
        "head.aspp.convs.2.0.weight", "head.aspp.convs.3.0.weight",
        "head.aspp.convs.4.1.weight",
    }
    assert report["skipped_shapes"]["head.aspp.convs.0.0.weight"] == {
        "file": [256, 960, 1, 1], "model": [256, 160, 1, 1]
    }
    assert "head.classifier.weight" in report["loaded"]
    assert report["missing"] == []


def test_missing_hub_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "mobilenet_v3_large-5c1a4163.pth"
    assert imagenet_path("mobilenet_v3_large") == expected
    with pytest.raises(UserInputError) as err:
        load_weights(mnv3(True), ModelSpec(weights="imagenet"))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"model.weights = 'imagenet': {expected} not found")
    assert "MobileNet_V3_Large_Weights.IMAGENET1K_V2" in message


def test_imagenet_file_in_hub_cache_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    from torchvision.models import squeezenet1_0

    path = imagenet_path("squeezenet1_0")
    path.parent.mkdir(parents=True)
    reference = squeezenet1_0()
    torch.save(reference.state_dict(), path)
    model = build_model(ModelSpec(backbone="squeezenet1_0", head="fcn8s"), 21)
    report = load_weights(model, ModelSpec(backbone="squeezenet1_0", head="fcn8s",
                                           weights="imagenet"))
    assert report["counts"] == {"loaded": 52, "skipped": 0, "missing": 0, "unexpected": 0}
    assert torch.equal(model.backbone.conv10.weight, reference.classifier[1].weight)


def test_no_weights_asked():
    assert load_weights(mnv3(True), ModelSpec()) is None


def test_missing_weights_path(tmp_path):
    with pytest.raises(UserInputError, match="model.weights_path: file not found"):
        load_weights(mnv3(True), ModelSpec(weights_path=str(tmp_path / "nope.pth")))


def test_state_dict_matching_nothing(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(UserInputError, match="no tensor matches the backbone"):
        load_weights(mnv3(True), ModelSpec(weights_path=str(path)))


def test_unreadable_file(tmp_path):
    path = Path(tmp_path / "junk.pth")
    path.write_text("not a checkpoint")
    # torch's own words: "Weights only load failed ... Unsupported operand 110", which the
    # check before a run read as "holds pickled Python objects"; "hello" gave "101"
    with pytest.raises(UserInputError) as err:
        load_weights(mnv3(True), ModelSpec(weights_path=str(path)))
    assert str(err.value) == (f"{path}: not a file torch.save wrote (it begins b'not a ch'); "
                              "expected torch.save(model.state_dict(), path)")
    path.write_bytes(b"")
    with pytest.raises(UserInputError) as err:
        load_weights(mnv3(True), ModelSpec(weights_path=str(path)))
    assert str(err.value) == (f"{path}: not a file torch.save wrote (it begins b''); "
                              "expected torch.save(model.state_dict(), path)")
    source = tmp_path / "cut.pth"
    torch.save({"w": torch.zeros(3)}, source)
    path.write_bytes(source.read_bytes()[:100])  # a copy cut short: torch's words stay
    with pytest.raises(UserInputError, match=r"cannot read a state dict: PytorchStreamReader"):
        load_weights(mnv3(True), ModelSpec(weights_path=str(path)))


def test_the_fit_check_before_a_run_is_silent_about_its_meta_model(tmp_path):
    """It loaded the file into the model built on the meta device, where torch warns that
    each copy is a no-op: 251 UserWarnings, two lines each, on a run that went well."""
    import warnings

    from ablate.dispatch.preflight import weights_fit_problem
    from ablate.recipes.schema import TrialSpec

    path = tmp_path / "model.pth"
    torch.save(mnv3(True).state_dict(), path)
    spec = TrialSpec.model_validate({"model": {"weights_path": str(path), "num_classes": 21}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert weights_fit_problem(type("Trial", (), {"spec": spec})()) is None
    assert [str(w.message) for w in caught] == []
