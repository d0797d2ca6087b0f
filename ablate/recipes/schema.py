"""Typed, validated sections of a trial: model, data, train, eval.

Every key a recipe may set is a field here, with its default. A trial spec is the
fully resolved ``TrialSpec`` (defaults filled in), which is what the trial id hashes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BACKBONES = ("mobilenet_v3_large", "mobilenet_v3_small", "resnet50", "resnet101", "squeezenet1_0")
HEADS = ("deeplabv3", "deeplabv3plus", "fcn", "lraspp", "fcn8s")
DATASETS = ("shapes", "voc2012", "cityscapes", "coco")


def _height_width(v: list[int] | None) -> list[int] | None:
    if v is not None and len(v) != 2:
        raise ValueError("must be [height, width]")
    return v


class Section(BaseModel):
    """Strict base: unknown keys are errors, values are not silently coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class SelectiveSpec(Section):
    """Content-adaptive (mask-based) down-sampling of SPEC.md section 2."""

    enabled: bool = False
    mask_net: Literal["conv", "dwsep"] = "conv"
    mask_source: Literal["layer1", "layer2"] = "layer2"
    patch: PositiveInt = 2
    pooling: Literal["fixed", "avg", "max"] = "fixed"
    loss: Literal["target", "weight"] = "target"
    target: Annotated[float, Field(ge=0, le=1)] = 0.5
    sparsity_weight: NonNegFloat = Field(0.1, alias="lambda")
    tau: PositiveFloat = 1.0
    tau_final: PositiveFloat | None = None


class ModelSpec(Section):
    backbone: Literal[BACKBONES] = "mobilenet_v3_large"  # type: ignore[valid-type]
    head: Literal[HEADS] = "deeplabv3plus"  # type: ignore[valid-type]
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
    aux_weight: NonNegFloat = 0.5
    # BatchNorm momentum for every BN layer; None keeps each builder's own (torchvision's
    # MobileNetV3 uses 0.01, which needs thousands of steps before running stats settle).
    bn_momentum: Annotated[float, Field(gt=0, le=1)] | None = None
    # weights
    weights: Literal["none", "imagenet"] = "none"
    weights_path: str | None = None
    selective: SelectiveSpec = SelectiveSpec()


class DataSpec(Section):
    name: Literal[DATASETS] = "shapes"  # type: ignore[valid-type]
    root: str | None = None
    # embedded `shapes` dataset
    classes: Annotated[int, Field(ge=2, le=16)] = 6
    image_size: PositiveInt = 64
    train_images: PositiveInt = 256
    val_images: PositiveInt = 64
    data_seed: NonNegInt = 0
    # real datasets
    train_split: str = "train"
    val_split: str = "val"
    sbd: bool = False
    limit_train: PositiveInt | None = None
    limit_val: PositiveInt | None = None
    # transforms
    crop_size: PositiveInt | None = None
    scale_range: list[PositiveFloat] = [0.5, 2.0]
    hflip: bool = True
    eval_size: list[PositiveInt] | None = None
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


class TrainSpec(Section):
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: NonNegFloat = 1e-4
    schedule: Literal["poly", "constant", "cosine"] = "poly"
    power: PositiveFloat = 0.9
    warmup_steps: NonNegInt = 0
    epochs: PositiveInt | None = 3
    iterations: PositiveInt | None = None
    batch_size: PositiveInt = 8
    backbone_lr_mult: NonNegFloat = 1.0
    head_lr_mult: NonNegFloat = 1.0
    mask_lr_mult: NonNegFloat = 1.0
    grad_clip: PositiveFloat | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    cudnn_benchmark: bool = True
    checkpoint_every: NonNegInt = 0  # steps; 0 = at epoch ends only
    log_every: PositiveInt = 10

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
    resolution: list[PositiveInt] | None = None  # [H, W] for FLOPs and latency
    batch_size: PositiveInt = 8
    every: PositiveInt = 1  # validate every N epochs (and always at the end)
    latency: bool = True
    latency_warmup: NonNegInt = 3
    latency_runs: PositiveInt = 10
    flops: bool = True

    _hw = field_validator("resolution")(classmethod(lambda cls, v: _height_width(v)))


class TrialSpec(Section):
    """Everything that determines a trial's outcome, and nothing else."""

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()
    seed: NonNegInt = 0


class SlurmSpec(Section):
    partition: str | None = None
    gpus_per_trial: NonNegInt = 0
    cpus_per_trial: PositiveInt = 2
    mem: str | None = None
    time: PositiveInt = 60  # minutes
    array_parallelism: PositiveInt = 64


class Published(Section):
    """Figures a paper published for a variant, shown beside the measured ones."""

    params: NonNegInt | None = None
    gflops: NonNegFloat | None = None
    miou: NonNegFloat | None = None  # percent
    pixel_acc: NonNegFloat | None = None  # percent
    gflops_mask_net: NonNegFloat | None = None  # selective down-sampling: the mask net alone
    source: str | None = None
