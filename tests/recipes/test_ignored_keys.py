"""A key the trial would not read is refused, never silently dropped (docs/recipes.md,
"What is checked"): one line naming the file, the key, why and what makes it count.

Checked on the final trial spec (after variants, axes and --set), so a key set in the
base and made unread by an axis is refused too; a key at its default never is (a stored
trial's spec carries every default).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ablate.catalog import BACKBONES, HEADS
from ablate.cli import main
from ablate.errors import RecipeError
from ablate.recipes import schema
from ablate.recipes.loader import parse_recipe
from ablate.recipes.schema import ModelSpec, TrialSpec
from ablate.trials.expand import expand
from ablate.trials.ids import spec_dict

SMALL = ('[base.model]\nbackbone = "mobilenet_v3_small"\n'
         "[base.train]\nepochs = 1\n[base.eval]\nflops = false\n")


def _error(text: str, overrides: dict | None = None) -> str:
    with pytest.raises(RecipeError) as err:
        expand(parse_recipe(text, "r.toml"), overrides)
    return str(err.value)


def _plans(text: str, overrides: dict | None = None) -> list:
    return expand(parse_recipe(text, "r.toml"), overrides)


# (case id, recipe text, the start of the one line, a word of what makes it count)
REFUSED = [
    ("root-without-name", '[base.data]\nroot = "/data/VOC"\n',
     "r.toml: base.data.root: not read: data.name is not set", "'voc2012'"),
    ("sbd-on-shapes", "[base.data]\nsbd = true\n",
     "r.toml: base.data.sbd: not read by data.name 'shapes' (the default: data.name is not "
     "set)", "data.name = 'voc2012'"),
    ("sbd-on-coco", '[base.data]\nname = "coco"\nroot = "c"\nsbd = true\n',
     "r.toml: base.data.sbd: not read by data.name 'coco'", "data.name = 'voc2012'"),
    ("lraspp-aspp-rates", '[base.model]\nhead = "lraspp"\naspp_rates = [6, 12]\n',
     "r.toml: base.model.aspp_rates: not read by model.head 'lraspp' (read by: 'deeplabv3', "
     "'deeplabv3plus')", "set model.head to one of them"),
    ("lraspp-aspp-channels", '[base.model]\nhead = "lraspp"\naspp_channels = 128\n',
     "r.toml: base.model.aspp_channels: not read by model.head 'lraspp'", "'deeplabv3plus'"),
    ("lraspp-low-level-channels", '[base.model]\nhead = "lraspp"\nlow_level_channels = 32\n',
     "r.toml: base.model.low_level_channels: not read by model.head 'lraspp' (read by: "
     "'deeplabv3plus')", "set model.head = 'deeplabv3plus'"),
    ("deeplabv3-low-level", '[base.model]\nhead = "deeplabv3"\nlow_level = "aux"\n',
     "r.toml: base.model.low_level: not read by model.head 'deeplabv3'", "'deeplabv3plus'"),
    ("fcn-aspp-rates", '[base.model]\nhead = "fcn"\naspp_rates = [6]\n',
     "r.toml: base.model.aspp_rates: not read by model.head 'fcn'", "'deeplabv3'"),
    ("resnet50-expansion", '[base.model]\nbackbone = "resnet50"\nexpansion = "none"\n',
     "r.toml: base.model.expansion: not read by model.backbone 'resnet50' (read by: "
     "'mobilenet_v3_large', 'mobilenet_v3_small')", "set model.backbone to one of them"),
    ("resnet50-keep-last-expansion",
     '[base.model]\nbackbone = "resnet50"\nkeep_last_expansion = false\n',
     "r.toml: base.model.keep_last_expansion: not read by model.backbone 'resnet50'",
     "'mobilenet_v3_large'"),
    ("squeezenet-expansion",
     '[base.model]\nbackbone = "squeezenet1_0"\nhead = "fcn8s"\noutput_stride = 32\n'
     "expansion = [1]\n",
     "r.toml: base.model.expansion: not read by model.backbone 'squeezenet1_0'", "remove"),
    ("cpu-fp16", '[base.train]\ndevice = "cpu"\namp = "fp16"\n',
     "r.toml: base.train.amp: mixed precision is CUDA only", "train.device = 'cuda'"),
    ("cpu-bf16", '[base.train]\ndevice = "cpu"\namp = "bf16"\n',
     "r.toml: base.train.amp: mixed precision is CUDA only", "float32"),
    ("aux-weight", "[base.model]\naux_weight = 0.3\n",
     "r.toml: base.model.aux_weight: the auxiliary head's loss weight, not read with "
     "model.aux_head = false", "set model.aux_head = true"),
]


@pytest.mark.parametrize("text,start,fix", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_an_unread_key_is_refused_naming_it(text, start, fix):
    line = _error(text)
    assert line.startswith(start), line
    assert fix in line and "\n" not in line


@pytest.mark.parametrize("text,start", [(c[1], c[2]) for c in REFUSED[:4]],
                         ids=[c[0] for c in REFUSED[:4]])
def test_plan_and_run_refuse_it_in_one_line(tmp_path, text, start):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    db = tmp_path / "r.db"
    for command in (["plan", "--no-cost"], ["run"]):
        result = CliRunner().invoke(main, [*command, str(recipe), "--db", str(db)])
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"Error: {recipe}: {start.removeprefix('r.toml: ')}")
        assert "Traceback" not in result.output
    assert not db.exists()


# each key where it is read: plans without any data
ACCEPTED = [
    ("sgd-momentum", '[base.train]\noptimizer = "sgd"\nmomentum = 0.5\n'),
    ("poly-power", '[base.train]\nschedule = "poly"\npower = 2.0\n'),
    ("deeplabv3-aspp", '[base.model]\nhead = "deeplabv3"\naspp_rates = [6, 12]\n'
                       "aspp_channels = 128\n"),
    ("voc-recipe-tried-on-shapes", '[base.data]\nname = "voc2012"\nroot = "v"\nsbd = true\n'
                                   '[base.eval_data]\nname = "voc2012"\nroot = "v"\n'),
    ("deeplabv3plus-low-level", '[base.model]\nhead = "deeplabv3plus"\nlow_level_channels = 32\n'
                                'aspp_rates = [6]\nlow_level = "low"\n'),
    ("mobilenet-expansion", '[base.model]\nexpansion = "none"\nkeep_last_expansion = false\n'),
    ("aux-head-weight", '[base.model]\nhead = "deeplabv3"\naux_head = true\naux_weight = 0.3\n'),
    ("cuda-fp16", '[base.train]\ndevice = "cuda"\namp = "fp16"\n'),
    ("auto-bf16", '[base.train]\namp = "bf16"\n'),
    ("cpu-amp-off", '[base.train]\ndevice = "cpu"\namp = "off"\n'),
    ("latency-runs", "[base.eval]\nlatency = true\nlatency_runs = 5\nlatency_warmup = 1\n"),
    ("shapes-keys", '[base.data]\nclasses = 3\ntrain_images = 5\nval_images = 4\n'
                    "image_size = 32\ndata_seed = 2\n"),
    ("voc-sbd-root", '[base.data]\nname = "voc2012"\nroot = "v"\nsbd = true\n'),
    # data.name = 'shapes' written out (ablate's hint for trying a recipe without its data:
    # --set data.name=shapes) is a choice: a root left beside it is harmless
    ("explicit-shapes-root", '[base.data]\nname = "shapes"\nroot = "/data/VOC"\nsbd = true\n'),
    ("folder-image-size", '[base.data]\nname = "folder"\nroot = "f"\nimage_size = 32\n'
                          '[base.model]\nnum_classes = 3\n[base.eval]\nresolution = [32, 32]\n'),
    # a --set cannot remove a key: the embedded data's keys beside a real dataset (the
    # quick-start tried with --set data.name=voc2012) and latency settings with the
    # latency off (--set eval.latency=false) stay accepted
    ("voc-shapes-keys", '[base.data]\nname = "voc2012"\nroot = "v"\nclasses = 3\n'
                        "train_images = 5\nval_images = 5\ndata_seed = 3\nimage_size = 32\n"
                        "crop_size = 32\n"),
    ("latency-off-settings", "[base.eval]\nlatency = false\nlatency_runs = 5\n"
                             "latency_warmup = 5\n"),
    # a default written out is not refused (a stored trial's spec carries every default)
    ("adamw-default-momentum", '[base.train]\noptimizer = "adamw"\nmomentum = 0.9\n'),
    ("lraspp-default-aspp", '[base.model]\nhead = "lraspp"\naspp_rates = [12, 24, 36]\n'
                            "aux_weight = 0.5\n"),
]


@pytest.mark.parametrize("text", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_a_key_that_is_read_is_accepted(text):
    assert _plans(text)


def test_the_hint_for_trying_a_recipe_without_its_data_still_plans():
    """preflight's hint for a missing dataset: --set data.name=shapes (and
    eval_data.name=shapes); the recipe's root and sbd stay behind, unread but chosen."""
    text = ACCEPTED[[c[0] for c in ACCEPTED].index("voc-recipe-tried-on-shapes")][1]
    [trial] = _plans(text, {"data.name": "shapes", "eval_data.name": "shapes"})
    assert trial.spec.data.name == trial.spec.eval_data.name == "shapes"


