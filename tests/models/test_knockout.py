"""Knock-out by module path: exact costs, the identity/zeros contract against hand-edited
networks, and every bad input as one line naming the key."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ablate.cost.analyse import build_on_meta
from ablate.cost.flops import count_flops
from ablate.cost.params import count_parameters
from ablate.errors import UserInputError
from ablate.models.backbone import TappedBackbone
from ablate.models.build import build_model
from ablate.models.knockout import Removed
from ablate.models.probe import dim_rule, output_size
from ablate.recipes.schema import ModelSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_unet"
RESOLUTION = (64, 96)


def spec(**model) -> ModelSpec:
    return ModelSpec.model_validate(model)


def meta(classes: int = 21, **model) -> nn.Module:
    """The network on meta, built once per spec in this module (tests copy, never edit)."""
    return _meta(json.dumps(model, sort_keys=True), classes)


@functools.cache
def _meta(model: str, classes: int) -> nn.Module:
    return build_on_meta(spec(**json.loads(model)), classes)


def seeded(model_spec: ModelSpec, classes: int = 3) -> nn.Module:
    """The network built after seeding: a knocked-out build draws the same weights for
    every module it keeps as the full build."""
    torch.manual_seed(0)
    return build_model(model_spec, classes).eval()


# -- exact costs ---------------------------------------------------------------------------

def test_one_aspp_branch_of_deeplabv3plus_mobilenetv3_large_removes_exactly_its_parameters():
    full, knocked = meta(), meta(remove=["head.aspp.convs.3"])
    # the third atrous branch: 3x3 conv 960 -> 256 without bias, BN (weight and bias)
    assert count_parameters(full.head.aspp.convs[3]) == 960 * 256 * 9 + 2 * 256 == 2_212_352
    assert count_parameters(full) == 11_727_653  # Kim et al. 2025's model at 21 classes
    assert count_parameters(knocked) == 11_727_653 - 2_212_352
    assert not any(name.startswith("head.aspp.convs.3.") for name, _ in
                   knocked.named_parameters())  # gone, not frozen
    assert isinstance(knocked.head.aspp.convs[3], Removed)
    assert knocked.head.aspp.convs[3].mode == "zeros"


def test_a_knocked_out_aspp_branch_takes_its_flops_and_nothing_else():
    full, knocked = meta(), meta(remove=["head.aspp.convs.3"])
    before, after = count_flops(full, RESOLUTION, depth=4), count_flops(knocked, RESOLUTION, 4)
    assert after.total == before.total - before.by_module["head.aspp.convs.3"]
    # by hand, without the branch: ASPP of four branches whose projection reads 1024
    # channels; the knocked-out network still projects the 256 channels of zeros,
    # 256 x 256 multiply-adds at each of the 4 x 6 positions of the stride-16 map
    hand = copy.deepcopy(full)
    del hand.head.aspp.convs[3]
    with torch.device("meta"):
        hand.head.aspp.project[0] = nn.Conv2d(1024, 256, 1, bias=False)
    assert count_flops(hand, RESOLUTION).total == after.total - 256 * 256 * 4 * 6
    assert count_parameters(hand) == count_parameters(knocked) - 256 * 256


def _bottleneck_spec(**extra) -> ModelSpec:
    return spec(backbone="resnet50", head="deeplabv3", output_stride=16, aspp_channels=32,
                **extra)


RESIDUAL_BRANCH = [f"backbone.layer3.0.{m}" for m in
                   ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3")]


class ShortcutOnly(nn.Module):
    """A first bottleneck written by hand without its residual branch: relu(shortcut(x))."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.downsample, self.relu = block.downsample, block.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.downsample(x))


