"""Disk a done trial's run folder keeps of its checkpoint, by ``ablate run --keep``.

For each model and optimiser: one training step, then the bytes ``torch.save`` writes
for the whole resumable checkpoint (what ``--keep checkpoint`` keeps: model, optimiser,
AMP scaler, step, history, random states) and for ``weights.pt`` (what ``--keep
weights``, the default, keeps), both through ``ablate.train.checkpoint``'s own writer
and thinning.

    .venv/bin/python bench/bench_checkpoint_size.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ablate.models.build import build_model
from ablate.recipes.schema import ModelSpec
from ablate.train.checkpoint import (
    CHECKPOINT_NAME,
    WEIGHTS_NAME,
    keep_finished,
    rng_state,
    save_checkpoint,
)

CASES = [  # (label, model spec, classes, optimiser)
    ("quick-start: MobileNetV3-L DeepLabV3+", ModelSpec(
        backbone="mobilenet_v3_large", head="deeplabv3plus", output_stride=16), 4, "adamw"),
    ("DeepLabV3 ResNet-50", ModelSpec(backbone="resnet50", head="deeplabv3"), 21, "sgd"),
    ("DeepLabV3 ResNet-50", ModelSpec(backbone="resnet50", head="deeplabv3"), 21, "adamw"),
]


def sizes(spec: ModelSpec, classes: int, optimizer: str) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(spec, classes).train()
    opt = (torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if optimizer == "sgd"
           else torch.optim.AdamW(model.parameters()))
    out = model(torch.randn(2, 3, 64, 64))
    (out["out"] if isinstance(out, dict) else out).float().mean().backward()
    opt.step()
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        save_checkpoint(run_dir / CHECKPOINT_NAME, {
            "spec": {}, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": torch.amp.GradScaler("cuda", enabled=False).state_dict(), "step": 1,
            "history": [], "rng": rng_state(), "augment": None})
        whole = (run_dir / CHECKPOINT_NAME).stat().st_size / 1e6
        keep_finished(run_dir, "weights")
        weights = (run_dir / WEIGHTS_NAME).stat().st_size / 1e6
    return whole, weights


def main() -> None:
    print(f"{'model':<40} {'optimiser':<9} {'checkpoint MB':>13} {'weights MB':>10} {'ratio':>6}")
    for label, spec, classes, optimizer in CASES:
        whole, weights = sizes(spec, classes, optimizer)
        print(f"{label:<40} {optimizer:<9} {whole:>13.1f} {weights:>10.1f} "
              f"{weights / whole:>6.2f}")


if __name__ == "__main__":
    main()