def test_a_data_builder_reads_the_root():
    from ablate.recipes.schema import DataSpec

    assert DataSpec.model_validate({"builder": "pkg.mod:build", "root": "d"}).root == "d"


def test_a_key_made_unread_by_an_axis_is_refused_at_its_line():
    base = '[base.model]\naspp_rates = [6, 12]\n[grid]\n"model.head" = ["deeplabv3", "lraspp"]\n'
    assert _error(base).startswith("r.toml: base.model.aspp_rates: not read by model.head "
                                   "'lraspp'")
    variant = '[base.model]\nbackbone = "resnet50"\n[variants.a]\nmodel.expansion = "none"\n'
    assert _error(variant).startswith("r.toml: variants.a.model.expansion: not read by "
                                      "model.backbone 'resnet50'")
    axis = '[base.model]\nhead = "lraspp"\n[grid]\n"model.aspp_channels" = [64, 128]\n'
    assert _error(axis).startswith('r.toml: grid."model.aspp_channels": not read by')


def test_a_key_made_unread_by_set_is_refused():
    text = '[base.model]\naspp_rates = [6, 12]\n'
    assert _plans(text)
    assert _error(text, {"model.head": "lraspp"}).startswith(
        "r.toml: base.model.aspp_rates: not read by model.head 'lraspp'")
    assert _error("", {"train.device": "cpu", "train.amp": "fp16"}).startswith(
        "r.toml: --set train.amp: mixed precision is CUDA only")


