"""Atomic checkpoints that carry everything needed to resume bit-for-bit on the CPU."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate import atomic
from ablate.trials.lifecycle import KEEP_CHOICES

CHECKPOINT_NAME = "checkpoint.pt"
WEIGHTS_NAME = "weights.pt"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Whole or not at all, and on disk (``ablate.atomic``): a kill never leaves half a
    file, and two processes saving one path never mix their bytes."""
    def write(tmp: Path) -> None:
        # a file object, not the path: torch names the archive's records after a path's
        # file name, and the temporary one is random
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_file(path, write, durable=True)


def remove_dead_temporaries(path: Path) -> None:
    """Remove the temporary files that killed saves of ``path`` left. Only for the one
    writer of ``path`` before it saves (a live save's file is one too)."""
    for tmp in _temporaries(path):
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    # RNG states hold numpy arrays and Python tuples: trusted, written by us.
    return torch.load(path, map_location="cpu", weights_only=False)


def keep_finished(run_dir: Path, keep: str) -> int:
    """Thin a done trial's ``run_dir`` to what ``keep`` names; return the bytes freed.

    A done trial is never resumed, so its optimiser state, AMP scaler and random states
    are dead weight (as large as the model again with SGD momentum, twice with AdamW).
    ``weights`` writes ``{"spec", "model", "step"}`` (the trial's spec dict, the model's
    state dict, the last step) to ``weights.pt``, atomically, before the checkpoint goes;
    ``none`` removes the checkpoint and any ``weights.pt``; ``checkpoint`` keeps all.
    Called only once the trial's result file is written, so nothing finished is lost.
    """
    files = thinned_files(run_dir, keep)
    freed = sum(path.stat().st_size for path in files)
    checkpoint, weights = Path(run_dir) / CHECKPOINT_NAME, Path(run_dir) / WEIGHTS_NAME
    if keep == "weights" and checkpoint in files:
        save_checkpoint(weights, _weights_of(load_checkpoint(checkpoint)))
        freed -= weights.stat().st_size
    for path in files:
        path.unlink(missing_ok=True)
    return freed


def would_free(run_dir: Path, keep: str) -> int:
    """The bytes ``keep_finished(run_dir, keep)`` would free, exactly, writing nothing:
    the ``weights.pt`` it would write is serialised into a byte counter, its tensors read
    from the checkpoint through a memory map."""
    files = thinned_files(run_dir, keep)
    freed = sum(path.stat().st_size for path in files)
    checkpoint = Path(run_dir) / CHECKPOINT_NAME
    if keep == "weights" and checkpoint in files:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
        counter = _ByteCounter()
        torch.save(_weights_of(state), counter)
        freed -= counter.written
    return freed


def _weights_of(state: dict[str, Any]) -> dict[str, Any]:
    """What a done trial keeps of its checkpoint: ``weights.pt``'s payload."""
    return {"spec": state.get("spec"), "model": state["model"], "step": state.get("step")}


class _ByteCounter:
    """A write-only file that counts what ``torch.save`` writes to it."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def thinned_files(run_dir: Path, keep: str) -> list[Path]:
    """The files of ``run_dir`` that ``keep_finished(run_dir, keep)`` removes or shrinks:
    the checkpoint, the temporary files of saves killed half-way (``ablate.atomic``'s
    ``.checkpoint.pt.RANDOM.tmp``, an older ablate's ``weights.pt.tmp``), and with
    ``none`` also ``weights.pt`` (those present)."""
    if keep not in KEEP_CHOICES:
        raise ValueError(f"keep={keep!r}: allowed {', '.join(KEEP_CHOICES)}")
    if keep == "checkpoint":
        return []
    checkpoint, weights = Path(run_dir) / CHECKPOINT_NAME, Path(run_dir) / WEIGHTS_NAME
    candidates = [checkpoint]
    for path in (checkpoint, weights):
        candidates += _temporaries(path)
    if keep == "none":
        candidates.append(weights)
    return [path for path in candidates if path.is_file()]


def _temporaries(path: Path) -> list[Path]:
    """The temporary files saves of ``path`` may have left: ``ablate.atomic``'s, and the
    fixed name an ablate before it saved through (``checkpoint.pt.tmp``), present or not."""
    return [*atomic.temporaries(path), path.with_suffix(path.suffix + ".tmp")]


def snapshot(obj: Any) -> Any:
    """A copy that training cannot change any more: tensors cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return obj


class BackgroundWriter:
    """Writes checkpoints on a thread while training goes on.

    ``save`` takes a snapshot (a memory copy, tens of milliseconds) and returns; the
    pickling, write and fsync (about half a second for a 140 MB checkpoint on these
    machines) overlap the next steps. One write at a time: ``save`` and ``wait``
    first finish the previous one and re-raise its error, if any.
    """

    def __init__(self, path: Path, write: Callable[[Path, dict[str, Any]], None]) -> None:
        self.path, self.write = path, write
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, payload: dict[str, Any]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(snapshot(payload),),
                                        name="ablate-checkpoint")
        self._thread.start()

    def _run(self, payload: dict[str, Any]) -> None:
        try:
            self.write(self.path, payload)
        except BaseException as err:  # handed to the training thread at the next wait
            self._error = err

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise err
