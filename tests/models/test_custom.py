"""User models: model.builder / model.args, plugins, ids, validation and the CLI."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import ablate
from ablate.catalog import MODELS
from ablate.cli import main
from ablate.cost.params import count_parameters
from ablate.errors import RecipeError, UserInputError
from ablate.models.build import build_model
from ablate.models.custom import check_model
from ablate.recipes.loader import load_recipe
from ablate.recipes.schema import ModelSpec, TrialSpec
from ablate.train.events import Resumed, Stepped
from ablate.trials.expand import expand, parse_set
from ablate.trials.ids import architecture_id, spec_dict, trial_id

USER_MODULE = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, width, out_size=None):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.out_size = out_size

    def forward(self, x):
        y = self.classifier(torch.relu(self.conv(x)))
        return y[..., : self.out_size, : self.out_size] if self.out_size else y


def build(num_classes, width=4):
    return Net(num_classes, width)


def build_any(**kwargs):
    return Net(kwargs["num_classes"], kwargs.get("width", 4))


def build_dict(num_classes, width=4):
    net = Net(num_classes, width)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return {"out": self.net(x), "aux": self.net(x)}

    return Wrapped()


def explode(num_classes, width=4):
    raise ValueError("width " + str(width) + " is odd")


def not_a_module(num_classes):
    return "a string"


def cropped(num_classes):
    return Net(num_classes, 4, out_size=8)


def wrong_classes(num_classes):
    return Net(num_classes + 1, 4)


class TrainingOnly(Net):
    """Returns a tuple, or an aux output at a quarter of the size, while training."""

    def __init__(self, num_classes, how):
        super().__init__(num_classes, 4)
        self.how = how

    def forward(self, x):
        y = super().forward(x)
        if not self.training:
            return y
        if self.how == "tuple":
            return y, y
        return {"out": y, "aux": y[..., ::4, ::4]}


def train_tuple(num_classes):
    return TrainingOnly(num_classes, "tuple")


def train_small_aux(num_classes):
    return TrainingOnly(num_classes, "small_aux")


def logits_dict(num_classes):
    net = Net(num_classes, 4)

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return {"logits": self.net(x)}

    return Named()


def frozen(num_classes):
    net = Net(num_classes, 4)
    net.requires_grad_(False)
    return net


def with_backbone(num_classes):
    net = Net(num_classes, 4)
    net.backbone = net.conv  # an attribute named like the built-in models' part
    return net


class Attending(Net):
    def forward(self, x):
        y = torch.relu(self.conv(x))
        n, c, h, w = y.shape
        t = y.flatten(2).transpose(1, 2)
        t = torch.nn.functional.scaled_dot_product_attention(t, t, t)
        return self.classifier(t.transpose(1, 2).reshape(n, c, h, w))


def attending(num_classes):
    return Attending(num_classes, 4)


NOT_CALLABLE = 3
'''

RECIPE = """
name = "byo"
seeds = [0]

[base.model]
builder = "{builder}"

[base.model.args]
{args}

[base.data]
name = "shapes"
classes = 3
image_size = 16
train_images = 8
val_images = 4

[base.train]
iterations = 1
batch_size = 4

