"""Shape probes: forward passes at small inputs that record, for chosen submodules, the
shapes and dtypes of every call's inputs and outputs (used by ``ablate.models.knockout``).

A probe runs on the meta device: the parameters and buffers are swapped for meta copies
(``torch.func.functional_call``), so nothing is computed or allocated and the network is
left as it was. A network that cannot run on meta (it reads values) runs on its own
device instead, on zeros, with the random state restored. Either way in eval mode, so
batch statistics are not touched, and without gradients unless asked.

``dim_rule`` reads from the recorded calls how each output size follows the input's
(kept, fixed, or scaled by a stride with its rounding), so that zeros standing in for a
module take the right shape at any input size; ``output_size`` applies a rule.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_leaves

# (batch, height, width): batches and sides that differ, so that each size shows which
# rule it follows; the odd one also shows a stride's rounding (ceil or floor). A network
# that refuses odd sides is probed at the first two only.
PROBES = ((1, 64, 96), (2, 160, 224))
ODD_PROBE = (1, 97, 129)
MAX_SCALE = 64  # the largest stride or upsampling factor a rule considers
# Calls whose output has their first argument's shape and dtype: on meta their Python
# decompositions were most of a probe's time, and their result is an empty tensor anyway.
# The value: where its ``inplace`` argument sits (None: always out of place).
_SAME_SHAPE = {F.batch_norm: None, torch.batch_norm: None, F.group_norm: None,
               F.layer_norm: None, F.instance_norm: None, F.relu: 1, F.relu6: 1,
               F.hardswish: 1, F.hardsigmoid: 1, F.silu: 1, F.dropout: 3}


@dataclass(frozen=True)
class Call:
    """One call of a probed module."""

    input_shapes: tuple[tuple[int, ...], ...]  # every tensor among its arguments
    input_dtype: torch.dtype | None  # the first tensor argument's
    single_input: bool  # called with exactly one argument, a tensor
    structure: Any  # the output's pytree structure; None for a single tensor
    leaves: tuple  # per output leaf: ("tensor", shape, dtype) or ("value", value)

    @property
    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(leaf[1] for leaf in self.leaves if leaf[0] == "tensor")

    @property
    def keeps_shape(self) -> bool:
        """One tensor in, one tensor of the same shape and dtype out."""
        return (self.single_input and self.structure is None
                and self.leaves[0][1:] == (self.input_shapes[0], self.input_dtype))


@dataclass(frozen=True)
class Run:
    """One probe: the input size, each probed module's calls, the network's output."""

    size: tuple[int, int, int]
    calls: dict[str, list[Call]]
    output_shapes: tuple[tuple[int, ...], ...]
    output_needs_grad: bool


class ProbeFailed(Exception):
    """The network raised during a probe; ``inside``: the innermost probed module running."""

    def __init__(self, what: str, inside: str | None, cause: BaseException) -> None:
        super().__init__(what)
        self.what, self.inside, self.cause = what, inside, cause


class Probe:
    """Probes of one network; whether it runs on meta is found at the first run."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        params = [*model.parameters(), *model.buffers()]
        self.all_meta = bool(params) and all(t.is_meta for t in params)
        self.device = params[0].device if params else torch.device("cpu")
        self.meta_works: bool | None = None

    def run(self, modules: dict[str, nn.Module], sizes: tuple[tuple[int, int, int], ...],
            grad: bool = False) -> list[Run]:
        """One ``Run`` per size. Raises ``ProbeFailed`` when the network raises; on a
        network built on meta, the meta error itself (the caller may build on the CPU)."""
        runs = []
        for size in sizes:
            recorder = _Recorder(modules)
            with recorder, _evaluating(self.model), torch.set_grad_enabled(grad):
                output = self._forward(size, recorder, grad)
            tensors = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
            runs.append(Run(size, recorder.calls, tuple(tuple(t.shape) for t in tensors),
                            any(t.requires_grad for t in tensors)))
        return runs

    def _forward(self, size: tuple[int, int, int], recorder: _Recorder, grad: bool) -> Any:
        batch, height, width = size
        if self.meta_works is not False:
            try:
                output = self._on_meta(torch.zeros(batch, 3, height, width, device="meta"), grad)
                self.meta_works = True
                return output
            except (NotImplementedError, RuntimeError) as err:
                if self.all_meta and self.meta_works is None:
                    raise  # nothing else to run on: the caller may build on the CPU
                if self.meta_works:  # it ran on meta before: an error of this size
                    raise ProbeFailed(_what(err, size), recorder.inside(), err) from err
                self.meta_works = False  # it reads values: its own device from now on
                recorder.clear()
            except Exception as err:
                raise ProbeFailed(_what(err, size), recorder.inside(), err) from err
        cuda = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                return self.model(torch.zeros(batch, 3, height, width, device=self.device))
        except Exception as err:
            raise ProbeFailed(_what(err, size), recorder.inside(), err) from err

    def _on_meta(self, image: torch.Tensor, grad: bool) -> Any:
        if self.all_meta:
            with _QuickMeta():
                return self.model(image)
        tensors = {name: torch.empty_like(p, device="meta").requires_grad_(grad and p.requires_grad)
                   for name, p in self.model.named_parameters()}
        tensors.update({name: torch.empty_like(b, device="meta")
                        for name, b in self.model.named_buffers()})
        with _QuickMeta():
            return torch.func.functional_call(self.model, tensors, (image,))


