"""``analyse_spec``: one architecture's cost, built on meta, keyed by arch_id."""

from __future__ import annotations

import dataclasses

import pytest

from ablate.cost.analyse import CostReport, analyse_spec
from ablate.recipes.schema import TrialSpec
from ablate.trials.ids import architecture_id


def spec(**model) -> TrialSpec:
    return TrialSpec.model_validate({"model": model, "data": {"name": "voc2012"}})


def test_kim2025_proposed_report():
    s = spec(num_classes=21, keep_last_expansion=False)
    report = analyse_spec(s)
    assert isinstance(report, CostReport)
    assert report.arch_id == architecture_id(s)
    assert report.params == 5_632_933 == sum(report.params_by_module.values())
    assert report.flops == sum(report.flops_by_module.values())
    assert report.gflops == pytest.approx(report.flops / 1e9)
    assert report.flops_convention == "fvcore-mac"
    assert report.resolution == (512, 512)  # VOC's default evaluation size
    assert report.num_classes == 21
    assert "backbone.features.16" not in report.params_by_module


def test_params_only_and_frozen():
    report = analyse_spec(spec(backbone="squeezenet1_0", head="fcn8s"), flops=False)
    assert report.params == 1_348_951
    assert report.flops is None and report.gflops is None and report.flops_by_module == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.params = 0  # type: ignore[misc]


def test_aux_head_counts_in_params_not_in_flops():
    plain = analyse_spec(spec(backbone="mobilenet_v3_large", head="deeplabv3"))
    aux = analyse_spec(spec(backbone="mobilenet_v3_large", head="deeplabv3", aux_head=True))
    assert aux.params - plain.params == 11_029_328 - 11_025_477
    assert aux.flops == plain.flops
    assert aux.arch_id != plain.arch_id


def test_to_dict_is_json_ready():
    import json

    report = analyse_spec(spec(backbone="squeezenet1_0", head="fcn8s"))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["resolution"] == [512, 512] and data["params"] == 1_348_951