[base.eval]
latency_runs = 1
latency_warmup = 0
"""


@pytest.fixture
def user_pkg(tmp_path, monkeypatch) -> Path:
    """A package ``usernets`` with builders good and bad, importable for this test."""
    pkg = tmp_path / "pkg"
    (pkg / "usernets").mkdir(parents=True)
    (pkg / "usernets" / "__init__.py").write_text("")
    (pkg / "usernets" / "nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(pkg))
    yield pkg / "usernets" / "nets.py"
    for name in [m for m in sys.modules if m.startswith("usernets")]:
        del sys.modules[name]


def recipe(write_recipe, builder="usernets.nets:build", args="width = 4"):
    return write_recipe(RECIPE.format(builder=builder, args=args))


def spec(builder="usernets.nets:build", **args) -> ModelSpec:
    return ModelSpec(builder=builder, args=args)


def test_builder_gets_args_and_num_classes_and_logits_become_a_dict(user_pkg):
    model = build_model(spec(width=5), 3)
    # conv 3->5 3x3 with bias, classifier 5->3 1x1 with bias
    assert count_parameters(model) == (3 * 5 * 9 + 5) + (5 * 3 + 3)
    out = model(torch.zeros(2, 3, 8, 8))
    assert set(out) == {"out"} and out["out"].shape == (2, 3, 8, 8)
    assert list(model.state_dict()) == ["conv.weight", "conv.bias", "classifier.weight",
                                        "classifier.bias"]  # the user's own names


def test_dict_output_with_aux_is_kept(user_pkg):
    out = build_model(spec("usernets.nets:build_dict"), 2)(torch.zeros(1, 3, 4, 4))
    assert set(out) == {"out", "aux"}


def test_weights_path_is_a_whole_model_state_dict_for_any_user_model(user_pkg, tmp_path):
    from ablate.models.weights import load_weights

    model = build_model(spec("usernets.nets:with_backbone"), 3)
    head = tmp_path / "head.pt"  # the classifier alone: no key starts with backbone.
    torch.save({"classifier.weight": torch.ones(3, 4, 1, 1)}, head)
    user_spec = ModelSpec(builder="usernets.nets:with_backbone", weights_path=str(head))
    report = load_weights(model, user_spec)
    assert report["target"] == "model" and report["loaded"] == ["classifier.weight"]
    assert torch.equal(model.classifier.weight, torch.ones(3, 4, 1, 1))
    bogus = tmp_path / "bogus.pt"
    torch.save({"foo.weight": torch.zeros(3)}, bogus)
    with pytest.raises(UserInputError) as err:  # named the built-in default model before
        load_weights(model, ModelSpec(builder="usernets.nets:with_backbone",
                                      weights_path=str(bogus)))
    assert str(err.value) == (f"{bogus}: no tensor matches the model of "
                              "usernets.nets:with_backbone by name and shape (file keys start: "
                              "foo.weight)")


def test_model_args_are_axes_in_grid_zip_variants_and_set(user_pkg, write_recipe):
    path = write_recipe(RECIPE.format(builder="usernets.nets:build_dict", args="width = 4") + """
[grid]
"model.args.width" = [2, 3]

[[zip]]
"train.lr" = [0.1, 0.2]
"model.args.extra" = ["x", "y"]

