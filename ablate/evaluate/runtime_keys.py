"""Names of runtimes and of their figures, and the packages each needs (no torch import).

Every figure of a runtime is a float in the metrics table under a key that carries the
runtime and, for latency, the batch size:

- ``latency_ms@<runtime>/bs<n>``: median milliseconds of one forward pass of a batch of
  ``n`` after warm-up; ``latency_ms_p90@<runtime>/bs<n>``: its 90th percentile.
- ``supported@<runtime>``: 1 or 0 (the reason is in the trial's environment);
  ``prepare_seconds@<runtime>``: export or compile time.
- ``latency_threads``: the intra-op thread count every runtime ran with.
- parity against eager on the evaluation images: ``parity_max_abs@<runtime>``,
  ``parity_max_rel@<runtime>`` (over the largest eager logit), ``parity_agree@<runtime>``
  (share of pixels with the same predicted class), ``miou@<runtime>``,
  ``parity_miou_diff@<runtime>`` (minus eager's), ``parity_ok@<runtime>`` (1 when within
  ``PARITY_MIOU_TOLERANCE`` and the output shapes match).
"""

from __future__ import annotations

from collections.abc import Iterable

from ablate import extras

RUNTIMES = ("eager", "compile", "onnxruntime", "tensorrt")
# runtime -> (how to install, importable packages it needs)
NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "onnxruntime": (extras.install_command("runtimes"), extras.EXTRAS["runtimes"]),
    # CUDA only, and its wheel must match the installed torch: no extra pins it
    "tensorrt": ("pip install torch-tensorrt (the build for your torch and CUDA)",
                 ("torch_tensorrt",)),
}
# A runtime's mIoU must equal eager's within this many (fractional) mIoU units: 0.1 points.
PARITY_MIOU_TOLERANCE = 1e-3


def metric_key(figure: str, runtime: str, batch_size: int | None = None) -> str:
    """``latency_ms@onnxruntime/bs8`` style keys: figure, runtime and batch size."""
    key = f"{figure}@{runtime}"
    return f"{key}/bs{batch_size}" if batch_size is not None else key


def parse_metric_key(key: str) -> tuple[str, str, int | None] | None:
    """``(figure, runtime, batch size)`` of a ``metric_key``, or None for other keys."""
    figure, at, rest = key.partition("@")
    if not at:
        return None
    runtime, slash, bs = rest.partition("/")
    if runtime not in RUNTIMES:
        return None
    if not slash:
        return figure, runtime, None
    if not bs.startswith("bs") or not bs[2:].isdigit():
        return None
    return figure, runtime, int(bs[2:])


def missing_packages(runtime: str) -> list[str]:
    """Packages ``runtime`` needs that cannot be imported here (found without importing)."""
    _, packages = NEEDS.get(runtime, ("", ()))
    return [p for p in packages if not extras.importable(p)]


def runtime_problems(runtimes: Iterable[str]) -> list[str]:
    """One line per requested runtime whose packages are missing, saying how to install them."""
    out = []
    for runtime in runtimes:
        missing = missing_packages(runtime)
        if missing:
            out.append(f"eval.runtimes: {runtime!r} needs {', '.join(missing)}: "
                       f"{NEEDS[runtime][0]}")
    return out