def test_a_resnet_bottleneck_without_its_residual_branch_costs_what_the_hand_built_one_does():
    full = build_on_meta(_bottleneck_spec(), 6)
    knocked = build_on_meta(_bottleneck_spec(remove=RESIDUAL_BRANCH), 6)
    hand = copy.deepcopy(full)
    hand.backbone.layer3[0] = ShortcutOnly(hand.backbone.layer3[0])
    # conv1 1x1 512->256, conv2 3x3 256->256, conv3 1x1 256->1024, three BNs
    branch = 512 * 256 + 256 * 256 * 9 + 256 * 1024 + 2 * (256 + 256 + 1024)
    assert count_parameters(full) - count_parameters(knocked) == branch == 986_112
    assert count_parameters(knocked) == count_parameters(hand)
    assert count_flops(knocked, RESOLUTION).total == count_flops(hand, RESOLUTION).total
    # a later block keeps its input's shape: it becomes the identity, as a hand-built
    # layer3 without it
    knocked = build_on_meta(_bottleneck_spec(remove=["backbone.layer3.1"]), 6)
    assert knocked.backbone.layer3[1].mode == "identity"
    hand = copy.deepcopy(full)
    hand.backbone.layer3 = nn.Sequential(*(b for i, b in enumerate(hand.backbone.layer3)
                                           if i != 1))
    # its conv1 reads 1024 channels, not 512
    assert count_parameters(full) - count_parameters(knocked) == branch + 512 * 256 == 1_117_184
    assert count_parameters(knocked) == count_parameters(hand)
    assert count_flops(knocked, RESOLUTION).total == count_flops(hand, RESOLUTION).total


