"""What a trial spec resolves to beyond its own keys: its class count and the resolution
at which its cost (FLOPs, latency) is reported. Trial ids and architecture ids
(``trials.ids``) hash them; the trainer and the cost counter use them."""

from __future__ import annotations

from ablate.data.catalog import dataset_num_classes, default_eval_resolution
from ablate.data.evaluation import as_data_spec, as_eval_data_error
from ablate.errors import UserInputError
from ablate.recipes.schema import TrialSpec


def num_classes(spec: TrialSpec) -> int:
    return spec.model.num_classes or dataset_num_classes(spec.data)


def eval_resolution(spec: TrialSpec) -> tuple[int, int]:
    """The resolution at which FLOPs and latency are reported."""
    if spec.eval.resolution is not None:
        return tuple(spec.eval.resolution)  # type: ignore[return-value]

    if spec.eval_data.name is not None:  # a separate evaluation set: its resolution
        eval_spec = as_data_spec(spec.eval_data, spec.data)
        if eval_spec.eval_size is not None:
            return tuple(eval_spec.eval_size)  # type: ignore[return-value]
        try:
            return default_eval_resolution(eval_spec)
        except UserInputError as err:  # it was "data.root: ... not found" for eval_data's root
            raise as_eval_data_error(err) from None
    if spec.data.eval_size is not None:
        return tuple(spec.data.eval_size)  # type: ignore[return-value]
    return default_eval_resolution(spec.data)
