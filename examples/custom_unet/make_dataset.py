"""Write a ``folder`` dataset (images/, masks/, classes.txt) from ablate's shapes generator.

    python make_dataset.py data --train 256 --val 64 --size 64 --classes 4

Any folder laid out the same way works with ``data.name = "folder"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from ablate.data import shapes


def write(root: Path, train: int, val: int, size: int, classes: int, seed: int = 0) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(shapes.class_names(classes)) + "\n")
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            rng = np.random.default_rng([seed, shapes.SPLIT_CODES[split], i])
            image, label = shapes.render(size, classes, rng)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(
                root / "images" / split / f"{i:05d}.png")
            Image.fromarray(label.astype(np.uint8), mode="L").save(
                root / "masks" / split / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write (created)")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--val", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=4)
    args = parser.parse_args()
    write(args.root, args.train, args.val, args.size, args.classes)
    print(f"wrote {args.train} + {args.val} images of {args.size}x{args.size} px, "
          f"{args.classes} classes, to {args.root}")


if __name__ == "__main__":
    main()