@pytest.fixture
def unet(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return {"builder": "custom_unet.model:build_unet", "args": {"depth": 3, "width": 8}}


def test_a_user_model_from_the_examples_loses_exactly_the_knocked_out_block(unet):
    full = build_on_meta(spec(**unet), 4)
    knocked = build_on_meta(spec(**unet, remove=["down.2"]), 4)
    # the deepest encoder block: two 3x3 convs 32 -> 64 -> 64 and their BNs
    assert count_parameters(full) - count_parameters(knocked) == (
        32 * 64 * 9 + 64 * 64 * 9 + 4 * 64)
    before, after = count_flops(full, RESOLUTION, 2), count_flops(knocked, RESOLUTION, 2)
    assert after.total == before.total - before.by_module["down.2"]
    out = seeded(spec(**unet, remove=["down.2"]), 4)(torch.zeros(1, 3, 37, 45))["out"]
    assert out.shape == (1, 4, 37, 45)


# -- the contract: identity where shapes allow, zeros elsewhere ----------------------------

@pytest.mark.slow  # builds three ResNet-50 networks with their weights
def test_identity_and_zeros_give_the_outputs_of_hand_edited_networks():
    image = torch.randn(1, 3, 48, 80, generator=torch.Generator().manual_seed(1))
    full = seeded(_bottleneck_spec())
    with torch.no_grad():
        # zeros: x + f(x) becomes x in the first block of layer3 (shortcut and relu only)
        hand = copy.deepcopy(full)
        hand.backbone.layer3[0] = ShortcutOnly(hand.backbone.layer3[0])
        knocked = seeded(_bottleneck_spec(remove=RESIDUAL_BRANCH))
        assert torch.equal(knocked(image)["out"], hand(image)["out"])
        # identity: a later block dropped from layer3
        hand = copy.deepcopy(full)
        hand.backbone.layer3 = nn.Sequential(*(b for i, b in enumerate(hand.backbone.layer3)
                                               if i != 1))
        knocked = seeded(_bottleneck_spec(remove=["backbone.layer3.1"]))
        assert torch.equal(knocked(image)["out"], hand(image)["out"])


@pytest.mark.slow  # builds two networks with their weights and runs them
def test_zeros_of_an_aspp_branch_equal_an_aspp_built_without_it():
    small = {"backbone": "mobilenet_v3_small", "head": "deeplabv3", "aspp_channels": 16}
    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    hand = seeded(spec(**small))
    aspp = hand.head.aspp
    del aspp.convs[3]
    keep = [c for c in range(5 * 16) if not 3 * 16 <= c < 4 * 16]
    projection = nn.Conv2d(4 * 16, 16, 1, bias=False)
    projection.weight.data = aspp.project[0].weight.data[:, keep].clone()
    aspp.project[0] = projection
    knocked = seeded(spec(**small, remove=["head.aspp.convs.3"]))
    with torch.no_grad():
        torch.testing.assert_close(knocked(image)["out"], hand(image)["out"], rtol=0, atol=1e-5)


@pytest.mark.slow  # builds two networks with their weights and runs them
def test_a_mobilenet_block_that_keeps_its_shape_is_dropped_like_by_hand():
    small = {"backbone": "mobilenet_v3_small", "head": "deeplabv3plus"}
    image = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    hand = seeded(spec(**small))
    backbone = hand.backbone  # features.3: 24 -> 24 at stride 8, a residual block
    features = nn.Sequential(*(m for i, m in enumerate(backbone.features) if i != 3))
    taps = {i - (i > 3): name for i, name in backbone.taps.items()}
    hand.backbone = TappedBackbone(features, taps, backbone.channels, backbone.strides)
    knocked = seeded(spec(**small, remove=["backbone.features.3"]))
    assert knocked.backbone.features[3].mode == "identity"
    with torch.no_grad():
        assert torch.equal(knocked(image)["out"], hand(image)["out"])


@pytest.mark.slow  # builds a network with its weights and runs it
def test_zeros_follow_the_input_size_with_the_stride_rounding_read_from_the_probes():
    # features.1 of MobileNetV3-Small: stride 2, 16 -> 16 channels, at stride 2 -> 4
    model = seeded(spec(backbone="mobilenet_v3_small", remove=["backbone.features.1"]))
    stand_in = model.backbone.features[1]
    assert stand_in.mode == "zeros"
    (_, rules, dtype), = stand_in.leaves
    assert rules == (("same", 0), ("same", 1), ("down", 2, 2, 1), ("down", 3, 2, 1))
    assert dtype is None  # follows the input's (bf16 under autocast)
    assert stand_in(torch.ones(2, 16, 33, 20)).shape == (2, 16, 17, 10)
    assert model(torch.zeros(1, 3, 75, 101))["out"].shape == (1, 3, 75, 101)


def test_size_rules_read_from_samples():
    assert dim_rule(2, [(4, 2), (10, 5), (7, 4)]) == ("down", 2, 2, 1)  # a padded stride
    assert dim_rule(2, [(4, 2), (10, 5), (7, 3)]) == ("down", 2, 2, 0)  # a 2x2 pooling
    assert dim_rule(2, [(4, 2), (10, 5)]) == ("down", 2, 2, 1)  # open: rounds up
    assert dim_rule(1, [(960, 256), (960, 256)]) == ("const", 256)
    assert dim_rule(2, [(4, 9), (10, 21)]) == ("up", 2, 2, 1)  # a transposed conv
    assert dim_rule(2, [(4, 7), (10, 3)]) is None
    assert output_size(("down", 2, 4, 3), (1, 1, 13)) == 4
    assert output_size(("up", 2, 2, 1), (1, 1, 13)) == 27


def test_replace_puts_the_named_module_in_place_and_forced_contracts():
    model = build_on_meta(spec(replace=[
        {"path": "head.aspp.convs.3", "by": "torch.nn:Conv2d",
         "args": {"in_channels": 960, "out_channels": 256, "kernel_size": 1}},
        {"path": "backbone.features.5", "by": "zeros"}]), 6)
    assert type(model.head.aspp.convs[3]) is nn.Conv2d
    assert model.backbone.features[5].mode == "zeros"  # its shape allowed the identity
    full = build_on_meta(spec(), 6)
    assert count_parameters(full) - count_parameters(model) == (
        2_212_352 - 960 * 256 - 256 + count_parameters(full.backbone.features[5]))


def test_ids_change_with_the_knockout_and_not_with_its_order():
    from ablate.recipes.schema import TrialSpec
    from ablate.trials.ids import architecture_id, trial_id

    plain = TrialSpec()
    empty = TrialSpec.model_validate({"model": {"remove": []}})
    ab = TrialSpec.model_validate({"model": {"remove": ["head.a", "backbone.b"]}})
    ba = TrialSpec.model_validate({"model": {"remove": ["backbone.b", "head.a"]}})
    assert trial_id(empty) == trial_id(plain)
    assert trial_id(ab) == trial_id(ba) != trial_id(plain)
    assert architecture_id(ab) != architecture_id(plain)


def test_a_replacement_from_the_user_s_code_is_hashed_into_the_ids(tmp_path, monkeypatch):
    """Editing the class that replaces a module makes another network and other trials,
    as editing a model.builder does; a replacement from torch is versioned with torch."""
    from ablate.recipes.schema import TrialSpec
    from ablate.trials.ids import architecture_id, code_files, trial_id

    package = tmp_path / "myblocks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "gate.py").write_text("from torch import nn\n\nclass Gate(nn.Identity):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def spec(by: str) -> TrialSpec:
        return TrialSpec.model_validate({"model": {"replace": [
            {"path": "head.aspp.convs.1", "by": by}]}})

    library = spec("torch.nn:Identity")
    assert "model.replace" not in code_files(library)
    mine = spec("myblocks.gate:Gate")
    assert sorted(code_files(mine)["model.replace"]) == ["myblocks/__init__.py",
                                                        "myblocks/gate.py"]
    before = trial_id(mine), architecture_id(mine)
    (package / "gate.py").write_text("from torch import nn\n\nclass Gate(nn.Identity):\n"
                                     "    scale = 2\n")
    after = trial_id(mine), architecture_id(mine)
    assert after[0] != before[0] and after[1] != before[1]
    assert trial_id(library) != trial_id(mine)


# -- bad input: one line naming the key ----------------------------------------------------

# the mistakes are the same on any network: a small one keeps these tests quick
SMALL = {"backbone": "mobilenet_v3_small", "head": "deeplabv3plus", "aspp_channels": 32}


def error(**model) -> str:
    with pytest.raises(UserInputError) as err:
        build_on_meta(spec(**(model if "builder" in model else {**SMALL, **model})), 6)
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_path_the_network_lacks_names_the_closest():
    text = error(remove=["head.aspp.conv.3"])
    assert text.startswith("model.remove: the network has no module 'head.aspp.conv.3'; "
                           "closest: head.aspp.convs.3")
    assert "ablate cost RECIPE --modules" in text
    text = error(remove=["head.zzz"])
    assert "head has: aspp, project, decoder, classifier" in text


def test_a_removal_that_leaves_nothing_to_learn_is_refused():
    assert error(remove=["backbone", "head"]) == (
        "model.remove: knocking out 'backbone', 'head' leaves no trainable parameter")
    assert error(remove=["head.classifier"]) == (
        "model.remove: with 'head.classifier' knocked out no trainable parameter reaches "
        "the network's output, so nothing could be learnt")


def test_a_replacement_that_does_not_import_build_or_fit_is_refused():
    at = {"path": "head.aspp.convs.3"}
    assert error(replace=[{**at, "by": "nosuch_pkg.mod:Thing"}]).startswith(
        "model.replace[0].by: cannot import 'nosuch_pkg.mod'")
    assert error(replace=[{**at, "by": "torch.nn:Conv2d"}]).startswith(
        "model.replace[0].by: building torch.nn:Conv2d with args {} raised TypeError")
    assert error(replace=[{**at, "by": "builtins:dict"}]) == (
        "model.replace[0].by: builtins:dict built a dict, not a torch.nn.Module")
    assert error(replace=[{**at, "by": "torch.nn:Identity"}]) == (
        "model.replace[0].by: torch.nn:Identity in place of 'head.aspp.convs.3' returns "
        "[1, 576, 4, 6]; the module it replaces returns [1, 32, 4, 6] (for a "
        "[1, 576, 4, 6] input)")


@pytest.mark.slow  # two more networks probed
def test_a_replacement_that_raises_or_a_forced_identity_that_cannot_fit_is_refused():
    at = {"path": "head.aspp.convs.3"}
    text = error(replace=[{**at, "by": "torch.nn:Conv2d",
                           "args": {"in_channels": 3, "out_channels": 32, "kernel_size": 1}}])
    assert text.startswith("model.replace[0].by: torch.nn:Conv2d in place of "
                           "'head.aspp.convs.3' raised RuntimeError")
    assert text.endswith("on its input [1, 576, 4, 6]")
    assert error(replace=[{**at, "by": "identity"}]) == (
        "model.replace[0].by: 'identity' in place of 'head.aspp.convs.3' cannot keep the "
        "network's shapes: it would return its input, [1, 576, 4, 6], where "
        "'head.aspp.convs.3' returns [1, 32, 4, 6]")  # "it returns [1, 32, ...]": which?


class Unused(nn.Module):
    """A user network with a module its forward never calls and one whose output
    size follows no rule of its input."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        self.spare = nn.Conv2d(3, 3, 1)
        self.odd = OddSize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.odd(x).sum() * 0


class OddSize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(1, 7 if x.shape[-1] < 100 else 5)


def build_unused(num_classes: int) -> nn.Module:
    return Unused(num_classes)


def build_ending_in_batch_norm(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(8, num_classes, 1), nn.BatchNorm2d(num_classes))


def test_parameters_that_reach_the_output_only_through_a_batch_norm_count():
    # the probe answers batch norms and in-place ReLUs on meta without computing them;
    # the gradient flag still flows: the last BN's weight reaches the output
    model = build_on_meta(spec(builder=f"{__name__}:build_ending_in_batch_norm",
                               remove=["0", "2"]), 6)
    assert [type(m).__name__ for m in model] == ["Removed", "ReLU", "Removed", "BatchNorm2d"]
    assert count_parameters(model) == 2 * 6


def test_a_module_never_called_or_whose_shape_follows_no_rule_is_refused():
    builder = {"builder": f"{__name__}:build_unused"}
    assert error(**builder, remove=["spare"]) == (
        "model.remove: 'spare' is never called when the network runs (eval mode), so "
        "knocking it out changes nothing but the parameter count; name a module the "
        "forward pass calls")
    text = error(**builder, remove=["odd"])
    assert text.startswith("model.remove: cannot knock out 'odd' and keep the network's "
                           "shapes: its output [1, 7] does not follow from its input "
                           "[1, 3, 64, 96]")


def _builtin_models() -> list[tuple[str, str]]:
    from ablate.catalog import BACKBONES, HEADS

    def valid(backbone: str, head: str) -> bool:
        # fcn8s reads SqueezeNet's pool taps only; LR-ASPP a stride-8 tap SqueezeNet lacks
        squeezenet = backbone == "squeezenet1_0"
        return (head == "fcn8s") <= squeezenet and not (squeezenet and head == "lraspp")

    return [(b, h) for b in BACKBONES.builtin_names() for h in HEADS.builtin_names()
            if valid(b, h)]


@pytest.mark.slow  # builds every built-in network on meta, twice
@pytest.mark.parametrize("backbone,head", _builtin_models())
def test_every_builtin_network_loses_exactly_the_modules_knocked_out(backbone, head):
    full = build_on_meta(spec(backbone=backbone, head=head), 6)
    names = dict(full.named_modules())
    # the head's first child with parameters, and the backbone's third
    paths = [next(n for n, m in names.items() if n.startswith("head.") and n.count(".") == 1
                  and count_parameters(m)),
             [n for n, m in names.items() if n.startswith("backbone.")
              and n.count(".") == (2 if backbone.startswith(("mobilenet", "squeezenet")) else 1)
              and count_parameters(m)][2]]
    knocked = build_on_meta(spec(backbone=backbone, head=head, remove=paths), 6)
    assert count_parameters(full) - count_parameters(knocked) == sum(
        count_parameters(names[p]) for p in paths)
    assert all(isinstance(knocked.get_submodule(p), Removed) for p in paths)
    assert count_flops(knocked, RESOLUTION).total < count_flops(full, RESOLUTION).total


SELECTIVE_KNOCKOUT = """
[base.model]
backbone = "resnet50"
head = "deeplabv3"
output_stride = 8
[base.model.selective]
enabled = true
[knockout]
design = "leave-one-out"
components = ["head.aspp.convs.1"]
"""


def test_a_selective_model_with_a_knock_out_is_refused_where_its_sparse_execution_runs():
    """The sparse execution (``latency_ms`` of every selective trial with eval.latency,
    and ``execution = "sparse"``) reads the weights of the modules a knock-out replaces:
    the trial trained, then failed timing it ('Removed' object is not subscriptable).
    Refused before anything runs, naming the key; the dense emulation untimed builds."""
    from ablate.errors import RecipeError
    from ablate.recipes.loader import parse_recipe
    from ablate.trials.expand import expand

    with pytest.raises(RecipeError) as err:
        expand(parse_recipe(SELECTIVE_KNOCKOUT, "r.toml"))
    assert str(err.value).startswith(
        "r.toml: base.eval.latency: a selective model is timed by its sparse execution, "
        "which cannot run knocked-out modules")
    assert "set eval.latency = false" in str(err.value)
    trials = expand(parse_recipe(SELECTIVE_KNOCKOUT, "r.toml"), {"eval.latency": False})
    assert [t.spec.model.remove for t in trials] == [[], ["head.aspp.convs.1"]]
    dense = trials[1].spec.model
    assert isinstance(build_on_meta(dense, 3).head.aspp.convs[1], Removed)
    sparse = dense.model_copy(update={"selective": dense.selective.model_copy(
        update={"execution": "sparse"})})
    with pytest.raises(UserInputError) as err:
        build_on_meta(sparse, 3)
    assert str(err.value) == ("model.selective.execution: 'sparse' cannot run knocked-out "
                              "modules (model.remove/model.replace); set it to 'dense'")
