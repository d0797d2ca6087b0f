"""Cost of one architecture: parameters and FLOPs with their breakdowns (no database).

``analyse_spec`` builds the model on the ``meta`` device (no memory, no weight
initialisation), so costing a ResNet-101 at 1024x2048 takes well under a second or
two. The result is keyed by ``arch_id``: trials that differ only in training
settings share it, and the caller may cache it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ablate.errors import UserInputError
from ablate.models.build import build_model
from ablate.recipes.schema import ModelSpec, TrialSpec
from ablate.trials.ids import architecture_id
from ablate.trials.resolve import eval_resolution, num_classes

# Calls that do multiply-adds but have no formula in fvcore's convention, so that they
# are left out of its count (fvcore's own count leaves them out too): a report names them,
# as an attention block's matmuls can be most of a network's FLOPs.
UNCOUNTED_MULTIPLY_ADDS = frozenset({
    "baddbmm", "addbmm", "addmv", "mv", "dot", "tensordot", "bilinear", "cdist",
    "lstm", "gru", "rnn_tanh", "rnn_relu", "conv_tbc",
})


@dataclass(frozen=True)
class CostReport:
    arch_id: str
    params: int
    params_by_module: dict[str, int]
    flops: int | None
    gflops: float | None
    flops_by_module: dict[str, int]
    flops_convention: str | None
    resolution: tuple[int, int]
    num_classes: int = 0
    flops_unsupported: dict[str, int] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)  # e.g. selective down-sampling

    @property
    def uncounted(self) -> dict[str, int]:
        """Calls with multiply-adds the FLOP count leaves out (attention among them)."""
        return {op: n for op, n in self.flops_unsupported.items()
                if "attention" in op or op in UNCOUNTED_MULTIPLY_ADDS}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["resolution"] = list(self.resolution)
        return out


def analyse_spec(spec: TrialSpec, *, flops: bool = True, depth: int = 3,
                 convention: str = "fvcore-mac") -> CostReport:
    """Parameters (total and per module to ``depth`` dots) and, if asked, FLOPs at the
    spec's evaluation resolution in ``convention`` (``ablate.cost.flops.CONVENTIONS``).
    Breakdowns add up to the totals and share their keys, so two reports diff module
    by module."""
    from ablate.cost.flops import count_flops  # lazy: loads torch
    from ablate.cost.params import count_parameters, params_by_module  # lazy: loads torch

    classes = num_classes(spec)
    resolution = tuple(int(v) for v in eval_resolution(spec))
    if spec.model.builder is not None:
        # user code: one real forward on CPU proves it builds and returns the right logits
        from ablate.models.custom import check_model  # lazy: loads torch

        check_model(spec.model, classes, resolution)
    model = build_on_meta(spec.model, classes)
    count = None
    if flops:
        try:
            count = count_flops(model, resolution, depth, convention=convention)
        except (NotImplementedError, RuntimeError):
            if not _is_meta(model):
                raise
            # The forward pass reads values: count on a real model (slow but exact).
            count = count_flops(build_model(spec.model, classes), resolution, depth,
                                convention=convention)
    total = count.total if count else None
    extra: dict[str, float] = {}
    if count and spec.model.selective.enabled:
        # Counting the model directly would add up both emulated paths, in either
        # convention. The figure that stands for the architecture is the dense one (every
        # cell at full resolution); effective FLOPs depend on the measured mask density
        # and are stored per trial.
        from ablate.cost.selective import selective_cost  # lazy: loads numpy, torch

        extra = selective_cost(spec.model, classes, resolution, density=0.0,
                               convention=convention)
        extra.pop("gflops_effective")
        extra.pop("density")
        total = round(extra["gflops_dense"] * 1e9)
    return CostReport(
        arch_id=architecture_id(spec),
        params=count_parameters(model),
        params_by_module=params_by_module(model, depth),
        flops=total,
        gflops=None if total is None else total / 1e9,
        flops_by_module=dict(count.breakdown) if count else {},
        flops_convention=count.convention if count else None,
        resolution=resolution,  # type: ignore[arg-type]
        num_classes=classes,
        flops_unsupported=dict(count.unsupported) if count else {},
        extra=extra,
    )


def module_rows(spec: TrialSpec, depth: int | None = None) -> list[dict[str, Any]]:
    """Every module of the built network (knock-outs applied) down to ``depth`` dots (None:
    all): its dotted path as ``model.remove`` names it, type, parameters (its own and its
    submodules'), and ``removed`` (``identity``/``zeros``) where a knock-out stands in."""
    from ablate.models.knockout import Removed  # lazy: loads torch

    model = build_on_meta(spec.model, num_classes(spec))
    rows = []
    for path, module in model.named_modules():
        if not path or (depth is not None and path.count(".") >= depth):
            continue
        removed = isinstance(module, Removed)
        rows.append({"path": path, "type": module.original if removed else type(module).__name__,
                     "params": sum(p.numel() for p in module.parameters()),
                     "removed": module.mode if removed else None})
    return rows


def build_on_meta(model_spec: ModelSpec, classes: int):
    """The model with parameters on ``meta``: shapes only, no storage, no initialisation.

    A builder that cannot work on meta (it reads values while building) gets the CPU.
    """
    import torch  # lazy: loads torch


    try:
        with torch.device("meta"), _skip_init():
            return build_model(model_spec, classes)
    except (NotImplementedError, RuntimeError):
        return build_model(model_spec, classes)
    except UserInputError as err:
        # a user builder's own failure on meta (it read a value): try it on the CPU
        if not isinstance(err.__cause__, NotImplementedError | RuntimeError):
            raise
        return build_model(model_spec, classes)


def _is_meta(model) -> bool:
    return any(p.is_meta for p in model.parameters())


def _skip_init():
    """A mode in which in-place initialisers on meta tensors return at once: on meta they
    do nothing, but each still costs a Python decomposition (about half the build time)."""
    import torch  # lazy: loads torch
    from torch.overrides import TorchFunctionMode  # lazy: loads torch

    tensor = torch.Tensor
    skipped = {tensor.normal_, tensor.uniform_, tensor.fill_, tensor.zero_, tensor.erfinv_,
               tensor.mul_, tensor.add_, tensor.clamp_, tensor.copy_}

    class SkipInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in skipped and args and getattr(args[0], "is_meta", False):
                return args[0]
            return func(*args, **(kwargs or {}))

    return SkipInit()
