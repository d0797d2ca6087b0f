"""The shipped leave-one-out recipe, made tiny: plan, run on the CPU, report its effects
table and Pareto plots; and a knock-out mistake refused before anything is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ablate.cli import main
from ablate.cost.analyse import build_on_meta
from ablate.cost.params import count_parameters
from ablate.recipes.schema import ModelSpec
from ablate.store import Store

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "aspp_leave_one_out.toml"
BRANCHES = [f"head.aspp.convs.{i}" for i in range(5)]
# DeepLabV3 itself (the recipe's network is DeepLabV3+, whose encoder it is; the paths are
# the same); 32 px images, 16 to train on, one epoch, two seeds (an interval needs two)
TINY = ["--set", "model.head=deeplabv3", "--set", "data.image_size=32",
        "--set", "data.train_images=16", "--set", "data.val_images=8", "--set", "train.epochs=1", "--set", "train.batch_size=8",
        "--set", "seeds=[0,1]", "--set", "eval.latency=false", "--set", "eval.batch_size=8"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads per trial spent most
    of their time waiting on each other (a 54 s run took 5 min)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow  # trains 12 tiny trials (about a minute on 2 cores)
def test_leave_one_out_study_runs_and_reads_each_branch_against_the_full_model(tmp_path,
                                                                             one_thread):
    db, runs, out = str(tmp_path / "k.db"), str(tmp_path / "runs"), tmp_path / "out"
    result = invoke("run", str(RECIPE), "--db", db, "--runs-dir", runs, *TINY)
    assert result.exit_code == 0, result.output
    trials = Store(db).trials("aspp_leave_one_out")
    assert len(trials) == 12 and {t.status for t in trials} == {"done"}
    assert len({t.arch_id for t in trials}) == 6  # the knock-out is in the architecture id

    report = invoke("report", "--db", db, "--study", "aspp_leave_one_out", "--effects",
                    "--format", "json", "--pareto", "--out", str(out))
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    effects = data["effects"]
    assert [e["axis"] for e in effects] == ["leave one out"] * 5
    assert [e["change"] for e in effects] == [f"full -> without {p}" for p in BRANCHES]
    assert {(e["n"], e["method"], e["family"]) for e in effects} == {(2, "paired t (seeds)", 5)}
    assert all(e["ci_low"] <= e["estimate"] <= e["ci_high"] for e in effects)
    # cost changes: exactly each branch's share of the parameters (4 classes)
    network = build_on_meta(ModelSpec.model_validate(
        {"backbone": "mobilenet_v3_large", "head": "deeplabv3", "output_stride": 8,
         "aspp_rates": [2, 3, 4]}), 4)
    full = count_parameters(network)
    for effect, path in zip(effects, BRANCHES):
        branch = count_parameters(network.get_submodule(path))
        assert effect["params_pct"] == pytest.approx(-100.0 * branch / full, rel=1e-9)
    configs = {c["config_name"]: c for c in data["configurations"]}
    assert set(configs) == {"remove=[]", *(f"remove=[{p}]" for p in BRANCHES)}
    assert configs["remove=[]"]["params"] == full
    for stem in ("pareto_params", "pareto_gflops"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_design_expands_to_the_remove_axis_and_the_full_model_keeps_the_plain_id(
        tmp_path):
    from ablate.recipes.loader import load_recipe
    from ablate.trials.expand import expand

    recipe = load_recipe(RECIPE)
    assert recipe.grid == {"model.remove": [[], *([p] for p in BRANCHES)]}
    trials = expand(recipe)
    assert [t.config_name for t in trials[::3]] == ["remove=[]",
                                                   *(f"remove=[{p}]" for p in BRANCHES)]
    assert len({t.trial_id for t in trials}) == 18 and len({t.arch_id for t in trials}) == 6
    plain = tmp_path / "plain.toml"
    text = RECIPE.read_text()
    plain.write_text(text[:text.index("[knockout]")])
    assert [t.trial_id for t in expand(load_recipe(plain))] == [
        t.trial_id for t in trials if t.config_name == "remove=[]"]


BAD = """
name = "bad"
[base.model]
backbone = "mobilenet_v3_small"
head = "deeplabv3"
[knockout]
components = ["head.aspp.convs.4", "head.aspp.conv.3"]
"""


def test_a_path_the_network_lacks_stops_the_run_before_anything_is_recorded(tmp_path,
                                                                             write_recipe):
    recipe, db = write_recipe(BAD), tmp_path / "k.db"
    result = invoke("run", str(recipe), "--db", str(db), "--runs-dir", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith(
        f"Error: {recipe}: trial remove=[head.aspp.conv.3]/seed=0: model.remove: the network "
        "has no module 'head.aspp.conv.3'; closest: head.aspp.convs.3, ")
    assert result.output.endswith("(list them with `ablate cost RECIPE --modules`)\n")
    assert Store(str(db)).trials("bad") == []
    assert Store(str(db)).get_costs(["x"]) == {}


def test_a_path_twice_or_the_root_is_refused_at_load(write_recipe):
    twice = write_recipe(BAD.replace('"head.aspp.conv.3"', '"head.aspp.convs.4"'))
    result = invoke("plan", str(twice), "--no-cost")
    assert (result.exit_code, result.output) == (2, (
        f"Error: {twice}: knockout.components: names 'head.aspp.convs.4' twice (got "
        "['head.aspp.convs.4', 'head.aspp.convs.4'])\n"))
    root = write_recipe(BAD.replace('"head.aspp.conv.3"', '""'))
    result = invoke("plan", str(root), "--no-cost")
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {root}: knockout.components: '' is the root, "
                                    "the whole network, which cannot be removed")
    clash = write_recipe(BAD + '[grid]\n"model.remove" = [[], ["head.aspp.convs.0"]]\n')
    result = invoke("plan", str(clash), "--no-cost")
    assert (result.exit_code, result.output) == (2, (
        f'Error: {clash}: knockout: grid."model.remove" is set too; [knockout] generates '
        "model.remove from its components: list them all there (or drop [knockout])\n"))


SMALL = """
name = "small"
[base.model]
backbone = "mobilenet_v3_small"
head = "deeplabv3"
output_stride = 8
[knockout]
components = ["head.aspp.convs.1"]
"""


def test_cost_modules_lists_the_paths_and_marks_the_knocked_out_ones(write_recipe):
    recipe = write_recipe(SMALL)
    result = invoke("cost", str(recipe), "--modules", "--depth", "4", "--json")
    assert result.exit_code == 0, result.output
    full, knocked = json.loads(result.stdout)
    assert (full["name"], knocked["name"]) == ("remove=[]", "remove=[head.aspp.convs.1]")
    rows = {r["path"]: r for r in full["modules"]}
    assert rows["head.aspp.convs.1"] == {"path": "head.aspp.convs.1", "type": "ASPPConv",
                                         "params": 576 * 256 * 9 + 2 * 256, "removed": None}
    assert max(p.count(".") for p in rows) == 3  # --depth 4
    rows = {r["path"]: r for r in knocked["modules"]}
    assert rows["head.aspp.convs.1"] == {"path": "head.aspp.convs.1", "type": "ASPPConv",
                                         "params": 0, "removed": "zeros"}
    assert "head.aspp.convs.1.0" not in rows
    text = invoke("cost", str(recipe), "--modules").output
    assert "head.aspp.convs.1.0" in text  # every module by default
    assert "ASPPConv (removed: zeros)" in text


def test_cost_diff_shows_exactly_what_a_knock_out_takes(write_recipe):
    recipe = write_recipe(SMALL)
    result = invoke("cost", str(recipe), "--diff", "remove=[]", "remove=[head.aspp.convs.1]",
                    "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # the 3x3 conv 576 -> 256 (rate 12) and its BN, at the 8 x 8 map of a 64 px image at
    # output stride 8: 576 x 256 x 9 multiply-adds and 2 per BN output, per position
    assert data["rows"] == [{"module": "head.aspp.convs.1",
                             "params_a": 576 * 256 * 9 + 2 * 256, "params_b": 0,
                             "flops_a": (576 * 256 * 9 + 2 * 256) * 64, "flops_b": 0}]
    assert data["a"]["params"] - data["b"]["params"] == 576 * 256 * 9 + 2 * 256
    assert data["a"]["flops"] - data["b"]["flops"] == (576 * 256 * 9 + 2 * 256) * 64
    text = invoke("cost", str(recipe), "--diff", "remove=[]", "remove=[head.aspp.convs.1]")
    assert f"{-(576 * 256 * 9 + 2 * 256) * 64:+,}" in text.output
