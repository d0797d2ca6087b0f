"""Typed, validated sections of a trial: model, data, train, eval.

Every key a recipe may set is a field here, with its default. A trial spec is the
fully resolved ``TrialSpec`` (defaults filled in), which is what the trial id hashes.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from ablate import catalog
from ablate.errors import UserInputError
from ablate.registry import is_import_path

# Backbone, head, model-builder and dataset names are asked of their registries
# (ablate.catalog, below this schema): built-ins, plugins and import paths.


def _height_width(v: list[int] | None) -> list[int] | None:
    if v is not None and len(v) != 2:
        raise ValueError("must be [height, width]")
    return v


class Section(BaseModel):
    """Strict base: unknown keys are errors, values are not silently coerced."""

    # allow_inf_nan=False: inf passes every gt/ge check and only shows up as a nan loss
    # str_min_length: an empty path or name would be silently taken as "not set"
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True,
                              allow_inf_nan=False, str_min_length=1)


# Upper bounds keep absurd values (a typo's extra zeros) from planning and then failing.
MAX_COUNT = 10**9
MAX_PIXELS = 8192  # image sides, crops, evaluation resolutions
SEED_MAX = 2**32 - 1  # numpy and torch generators take 32-bit seeds
PositiveInt = Annotated[int, Field(gt=0, le=MAX_COUNT)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Pixels = Annotated[int, Field(gt=0, le=MAX_PIXELS)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class SelectiveSpec(Section):
    """Content-adaptive (mask-based) down-sampling of the selective down-sampling letter
    (its baseline: Hesse, Schaub-Meyer and Roth, CVPR Workshops 2023)."""

    enabled: bool = False
    mask_net: Literal["conv", "dwsep"] = "conv"
    mask_source: Literal["layer1", "layer2"] = "layer2"
    patch: PositiveInt = 2
    pooling: Literal["fixed", "avg", "max"] = "fixed"
    loss: Literal["target", "weight"] = "target"
    target: Annotated[float, Field(ge=0, le=1)] = 0.5
    sparsity_weight: Annotated[float, Field(ge=0, le=100)] = Field(0.1, alias="lambda")
    tau: PositiveFloat = 1.0
    tau_final: PositiveFloat | None = None
    # "dense": blend once after layer4 (the baseline's emulation). "sparse": the
    # mixed-resolution network of ablate.models.sparse (trained by its dense emulation,
    # evaluated by gathering only each path's own cells).
    # At its default it is left out of the spec, so it does not change the trial id.
    execution: Literal["dense", "sparse"] = Field("dense", exclude_if=lambda v: v == "dense")


def _ignored_selective_key(sel: SelectiveSpec) -> str | None:
    """The first mask-net setting that a network without a mask net would ignore."""
    if sel.enabled:
        return None
    for name, info in SelectiveSpec.model_fields.items():
        if name != "enabled" and getattr(sel, name) != info.default:
            return info.alias or name
    return None


def _differs(section: BaseModel, key: str) -> bool:
    """Whether ``key`` holds another value than its default. A stored trial's spec carries
    every default, so a key at its default counts as not set (as for the keys above)."""
    return getattr(section, key) != type(section).model_fields[key].default


def _unread(section: BaseModel, key: str, why: str) -> ValidationError:
    """The error for a key the trial would not read, located at the key itself (an error
    a model validator raises has no location of its own), so that the one line names the
    key as the recipe wrote it and blames the line (base, variant, axis or --set) that
    set it."""
    info = type(section).model_fields[key]
    return ValidationError.from_exception_data(type(section).__name__, [InitErrorDetails(
        type=PydanticCustomError("value_error", why), loc=(info.alias or key,),
        input=getattr(section, key))])


def _read_by(kind: str, value: str, readers: list[str], key: str) -> str:
    """``not read by model.head 'lraspp' (read by: 'deeplabv3', ...); ...``."""
    names = ", ".join(repr(r) for r in readers)
    to = f"= {readers[0]!r}" if len(readers) == 1 else "to one of them"
    return f"not read by {kind} {value!r} (read by: {names}); set {kind} {to} or remove {key}"


def _registered(kind: str, value: str, builtins: bool = True) -> str:
    registry = _registry(kind)
    if value not in registry.builtin_names():
        try:
            registry.entry(value, builtins)
        except UserInputError as err:  # "key: message": pydantic names the key
            raise ValueError(str(err).partition(": ")[2]) from None
    return value


def _registry(kind: str):
    return {"dataset": catalog.DATASETS, "backbone": catalog.BACKBONES, "head": catalog.HEADS,
            "model": catalog.MODELS}[kind]


def _name_only(kind: str, value: Any) -> Any:
    """A table or list where a name belongs: say which names are allowed (pydantic's own
    "should be a valid string" names none, and a table must not reach the validators)."""
    if value is None or isinstance(value, str):
        return value
    what = _what(value)
    if kind == "builder":
        raise ValueError(f"must be an import path 'package.module:function' or a plugin's "
                         f"name, not a {what}")
    allowed = ", ".join(repr(n) for n in _registry(kind).names())
    raise ValueError(f"must be a {kind} name, not a {what}; allowed: {allowed}")


def _what(value: Any) -> str:
    """A TOML value's kind in words, for "not a table"."""
    return {dict: "table", list: "list", bool: "boolean"}.get(type(value), "number")