class _QuickMeta(TorchFunctionMode):
    """Same-shape calls on meta answered at once: the first argument itself where the
    call is in place, else an empty tensor like it (needing gradients where an argument
    does, so that ``Run.output_needs_grad`` still reads the graph)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SAME_SHAPE and args and getattr(args[0], "is_meta", False):
            where = _SAME_SHAPE[func]
            if where is not None and kwargs.get("inplace", len(args) > where and args[where]):
                return args[0]
            if torch.is_grad_enabled() and any(
                    getattr(t, "requires_grad", False) for t in tree_leaves((args, kwargs))):
                # not a leaf: an in-place call (an inplace ReLU) may follow
                return torch.empty_like(args[0], requires_grad=True).clone()
            return torch.empty_like(args[0])
        return func(*args, **kwargs)


def _what(err: BaseException, size: tuple[int, int, int]) -> str:
    line = " ".join(str(err).split())[:200] or type(err).__name__
    return f"{type(err).__name__}: {line} (probe input [{size[0]}, 3, {size[1]}, {size[2]}])"


class _Recorder:
    """Forward hooks that record every call of the probed modules (and which one runs)."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.calls: dict[str, list[Call]] = {path: [] for path in modules}
        self.running: list[str] = []
        self.handles: list[Any] = []

    def __enter__(self) -> _Recorder:
        for path, module in self.modules.items():
            self.handles.append(module.register_forward_pre_hook(
                lambda m, args, path=path: self.running.append(path)))
            self.handles.append(module.register_forward_hook(
                lambda m, args, kwargs, out, path=path: self._record(path, args, kwargs, out),
                with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()

    def clear(self) -> None:
        self.calls = {path: [] for path in self.modules}
        self.running.clear()

    def inside(self) -> str | None:
        return self.running[-1] if self.running else None

    def _record(self, path: str, args: tuple, kwargs: dict, output: Any) -> None:
        if self.running:
            self.running.pop()
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        leaves, structure = tree_flatten(output)
        self.calls[path].append(Call(
            input_shapes=tuple(tuple(t.shape) for t in inputs),
            input_dtype=inputs[0].dtype if inputs else None,
            single_input=len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor),
            structure=None if isinstance(output, torch.Tensor) else structure,
            leaves=tuple(("tensor", tuple(leaf.shape), leaf.dtype)
                         if isinstance(leaf, torch.Tensor) else ("value", leaf)
                         for leaf in leaves),
        ))


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def dim_rule(dim: int, samples: list[tuple[int | None, int]]) -> tuple | None:
    """How output dimension ``dim`` follows input dimension ``dim``, from ``(input size or
    None, output size)`` samples; None when no rule fits every sample.

    In order of preference: ``("same", dim)``; ``("const", n)``; ``("down", dim, s, c)``,
    ``floor((in + c) / s)`` (a stride ``s``: ``c = s - 1`` rounds up, as a padded
    convolution does, ``c = 0`` down, as a 2x2 pooling does; stacked strides compose to
    one such rule); ``("up", dim, s, c)``, ``s * in + c`` (upsampling, or a size less
    a border at ``s = 1``). Where the samples leave the rounding open, up is chosen.
    """
    inputs = [i for i, _ in samples]
    outputs = [o for _, o in samples]
    known = None not in inputs
    if known and inputs == outputs:
        return ("same", dim)
    if len(set(outputs)) == 1:
        return ("const", outputs[0])
    if not known:
        return None
    for s in range(2, MAX_SCALE + 1):
        low = max(s * o - i for i, o in samples)
        high = min(s * o - i + s - 1 for i, o in samples)
        if low <= high:
            c = s - 1 if low <= s - 1 <= high else 0 if low <= 0 <= high else low
            return ("down", dim, s, c)
    for s in range(1, MAX_SCALE + 1):
        c = outputs[0] - s * inputs[0]
        if all(o == s * i + c for i, o in samples):
            return ("up", dim, s, c)
    return None


def output_size(rule: tuple, sizes: Any) -> int:
    """The size ``rule`` (from ``dim_rule``) gives for an input of ``sizes``."""
    if rule[0] == "const":
        return rule[1]
    size = sizes[rule[1]]
    if rule[0] == "same":
        return size
    _, _, s, c = rule
    return (size + c) // s if rule[0] == "down" else s * size + c
