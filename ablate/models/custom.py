"""User models: ``model.builder`` called with ``model.args`` and ``num_classes``.

The builder returns an ``nn.Module`` mapping images ``[N, 3, H, W]`` to logits
``[N, num_classes, H, W]``, or to a dict with ``out`` (and optionally ``aux``). A plain
tensor output is turned into ``{"out": logits}`` by a forward hook, so the module
itself is left as the user wrote it: its parameter names, state dict and per-module
cost rows are the user's own.

``check_model`` runs one forward pass on CPU and fails with one line when the output
has the wrong type, shape or class count; the planner does this once per architecture.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from ablate.catalog import MODELS
from ablate.errors import UserInputError, error_line
from ablate.recipes.schema import ModelSpec
from ablate.registry import keyword_names

KEY = "model.builder"
# the largest input the output check runs on; bigger evaluation sizes are scaled down
PROBE_PIXELS = 256 * 256


def builder_label(spec: ModelSpec) -> str:
    ref = spec.builder or ""
    return ref if ":" in ref else f"{ref} ({MODELS.path(ref)})"


def _check_arguments(fn: Any, kwargs: dict[str, Any], label: str) -> None:
    """Name a misspelt ``model.args`` key before calling (a TypeError says less)."""
    if "num_classes" in kwargs:  # any builder's call would raise "got multiple values"
        raise UserInputError("model.args.num_classes: ablate passes num_classes to the "
                             "builder itself; set model.num_classes instead")
    accepted = keyword_names(fn)
    if accepted is None:
        return
    if "num_classes" not in accepted:
        raise UserInputError(f"{KEY}: {label} must accept a num_classes keyword argument "
                             f"(its arguments: {', '.join(accepted) or 'none'})")
    allowed = ", ".join(a for a in accepted if a != "num_classes") or "none (num_classes only)"
    for key in kwargs:
        if key not in accepted:
            raise UserInputError(f"model.args.{key}: {label} has no argument {key!r}; "
                                 f"allowed: {allowed}")


def _as_dict(module: nn.Module, inputs: Any, output: Any) -> Any:
    """Forward hook: a bare logits tensor becomes ``{"out": logits}``."""
    if isinstance(output, torch.Tensor):
        return {"out": output}
    return None


def build_custom(spec: ModelSpec, num_classes: int) -> nn.Module:
    """Call the user's builder; every failure is a one-line ``UserInputError``.

    The user's exception is chained (``raise ... from``), so ``ablate --debug`` shows
    the user's own traceback.
    """
    assert spec.builder is not None
    label = builder_label(spec)
    fn = MODELS.load(spec.builder)
    kwargs = dict(spec.args)
    _check_arguments(fn, kwargs, label)
    try:
        with warnings.catch_warnings():
            # a zero width (model.args.width = 0) makes torch's initialisers say so before
            # the output check's one line says what is wrong; the user sees only that line
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors",
                                    category=UserWarning)
            model = fn(**kwargs, num_classes=num_classes)
    except UserInputError:
        raise
    except Exception as err:
        raise UserInputError(
            f"{KEY}: {label} raised {type(err).__name__}: {error_line(err)}"
        ) from err
    if not isinstance(model, nn.Module):
        raise UserInputError(
            f"{KEY}: {label} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    model.register_forward_hook(_as_dict)
    return model


def probe_size(resolution: tuple[int, int]) -> tuple[int, int]:
    """The evaluation size, scaled down to at most ``PROBE_PIXELS`` (multiples of 32)."""
    height, width = resolution
    if height * width <= PROBE_PIXELS:
        return height, width
    scale = (PROBE_PIXELS / (height * width)) ** 0.5
    return max(32, round(height * scale / 32) * 32), max(32, round(width * scale / 32) * 32)


def check_model(spec: ModelSpec, num_classes: int, resolution: tuple[int, int]) -> None:
    """Build the user's model on CPU and run images through it in eval and training mode.

    Many networks return an auxiliary output (or a tuple) only while training, so both
    modes are checked; training mode takes two images (batch norm needs more than one
    value per channel) and leaves the random state as it was.
    """
    label = builder_label(spec)
    model = build_custom(spec, num_classes)
    if not any(p.requires_grad for p in model.parameters()):  # the optimizer would refuse it
        raise UserInputError(f"{KEY}: the model {label} built has no trainable parameter "
                             "(none, or every one with requires_grad = False)")
    height, width = probe_size(resolution)
    for training, batch in ((False, 1), (True, 2)):
        output = _probe(model, training, batch, (height, width), label)
        mode = " in training mode" if training else ""
        _check_output(output, [batch, num_classes, height, width], label, mode)


def returns_aux(spec: ModelSpec, num_classes: int, resolution: tuple[int, int]) -> bool:
    """Whether the user's model returns an ``aux`` output in training mode, the one
    ``model.aux_weight`` weighs (one forward pass on CPU)."""
    model = build_custom(spec, num_classes)
    output = _probe(model, True, 2, probe_size(resolution), builder_label(spec))
    return isinstance(output, dict) and output.get("aux") is not None


def _probe(model: nn.Module, training: bool, batch: int, size: tuple[int, int],
           label: str) -> Any:
    """The model's output for a batch of zeros, without gradients or a change to the
    random state; a failure is one line."""
    model.train(training)
    height, width = size
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            return model(torch.zeros(batch, 3, height, width))
    except Exception as err:
        mode = " in training mode" if training else ""
        raise UserInputError(
            f"{KEY}: the model {label} built raised {type(err).__name__}{mode} on a "
            f"[{batch}, 3, {height}, {width}] input: {error_line(err)}"
        ) from err


def _check_output(output: Any, expected: list[int], label: str, mode: str) -> None:
    if not isinstance(output, dict) or "out" not in output:
        got = (f"a dict with keys {', '.join(map(repr, output))}" if isinstance(output, dict)
               else f"a {type(output).__name__}")
        raise UserInputError(f"{KEY}: the model {label} built returned {got}{mode}; "
                             f"expected logits {expected} or a dict with 'out' (and 'aux')")
    for name in ("out", "aux"):
        value = output.get(name)
        if value is None and name == "aux":
            continue
        if not isinstance(value, torch.Tensor):
            raise UserInputError(f"{KEY}: the model {label} built returned {name!r} of type "
                                 f"{type(value).__name__}{mode}; expected a tensor {expected}")
        if list(value.shape) != expected:
            what = ("class count" if value.ndim == 4 and list(value.shape[2:]) == expected[2:]
                    else "shape")
            raise UserInputError(
                f"{KEY}: wrong {what}: the model {label} built returned {name!r} logits of "
                f"shape {list(value.shape)}{mode} for a [{expected[0]}, 3, {expected[2]}, "
                f"{expected[3]}] input; expected {expected} (N, num_classes, H, W)"
            )
