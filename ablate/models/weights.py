"""Pretrained weights: torchvision's ImageNet backbones from the hub cache, or a local file.

Nothing is ever downloaded: a missing file is an error that names where to put it.
Loading is partial by design. Dropping an expansion layer removes or reshapes
tensors, so every tensor is matched by name and shape, and the report says what
was loaded, skipped (shape mismatch), missing (in the model only) and unexpected
(in the file only). The trainer stores that report with the trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.errors import UserInputError, error_line
from ablate.paths import expand_user
from ablate.recipes.schema import ModelSpec

# The torchvision weights each backbone takes for ``weights = "imagenet"``: the enum's
# current DEFAULT (torchvision's segmentation builders use IMAGENET1K_V1 instead).
IMAGENET = {
    "mobilenet_v3_large": ("MobileNet_V3_Large_Weights", "IMAGENET1K_V2"),
    "mobilenet_v3_small": ("MobileNet_V3_Small_Weights", "IMAGENET1K_V1"),
    "resnet50": ("ResNet50_Weights", "IMAGENET1K_V2"),
    "resnet101": ("ResNet101_Weights", "IMAGENET1K_V2"),
    "squeezenet1_0": ("SqueezeNet1_0_Weights", "IMAGENET1K_V1"),
}
# Classifier-side ImageNet tensors our backbones keep under another name.
RENAMES = {"squeezenet1_0": {"classifier.1.": "conv10."}}
# Buffers a checkpoint may lack without anything being wrong.
_IGNORED_MISSING = ("num_batches_tracked",)


def imagenet_weights(backbone: str):
    """The torchvision ``WeightsEnum`` member for a backbone name."""
    import torchvision.models as tvm  # lazy: loads torchvision

    enum_name, member = IMAGENET[backbone]
    return getattr(getattr(tvm, enum_name), member)


def imagenet_path(backbone: str) -> Path:
    """Where torch hub keeps that file: ``<hub dir>/checkpoints/<name from the url>``."""
    url = imagenet_weights(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_weights(model: nn.Module, spec: ModelSpec) -> dict[str, Any] | None:
    """Load ``spec.weights_path`` (if set) or the ImageNet backbone weights into ``model``.

    A file whose keys start with ``backbone.`` is a whole-model state dict; any other
    is a backbone state dict (e.g. torchvision's classification weights). Returns the
    load report, or ``None`` when the spec asks for no weights.
    """
    if spec.weights_path:
        source = expand_user(spec.weights_path, "model.weights_path")
        if not source.is_file():
            raise UserInputError(f"model.weights_path: file not found: {source}")
        state = read_state_dict(source)
    elif spec.weights == "imagenet":
        source = imagenet_path(spec.backbone)
        if not source.is_file():
            weights = imagenet_weights(spec.backbone)
            raise UserInputError(
                f"model.weights = 'imagenet': {source} not found and ablate never downloads; "
                f"place torchvision's {type(weights).__name__}.{weights.name} file "
                f"({weights.url}) at that path"
            )
        state = read_state_dict(source)
    else:
        return None

    # a user model (model.builder) takes a whole-model state dict, whatever its attributes
    whole = (spec.builder is not None or not hasattr(model, "backbone")
             or any(key.startswith("backbone.") for key in state))
    if whole:
        target, target_name = model, "model"
    else:
        target, target_name = model.backbone, "backbone"
        state = _rename(state, RENAMES.get(spec.backbone, {}))
    report = load_partial(target, state)
    if not report["loaded"]:
        sample = ", ".join(list(state)[:3])
        model_name = spec.builder if spec.builder is not None else f"{spec.backbone}/{spec.head}"
        raise UserInputError(
            f"{source}: no tensor matches the {target_name} of {model_name} "
            f"by name and shape (file keys start: {sample})"
        )
    return {"source": str(source), "target": target_name, **report}


# how a torch.save file begins: a zip archive, or (before PyTorch 1.6) a pickle
TORCH_SAVE_MAGIC = (b"PK\x03\x04", b"\x80")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file; a checkpoint holding one under ``model``/``state_dict``
    is unwrapped."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a bad file
        with open(path, "rb") as file:
            head = file.read(8)
        if not head.startswith(TORCH_SAVE_MAGIC):  # torch's words were "101" or "pickled objects"
            raise UserInputError(f"{path}: not a file torch.save wrote (it begins {head!r}); "
                                 "expected torch.save(model.state_dict(), path)") from None
        raise UserInputError(f"{path}: cannot read a state dict: {error_line(err)}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise UserInputError(f"{path}: not a state dict (a mapping of names to tensors)")
    return dict(obj)


def load_partial(module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Copy every tensor whose name and shape match; report the rest."""
    own = module.state_dict()
    loaded, skipped, shapes = [], [], {}
    for key, tensor in state.items():
        if key not in own:
            continue
        if tuple(own[key].shape) == tuple(tensor.shape):
            loaded.append(key)
        else:
            skipped.append(key)
            shapes[key] = {"file": list(tensor.shape), "model": list(own[key].shape)}
    module.load_state_dict({key: state[key] for key in loaded}, strict=False)
    missing = [
        key for key in own
        if key not in state and not key.endswith(_IGNORED_MISSING)
    ]
    unexpected = [key for key in state if key not in own]
    return {
        "counts": {"loaded": len(loaded), "skipped": len(skipped), "missing": len(missing),
                   "unexpected": len(unexpected)},
        "loaded": loaded,
        "skipped": skipped,
        "skipped_shapes": shapes,
        "missing": missing,
        "unexpected": unexpected,
    }


def _rename(state: Mapping[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = tensor
    return out
