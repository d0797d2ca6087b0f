"""``ablate cost``: exit codes, JSON keys and the diff rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
MNV3 = str(RECIPES / "mnv3_expansion.toml")
SQUEEZENET = str(RECIPES / "squeezenet_fcn.toml")


def run(*args: str):
    return CliRunner().invoke(main, ["cost", *args])


def test_help_has_summary_and_example():
    result = run("--help")
    assert result.exit_code == 0
    assert "Parameters and FLOPs of each distinct architecture" in result.output
    assert "ablate cost recipes/mnv3_expansion.toml --diff conventional proposed" in result.output


def test_json_keys_and_values():
    result = run(SQUEEZENET, "--json")
    assert result.exit_code == 0, result.output
    (arch,) = json.loads(result.stdout)
    assert {"name", "params", "params_by_module", "gflops", "flops_convention", "resolution",
            "arch_id", "trial_ids", "flops_by_module", "published"} <= set(arch)
    assert arch["name"] == "fcn8s"
    assert arch["params"] == 1_348_951
    assert arch["params_by_module"]["backbone.conv10"] == 513_000
    assert arch["resolution"] == [227, 227]
    assert arch["flops_convention"] == "fvcore-mac"
    assert arch["flops"] == 1_013_032_715 == sum(arch["flops_by_module"].values())
    assert arch["gflops"] == pytest.approx(1.013032715)
    assert arch["published"] == {
        "params": 1_348_951,
        "source": "Jeon, Wang and Lee, Image Segmentation Using SqueezeNet based on CUDA C, Table 1"}


def test_variants_select_and_published_counts_match():
    result = run(MNV3, "--variant", "conventional", "--variant", "proposed", "--json")
    assert result.exit_code == 0, result.output
    archs = {a["name"]: a for a in json.loads(result.stdout)}
    assert set(archs) == {"conventional", "proposed"}
    assert archs["conventional"]["params"] == 11_745_643
    assert archs["proposed"]["params"] == 5_632_933
    assert archs["conventional"]["resolution"] == [512, 512]


def test_trials_sharing_an_architecture_are_costed_once(tmp_path):
    recipe = tmp_path / "lr.toml"
    recipe.write_text(
        'base.model.backbone = "squeezenet1_0"\nbase.model.head = "fcn8s"\n'
        '[grid]\n"train.lr" = [0.1, 0.01]\n'
    )
    result = run(str(recipe), "--json")
    assert result.exit_code == 0, result.output
    (arch,) = json.loads(result.stdout)
    assert arch["configs"] == ["lr=0.1", "lr=0.01"] and len(arch["trial_ids"]) == 2
    assert arch["resolution"] == [64, 64]  # the embedded dataset's images


def test_resolution_and_set():
    result = run(MNV3, "--variant", "proposed", "--set", "data.name=shapes",
                 "--resolution", "96x128", "--json")
    assert result.exit_code == 0, result.output
    (arch,) = json.loads(result.stdout)
    assert arch["resolution"] == [96, 128]
    assert arch["params"] == 5_632_933  # the variant gives its class count


def test_selective_cost_counts_operations_and_claims_no_time():
    """``ablate cost`` measures nothing: no latency figure or saving, FLOPs said not to be time."""
    recipe = str(RECIPES / "selective_shapes.toml")
    (arch,) = json.loads(run(recipe, "--resolution", "64x64", "--json").stdout)
    assert sorted(arch["extra"]) == ["gflops_dense", "gflops_low_path", "gflops_mask_net",
                                     "gflops_os16", "gflops_os8"]
    text = run(recipe, "--resolution", "64x64").output
    assert "latency_ms" not in text and " x " not in text
    assert "FLOPs are not time: a latency saving is only measured per trial on its" in text


@pytest.mark.slow
def test_trial_selects_by_id_prefix():
    everything = json.loads(run(MNV3, "--json").stdout)
    assert len(everything) == 7
    target = everything[2]
    result = run(MNV3, "--trial", target["trial_ids"][0][:6], "--json")
    assert [a["name"] for a in json.loads(result.stdout)] == [target["name"]]


def test_text_output_shows_breakdown_and_published_match():
    result = run(MNV3, "--variant", "proposed")
    assert result.exit_code == 0, result.output
    assert "params 5,632,933 (published 5,632,933: match)" in result.output
    assert "GFLOPs 24.552 (fvcore-mac, 512x512)" in result.output
    assert "head.aspp.convs" in result.output and "backbone.features.15" in result.output


def test_diff_conventional_proposed_rows():
    result = run(MNV3, "--diff", "conventional", "proposed", "--json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    rows = {row["module"]: row for row in diff["rows"]}
    assert list(rows) == ["backbone.features.16", "head.aspp.convs", "head.classifier", "<root>"]
    assert rows["backbone.features.16"]["params_a"] == 155_520
    assert rows["backbone.features.16"]["params_b"] == 0
    assert rows["head.classifier"]["params_a"] - rows["head.classifier"]["params_b"] == 17_990
    assert rows["<root>"]["params_a"] == rows["<root>"]["params_b"] == 0  # FLOPs differ only
    assert diff["a"]["params"] - diff["b"]["params"] == 11_745_643 - 5_632_933


def test_diff_same_class_pair_has_no_classifier_row():
    result = run(MNV3, "--diff", "conventional_21", "proposed", "--json")
    modules = [row["module"] for row in json.loads(result.stdout)["rows"]]
    assert modules == ["backbone.features.16", "head.aspp.convs"]


def test_diff_text_table():
    result = run(MNV3, "--diff", "conventional", "proposed")
    assert result.exit_code == 0, result.output
    # a name that is the configuration's own is said once ("A = conventional: conventional")
    assert re.search(r"^A = conventional  arch [0-9a-f]{12}  params 11,745,643", result.output,
                     re.M), result.output
    assert re.search(r"^B = proposed  arch [0-9a-f]{12}  params 5,632,933", result.output, re.M)
    for module in ("backbone.features.16", "head.aspp.convs", "head.classifier"):
        assert module in result.output
    assert "-6,112,710" in result.output
    assert "backbone.features.15" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--resolution", "512"], "Error: --resolution: expected HxW such as 512x1024, got '512'\n"),
    (["--variant", "nope"], "Error: --variant: {recipe} has no variant 'nope'; variants: "
                            "conventional, proposed, conventional_voc_only, proposed_voc_only, "
                            "conventional_21, proposed_91, drop_all_21, keep_early_21, "
                            "keep_late_21\n"),
    (["--trial", "zzzz"], "Error: --trial: no trial of {recipe} has id 'zzzz' "
                          "(see `ablate plan` for the ids)\n"),
    (["--diff", "nope", "proposed"], "Error: --diff: 'nope' is not a variant, config or trial "
                                     "id of {recipe}; variants: conventional, proposed, "
                                     "conventional_voc_only, proposed_voc_only, conventional_21, "
                                     "proposed_91, drop_all_21, keep_early_21, keep_late_21\n"),
    (["--diff", "proposd_91", "proposed"], "Error: --diff: 'proposd_91' is not a variant, "
                                           "config or trial id of {recipe} (did you mean "
                                           "'proposed_91'?); variants: conventional, proposed, "
                                           "conventional_voc_only, proposed_voc_only, "
                                           "conventional_21, proposed_91, drop_all_21, "
                                           "keep_early_21, keep_late_21\n"),
    (["--set", "model.expansion=[0]"], None),
    (["--set", "nokey"], "Error: {recipe}: --set: expected KEY=VALUE, got 'nokey'\n"),
])
def test_user_errors_are_one_line_exit_2(args, message):
    result = CliRunner().invoke(main, ["cost", MNV3, *args])
    assert result.exit_code == 2
    if message is not None:
        assert result.output == message.format(recipe=MNV3)
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")


def test_missing_recipe():
    result = run("does/not/exist.toml")
    assert result.exit_code == 2
    assert result.output == "Error: does/not/exist.toml: recipe file not found\n"


def test_diff_of_a_sweep_variant_asks_for_a_config(tmp_path):
    recipe = tmp_path / "sweep.toml"
    recipe.write_text(
        '[variants.a]\nmodel.num_classes = 3\n[grid]\n"model.keep_last_expansion" = [true, false]\n'
    )
    result = run(str(recipe), "--diff", "a", "a[keep_last_expansion=false]")
    assert result.exit_code == 2
    assert result.output == (
        "Error: --diff: 'a' covers 2 architectures; name one of: a[keep_last_expansion=true], "
        "a[keep_last_expansion=false]\n"
    )
