"""A separate evaluation set (``[base.eval_data]``): train on one dataset, validate on another.

The DeepLabv3+ lightweighting paper (Kim, Jeong, Kang, Jo and Moon, "A Lightweighting
Method for the DeepLabv3+ Network", 2025, Table 1) trains on MS COCO and validates on
Pascal VOC 2012; torchvision's segmentation weights are trained the same way. COCO is
read as the 20 VOC categories plus background, so the two share one class list.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ablate.errors import UserInputError
from ablate.recipes.schema import DataSpec, EvalDataSpec


def as_data_spec(eval_data: EvalDataSpec, train: DataSpec) -> DataSpec:
    """The ``DataSpec`` whose validation split is the evaluation set.

    Both splits are set to ``eval_data.split`` (an evaluation root need not hold a
    training split); loading options follow the training data's.
    """
    fields: dict[str, Any] = {
        "name": eval_data.name, "root": eval_data.root,
        "train_split": eval_data.split, "val_split": eval_data.split,
        "limit_train": 1, "limit_val": eval_data.limit, "eval_size": eval_data.eval_size,
        "workers": train.workers, "pin_memory": train.pin_memory,
        "persistent_workers": train.persistent_workers, "cache": train.cache,
    }
    if eval_data.name == "shapes":
        fields.update(classes=eval_data.classes, image_size=eval_data.image_size,
                      train_images=1, val_images=eval_data.images, data_seed=eval_data.data_seed)
    return DataSpec.model_validate(fields)


def as_eval_data_error(err: UserInputError) -> UserInputError:
    """A reader's error, which names data.root, about eval_data's root (its own key)."""
    message = str(err)
    renamed = (message.replace("under data.root", "under eval_data.root")
               .replace("(data.name = ", "(eval_data.name = ")
               .replace("did you mean data.root", "did you mean eval_data.root"))
    if renamed.startswith("data.root"):
        renamed = "eval_data.root" + renamed.removeprefix("data.root")
    return err if renamed == message else UserInputError(renamed)


def with_eval_data(pair: Any, eval_data: EvalDataSpec, train: DataSpec, *, seed: int = 0,
                   num_classes: int | None = None) -> Any:
    """``pair`` (a ``DatasetPair``) with its validation set replaced by ``eval_data``'s.

    The evaluation set must label the training classes in the same order; otherwise
    the confusion matrix would compare unrelated ids.
    """
    from ablate.data.build import build_datasets  # lazy: loads numpy, torch

    try:
        other = build_datasets(as_data_spec(eval_data, train), seed=seed,
                               num_classes=num_classes, train=False)
    except UserInputError as err:
        raise as_eval_data_error(err) from None
    if list(other.class_names) != list(pair.class_names):
        raise UserInputError(
            f"eval_data.name: {eval_data.name!r} labels {len(other.class_names)} classes "
            f"({', '.join(other.class_names[:3])}, ...), the training data "
            f"{len(pair.class_names)} ({', '.join(pair.class_names[:3])}, ...); they must match")
    return replace(pair, val=other.val)
