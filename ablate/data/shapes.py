"""``shapes``: an embedded, procedurally generated segmentation dataset.

Deterministic from ``(data_seed, split, index)``; nothing is downloaded, ever.
Each image has a textured, noisy background and 2-5 overlapping shapes. The class
of a shape is its geometry (and, past eight classes, its fill pattern). Its colour
is only a hint (the class hue mixed with a random colour; one shape in five gets a
random colour): a network has to look at form and context to be right everywhere,
so a smaller receptive field or fewer channels show up as lower mIoU.
"""

from __future__ import annotations

import numpy as np

GEOMETRIES = ("disc", "square", "triangle", "ring", "cross", "diamond", "bar", "ellipse")
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
DISTRACTOR_SHARE = 0.2
# one hue per geometry, evenly spaced on the colour wheel
PALETTE = np.array([
    [0.9, 0.2, 0.2], [0.9, 0.6, 0.1], [0.8, 0.9, 0.1], [0.2, 0.8, 0.2],
    [0.1, 0.8, 0.8], [0.2, 0.3, 0.9], [0.6, 0.2, 0.9], [0.9, 0.2, 0.7],
], dtype=np.float64)
MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)
STD = np.array([0.25, 0.25, 0.25], dtype=np.float32)


def class_names(classes: int) -> list[str]:
    names = ["background"]
    for k in range(1, classes):
        geometry = GEOMETRIES[(k - 1) % len(GEOMETRIES)]
        names.append(geometry if k <= len(GEOMETRIES) else f"striped_{geometry}")
    return names


def _shape_mask(kind: int, yy, xx, cy, cx, r, angle) -> np.ndarray:
    geometry = GEOMETRIES[(kind - 1) % len(GEOMETRIES)]
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotated coordinates
    if geometry == "disc":
        return dx**2 + dy**2 <= r**2
    if geometry == "square":
        return (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)
    if geometry == "triangle":
        return (v <= r * 0.6) & (v >= -r + 1.7 * np.abs(u))
    if geometry == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if geometry == "cross":
        return ((np.abs(u) <= r * 0.3) & (np.abs(v) <= r)) | ((np.abs(v) <= r * 0.3) & (np.abs(u) <= r))
    if geometry == "diamond":
        return np.abs(u) + np.abs(v) <= r
    if geometry == "bar":
        return (np.abs(u) <= r * 1.2) & (np.abs(v) <= r * 0.35)
    return (u / (r * 1.2)) ** 2 + (v / (r * 0.6)) ** 2 <= 1.0  # ellipse


def render(size: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image HxWx3 float32 in [0, 1], label HxW uint8) pair."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # background: a colour, two random gratings and a smooth gradient
    image = np.empty((size, size, 3), dtype=np.float32)
    base = rng.uniform(0.2, 0.8, size=3)
    for c in range(3):
        fy, fx = rng.uniform(0.05, 0.6, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        grating = 0.12 * np.sin(fy * yy + fx * xx + phase)
        gradient = rng.uniform(-0.15, 0.15) * (yy / size) + rng.uniform(-0.15, 0.15) * (xx / size)
        image[..., c] = base[c] + grating + gradient
    label = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(2, 6)):
        kind = int(rng.integers(1, classes))
        r = rng.uniform(0.1, 0.25) * size
        cy, cx = rng.uniform(0.1, 0.9, size=2) * size
        mask = _shape_mask(kind, yy, xx, cy, cx, r, rng.uniform(0, np.pi))
        # colour is a hint, not the answer: the class hue mixed with a random colour,
        # and one shape in five is painted in a random colour altogether
        colour = rng.uniform(0.0, 1.0, size=3)
        if rng.uniform() >= DISTRACTOR_SHARE:
            colour = 0.6 * PALETTE[(kind - 1) % len(PALETTE)] + 0.4 * colour
        fill = np.broadcast_to(colour, image.shape).copy()
        if kind > len(GEOMETRIES):  # striped fill pattern
            stripes = (np.floor((xx + yy) / max(2.0, size / 16)) % 2).astype(np.float32)
            fill = fill * (0.55 + 0.45 * stripes[..., None])
        image[mask] = fill[mask]
        label[mask] = kind
    image += rng.normal(0.0, 0.06, size=image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0), label


def generate(
    count: int, size: int, classes: int, data_seed: int, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """A whole split: images (N, 3, H, W) normalised float32 and labels (N, H, W) int64."""
    images = np.empty((count, 3, size, size), dtype=np.float32)
    labels = np.empty((count, size, size), dtype=np.int64)
    for i in range(count):
        rng = np.random.default_rng([data_seed, SPLIT_CODES[split], i])
        image, label = render(size, classes, rng)
        images[i] = ((image - MEAN) / STD).transpose(2, 0, 1)
        labels[i] = label
    return images, labels
