"""Knock-out by module path: ``model.remove`` and ``model.replace`` edit a built network.

Paths are those of ``model.named_modules()`` (``head.aspp.convs.3``; ``ablate cost RECIPE
--modules`` lists them). ``build_model`` calls ``knock_out`` on every network it builds,
built-in or a user's, so costs, training, checkpoints and trial ids all see the same
edited network. A removed module is gone, parameters and FLOPs with it (not frozen);
what stands in for it keeps its contract with the rest of the network:

- its input, unchanged, where every call's output has the shape and dtype of its one
  tensor input (a block of a residual stage: the block's ``relu(x + f(x))`` becomes ``x``);
- otherwise zeros of its output's shape and dtype, on its input's device (an ASPP
  branch: 256 channels of zeros at its input's size). Zeroing a residual branch's last
  layers makes ``x + f(x)`` become ``x``. The shape follows the input's at run time by a
  rule read from the probes (``ablate.models.probe``): a size kept, fixed, or scaled by
  a stride with its rounding.

``model.replace`` puts a module of the user's in its place (``by = "torch.nn:Identity"``,
with ``args``), or forces one of the two contracts (``by = "identity"`` or ``"zeros"``).

Shapes are read by forward passes at small inputs, on the meta device where the network
runs there (nothing computed), never by training. Every mistake is one line naming the
key (``UserInputError``): a path the network lacks (with the closest names), a module
never called, a removal whose shapes follow no rule, a removal that leaves no trainable
parameter or none that reaches the output, a replacement that does not import, build or
run, or returns another shape than the module it replaces.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_unflatten

from ablate.errors import UserInputError, error_line
from ablate.models.probe import (
    ODD_PROBE,
    PROBES,
    Call,
    Probe,
    ProbeFailed,
    dim_rule,
    output_size,
)
from ablate.recipes.schema import KNOCKOUT_WORDS, ModelSpec, Replacement
from ablate.registry import import_target

REMOVE, REPLACE = "model.remove", "model.replace"
LISTING = "list them with `ablate cost RECIPE --modules`"


class Removed(nn.Module):
    """What stands in for a knocked-out module; it has no parameters.

    ``identity``: returns its (one) input. ``zeros``: for each output leaf, zeros whose
    size per dimension follows a rule of the first tensor input's sizes (``probe.dim_rule``)
    and whose dtype is the input's (``None``) or the recorded one; non-tensor leaves are
    returned as recorded.
    """

    def __init__(self, path: str, original: str, mode: str, structure: Any = None,
                 leaves: tuple = ()) -> None:
        super().__init__()
        self.path, self.original, self.mode = path, original, mode
        self.structure = structure  # None: a single tensor
        self.leaves = leaves  # ("tensor", rules, dtype | None) or ("value", value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "identity":
            return args[0] if args else next(iter(kwargs.values()))
        like = next(t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
        values = []
        for leaf in self.leaves:
            if leaf[0] == "value":
                values.append(leaf[1])
                continue
            _, rules, dtype = leaf
            size = [output_size(rule, like.shape) for rule in rules]
            values.append(like.new_zeros(size, dtype=dtype or like.dtype))
        return values[0] if self.structure is None else tree_unflatten(values, self.structure)

    def extra_repr(self) -> str:
        became = "its input" if self.mode == "identity" else "zeros"
        return f"removed {self.path!r} ({self.original}) -> {became}"


def knock_out(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """``model`` with ``spec.remove`` and ``spec.replace`` applied (edited in place)."""
    if not spec.remove and not spec.replace:
        return model
    names = dict(model.named_modules())
    edits: list[tuple[str, str, Replacement | None]] = [(REMOVE, p, None) for p in spec.remove]
    edits += [(f"{REPLACE}[{i}]", r.path, r) for i, r in enumerate(spec.replace)]
    targets = {path: _find(names, path, key) for key, path, _ in edits}
    built = {path: _build(rep, key) for key, path, rep in edits
             if rep is not None and rep.by not in KNOCKOUT_WORDS}

    probe = Probe(model)
    try:
        before = probe.run(targets, PROBES)
    except ProbeFailed as err:
        raise UserInputError(f"{edits[0][0]}: cannot read the shapes of the network's modules: "
                             f"it raised {err.what}") from err.cause
    stand_ins = _stand_ins(edits, targets, built, before)
    if any(_strided(module) for module in stand_ins.values()):
        try:  # an odd side shows whether a stride rounds up or down
            before += probe.run(targets, (ODD_PROBE,))
        except ProbeFailed:
            pass  # a network that refuses odd sides: dim_rule rounds up
        stand_ins = _stand_ins(edits, targets, built, before)
    for path, module in stand_ins.items():
        _swap(model, targets[path], module)
    _check_edited(model, edits, stand_ins, before[0])
    return model


def _stand_ins(edits: list, targets: dict[str, nn.Module], built: dict[str, nn.Module],
               runs: list) -> dict[str, nn.Module]:
    out = {}
    for key, path, rep in edits:
        calls = [call for run in runs for call in run.calls[path]]
        out[path] = built.get(path) or removed_module(
            path, type(targets[path]).__name__, calls, key, rep.by if rep else None)
    return out


def _strided(module: nn.Module) -> bool:
    return isinstance(module, Removed) and any(
        rule[0] == "down" for leaf in module.leaves if leaf[0] == "tensor" for rule in leaf[1])


def _find(names: dict[str, nn.Module], path: str, key: str) -> nn.Module:
    if path in names:
        return names[path]
    ancestors = {path.rsplit(".", k)[0] for k in range(1, path.count(".") + 1)}
    close = difflib.get_close_matches(path, [n for n in names if n and n not in ancestors],
                                      n=3, cutoff=0.6)
    parent = path
    while parent and parent not in names:
        parent = parent.rpartition(".")[0]
    if close:
        hint = f"closest: {', '.join(close)}"
    else:
        children = [n.rpartition(".")[2] for n in names
                    if n and n.rpartition(".")[0] == parent]
        hint = (f"{parent or 'the network'} has: {', '.join(children[:12]) or 'no submodule'}"
                + (", ..." if len(children) > 12 else ""))
    raise UserInputError(f"{key}: the network has no module {path!r}; {hint} ({LISTING})")


def _build(rep: Replacement, key: str) -> nn.Module:
    target = import_target(rep.by, f"{key}.by")
    try:
        module = target(**rep.args)
    except UserInputError:
        raise
    except Exception as err:
        raise UserInputError(f"{key}.by: building {rep.by} with args {rep.args} raised "
                             f"{type(err).__name__}: {error_line(err)}") from err
    if not isinstance(module, nn.Module):
        raise UserInputError(f"{key}.by: {rep.by} built a {type(module).__name__}, not a "
                             "torch.nn.Module")
    return module


def removed_module(path: str, original: str, calls: list[Call], key: str,
                   force: str | None = None) -> Removed:
    """The stand-in of one knocked-out module, from its recorded calls (every probe)."""
    if not calls:
        raise UserInputError(f"{key}: {path!r} is never called when the network runs (eval "
                             "mode), so knocking it out changes nothing but the parameter "
                             "count; name a module the forward pass calls")
    keeps = all(call.keeps_shape for call in calls)
    first = calls[0]
    if force == "identity" and not keeps:
        raise UserInputError(f"{key}.by: 'identity' in place of {path!r} cannot keep the "
                             f"network's shapes: it would return its input, "
                             f"{_shown(first.input_shapes)}, where {path!r} returns "
                             f"{_shown(first.output_shapes)}")
    if keeps and force != "zeros":
        return Removed(path, original, "identity")
    if not first.input_shapes:
        raise UserInputError(f"{key}: {path!r} takes no tensor input, so the zeros standing "
                             "in for it cannot follow the input's size; use model.replace "
                             "with a module of your own")
    if any(call.structure != first.structure for call in calls):
        raise UserInputError(f"{key}: {path!r} returns outputs of different structure on "
                             "different calls; use model.replace with a module of your own")
    leaves = []
    for index, leaf in enumerate(first.leaves):
        if leaf[0] == "value":
            if any(call.leaves[index] != leaf for call in calls):
                raise UserInputError(f"{key}: {path!r} returns a non-tensor value that changes "
                                     "from call to call; use model.replace")
            leaves.append(leaf)
            continue
        leaves.append(("tensor", _rules(path, key, calls, index), _dtype(calls, index)))
    return Removed(path, original, "zeros", first.structure, tuple(leaves))


def _rules(path: str, key: str, calls: list[Call], index: int) -> tuple:
    """One size rule per dimension of output leaf ``index``, from every recorded call."""
    ranks = {len(call.leaves[index][1]) for call in calls}
    rules = []
    if len(ranks) == 1:
        for dim in range(ranks.pop()):
            samples = [(call.input_shapes[0][dim] if dim < len(call.input_shapes[0]) else None,
                        call.leaves[index][1][dim]) for call in calls]
            rule = dim_rule(dim, samples)
            if rule is None:
                break
            rules.append(rule)
        else:
            return tuple(rules)
    first = calls[0]
    raise UserInputError(
        f"{key}: cannot knock out {path!r} and keep the network's shapes: its output "
        f"{_shown(first.output_shapes)} does not follow from its input "
        f"{_shown(first.input_shapes)} by a kept, fixed or strided size at every probe; use "
        "model.replace with a module of your own")


def _dtype(calls: list[Call], index: int) -> torch.dtype | None:
    """None (follow the input's dtype, e.g. under autocast) where the output's dtype was
    the input's at every call; else the recorded dtype."""
    dtypes = {call.leaves[index][2] for call in calls}
    if all(call.leaves[index][2] == call.input_dtype for call in calls):
        return None
    return dtypes.pop()


def _swap(model: nn.Module, target: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``target`` is registered (a module shared by two parents
    is knocked out in both)."""
    for path, module in list(model.named_modules(remove_duplicate=False)):
        if module is target and path:
            parent_path, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent_path) if parent_path else model, name, new)


def _check_edited(model: nn.Module, edits: list, stand_ins: dict[str, nn.Module],
                  before: Any) -> None:
    """Run the edited network once (with gradients, on meta where possible) and refuse
    what would fail or mislead later: a replacement that raises or returns another shape,
    a module the network also calls through another reference, an output that changed
    shape, and a network no trainable parameter is left in or reaches the output of."""
    keys = {path: key for key, path, _ in edits}
    by = {path: rep.by for _, path, rep in edits if rep is not None}
    general = REMOVE if any(rep is None for _, _, rep in edits) else REPLACE
    listed = ", ".join(repr(path) for path in stand_ins)
    if not any(p.requires_grad for p in model.parameters()):
        raise UserInputError(f"{general}: knocking out {listed} leaves no trainable parameter")
    handles = [stand_ins[path].register_forward_hook(_shape_check(path, before.calls[path]))
               for path in by if path in stand_ins and not isinstance(stand_ins[path], Removed)]
    try:
        after = Probe(model).run(stand_ins, PROBES[:1], grad=True)[0]
    except ProbeFailed as err:
        if isinstance(err.cause, _WrongShape):
            path, now, was = err.cause.args
            raise UserInputError(
                f"{keys[path]}.by: {by[path]} in place of {path!r} returns {_shown(now)}; the "
                f"module it replaces returns {_shown(was.output_shapes)} (for a "
                f"{_shown(was.input_shapes)} input)") from None
        if err.inside is not None and err.inside in by:
            path = err.inside
            raise UserInputError(f"{keys[path]}.by: {by[path]} in place of {path!r} raised "
                                 f"{err.what} on its input "
                                 f"{_shown(before.calls[path][0].input_shapes)}") from err.cause
        raise UserInputError(f"{general}: the network with {listed} knocked out raised "
                             f"{err.what}") from err.cause
    finally:
        for handle in handles:
            handle.remove()
    for path in stand_ins:
        old, new = before.calls[path], after.calls[path]
        if len(new) != len(old):
            raise UserInputError(f"{keys[path]}: the network calls {path!r} {len(old)} time(s) "
                                 f"but its stand-in {len(new)}: it keeps another reference to "
                                 "the module, which cannot be knocked out by path")
    if after.output_shapes != before.output_shapes:
        raise UserInputError(f"{general}: knocking out {listed} changes the network's output "
                             f"from {_shown(before.output_shapes)} to "
                             f"{_shown(after.output_shapes)}")
    if not after.output_needs_grad:
        raise UserInputError(f"{general}: with {listed} knocked out no trainable parameter "
                             "reaches the network's output, so nothing could be learnt")


class _WrongShape(Exception):
    """A replacement's output differs from the replaced module's: stops the probe at once
    (the network would fail further on, naming a module that is not at fault)."""


def _shape_check(path: str, calls: list[Call]):
    seen = [0]

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        was = calls[min(seen[0], len(calls) - 1)]
        seen[0] += 1
        now = tuple(tuple(t.shape) for t in tree_leaves(output) if isinstance(t, torch.Tensor))
        if now != was.output_shapes:
            raise _WrongShape(path, now, was)

    return hook


def _shown(shapes: tuple) -> str:
    text = [str(list(shape)) for shape in shapes]
    return text[0] if len(text) == 1 else "(" + ", ".join(text) + ")"
