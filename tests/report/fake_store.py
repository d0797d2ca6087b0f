"""A small study written straight into a store (no training), with figures checked by hand.

Study ``mnv3_mini``: variants conventional / proposed x axis ``model.head`` x seeds 0, 1.

| configuration                       | params     | GFLOPs | mIoU (seeds)  | latency |
|-------------------------------------|------------|--------|---------------|---------|
| conventional[head=deeplabv3plus]    | 11,727,653 | 4.0    | 62.0, 60.0    | 10, 12  |
| conventional[head=deeplabv3]        | 11,000,000 | 3.0    | 58.0, 58.0    | 8, 8    |
| proposed[head=deeplabv3plus]        | 5,632,933  | 2.0    | 59.5, 58.5    | 5, 5    |
| proposed[head=deeplabv3]            | 5,000,000  | 1.5    | 55.0, 57.0    | 4, 4    |

Published (Kim et al. 2025, Table 1): conventional 11,745,643 / 62.24, proposed 5,632,933 / 59.54.
Study ``other``: one done trial (params 1,000, mIoU 50.0) and one pending trial.
Study ``flags`` (``add_study(store, FLAGS, "flags", FLAGS_FIGURES)``): a boolean axis.
"""

from __future__ import annotations

from ablate.recipes.loader import parse_recipe
from ablate.store import CostRecord, Store
from ablate.trials.expand import expand
from ablate.trials.lifecycle import TrialResult

MNV3_MINI = """
name = "mnv3_mini"
description = "Kim et al. 2025 in miniature: last expansion kept or dropped"
seeds = [0, 1]

[base.data]
name = "shapes"
classes = 3

[grid]
"model.head" = ["deeplabv3plus", "deeplabv3"]

[variants.conventional]
model.keep_last_expansion = true
published = { params = 11745643, miou = 62.24, source = "Kim et al. 2025, Table 1" }

[variants.proposed]
model.keep_last_expansion = false
published = { params = 5632933, miou = 59.54, source = "Kim et al. 2025, Table 1" }
"""

OTHER = """
name = "other"
seeds = [0, 1]
[base.data]
name = "shapes"
"""

FLAGS = """
name = "flags"
seeds = [0]
[base.data]
name = "shapes"
[grid]
"train.channels_last" = [true, false]
"""
FLAGS_FIGURES = {"channels_last=true": (1_000, 1_000_000, [(0.5, 1.0)]),  # one architecture:
                 "channels_last=false": (1_000, 1_000_000, [(0.6, 1.0)])}  # one cost

# config name -> (params, flops, [(miou, latency_ms) per seed])
FIGURES = {
    "conventional[head=deeplabv3plus]": (11_727_653, 4_000_000_000, [(0.62, 10.0), (0.60, 12.0)]),
    "conventional[head=deeplabv3]": (11_000_000, 3_000_000_000, [(0.58, 8.0), (0.58, 8.0)]),
    "proposed[head=deeplabv3plus]": (5_632_933, 2_000_000_000, [(0.595, 5.0), (0.585, 5.0)]),
    "proposed[head=deeplabv3]": (5_000_000, 1_500_000_000, [(0.55, 4.0), (0.57, 4.0)]),
}
CLASSES = ("background", "circle", "square")


def result(study: str, trial, miou: float, latency: float, epochs: int = 2) -> dict:
    """A result file as ``run_trial`` writes it: per-class IoU around mIoU, two epochs."""
    per_class = {f"iou/{name}": miou + d for name, d in zip(CLASSES, (0.2, -0.1, -0.1))}
    return {
        "study": study, "trial_id": trial.trial_id, "status": "done", "error": None,
        "final": {"miou": miou, "pixel_acc": 0.9, "latency_ms": latency, "train_loss": 0.5,
                  "steps": 4.0, **per_class},
        "epochs": [{"epoch": e, "step": 2 * e,
                    "metrics": {"train_loss": 1.0 / e, "epoch_seconds": 1.0,
                                "val_miou": miou * e / epochs, "val_pixel_acc": 0.9}}
                   for e in range(1, epochs + 1)],
        "environment": {"torch": "x"}, "started_at": "2026-01-01T00:00:00",
        "finished_at": "2026-01-01T00:01:00",
    }


def add_study(store: Store, text: str, name: str, figures: dict, trials=None) -> list:
    recipe = parse_recipe(text, f"{name}.toml")
    trials = trials if trials is not None else expand(recipe)
    store.upsert_study(name, recipe.description, f"{name}.toml", text)
    store.register_trials(name, trials)
    for t in trials:
        if t.config_name not in figures:
            continue
        params, flops, seeds = figures[t.config_name]
        store.put_cost(CostRecord(t.arch_id, params, {"backbone": params}, flops, None,
                                  "fvcore-mac", (64, 64)))
        miou, latency = seeds[t.seed]
        store.record(TrialResult.from_json({"format": 1, **result(name, t, miou, latency)}))
    return trials


def add_failing_study(store: Store, text: str, name: str, figures: dict,
                      failed: set[tuple[str, int]]) -> list:
    """``add_study``, but the trials ``(config name, seed)`` in ``failed`` are recorded as
    failed (an error, no figures)."""
    trials = expand(parse_recipe(text, f"{name}.toml"))
    add_study(store, text, name, figures,
              [t for t in trials if (t.config_name, t.seed) not in failed])
    store.register_trials(name, trials)
    for t in trials:
        if (t.config_name, t.seed) in failed:
            store.record(TrialResult.from_json({
                "format": 1, "study": name, "trial_id": t.trial_id, "status": "failed",
                "error": "RuntimeError: CUDA out of memory", "final": {}, "epochs": []}))
    return trials


def fill(url: str) -> Store:
    """``mnv3_mini`` and ``other`` in the store at ``url``."""
    store = Store(url)
    add_study(store, MNV3_MINI, "mnv3_mini", FIGURES)
    other = expand(parse_recipe(OTHER, "other.toml"))
    add_study(store, OTHER, "other", {"base": (1_000, 1_000_000, [(0.5, 1.0)])}, other[:1])
    store.register_trials("other", other[1:])  # seed 1 stays pending
    return store
