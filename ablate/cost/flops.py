"""FLOPs in fvcore's convention, counted without computing.

fvcore's ``FlopCountAnalysis`` traces the model with real tensors, so counting a
ResNet-101 at 1024x2048 costs a full forward pass (a minute on two CPU cores). jit
tracing cannot run on ``meta`` tensors (traced sizes break the meta kernels), so
``count_flops`` runs the forward pass on ``meta`` tensors under a
``TorchFunctionMode`` that applies fvcore's formulas (``ablate.cost.handles``) to
each call, attributes it to the innermost module running (fvcore's "owner"
scoping) and, like the dead-code elimination in fvcore's jit trace, keeps only the
calls the returned ``out`` depends on (the auxiliary head's cost drops out).
Totals and per-module counts equal fvcore's (tests/cost/test_flops.py);
``fvcore_flops`` is the slow reference.
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ablate.cost.handles import Handle, default_handles

FVCORE_CONVENTION = "fvcore-mac"  # one multiply-add = one flop; conv, linear, BN, upsample
TORCHVISION_CONVENTION = "torchvision-mac"  # conv/linear multiply-adds of every output
CONVENTIONS = {
    FVCORE_CONVENTION: "fvcore: 1 multiply-add = 1 FLOP; counts convolutions, linear layers, "
    "matmuls, batch norm, upsampling and adaptive pooling of what the main output needs",
    TORCHVISION_CONVENTION: "torchvision's published GFLOPS: multiply-adds of convolutions, "
    "linear layers and matmuls only, auxiliary heads included",
}
_MULTIPLY_ADD_OPS = {"conv", "linear", "matmul", "bmm", "addmm", "einsum"}
# Calls that never carry a flop in fvcore's convention and are not worth reporting.
_QUIET = {
    "__get__", "__set__", "size", "dim", "numel", "stride", "__len__", "__getitem__",
    "__setitem__", "__format__", "__repr__", "__bool__", "__eq__", "__ne__", "__hash__",
    "to", "contiguous", "view", "reshape", "flatten", "permute", "transpose", "squeeze",
    "unsqueeze", "expand", "cat", "stack", "split", "chunk", "narrow", "select", "detach",
    "zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like",
    "arange", "dropout", "relu", "relu_", "clamp", "clamp_", "max", "type_as", "new_zeros",
    "new_empty", "new_full", "t", "unbind", "roll", "index", "gather", "masked_fill",
    "floor", "remainder", "floor_divide", "eq", "ge", "gt", "copy_", "dim_order",
}
# Out-of-place calls whose output has the input's shape and dtype: on meta, skip the
# (slow, Python) decomposition and return an empty tensor of that shape.
_SAME_SHAPE = {F.batch_norm, torch.batch_norm, F.group_norm, F.layer_norm, F.instance_norm}


@dataclass(frozen=True)
class FlopCount:
    """One forward pass at batch 1 in eval mode.

    ``by_module``: inclusive counts for every module down to ``depth`` dots, as
    fvcore's ``by_module()``. ``breakdown``: a partition at ``depth`` (each flop under
    the innermost module cut to ``depth`` parts, ``<root>`` for the model's own
    forward) whose values add up to ``total``, keyed like ``params_by_module``, so two
    counts diff module by module.
    """

    total: int
    by_module: dict[str, int]
    convention: str
    resolution: tuple[int, int]
    unsupported: dict[str, int] = field(default_factory=dict)
    breakdown: dict[str, int] = field(default_factory=dict)
    by_operator: dict[str, int] = field(default_factory=dict)
    uncalled: tuple[str, ...] = ()

    @property
    def gflops(self) -> float:
        return self.total / 1e9


@dataclass
class _Call:
    scopes: tuple[str, ...]  # the module stack when it ran, outermost first
    op: str  # handle's operator name, or the function's name when uncounted
    flops: int | None  # None: fvcore has no handle for it
    inputs: list[_Call]


class _Recorder(TorchFunctionMode):
    """Records every call: its module stack, its flops and the calls it read from."""

    def __init__(self, handles: dict[object, Handle]) -> None:
        super().__init__()
        self.handles = handles
        self.stack: list[str] = [""]
        self.producer: dict[int, _Call] = {}  # id(tensor) -> the call that last wrote it

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SAME_SHAPE and args[0].is_meta:
            out = torch.empty_like(args[0])
        else:
            out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if inputs and (name.endswith("_") or name == "__setitem__"):
            outputs.append(inputs[0])  # in place: the call writes its first argument
        if not outputs:
            return out
        handle = self.handles.get(func)
        op, flops = handle(args, kwargs, out) if handle else (name, None)
        call = _Call(tuple(self.stack), op, None if flops is None else int(flops),
                     [self.producer[id(t)] for t in inputs if id(t) in self.producer])
        for tensor in outputs:
            key = id(tensor)
            if key not in self.producer:  # forget the entry when the tensor dies
                weakref.finalize(tensor, self.producer.pop, key, None)
            self.producer[key] = call
        return out

    # Module hooks; they return None so that inputs and outputs pass unchanged.
    def enter(self, name: str, module: nn.Module, inputs: tuple) -> None:
        self.stack.append(name)

    def leave(self, module: nn.Module, inputs: tuple, output: object) -> None:
        self.stack.pop()

    def live_calls(self, result: object) -> list[_Call]:
        """The calls ``result`` depends on (what survives the jit trace's dead-code pass)."""
        todo = [self.producer[id(t)] for t in tree_leaves(result)
                if isinstance(t, torch.Tensor) and id(t) in self.producer]
        seen: dict[int, _Call] = {}
        while todo:
            call = todo.pop()
            if id(call) not in seen:
                seen[id(call)] = call
                todo.extend(call.inputs)
        return list(seen.values())


def count_flops(model: nn.Module, resolution: tuple[int, int], depth: int = 3, *,
                convention: str = FVCORE_CONVENTION) -> FlopCount:
    """Count FLOPs of one forward pass at batch 1 and ``resolution`` (H, W) in eval mode.

    fvcore's convention counts what ``out`` needs (a training-only auxiliary head is
    not counted); torchvision's counts conv/linear multiply-adds of every output.
    Runs on ``meta`` tensors (a model on another device is called with meta copies of
    its parameters and left untouched); a model that cannot run on meta
    (data-dependent Python control flow) is run on its own device instead.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    names = _module_names(model)
    was_training = model.training
    model.eval()
    try:
        recorder, result = _run(model, names, resolution)
    finally:
        model.train(was_training)
    if isinstance(result, dict) and convention == FVCORE_CONVENTION:
        result = result["out"]

    inclusive: Counter[str] = Counter()
    breakdown: Counter[str] = Counter()
    by_operator: Counter[str] = Counter()
    unsupported: Counter[str] = Counter()
    called: set[str] = set()
    for call in recorder.live_calls(result):
        scope = call.scopes[-1]
        for name in call.scopes:
            called.update(_prefixes(name))
        if call.flops is None:
            if call.op not in _QUIET and not call.op.startswith("_"):
                unsupported[call.op] += 1
            continue
        if convention == TORCHVISION_CONVENTION and call.op not in _MULTIPLY_ADD_OPS:
            continue
        for name in _prefixes(scope):
            inclusive[name] += call.flops
        breakdown[".".join(scope.split(".")[:depth]) if scope else "<root>"] += call.flops
        by_operator[call.op] += call.flops
    return FlopCount(
        total=inclusive[""],
        by_module={k: v for k, v in inclusive.items() if k and k.count(".") < depth and v},
        convention=convention,
        resolution=(int(resolution[0]), int(resolution[1])),
        unsupported=dict(unsupported),
        breakdown={k: v for k, v in breakdown.items() if v},
        by_operator={k: v for k, v in by_operator.items() if v},
        uncalled=tuple(n for m, n in names.items() if n not in called and _has_forward(m)),
    )


def _run(model: nn.Module, names: dict[nn.Module, str], resolution: tuple[int, int]):
    """One forward pass under a recorder, on meta if at all possible."""
    device = _device_of(model)
    attempts = ["meta"] if device.type == "meta" else ["meta", "own"]
    for attempt in attempts:
        recorder = _Recorder(default_handles())
        hooks = []
        for module, name in names.items():
            hooks.append(module.register_forward_pre_hook(partial(recorder.enter, name)))
            hooks.append(module.register_forward_hook(recorder.leave, always_call=True))
        try:
            with torch.no_grad(), recorder:
                if attempt == "own":
                    result = model(torch.zeros(1, 3, *resolution, device=device))
                elif device.type == "meta":
                    result = model(torch.zeros(1, 3, *resolution, device="meta"))
                else:
                    state = {n: t.to("meta") for n, t in
                             [*model.named_parameters(), *model.named_buffers()]}
                    x = torch.zeros(1, 3, *resolution, device="meta")
                    result = torch.func.functional_call(model, state, (x,))
            return recorder, result
        except (NotImplementedError, RuntimeError):
            # Data-dependent control flow (``.item()``, ``if mask.any()``) needs values.
            if attempt == attempts[-1]:
                raise
        finally:
            for hook in hooks:
                hook.remove()
    raise AssertionError("unreachable")


def fvcore_flops(model: nn.Module, resolution: tuple[int, int]):
    """fvcore's ``FlopCountAnalysis`` on real zero tensors: the slow reference count.

    Returns the analysis, already run; module names carry a ``model.`` prefix.
    """
    from fvcore.nn import FlopCountAnalysis  # lazy: loads fvcore

    was_training = model.training
    model.eval()
    try:
        inputs = torch.zeros(1, 3, *resolution, device=_device_of(model))
        analysis = FlopCountAnalysis(_OutOnly(model), inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        with torch.no_grad():
            analysis.total()
    finally:
        model.train(was_training)
    return analysis


class _OutOnly(nn.Module):
    """fvcore traces a module returning tensors; keep the main output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, dict) else out


def _module_names(model: nn.Module) -> dict[nn.Module, str]:
    """Each module once, under its first name (fvcore's canonical name)."""
    names: dict[nn.Module, str] = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    return names


def _prefixes(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["", "a", "a.b", "a.b.c"]``: the module and its owners."""
    parts = name.split(".") if name else []
    return [".".join(parts[:k]) for k in range(len(parts) + 1)]


def _has_forward(module: nn.Module) -> bool:
    return type(module).forward not in (nn.Module.forward, nn.ModuleList.forward,
                                        nn.ModuleDict.forward, nn.Identity.forward)


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
