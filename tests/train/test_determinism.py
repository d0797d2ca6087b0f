"""The reproducibility promise, on whatever CPU runs it: the same trial trained twice, each
time in a fresh process, gives bit-identical figures and checkpoints. (Which figures a CPU
trains to is another matter: ``tests/trials/pins.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.store import Store

# figures measured with a clock (also per runtime: ``latency_ms@eager/bs1``): they differ
# run to run by nature
CLOCKED = {"epoch_seconds", "images_per_second", "data_wait_fraction", "latency_ms",
           "latency_ms_p90", "prepare_seconds", "train_seconds", "eval_seconds"}


def _clocked(key: str) -> bool:
    return key.split("@")[0] in CLOCKED


def _train(recipe: Path, folder: Path):
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "ablate", "run", str(recipe), "--db", str(folder / "d.db"),
         "--runs-dir", str(folder / "runs"), "--keep", "checkpoint"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    store = Store(str(folder / "d.db"))
    return {r.trial_id: r for r in store.trials("tiny")}, store


def _same(a, b, where: str = "") -> None:
    """Equal, tensors bit for bit (same dtype, shape and every value)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):  # numpy's RNG state
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def _unclocked(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if not _clocked(k)}


@pytest.mark.slow
def test_a_trial_trained_twice_in_fresh_processes_is_bit_identical(tiny_recipe, tmp_path):
    first, store_a = _train(tiny_recipe, tmp_path / "a")
    second, store_b = _train(tiny_recipe, tmp_path / "b")
    assert first.keys() == second.keys() and len(first) == 2
    for tid in first:
        a, b = first[tid], second[tid]
        assert a.status == b.status == "done"
        assert a.metrics.keys() == b.metrics.keys()
        assert _unclocked(a.metrics) == _unclocked(b.metrics)  # every bit: float ==
        assert "miou" in _unclocked(a.metrics) and "train_loss" in _unclocked(a.metrics)
        epochs_a = [(e.epoch, e.step, e.key, e.value) for e in store_a.epoch_metrics("tiny", tid)
                    if not _clocked(e.key)]
        epochs_b = [(e.epoch, e.step, e.key, e.value) for e in store_b.epoch_metrics("tiny", tid)
                    if not _clocked(e.key)]
        assert epochs_a == epochs_b and epochs_a
        ckpt_a = torch.load(Path(a.run_dir) / "checkpoint.pt", weights_only=False)
        ckpt_b = torch.load(Path(b.run_dir) / "checkpoint.pt", weights_only=False)
        for part in ("history",):
            ckpt_a[part] = [{**e, "metrics": _unclocked(e["metrics"])} for e in ckpt_a[part]]
            ckpt_b[part] = [{**e, "metrics": _unclocked(e["metrics"])} for e in ckpt_b[part]]
        _same(ckpt_a, ckpt_b, "checkpoint")  # weights, optimizer, RNG states, step, history
