"""Malformed recipes, each one change away from a valid one: exit 2, one line, nothing
written, for ``plan`` and ``run`` alike (the database already holds a study)."""

from __future__ import annotations

import pytest

from tests.validation.harness import assert_refused, invoke, make_database, recipe_text, snapshot

M, D, T = "base.model", "base.data", "base.train"
S = "base.model.selective"

# (case id, changes to the valid recipe, text the one line must contain)
CASES = [
    # numbers that are not finite, or outside their documented range
    ("lr-inf", [(T, "lr", "inf")], "base.train.lr: must be a finite number"),
    ("lr-minus-inf", [(T, "lr", "-inf")], "base.train.lr: must be a finite number"),
    ("lr-nan", [(T, "lr", "nan")], "base.train.lr: must be a finite number"),
    ("lr-zero", [(T, "lr", "0.0")], "base.train.lr: should be a number in (0, 10] (got 0.0)"),
    ("lr-negative", [(T, "lr", "-0.1")], "base.train.lr"),
    ("lr-huge", [(T, "lr", "1e300")], "base.train.lr: should be a number in (0, 10] (got 1e+300)"),
    ("momentum-one", [(T, "momentum", "1.0")], "base.train.momentum"),
    ("momentum-inf", [(T, "momentum", "inf")], "base.train.momentum: must be a finite"),
    ("weight-decay-inf", [(T, "weight_decay", "inf")], "base.train.weight_decay"),
    ("weight-decay-two", [(T, "weight_decay", "2.0")], "base.train.weight_decay"),
    ("power-inf", [(T, "power", "inf")], "base.train.power: must be a finite"),
    ("grad-clip-inf", [(T, "grad_clip", "inf")], "base.train.grad_clip: must be a finite"),
    ("grad-clip-zero", [(T, "grad_clip", "0.0")], "base.train.grad_clip"),
    ("aux-weight-inf", [(M, "aux_weight", "inf")], "base.model.aux_weight: must be a finite"),
    ("aux-weight-negative", [(M, "aux_weight", "-1.0")], "base.model.aux_weight"),
    ("bn-momentum-inf", [(M, "bn_momentum", "inf")], "base.model.bn_momentum"),
    ("bn-momentum-zero", [(M, "bn_momentum", "0.0")], "base.model.bn_momentum"),
    ("selective-lambda-inf", [(S, "lambda", "inf")], "base.model.selective.lambda: must be"),
    ("selective-target-above-one", [(S, "target", "1.5")], "base.model.selective.target"),
    ("selective-tau-inf", [(S, "tau", "inf")], "base.model.selective.tau"),
    ("selective-tau-zero", [(S, "tau", "0.0")], "base.model.selective.tau"),
    ("selective-tau-final-inf", [(S, "tau_final", "inf")], "base.model.selective.tau_final"),
    ("scale-range-inf", [(D, "scale_range", "[0.5, inf]")], "base.data.scale_range[1]"),
    ("scale-range-decreasing", [(D, "scale_range", "[2.0, 1.0]")], "low <= high"),
    ("scale-range-one-value", [(D, "scale_range", "[1.0]")], "base.data.scale_range"),
    ("published-miou-inf", [("variants.plain.published", "miou", "inf")],
     "variants.plain.published.miou: must be a finite"),
    ("published-miou-150", [("variants.plain.published", "miou", "150.0")],
     "variants.plain.published.miou"),
    ("published-gflops-negative", [("variants.plain.published", "gflops", "-1.0")],
     "variants.plain.published.gflops"),
    # integers: zero, negative, huge, wrong type
    ("epochs-zero", [(T, "epochs", "0")], "base.train.epochs"),
    ("epochs-float", [(T, "epochs", "1.5")], "base.train.epochs"),
    ("epochs-string", [(T, "epochs", '"3"')], "base.train.epochs"),
    ("epochs-huge", [(T, "epochs", "9223372036854775807")], "base.train.epochs"),
    ("batch-size-zero", [(T, "batch_size", "0")], "base.train.batch_size"),
    ("batch-size-huge", [(T, "batch_size", "1000000")], "base.train.batch_size"),
    ("image-size-huge", [(D, "image_size", "100000")], "base.data.image_size"),
    ("classes-one", [(D, "classes", "1")], "base.data.classes"),
    ("classes-seventeen", [(D, "classes", "17")], "base.data.classes"),
    ("workers-negative", [(D, "workers", "-1")], "base.data.workers: should be"),
    ("workers-word", [(D, "workers", '"many"')], "base.data.workers: should be"),
    ("train-images-zero", [(D, "train_images", "0")], "base.data.train_images"),
    ("eval-resolution-one-side", [("base.eval", "resolution", "[32]")], "base.eval.resolution"),
    ("eval-resolution-zero", [("base.eval", "resolution", "[0, 32]")],
     "base.eval.resolution[0]"),
    ("eval-size-three-sides", [(D, "eval_size", "[32, 32, 32]")], "base.data.eval_size"),
    ("latency-runs-zero", [("base.eval", "latency_runs", "0")], "base.eval.latency_runs"),
    ("output-stride-seven", [(M, "output_stride", "7")], "base.model.output_stride"),
    ("aspp-rate-zero", [(M, "aspp_rates", "[0]")], "base.model.aspp_rates[0]"),
    ("expansion-negative", [(M, "expansion", "[-1]")], "base.model.expansion"),
    ("expansion-word", [(M, "expansion", '"some"')], 'base.model.expansion: should be "all", "none" or list of integer'),
    ("expansion-block-99", [(M, "expansion", "[99]")], "block 99 out of range"),
    ("fcn8s-on-mobilenet", [(M, "head", '"fcn8s"')], "model.head"),
    ("selective-on-mobilenet", [(S, "enabled", "true")], "model.backbone"),
    # names from a closed list, booleans
    ("backbone-typo", [(M, "backbone", '"resnet5"')], "base.model.backbone"),
    ("head-number", [(M, "head", "3")], "base.model.head"),
    ("hflip-string", [(D, "hflip", '"yes"')], "base.data.hflip"),
    ("optimizer-adam", [(T, "optimizer", '"adam"')], "'sgd' or 'adamw'"),
    ("schedule-step", [(T, "schedule", '"step"')], "base.train.schedule"),
    ("amp-fp8", [(T, "amp", '"fp8"')], "base.train.amp"),
    ("device-tpu", [(T, "device", '"tpu"')], "base.train.device"),
    # empty values: never taken as "not set"
    ("weights-path-empty", [(M, "weights_path", '""')], "base.model.weights_path: must not be"),
    ("data-root-empty", [(D, "root", '""')], "base.data.root: must not be empty"),
    ("train-split-empty", [(D, "train_split", '""')], "base.data.train_split"),
    ("slurm-partition-empty", [("slurm", "partition", '""')], "slurm.partition: must not be"),
    ("aspp-rates-empty-string", [(M, "aspp_rates", '""')], "base.model.aspp_rates"),
    # seeds
    ("seeds-int64-max", [("", "seeds", "[9223372036854775807]")], "seeds: must be"),
    ("seeds-two-to-the-32", [("", "seeds", "[4294967296]")], "[0, 4294967295]"),
    ("seeds-negative", [("", "seeds", "[-1]")], "seeds"),
    ("seeds-empty", [("", "seeds", "[]")], "seeds: must be a non-empty list"),
    ("seeds-repeated", [("", "seeds", "[1, 1]")], "repeated: 1"),
    ("seeds-float", [("", "seeds", "[1.5]")], "seeds"),
    ("seeds-string", [("", "seeds", '"0"')], "seeds"),
    ("seed-under-base", [("base", "seed", "3")], "base.seed: not a key of a trial"),
    ("seed-grid-axis", [("grid", '"seed"', "[1, 2]")], "not a key of a trial"),
    ("seed-in-variant", [("variants.plain", "seed", "2")], "variants.plain.seed"),
    # where PyTorch code keeps it: the unknown key's allowed ones, then where seeds go
    ("seed-under-train", [("base.train", "seed", "3")],
     "weight_decay; a trial's seed comes from the recipe's top-level seeds = [0, 1]"),
    ("seed-train-axis", [("grid", '"train.seed"', "[1, 2]")],
     "weight_decay; a trial's seed comes from the recipe's top-level seeds = [0, 1]"),
    # names
    ("name-empty", [("", "name", '""')], "name: must be 1-100 characters"),
    ("name-slash", [("", "name", '"a/b"')], "name: must be"),
    ("name-dot-dot", [("", "name", '".."')], "name: must be"),
    ("name-dot", [("", "name", '"."')], "name: must be"),
    ("name-too-long", [("", "name", '"' + "x" * 101 + '"')], "name: must be"),
    ("name-ansi-escape", [("", "name", '"\\u001b[31mred"')], "name: must be"),
    ("name-nul", [("", "name", '"a\\u0000b"')], "name: must be"),
    ("name-number", [("", "name", "5")], "name: must be a string"),
    ("name-space", [("", "name", '"my study"')], "name: must be"),
    ("variant-name-empty", [('variants.""', "description", '"x"')], "variant's name"),
    ("variant-name-slash", [('variants."a/b"', "description", '"x"')], "variant's name"),
    ("variant-name-escape", [('variants."\\u001b[2J"', "description", '"x"')],
     "variant's name"),
    # keys and tables
    ("top-level-typo", [("", "grids", "3")], "allowed: name, description, seeds"),
    ("model-key-typo", [(M, "backbon", '"resnet50"')], "base.model.backbon: unknown key"),
    ("unknown-section", [("base.optim", "lr", "0.1")], "allowed here: data, eval"),
    ("grid-unknown-key", [("grid", '"model.nope"', "[1]")], "unknown key"),
    ("grid-not-a-list", [("grid", '"train.lr"', "0.1")], "must be a list of values"),
    ("grid-empty-axis", [("grid", '"train.lr"', "[]")], "empty axis"),
    ("grid-bad-value", [("grid", '"train.lr"', "[0.1, inf]")], 'grid."train.lr"'),
    ("zip-unequal", [("zip", '"train.lr"', "[0.1, 0.2]"), ("zip", '"train.epochs"', "[1]")],
     "equal lengths"),
    ("zip-repeats-grid-key", [("zip", '"model.keep_last_expansion"', "[true]")],
     "already an axis"),
    ("variant-description-typo", [("variants.plain", "descripton", '"x"')],
     "allowed here: data, description, eval"),
    ("variant-description-number", [("variants.plain", "description", "5")],
     "variants.plain.description: must be a string"),
    ("slurm-typo", [("slurm", "partion", '"gpu"')], "allowed here: array_parallelism"),
    ("slurm-time-zero", [("slurm", "time", "0")], "slurm.time"),
    ("slurm-gpus-negative", [("slurm", "gpus_per_trial", "-1")], "slurm.gpus_per_trial"),
    ("published-typo", [("variants.plain.published", "mIoU", "70.0")],
     "allowed here: gflops, gflops_mask_net, miou"),
    ("description-number", [("", "description", "5")], "description: must be a string"),
    # a table where a value belongs, a value where a table belongs
    ("data-name-table", [(D, "name", "{ foo = 1 }")],
     "base.data.name: must be a dataset name, not a table; allowed: 'shapes', 'voc2012', "
     "'cityscapes', 'coco', 'folder'"),
    ("data-name-number", [(D, "name", "3")], "base.data.name: must be a dataset name, not a "
                                               "number; allowed: 'shapes'"),
    ("eval-data-name-table", [("base.eval_data", "name", "{ foo = 1 }")],
     "base.eval_data.name: must be a dataset name, not a table; allowed: 'shapes'"),
    ("grid-data-name-table", [("grid", '"data.name"', "[{ foo = 1 }]")],
     'grid."data.name": must be a dataset name, not a table'),
    ("backbone-table", [(M, "backbone", "{ a = 1 }")],
     "base.model.backbone: must be a backbone name, not a table; allowed: "
     "'mobilenet_v3_large', 'mobilenet_v3_small', 'resnet50', 'resnet101', 'squeezenet1_0'"),
    ("head-list", [(M, "head", '["fcn"]')], "base.model.head: must be a head name, not a list"),
    ("builder-table", [(M, "builder", "{ a = 1 }")],
     "base.model.builder: must be an import path 'package.module:function' or a plugin's "
     "name, not a table"),
    ("data-builder-table", [(D, "builder", "{ a = 1 }")], "base.data.builder: must be an "
                                                          "import path"),
    ("data-root-table", [(D, "root", "{ a = 1 }")],
     "base.data.root: should be a string (got a table)"),
    ("optimizer-table", [(T, "optimizer", "{ a = 1 }")],
     "base.train.optimizer: should be 'sgd' or 'adamw' (got a table)"),
    ("lr-table", [(T, "lr", "{ a = 1 }")], "base.train.lr: should be a number in (0, 10] (got a table)"),
    ("scale-range-table", [(D, "scale_range", "{ a = 1 }")],
     "base.data.scale_range: should be a list of number in (0, inf) (got a table)"),
    ("latency-table", [("base.eval", "latency", "{ a = 1 }")],
     "base.eval.latency: should be a boolean (got a table)"),
    ("slurm-mem-table", [("slurm", "mem", "{ a = 1 }")], "slurm.mem: should be a string (got a table)"),
    ("selective-scalar", [(M, "selective", "3")], "base.model.selective: must be a table (got 3)"),
    ("model-args-scalar", [(M, "args", "3")], "base.model.args: must be a table (got 3)"),
    ("data-args-list", [(D, "args", "[1]")], "base.data.args: must be a table (got [1])"),
    ("eval-section-scalar", [("base", "eval", "3")], "base.eval: must be a table (got 3)"),
    ("published-scalar", [("variants.plain", "published", "3")],
     "variants.plain.published: must be a table"),
]


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    return make_database(tmp_path_factory.mktemp("db"))


