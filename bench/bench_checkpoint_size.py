"""Disk a done trial's run folder keeps of its checkpoint, by ``ablate run --keep``.

For each model and optimiser: one training step, then the bytes ``torch.save`` writes
for the whole resumable checkpoint (what ``--keep checkpoint`` keeps: model, optimiser,
AMP scaler, step, history, random states) and for ``weights.pt`` (what ``--keep
weights``, the default, keeps), both through ``ablate.train.checkpoint``'s own writer
and thinning; and the seconds ``ablate prune --dry-run`` (``would_free``) and the
thinning itself (``keep_finished``) take on that checkpoint (the dry run's byte count is
checked against the bytes the thinning frees).

    .venv/bin/python bench/bench_checkpoint_size.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
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
    would_free,
)

CASES = [  # (label, model spec, classes, optimiser)
    ("quick-start: MobileNetV3-L DeepLabV3+", ModelSpec(
        backbone="mobilenet_v3_large", head="deeplabv3plus", output_stride=16), 4, "adamw"),
    ("DeepLabV3 ResNet-50", ModelSpec(backbone="resnet50", head="deeplabv3"), 21, "sgd"),
    ("DeepLabV3 ResNet-50", ModelSpec(backbone="resnet50", head="deeplabv3"), 21, "adamw"),
]


def sizes(spec: ModelSpec, classes: int, optimizer: str) -> tuple[float, float, float, float]:
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
        start = time.perf_counter()
        predicted = would_free(run_dir, "weights")
        dry_s = time.perf_counter() - start
        start = time.perf_counter()
        freed = keep_finished(run_dir, "weights")
        thin_s = time.perf_counter() - start
        assert predicted == freed, (predicted, freed)
        weights = (run_dir / WEIGHTS_NAME).stat().st_size / 1e6
    return whole, weights, dry_s, thin_s


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe

    print(f"machine: {describe(f'torch {torch.__version__}')} (sizes do not depend on it)")
    print(f"{'model':<40} {'optimiser':<9} {'checkpoint MB':>13} {'weights MB':>10} {'ratio':>6}"
          f" {'dry-run s':>9} {'thin s':>6}")
    for label, spec, classes, optimizer in CASES:
        whole, weights, dry_s, thin_s = sizes(spec, classes, optimizer)
        print(f"{label:<40} {optimizer:<9} {whole:>13.1f} {weights:>10.1f} "
              f"{weights / whole:>6.2f} {dry_s:>9.2f} {thin_s:>6.2f}")


if __name__ == "__main__":
    main()
