"""What a tracker sink knows of its trial."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ablate.trials.lifecycle import TrialStatus


@dataclass(frozen=True)
class TrackedTrial:
    """What a sink knows of its trial: plain data (it travels inside a pickled job)."""

    study: str
    trial_id: str
    name: str
    run_dir: str
    axes: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    variant: str = ""
    config_name: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # per-sink settings (MLflow parent)
    # the fully resolved spec (``trials.ids.spec_dict``): W&B's config holds every key of it
    spec: dict[str, Any] = field(default_factory=dict)


def ended_status(result: Mapping[str, Any]) -> TrialStatus | None:
    """The status of the result a sink's ``finish`` gets (``TrialResult.to_json()``):
    ``DONE`` or ``FAILED``; None for a trial that stopped without a result (Ctrl-C, its
    claim lost, the cluster stopping it: ``dispatch.entry`` then passes ``interrupted``),
    which is resumed later and so is neither finished nor failed."""
    try:
        status = TrialStatus(result.get("status"))
    except ValueError:
        return None
    return status if status.finished else None