def _builder(value: str | None, kind: str) -> str | None:
    if value is not None and not is_import_path(value):
        _registered(kind, value, builtins=False)
    return value


def _finite_values(args: dict[str, Any]) -> dict[str, Any]:
    def check(value: Any, where: str) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be finite (got {value})")
        items = value.items() if isinstance(value, dict) else (
            enumerate(value) if isinstance(value, list) else ())
        for key, item in items:
            check(item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")

    for key, value in args.items():
        check(value, f"args.{key}")
    return args


# Keys only the built-in backbone/head models read; with model.builder they must keep
# their defaults (a value there would be silently ignored). num_classes, aux_weight,
# bn_momentum and weights_path apply to any model.
ZOO_ONLY_MODEL_KEYS = ("backbone", "head", "output_stride", "expansion", "keep_last_expansion",
                       "aspp_rates", "aspp_channels", "low_level", "low_level_channels",
                       "aux_head", "weights", "selective")


# The keys of a built-in head or backbone that only some of them read (ablate.models.zoo,
# .mobilenetv3, .resnet, .squeezenet): set on another built-in one they would be ignored.
# A plugin's head or backbone gets the whole spec, so its keys are never refused.
HEAD_KEYS = {
    "deeplabv3": ("aspp_rates", "aspp_channels"),
    "deeplabv3plus": ("aspp_rates", "aspp_channels", "low_level", "low_level_channels"),
    "fcn": (),
    "lraspp": (),
    "fcn8s": (),
}
BACKBONE_KEYS = {
    "mobilenet_v3_large": ("expansion", "keep_last_expansion"),
    "mobilenet_v3_small": ("expansion", "keep_last_expansion"),
    "resnet50": (),
    "resnet101": (),
    "squeezenet1_0": (),
}


def _unread_model_key(spec: ModelSpec) -> tuple[str, str] | None:
    """(key, why) of the first built-in model key the network would not read."""
    if spec.builder is not None:  # its keys are refused field by field (_zoo_key)
        return None
    for kind, table, name in (("model.head", HEAD_KEYS, spec.head),
                              ("model.backbone", BACKBONE_KEYS, spec.backbone)):
        if name not in table:
            continue
        keys = {k for ks in table.values() for k in ks}
        for key in sorted(keys - set(table[name]), key=list(type(spec).model_fields).index):
            if _differs(spec, key):
                readers = [n for n, ks in table.items() if key in ks]
                return key, _read_by(kind, name, readers, f"model.{key}")
    if not spec.aux_head and spec.head in HEAD_KEYS and _differs(spec, "aux_weight"):
        return "aux_weight", ("the auxiliary head's loss weight, not read with "
                              "model.aux_head = false; set model.aux_head = true or remove it")
    return None


def _zoo_key(cls: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    builder = info.data.get("builder")
    if builder is not None and value != cls.model_fields[info.field_name].default:
        raise ValueError(f"a built-in model key, not read with model.builder {builder!r}; "
                         "put your model's arguments under model.args")
    return value


def _model_args(cls: type[BaseModel], value: dict[str, Any], info: ValidationInfo) -> dict:
    if value and "builder" in info.data and info.data["builder"] is None:
        raise ValueError("only read with model.builder; set model.builder = "
                         "'package.module:function' or remove model.args")
    return _finite_values(value)


# -- knock-out: submodules of the built network named by their dotted path ----------------

MODULE_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
KNOCKOUT_WORDS = ("identity", "zeros")  # model.replace's `by` besides an import path
BY_RULE = (f"{', '.join(repr(w) for w in KNOCKOUT_WORDS)} or an import path "
           "'package.module:Class'")


def module_paths(paths: Any, removed: tuple[str, ...] = ()) -> Any:
    """Check dotted module paths: not the root, well formed, none twice, none inside
    another (or inside one of ``removed``). Runs before item validation, so the root gets
    its own message rather than "must not be empty"."""
    if not isinstance(paths, list):
        return paths
    seen = list(removed)
    for path in paths:
        if not isinstance(path, str):
            continue  # pydantic names the type
        if path == "":
            raise ValueError("'' is the root, the whole network, which cannot be removed or "
                             "replaced; name a submodule such as 'head.aspp.convs.3' (list "
                             "them with `ablate cost RECIPE --modules`)")
        if not MODULE_PATH.fullmatch(path):
            raise ValueError(f"{path!r} is not a dotted module path as "
                             "model.named_modules() gives them, e.g. 'head.aspp.convs.3'")
        for other in seen:
            if other == path:
                raise ValueError(f"names {path!r} twice")
            outer, inner = sorted((other, path), key=len)
            if inner.startswith(outer + "."):
                raise ValueError(f"{inner!r} lies inside {outer!r}, which is already knocked "
                                 "out; name one of them")
        seen.append(path)
    return paths


class Replacement(Section):
    """One entry of ``model.replace``: the module at ``path`` is replaced by ``by``."""

    path: str
    # "identity", "zeros" (the knock-out's two contracts, forced), or an import path
    # "package.module:Class" called with **args (e.g. "torch.nn:Identity")
    by: str
    args: dict[str, Any] = Field({}, exclude_if=lambda v: not v)

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, v: Any) -> Any:
        if not isinstance(v, str):  # the rule, not pydantic's "should be a valid string"
            raise ValueError(f"must be a dotted module path such as 'head.aspp.convs.3', "
                             f"not a {_what(v)}")
        return module_paths([v])[0]

    @field_validator("by", mode="before")
    @classmethod
    def _by(cls, v: Any) -> Any:
        # a number or table gets the rule, not pydantic's "should be a valid string"
        if not isinstance(v, str):
            raise ValueError(f"must be {BY_RULE}, not a {_what(v)}")
        if v not in KNOCKOUT_WORDS and not is_import_path(v):
            raise ValueError(f"must be {BY_RULE}")
        return v

    @field_validator("args")
    @classmethod
    def _args(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if v and info.data.get("by") in KNOCKOUT_WORDS:
            raise ValueError(f"not read with by = {info.data['by']!r}")
        return _finite_values(v)


def _removed(value: Any) -> Any:
    module_paths(value)
    return sorted(value) if isinstance(value, list) and all(
        isinstance(v, str) for v in value) else value  # one id whatever the order


def _replaced(value: list[Replacement], info: ValidationInfo) -> list[Replacement]:
    module_paths([r.path for r in value], tuple(info.data.get("remove") or ()))
    return value


class ModelSpec(Section):
    # your own model: "package.module:function" or a plugin name, called with
    # **args and num_classes (see README "Your own models and data"); declared first
    # so that the built-in keys' validators see it. Left out of the spec (and so of
    # the trial id) when unset, so built-in models keep their ids.
    builder: str | None = Field(None, exclude_if=lambda v: v is None)
    args: dict[str, Any] = Field({}, exclude_if=lambda v: not v)
    backbone: str = "mobilenet_v3_large"
    head: str = "deeplabv3plus"
    num_classes: PositiveInt | None = None  # None: the dataset's class count
    output_stride: Literal[8, 16, 32] = 16
    # MobileNetV3: which inverted-residual blocks keep their 1x1 expansion conv.
    expansion: Literal["all", "none"] | list[NonNegInt] = "all"
    keep_last_expansion: bool = True
    # DeepLab heads
    aspp_rates: list[PositiveInt] = [12, 24, 36]
    aspp_channels: PositiveInt = 256
    low_level: str = "auto"
    low_level_channels: PositiveInt = 48
    aux_head: bool = False
    aux_weight: Annotated[float, Field(ge=0, le=100)] = 0.5
    # BatchNorm momentum for every BN layer; None keeps each builder's own (torchvision's
    # MobileNetV3 uses 0.01, which needs thousands of steps before running stats settle).
    bn_momentum: Annotated[float, Field(gt=0, le=1)] | None = None
    # weights
    weights: Literal["none", "imagenet"] = "none"
    weights_path: str | None = None
    selective: SelectiveSpec = SelectiveSpec()
    # knock-out, on any model (built-in or builder): submodules of the built network by
    # their dotted path (ablate.models.knockout). Left out of the spec when empty, so
    # trial ids of recipes without them do not change.
    remove: list[str] = Field([], exclude_if=lambda v: not v)
    replace: list[Replacement] = Field([], exclude_if=lambda v: not v)

    _backbone = field_validator("backbone")(classmethod(lambda cls, v: _registered("backbone", v)))
    _head = field_validator("head")(classmethod(lambda cls, v: _registered("head", v)))
    _builder = field_validator("builder")(classmethod(lambda cls, v: _builder(v, "model")))
    _args = field_validator("args")(classmethod(_model_args))
    _zoo = field_validator(*ZOO_ONLY_MODEL_KEYS)(classmethod(_zoo_key))
    _builder_type = field_validator("builder", mode="before")(
        classmethod(lambda cls, v: _name_only("builder", v)))
    _backbone_name = field_validator("backbone", mode="before")(
        classmethod(lambda cls, v: _name_only("backbone", v)))
    _head_name = field_validator("head", mode="before")(
        classmethod(lambda cls, v: _name_only("head", v)))
    _remove = field_validator("remove", mode="before")(classmethod(lambda cls, v: _removed(v)))
    _replace = field_validator("replace")(classmethod(lambda cls, v, info: _replaced(v, info)))

    @field_validator("selective")
    @classmethod
    def _selective_read(cls, sel: SelectiveSpec) -> SelectiveSpec:
        # a mask-net setting on a network without a mask net would be silently ignored
        key = _ignored_selective_key(sel)
        if key is not None:
            raise ValueError(f"model.selective.{key} is set but model.selective.enabled is "
                             "false, so it would be ignored; set model.selective.enabled = "
                             "true (or leave it out)")
        return sel

    @model_validator(mode="after")
    def _read_by_the_network(self) -> ModelSpec:
        # a head or backbone key that the chosen built-in network would silently ignore
        problem = _unread_model_key(self)
        if problem is not None:
            raise _unread(self, *problem)
        return self


class DataSpec(Section):
    name: str = "shapes"  # a built-in (shapes, voc2012, cityscapes, coco, folder) or plugin
    root: str | None = None
    # your own dataset code: "package.module:function" called with **args (and root=
    # when data.root is set), returning (train, val) datasets of (image, mask) pairs;
    # left out of the spec when unset
    builder: str | None = Field(None, exclude_if=lambda v: v is None)
    args: dict[str, Any] = Field({}, exclude_if=lambda v: not v)
    # embedded `shapes` dataset
    classes: Annotated[int, Field(ge=2, le=16)] = 6
    image_size: Pixels = 64
    train_images: PositiveInt = 256
    val_images: PositiveInt = 64
    data_seed: Seed = 0
    # real datasets
    train_split: str = "train"
    val_split: str = "val"
    sbd: bool = False
    limit_train: PositiveInt | None = None
    limit_val: PositiveInt | None = None
    # evaluate on this fraction of the training set, held out of training, instead of the
    # validation split ([tune] sets it on its tuning trials); left out of the spec at 0
    holdout: Annotated[float, Field(ge=0, le=0.5)] = Field(0.0, exclude_if=lambda v: v == 0)
    # transforms
    crop_size: Pixels | None = None
    scale_range: list[PositiveFloat] = [0.5, 2.0]
    hflip: bool = True
    eval_size: list[Pixels] | None = None
    # loading
    workers: NonNegInt | Literal["auto"] = "auto"
    pin_memory: bool | Literal["auto"] = "auto"
    persistent_workers: bool = True
    cache: bool = False

    @field_validator("scale_range")
    @classmethod
    def _two_increasing(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or v[0] > v[1]:
            raise ValueError("must be [low, high] with low <= high")
        return v

    _hw = field_validator("eval_size")(classmethod(lambda cls, v: _height_width(v)))
    _name = field_validator("name")(classmethod(lambda cls, v: _registered("dataset", v)))
    _name_type = field_validator("name", mode="before")(
        classmethod(lambda cls, v: _name_only("dataset", v)))
    _builder = field_validator("builder")(classmethod(lambda cls, v, info: _data_builder(v, info)))
    _builder_type = field_validator("builder", mode="before")(
        classmethod(lambda cls, v: _name_only("builder", v)))

    @model_validator(mode="before")
    @classmethod
    def _conventional_crop(cls, data: Any) -> Any:
        # Real images differ in size, so a training batch needs a crop; the default is
        # the DeepLab / torchvision references' (and it shows in the spec and trial id).
        if not isinstance(data, dict):
            return data
        name = data.get("name", "shapes")
        if isinstance(name, str) and "crop_size" not in data and name in CONVENTIONAL_CROP:
            data = {**data, "crop_size": CONVENTIONAL_CROP[name]}
        # Without a crop every image of a batch must have one size, which a random rescale
        # breaks: no rescale then unless asked for (a crop read from the data instead would
        # make the trial id depend on files). `shapes` reads neither key: its ids stay.
        transformed = data.get("builder") is not None or (isinstance(name, str) and name != "shapes")
        if transformed and "crop_size" not in data and "scale_range" not in data:
            data = {**data, "scale_range": [1.0, 1.0]}
        return data
    _args = field_validator("args")(classmethod(lambda cls, v, info: _data_args(v, info)))

    @model_validator(mode="after")
    def _read_by_the_dataset(self) -> DataSpec:
        # a key the chosen dataset would silently ignore
        problem = _unread_data_key(self)
        if problem is not None:
            raise _unread(self, *problem)
        return self


def _unread_data_key(data: DataSpec) -> tuple[str, str] | None:
    """(key, why) of the first data key the chosen dataset would not read."""
    embedded = data.name == "shapes" and data.builder is None
    # A real dataset's root and sbd beside the embedded data: refused when data.name is
    # left out (the trial would train on synthetic data in place of the dataset meant).
    # Written out, data.name = 'shapes' is a choice: `--set data.name=shapes` is how ablate
    # says to try a recipe without its data, and the recipe's root and sbd stay behind.
    chosen = "name" in data.model_fields_set
    if embedded and data.root is not None and not chosen:
        others = [n for n in catalog.DATASETS.builtin_names() if n != "shapes"]
        return "root", ("not read: data.name is not set, so the trial trains on the embedded "
                        "synthetic 'shapes' data; set data.name to the dataset under this "
                        f"root ({', '.join(repr(n) for n in others)} or a plugin's name), or "
                        "data.builder, or remove data.root")
    if data.sbd and data.name != "voc2012" and not (embedded and chosen):
        what = ("data.builder" if data.builder is not None else f"data.name {data.name!r}"
                + ("" if chosen else " (the default: data.name is not set)"))
        return "sbd", (f"not read by {what}: the SBD training images are Pascal VOC's; set "
                       "data.name = 'voc2012' or remove data.sbd")
    # The embedded data's own keys (classes, train_images, ...) stay accepted beside a
    # real dataset: `--set data.name=voc2012` on the quick-start is how its recipe is tried
    # on real data, and a --set cannot remove a key.
    return None


def _data_builder(value: str | None, info: ValidationInfo) -> str | None:
    name = info.data.get("name", "shapes")
    if value is not None and name != "shapes":
        raise ValueError(f"not read together with data.name {name!r}; set one of them")
    if value in catalog.BUILTIN_DATASETS:  # its reader is no (train, val) builder
        raise ValueError(f"{value!r} is a built-in dataset: set data.name = {value!r} instead "
                         "(data.builder names your own dataset code: an import path "
                         "'package.module:function' or an ablate.datasets plugin's name)")
    return _builder(value, "dataset")


def _data_args(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    name = info.data.get("name")
    if value and info.data.get("builder", "") is None and name in catalog.BUILTIN_DATASETS:
        raise ValueError(f"not read by the built-in dataset {name!r}; only by data.builder "
                         "or a plugin dataset")
    return _finite_values(value)
# Training crop when data.crop_size is not given: torchvision's segmentation reference
# and DeepLab crop VOC and COCO to 513 (torchvision: 480) and Cityscapes to 768.
CONVENTIONAL_CROP = {"voc2012": 513, "coco": 513, "cityscapes": 768}


class EvalDataSpec(Section):
    """A separate evaluation set (``[base.eval_data]``); unset (``name`` None): the
    training dataset's ``val_split``. Its classes must be the training classes, in
    order (COCO is read as the 20 VOC categories, so COCO and VOC mix both ways)."""

    name: str | None = None
    root: str | None = None
    split: str = "val"
    limit: PositiveInt | None = None  # first N samples only
    eval_size: list[Pixels] | None = None
    # embedded `shapes` dataset
    classes: Annotated[int, Field(ge=2, le=16)] = 6
    image_size: Pixels = 64
    images: PositiveInt = 64
    data_seed: Seed = 0

    _hw = field_validator("eval_size")(classmethod(lambda cls, v: _height_width(v)))

    @field_validator("name")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        return v if v is None else _registered("dataset", v)

    _name_type = field_validator("name", mode="before")(
        classmethod(lambda cls, v: _name_only("dataset", v)))

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        if isinstance(data, dict) and data and data.get("name") is None:
            raise ValueError("set eval_data.name: without it the other eval_data keys are not read")
        if isinstance(data, dict) and data.get("name") != "shapes":
            for key in ("classes", "image_size", "images", "data_seed"):
                # a full spec (a stored trial) carries the defaults: only other values
                if key in data and data[key] != cls.model_fields[key].default:
                    raise ValueError(f"{key} is only read for eval_data.name = 'shapes'")
        return data


class TrainSpec(Section):
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=10)] = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4
    schedule: Literal["poly", "constant", "cosine"] = "poly"
    power: PositiveFloat = 0.9
    warmup_steps: NonNegInt = 0
    epochs: PositiveInt | None = 3
    iterations: PositiveInt | None = None
    batch_size: Annotated[int, Field(gt=0, le=65536)] = 8
    backbone_lr_mult: NonNegFloat = 1.0
    head_lr_mult: NonNegFloat = 1.0
    mask_lr_mult: NonNegFloat = 1.0
    grad_clip: PositiveFloat | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    cudnn_benchmark: bool = True
    # torch deterministic algorithms, cuDNN benchmark off: bit-identical reruns on a CPU.
    # Left out of the trial id when true (the default), so existing ids stay the same.
    deterministic: bool = Field(True, exclude_if=lambda v: v is True)
    checkpoint_every: NonNegInt = 0  # steps; 0 = at epoch ends only
    log_every: PositiveInt = 10
    # torch.compile (inductor) for the training forward; left out of the trial id when off
    compile: bool = Field(False, exclude_if=lambda v: v is False)

    @model_validator(mode="after")
    def _read_by_the_trainer(self) -> TrainSpec:
        # mixed precision on a CPU would be silently dropped (ablate.train.loop.amp_dtype).
        # Not refused here: momentum off SGD and power off the poly schedule. [tune] draws
        # them jointly with train.optimizer / train.schedule (docs/fair-comparisons.md), and
        # a trial spec cannot tell a drawn value from a written one.
        if self.device == "cpu" and self.amp in ("bf16", "fp16"):
            raise _unread(self, "amp", "mixed precision is CUDA only: with train.device = "
                                       "'cpu' the trial trains in float32; set train.device "
                                       "= 'cuda' or 'auto', or remove train.amp")
        return self

    @model_validator(mode="after")
    def _one_length(self) -> TrainSpec:
        if self.iterations is not None and self.epochs is not None:
            # iterations wins when both are given explicitly; epochs has a default,
            # so only complain when neither is set.
            return self
        if self.iterations is None and self.epochs is None:
            raise ValueError("set train.epochs or train.iterations")
        return self


class EvalSpec(Section):
    resolution: list[Pixels] | None = None  # [H, W] for FLOPs and latency
    batch_size: PositiveInt = 8
    every: PositiveInt = 1  # validate every N epochs (and always at the end)
    latency: bool = True
    latency_warmup: NonNegInt = 3
    latency_runs: PositiveInt = 10
    # runtimes and batch sizes timed after training (ablate.evaluate.runtimes); every
    # runtime but eager also gets output parity against eager on the evaluation images.
    # Left out of the spec (and so of the trial id) at their defaults, so a trial that
    # keeps the default hashes the same whether or not the key is written.
    runtimes: list[Literal["eager", "compile", "onnxruntime", "tensorrt"]] = Field(
        ["eager"], exclude_if=lambda v: v == ["eager"])
    latency_batch_sizes: list[Annotated[int, Field(gt=0, le=4096)]] = Field(
        [1], exclude_if=lambda v: v == [1])
    latency_threads: Annotated[int, Field(gt=0, le=1024)] | None = Field(
        None, exclude_if=lambda v: v is None)  # None: torch's count
    flops: bool = True

    _hw = field_validator("resolution")(classmethod(lambda cls, v: _height_width(v)))

    @field_validator("runtimes", "latency_batch_sizes")
    @classmethod
    def _distinct_nonempty(cls, v: list) -> list:
        if not v:
            raise ValueError("must list at least one value")
        if len(set(v)) != len(v):
            raise ValueError("lists a value twice")
        return v

    @model_validator(mode="after")
    def _runtimes_need_latency(self) -> EvalSpec:
        if "eager" not in self.runtimes:
            raise ValueError("eval.runtimes: must include 'eager', the reference for parity "
                             "and latency ratios")
        changed = [k for k in ("runtimes", "latency_batch_sizes", "latency_threads")
                   if getattr(self, k) != type(self).model_fields[k].default]
        if self.latency and 1 not in self.latency_batch_sizes:
            raise ValueError("eval.latency_batch_sizes: must include 1 (latency_ms, the "
                             "figure every report shows, is eager at batch 1)")
        if not self.latency and changed:
            raise ValueError(f"eval.{changed[0]}: not read with eval.latency = false; "
                             "set eval.latency = true or remove it")
        return self


# the training data's evaluation keys, refused beside eval_data -> eval_data's own key
EVAL_DATA_TWINS = {"val_split": "split", "limit_val": "limit", "eval_size": "eval_size",
                   "val_images": "images", "holdout": None}


class TrialSpec(Section):
    """Everything that determines a trial's outcome, and nothing else."""

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    # left out of the spec (and so of the trial id) when unset
    eval_data: EvalDataSpec = Field(EvalDataSpec(), exclude_if=lambda v: v.name is None)
    seed: Seed = 0  # set from the recipe's `seeds`, never from a key

    @field_validator("eval_data")
    @classmethod
    def _one_evaluation_set(cls, eval_data: EvalDataSpec, info: ValidationInfo) -> EvalDataSpec:
        data = info.data.get("data")  # validated before eval_data (field order)
        if eval_data.name is not None and data is not None:
            for key, twin in EVAL_DATA_TWINS.items():
                if getattr(data, key) != DataSpec.model_fields[key].default:
                    # named first, so the error points at the key the user set
                    # (ablate.recipes.tree.validation_message), not at eval_data
                    instead = (f", or set eval_data.{twin}" if twin and (
                        twin != "images" or eval_data.name == "shapes") else "")
                    raise ValueError(f"data.{key}: not read when eval_data is set (eval_data "
                                     f"is the evaluation set); remove it{instead}")
        return eval_data

    @model_validator(mode="after")
    def _timed_as_built(self) -> TrialSpec:
        # A selective model is timed by its sparse execution (ablate.cost.selective), which
        # runs the modules a knock-out replaces: the trial trained, then failed there.
        # After the model, not on the eval field: an absent [eval] is not validated.
        model = self.model
        if self.eval.latency and model.selective.enabled and (model.remove or model.replace):
            raise ValueError("eval.latency: a selective model is timed by its sparse "
                             "execution, which cannot run knocked-out modules "
                             "(model.remove/model.replace); set eval.latency = false")
        return self


# sbatch --mem: a whole number with an optional unit (K, M, G or T; no unit means M)
SLURM_MEM = re.compile(r"[1-9][0-9]{0,9}[KMGTkmgt]?")


def _slurm_mem(value: str | None) -> str | None:
    if value is not None and not SLURM_MEM.fullmatch(value):
        raise ValueError("must be a memory size as sbatch --mem takes it: a whole number "
                         "with an optional unit K, M, G or T, e.g. 16G")
    return value


def _mem_text(value: Any) -> Any:
    """A bare number is refused with the string meant: sbatch reads ``--mem=16`` as 16 MB,
    rarely what ``mem = 16`` means."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not (math.isfinite(value) and value == int(value)):
            return value  # not a whole number, as sbatch takes: the string rule says so
        raise ValueError(f"must be a string with its unit, e.g. mem = \"{value:g}G\" (sbatch "
                         f"reads a bare {value:g} as megabytes: write \"{value:g}M\" for that)")
    return value


class SlurmSpec(Section):
    partition: str | None = None
    gpus_per_trial: NonNegInt = 0
    cpus_per_trial: PositiveInt = 2
    mem: str | None = None
    _mem = field_validator("mem")(classmethod(lambda cls, v: _slurm_mem(v)))
    _mem_number = field_validator("mem", mode="before")(classmethod(lambda cls, v: _mem_text(v)))
    time: PositiveInt = 60  # minutes
    array_parallelism: PositiveInt = 64


class LocalSpec(Section):
    """``[local]``: how ``ablate run --executor local`` places trials on GPUs (its
    command-line flags win)."""

    trials_per_gpu: PositiveInt = 1
    # GPU memory one trial needs (GiB); unset: measured from the first trial
    gpu_memory_gib: Annotated[float, Field(gt=0, le=4096)] | None = None


class Published(Section):
    """Figures a paper published for a variant, shown beside the measured ones."""

    params: NonNegInt | None = None
    gflops: NonNegFloat | None = None
    miou: Annotated[float, Field(ge=0, le=100)] | None = None  # percent
    pixel_acc: Annotated[float, Field(ge=0, le=100)] | None = None  # percent
    gflops_mask_net: NonNegFloat | None = None  # selective down-sampling: the mask net alone
    source: str | None = None