@pytest.mark.parametrize("changes,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_recipe_is_refused_by_plan_and_run(tmp_path, database, changes, needle):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(recipe_text(*changes), encoding="utf-8")
    before = snapshot(tmp_path), snapshot(database.parent)
    for command in (["plan", "--no-cost"], ["run"]):
        line = assert_refused(invoke([*command, str(recipe), "--db", str(database)]), needle)
        assert line.startswith(f"Error: {recipe}: ")
    assert (snapshot(tmp_path), snapshot(database.parent)) == before


RAW_CASES = [
    ("invalid-toml", b"[base\n", "invalid TOML"),
    ("duplicate-key", b'name = "a"\nname = "b"\n', "invalid TOML"),
    ("not-utf8", b'name = "ok"\ndescription = "caf\xe9"\n', "byte 0xe9 at line 2, column 19"),
    ("utf16", "name = 'x'\n".encode("utf-16"), "not UTF-8 text"),
    ("variants-not-a-table", b"variants = 3\n", "variants: must be a table"),
    ("base-not-a-table", b"base = 3\n", "base: must be a table"),
    ("slurm-not-a-table", b'slurm = "x"\n', "slurm: must be a table"),
    ("published-not-a-table", b"[variants.v]\npublished = 3\n", "published: must be a table"),
    ("control-char-key", b'[base.model]\n"\\u001b[2Jx" = 1\n', "unknown key"),
]


@pytest.mark.parametrize("data,needle", [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES])
def test_unreadable_recipe_is_refused(tmp_path, database, data, needle):
    recipe = tmp_path / "raw.toml"
    recipe.write_bytes(data)
    before = snapshot(tmp_path), snapshot(database.parent)
    for command in (["plan", "--no-cost"], ["run"]):
        assert_refused(invoke([*command, str(recipe), "--db", str(database)]), needle)
    assert (snapshot(tmp_path), snapshot(database.parent)) == before


def test_recipe_that_is_a_folder_or_missing(tmp_path, database):
    assert_refused(invoke(["plan", str(tmp_path), "--db", str(database)]), "is a directory")
    assert_refused(invoke(["run", str(tmp_path / "none.toml")]), "recipe file not found")