def test_an_axis_that_makes_it_read_in_every_trial_is_accepted():
    text = ('[base.model]\nhead = "lraspp"\n'
            '[variants.v3]\nmodel.head = "deeplabv3"\nmodel.aspp_rates = [6]\n'
            '[variants.lraspp]\nmodel.head = "lraspp"\n')
    assert len(_plans(text)) == 2


def test_momentum_and_power_are_left_to_tuning():
    """Not refused: [tune] draws train.momentum with train.optimizer (and power with the
    schedule) in one search, docs/fair-comparisons.md; a spec cannot tell a drawn value
    from a written one."""
    assert _plans('[base.train]\noptimizer = "adamw"\nmomentum = 0.5\n'
                  'schedule = "cosine"\npower = 2.0\n')


def test_stored_specs_validate_again():
    """A trial's spec is stored whole (every default written out) and validated again
    when it runs: the refusals must let every such spec through."""
    texts = [SMALL, '[base.model]\nhead = "lraspp"\n[base.train]\noptimizer = "adamw"\n'
             'schedule = "cosine"\ndevice = "cpu"\n[base.eval]\nlatency = false\n',
             '[base.model]\nbackbone = "resnet50"\nhead = "fcn"\n[base.data]\nname = "voc2012"\n'
             'root = "v"\n', '[base.data]\nname = "coco"\nroot = "c"\n[base.eval_data]\n'
             'name = "shapes"\nroot = "v"\n']
    for text in texts:
        for trial in _plans(text):
            stored = spec_dict(trial.spec)
            assert spec_dict(TrialSpec.model_validate(stored)) == stored


def test_a_plugin_head_gets_every_key(monkeypatch):
    """A registered head or backbone gets the whole spec: its keys are never refused."""
    monkeypatch.setitem(HEADS._registered, "my_head", HEADS.entry("lraspp"))
    monkeypatch.setitem(BACKBONES._registered, "my_backbone", BACKBONES.entry("resnet50"))
    spec = ModelSpec.model_validate({"head": "my_head", "backbone": "my_backbone",
                                     "aspp_rates": [6], "expansion": "none",
                                     "aux_weight": 0.2})
    assert spec.aspp_rates == [6]


def test_the_tables_cover_every_built_in_head_and_backbone():
    assert list(schema.HEAD_KEYS) == HEADS.builtin_names()
    assert list(schema.BACKBONE_KEYS) == BACKBONES.builtin_names()


@pytest.mark.parametrize("head,key,value", [
    ("lraspp", "aspp_rates", [6]), ("lraspp", "aspp_channels", 64),
    ("lraspp", "low_level_channels", 16), ("fcn", "aspp_channels", 64),
    ("deeplabv3", "low_level_channels", 16), ("deeplabv3", "low_level", "aux")])
def test_a_refused_head_key_does_not_change_the_network(head, key, value):
    """The tables say what the builders do: built around the check, the key changes no
    parameter shape of the heads it is refused for, and does change its readers'."""
    from ablate.cost.analyse import build_on_meta

    def shapes(**keys):
        spec = ModelSpec().model_copy(update={"backbone": "mobilenet_v3_small", **keys})
        return {k: tuple(v.shape) for k, v in build_on_meta(spec, 3).state_dict().items()}

    assert shapes(head=head, **{key: value}) == shapes(head=head)
    reader = "deeplabv3plus"
    if key != "low_level":
        assert shapes(head=reader, **{key: value}) != shapes(head=reader)


def test_a_refused_backbone_key_does_not_change_the_network():
    from ablate.cost.analyse import build_on_meta

    def count(**keys):
        spec = ModelSpec().model_copy(update={"head": "fcn", **keys})
        return sum(p.numel() for p in build_on_meta(spec, 3).parameters())

    assert count(backbone="resnet50", keep_last_expansion=False) == count(backbone="resnet50")
    assert (count(backbone="mobilenet_v3_small", keep_last_expansion=False)
            != count(backbone="mobilenet_v3_small"))


@pytest.mark.parametrize(("table", "key"), [
    ("model.expansion = {}", "model.expansion"),
    ("model = { args = {} }", "model.args"),
    ("train = {}", "train"),
])
def test_an_empty_table_in_a_variant_is_refused_not_dropped(table, key):
    """Flattening the variant's overrides dropped it: the variant trained as the base."""
    assert _error(SMALL + f"[variants.a]\n{table}\n").startswith(
        f"r.toml: variants.a.{key}: an empty table sets nothing")
