"""Benchmark: `ablate plan` of a 100-trial grid over a user model vs over a built-in one.

Both recipes expand to 100 trials (25 x 2 x 2 axes) on the same `shapes` data; the user
recipe's model is examples/custom_unet (import path, package on PYTHONPATH) with 50
distinct architectures, the built-in recipe's is MobileNetV3-Small LR-ASPP with 4.
Each plan runs as a fresh `ablate plan` process against a SQLite database: "cold" counts
parameters and FLOPs (and, for the user model, builds it once on CPU and runs one
forward to check its output), "warm" finds every architecture's cost cached by its id.
Printed side by side: median wall seconds of `--repeats` warm runs, the cold run, and
the in-process time of expansion alone (parsing, validation, trial and architecture
ids, the user module's source hash included).

    .venv/bin/python bench/bench_byo.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_unet"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(EXAMPLE))

from machine import at_least, describe  # noqa: E402

COMMON = """
[base.data]
name = "shapes"
classes = 4
image_size = 64

[base.train]
epochs = 1
"""
USER = """
name = "byo_user"
seeds = [0]
[base.model]
builder = "custom_unet.model:build_unet"
""" + COMMON + """
[grid]
"model.args.width" = [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                      24, 25, 26, 27, 28]
"model.args.skip" = ["concat", "none"]
"train.lr" = [0.01, 0.003]
"""
BUILTIN = """
name = "byo_builtin"
seeds = [0]
[base.model]
backbone = "mobilenet_v3_small"
head = "lraspp"
""" + COMMON + """
[grid]
"train.weight_decay" = [0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006, 0.0007, 0.0008,
                        0.0009, 0.001, 0.0011, 0.0012, 0.0013, 0.0014, 0.0015, 0.0016,
                        0.0017, 0.0018, 0.0019, 0.002, 0.0021, 0.0022, 0.0023, 0.0024, 0.0025]
"model.keep_last_expansion" = [true, false]
"model.output_stride" = [8, 16]
"""


def plan_env(cache: str) -> dict[str, str]:
    """The environment of the timed ``ablate plan`` processes: the example's package and
    this checkout's ``ablate`` importable (not whichever one the venv installed), and
    ``cache`` as the per-user cost cache ("cold" means an empty one, not ~/.cache's)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)]),
            "ABLATE_CACHE_DIR": cache}


def plan_seconds(recipe: Path, db: Path, env: dict[str, str]) -> float:
    exe = str(Path(sys.executable).parent / "ablate")
    start = time.perf_counter()
    subprocess.run([exe, "plan", str(recipe), "--db", str(db)], check=True,
                   capture_output=True, env=env)
    return time.perf_counter() - start


def expand_seconds(recipe: Path) -> tuple[float, int, int]:
    from ablate.recipes.loader import load_recipe
    from ablate.trials.expand import expand

    start = time.perf_counter()
    trials = expand(load_recipe(recipe))
    return time.perf_counter() - start, len(trials), len({t.arch_id for t in trials})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=at_least(1), default=3)
    args = parser.parse_args()
    import torch

    print(describe(f"torch {torch.__version__}, threads {torch.get_num_threads()}"))
    print(f"command: .venv/bin/python bench/bench_byo.py --repeats {args.repeats}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = plan_env(f"{tmp}/cache")
        for label, text in (("user model (custom_unet)", USER),
                            ("built-in (mnv3-small lraspp)", BUILTIN)):
            recipe = Path(tmp) / f"{label.split()[0]}.toml"
            recipe.write_text(text)
            db = Path(tmp) / f"{label.split()[0]}.db"
            exe = str(Path(sys.executable).parent / "ablate")
            subprocess.run([exe, "db", "upgrade", "--db", str(db)], check=True,
                           capture_output=True)
            cold = plan_seconds(recipe, db, env)
            warm = [plan_seconds(recipe, db, env) for _ in range(args.repeats)]
            expanded, trials, arches = expand_seconds(recipe)
            rows.append((label, trials, arches, cold, statistics.median(warm), expanded))
    print(f"{'recipe':<30} {'trials':>6} {'archs':>5} {'cold plan s':>11} "
          f"{'warm plan s':>11} {'expand s':>8}")
    for label, trials, arches, cold, warm, expanded in rows:
        print(f"{label:<30} {trials:>6} {arches:>5} {cold:>11.2f} {warm:>11.2f} {expanded:>8.3f}")
    print("cold: empty cost cache (every architecture built and counted; user models also "
          "checked by one CPU forward). warm: median of repeats, every cost cached by arch id. "
          "expand: in-process parse + validate + ids, no costing.")


if __name__ == "__main__":
    main()