[variants.a]
[variants.b]
"model.args.flag" = true
""")
    trials = expand(load_recipe(path))
    assert len(trials) == 2 * 2 * 2
    widths = [t.spec.model.args["width"] for t in trials]
    assert widths == [2, 2, 3, 3, 2, 2, 3, 3]
    assert [t.spec.model.args.get("flag") for t in trials] == [None] * 4 + [True] * 4
    assert [t.spec.model.args["extra"] for t in trials[:2]] == ["x", "y"]
    assert trials[0].name == "a[width=2,lr=0.1,extra=x]/seed=0"
    narrowed = expand(load_recipe(path), parse_set(["model.args.width=3"]))  # that point
    assert [t.spec.model.args["width"] for t in narrowed] == [3] * 4
    assert {t.trial_id for t in narrowed} <= {t.trial_id for t in trials}
    with pytest.raises(RecipeError, match=r"--set model.args.width: the axis grid"):
        expand(load_recipe(path), parse_set(["model.args.width=32"]))  # not the axis's


def test_misspelt_argument_names_the_key_and_the_allowed_ones(user_pkg):
    with pytest.raises(UserInputError) as err:
        build_model(spec(widht=3), 3)
    assert str(err.value) == ("model.args.widht: usernets.nets:build has no argument 'widht'; "
                              "allowed: width")
    with pytest.raises(UserInputError) as err:  # was "allowed: " and nothing after it
        build_model(spec("usernets.nets:not_a_module", width=3), 3)
    assert str(err.value) == ("model.args.width: usernets.nets:not_a_module has no argument "
                              "'width'; allowed: none (num_classes only)")


def test_num_classes_under_model_args_names_model_num_classes(user_pkg):
    with pytest.raises(UserInputError) as err:  # before: "got multiple values for keyword"
        build_model(spec(num_classes=3), 3)
    assert str(err.value) == ("model.args.num_classes: ablate passes num_classes to the "
                              "builder itself; set model.num_classes instead")
    with pytest.raises(UserInputError) as err:  # a builder of **kwargs, whose names go unchecked
        build_model(spec("usernets.nets:build_any", num_classes=3), 3)
    assert str(err.value) == ("model.args.num_classes: ablate passes num_classes to the "
                              "builder itself; set model.num_classes instead")


def test_builtin_keys_are_refused_with_a_builder_and_args_without_one():
    with pytest.raises(ValueError, match=r"backbone\n.*a built-in model key, not read "
                                         r"with model.builder 'usernets.nets:build'"):
        ModelSpec(builder="usernets.nets:build", backbone="resnet50")
    with pytest.raises(ValueError, match=r"args\n.*only read with model.builder"):
        ModelSpec(args={"width": 3})
    # keys that apply to any model stay allowed
    assert ModelSpec(builder="a.b:c", num_classes=4, bn_momentum=0.1, aux_weight=0.2).num_classes == 4


def test_non_finite_argument_is_refused():
    with pytest.raises(ValueError, match="args.scale must be finite"):
        ModelSpec(builder="a.b:c", args={"scale": float("inf")})


def test_source_hash_is_in_trial_and_architecture_ids(user_pkg):
    trial = TrialSpec(model=spec(width=4))
    before = (trial_id(trial), architecture_id(trial))
    assert trial_id(TrialSpec(model=spec(width=4))) == before[0]
    user_pkg.write_text(USER_MODULE + "\n# an edit\n")
    after = (trial_id(trial), architecture_id(trial))
    assert after[0] != before[0] and after[1] != before[1]


def test_builtin_trial_ids_hash_the_spec_alone():
    import hashlib

    from ablate.trials.ids import canonical_json

    trial = TrialSpec()
    digest = hashlib.sha256(canonical_json(spec_dict(trial)).encode()).hexdigest()[:12]
    assert trial_id(trial) == digest
    # unset builder/args are not in the spec at all: ids of built-in recipes are unchanged
    spec = spec_dict(trial)
    assert {"builder", "args"}.isdisjoint(spec["model"]) and {"builder", "args"}.isdisjoint(
        spec["data"])
    assert TrialSpec.model_validate(spec) == trial


def test_registry_module_imports_neither_torch_nor_the_zoo():
    code = ("import sys, ablate.models.build, ablate.recipes.schema;"
            "print('torch' in sys.modules, 'ablate.models.zoo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def _entry_points(monkeypatch, group, name, value):
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        if kwargs.get("group") == group:
            return importlib.metadata.EntryPoints(
                [importlib.metadata.EntryPoint(name, value, group)])
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)


@pytest.fixture
def plugin(user_pkg, monkeypatch):
    _entry_points(monkeypatch, "ablate.models", "tinynet", "usernets.nets:build")
    MODELS.refresh()
    yield
    MODELS.refresh()


def test_entry_point_plugin_is_a_builder_name(plugin):
    model = build_model(ModelSpec(builder="tinynet", args={"width": 2}), 5)
    assert model(torch.zeros(1, 3, 4, 4))["out"].shape == (1, 5, 4, 4)
    assert TrialSpec(model=ModelSpec(builder="tinynet")).model.builder == "tinynet"
    # its source file is hashed like an import path's
    assert MODELS.source_hash("tinynet") == MODELS.source_hash("usernets.nets:build")


def test_ablate_models_lists_plugins_with_arguments(plugin):
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "mobilenet_v3_large" in data["builtin"]["backbones"]
    assert data["builders"] == [{"name": "tinynet", "origin": "plugin",
                                 "path": "usernets.nets:build", "error": None,
                                 "arguments": [{"name": "width", "default": 4,
                                                "required": False}]}]
    text = CliRunner().invoke(main, ["models"]).output
    assert "tinynet" in text and "width=4" in text


def test_unknown_builder_name_lists_the_installed_ones(plugin, write_recipe):
    result = CliRunner().invoke(main, ["plan", str(recipe(write_recipe, builder="nope")),
                                       "--no-cost"])
    assert result.exit_code == 2
    assert "unknown model builder 'nope'; allowed: 'tinynet' or an import path" in result.output


BAD_BUILDERS = [
    ("nosuchpkg.nets:build", "model.builder: cannot import 'nosuchpkg.nets'"),
    ("usernets.nets:missing", "model.builder: module 'usernets.nets' has no attribute 'missing'"),
    ("usernets.nets:NOT_CALLABLE", "model.builder: usernets.nets:NOT_CALLABLE is a int"),
    ("usernets.nets:explode", "model.builder: usernets.nets:explode raised ValueError: width 4 is odd"),
    ("usernets.nets:not_a_module", "returned a str, not a torch.nn.Module"),
    ("usernets.nets:cropped", "wrong shape: the model usernets.nets:cropped built returned 'out' "
                              "logits of shape [1, 3, 8, 8] for a [1, 3, 16, 16] input; "
                              "expected [1, 3, 16, 16]"),
    ("usernets.nets:wrong_classes", "wrong class count: the model usernets.nets:wrong_classes "
                                    "built returned 'out' logits of shape [1, 4, 16, 16]"),
    ("usernets.nets:logits_dict", "the model usernets.nets:logits_dict built returned a dict "
                                  "with keys 'logits'; expected logits [1, 3, 16, 16] or a dict "
                                  "with 'out' (and 'aux')"),
    # the trial failed with "ValueError: optimizer got an empty parameter list"
    ("usernets.nets:frozen", "model.builder: the model usernets.nets:frozen built has no "
                             "trainable parameter (none, or every one with requires_grad = "
                             "False)"),
    # checked in training mode too: these fail only there (a deep error mid-training before)
    ("usernets.nets:train_tuple", "the model usernets.nets:train_tuple built returned a tuple "
                                  "in training mode; expected logits [2, 3, 16, 16]"),
    ("usernets.nets:train_small_aux", "wrong shape: the model usernets.nets:train_small_aux "
                                      "built returned 'aux' logits of shape [2, 3, 4, 4] in "
                                      "training mode for a [2, 3, 16, 16] input; expected "
                                      "[2, 3, 16, 16]"),
]


@pytest.mark.parametrize("builder, message", BAD_BUILDERS, ids=[b for b, _ in BAD_BUILDERS])
def test_bad_builder_exits_2_with_one_line_before_anything_is_recorded(
        user_pkg, write_recipe, tmp_path, builder, message):
    args = "width = 4" if builder.endswith(("build", "explode", "missing", "CALLABLE")) else ""
    path = recipe(write_recipe, builder=builder, args=args)
    db = tmp_path / "study.db"
    # plan --no-cost skips the counting, not the checks (it checked only the build)
    for command in (["plan"], ["plan", "--no-cost"], ["run", "--runs-dir", str(tmp_path / "runs")]):
        result = CliRunner().invoke(main, [*command, str(path), "--db", str(db)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output
        assert lines[0].startswith(f"Error: {path}: trial ")  # recipe and trial
        assert message in lines[0]
    if db.exists():  # run may open the database first; nothing is written to it
        from ablate.store import Store

        assert Store(f"sqlite:///{db}").studies() == []
    assert not (tmp_path / "runs").exists()


def test_plan_no_cost_checks_a_user_models_knock_out_and_its_logits(user_pkg, write_recipe,
                                                                     tmp_path):
    """``plan --no-cost`` runs the user's model on images (as counting does) and builds
    it with its knock-outs: a path the network lacks is named either way."""
    path = recipe(write_recipe)
    db = tmp_path / "study.db"
    result = CliRunner().invoke(main, ["plan", str(path), "--no-cost", "--db", str(db),
                                       "--set", 'model.remove=["nope"]'])
    assert result.exit_code == 2, result.output
    assert "model.remove: the network has no module 'nope'" in result.output
    ok = CliRunner().invoke(main, ["plan", str(path), "--no-cost", "--db", str(db),
                                   "--set", 'model.remove=["conv"]'])
    assert ok.exit_code == 0, ok.output


def test_debug_shows_the_users_own_traceback(user_pkg, write_recipe):
    path = recipe(write_recipe, builder="usernets.nets:explode")
    result = CliRunner().invoke(main, ["--debug", "plan", str(path)])
    assert result.exit_code == 2
    assert f'File "{user_pkg}", line' in result.output and "in explode" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")


def test_a_zero_width_says_only_ablates_line(user_pkg, write_recipe, capfd):
    """``model.args.width = 0``: torch's "Initializing zero-element tensors is a no-op"
    came before ablate's one-line error, in a terminal as here (a fresh process: pytest
    records warnings in its own)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserInputError, match="raised RuntimeError on a"):
            check_model(spec(width=0), 3, (16, 16))
    assert [str(w.message) for w in caught] == []
    path = recipe(write_recipe, args="width = 0")
    root = Path(ablate.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_pkg.parents[1]), str(root)])}
    done = subprocess.run([sys.executable, "-m", "ablate", "cost", str(path)], env=env)
    assert done.returncode == 2
    err = capfd.readouterr().err
    assert "zero-element" not in err and "Warning" not in err
    assert err.startswith("Error: ") and err.count("\n") == 1, err


