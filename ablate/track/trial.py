"""What a tracker sink knows of its trial."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