def test_cost_breakdown_and_diff_of_user_models(user_pkg, write_recipe):
    path = write_recipe(RECIPE.format(builder="usernets.nets:build", args="width = 4")
                        + '[grid]\n"model.args.width" = [4, 6]\n')
    result = CliRunner().invoke(main, ["cost", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["params"] for r in rows] == [(3 * 4 * 9 + 4) + (4 * 3 + 3),
                                           (3 * 6 * 9 + 6) + (6 * 3 + 3)]
    assert rows[0]["params_by_module"] == {"conv": 112, "classifier": 15}
    # fvcore MACs at 16x16: conv 3x3 3->4 and the 1x1 classifier 4->3
    assert rows[0]["flops_by_module"]["conv"] == 16 * 16 * 4 * 3 * 9
    assert rows[0]["flops_by_module"]["classifier"] == 16 * 16 * 3 * 4
    diff = CliRunner().invoke(main, ["cost", str(path), "--diff", "width=4", "width=6", "--json"])
    assert diff.exit_code == 0, diff.output
    modules = {r["module"]: r for r in json.loads(diff.output)["rows"]}
    assert modules["conv"]["params_a"] == 112 and modules["conv"]["params_b"] == 168


def test_cost_names_the_attention_its_flops_leave_out(user_pkg, write_recipe):
    path = recipe(write_recipe, builder="usernets.nets:attending", args="")
    result = CliRunner().invoke(main, ["cost", str(path)])
    assert result.exit_code == 0, result.output
    # fvcore has no formula for it: 256x256x4 multiply-adds twice are not in the figure
    assert ("GFLOPs leave out calls fvcore-mac has no formula for: "
            "scaled_dot_product_attention x1 (their multiply-adds are not counted)"
            ) in " ".join(result.output.split())
    plain = CliRunner().invoke(main, ["cost", str(recipe(write_recipe))])
    assert plain.exit_code == 0 and "leave out" not in plain.output


@pytest.mark.slow
def test_killed_user_model_trial_resumes_to_the_same_weights(user_pkg, tmp_path):
    from ablate.train.checkpoint import CHECKPOINT_NAME
    from ablate.train.loop import train_and_evaluate

    trial = TrialSpec.model_validate({
        "model": {"builder": "usernets.nets:build", "args": {"width": 4}},
        "data": {"name": "shapes", "classes": 3, "image_size": 16, "train_images": 16,
                 "val_images": 4},
        "train": {"optimizer": "sgd", "lr": 0.05, "epochs": 2, "batch_size": 4,
                  "log_every": 1, "checkpoint_every": 2},
        "eval": {"latency": False, "batch_size": 4},
    })

    class Killed(Exception):
        pass

    def kill_at_5(event):
        if isinstance(event, Stepped) and event.step == 5:
            raise Killed

    straight = train_and_evaluate(trial, tmp_path / "straight")
    with pytest.raises(Killed):
        train_and_evaluate(trial, tmp_path / "resumed", kill_at_5)
    events: list = []
    again = train_and_evaluate(trial, tmp_path / "resumed", events.append)
    assert Resumed(4) in events
    assert [e.step for e in events if isinstance(e, Stepped)] == [5, 6, 7, 8]
    a, b = (torch.load(tmp_path / d / CHECKPOINT_NAME, weights_only=False)["model"]
            for d in ("straight", "resumed"))
    assert list(a) == ["conv.weight", "conv.bias", "classifier.weight", "classifier.bias"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again["final"]["miou"] == straight["final"]["miou"]


def test_a_plugin_model_is_knocked_out_by_path_like_any_other(plugin):
    full = build_model(ModelSpec(builder="tinynet", args={"width": 2}), 5)
    knocked = build_model(ModelSpec(builder="tinynet", args={"width": 2}, remove=["conv"]), 5)
    # conv 3 -> 2 (3x3, bias) is gone; zeros of its [N, 2, H, W] output reach the classifier
    assert count_parameters(full) - count_parameters(knocked) == 3 * 2 * 9 + 2
    knocked.eval()
    out = knocked(torch.randn(2, 3, 6, 7))["out"]
    bias = knocked.classifier.bias.detach().view(1, 5, 1, 1).expand(2, 5, 6, 7)
    assert torch.equal(out, bias)


@pytest.mark.parametrize("first", ["plan", "run", "plan --no-cost"])
def test_aux_weight_on_a_model_without_an_aux_output_is_refused_every_run(
        user_pkg, write_recipe, tmp_path, first):
    """The weight would never be read (the trials differing in their ids only). The
    answer is not cached with the architecture's costs: a second run asks again (and
    ``plan --no-cost``, which did not ask)."""
    text = RECIPE.format(builder="usernets.nets:build", args="width = 4").replace(
        'seeds = [0]', 'seeds = [0]\n[grid]\n"model.aux_weight" = [0.5, 0.3]')
    path = write_recipe(text)
    db = tmp_path / "study.db"
    for command in (first.split(), ["run"], ["plan", "--no-cost"]):
        result = CliRunner().invoke(main, [*command, str(path), "--db", str(db),
                                           *(["--runs-dir", str(tmp_path / "runs")]
                                             if command == ["run"] else [])])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output
        assert lines[0].startswith(f"Error: {path}: trial ")
        assert ("model.aux_weight = 0.3 is never read: the model usernets.nets:build built "
                "returns no 'aux' output in training mode") in lines[0]
    if db.exists():
        from ablate.store import Store

        assert Store(f"sqlite:///{db}").studies() == []
    # an aux output, the default weight or 0 (no aux loss) are accepted
    for builder, weight in (("usernets.nets:build_dict", "0.3"), ("usernets.nets:build", "0"),
                            ("usernets.nets:build", "0.5")):
        ok = CliRunner().invoke(main, ["plan", str(recipe(write_recipe, builder=builder)),
                                       "--set", f"model.aux_weight={weight}"])
        assert ok.exit_code == 0, ok.output
