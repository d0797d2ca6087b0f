"""Shared fixtures: tiny recipes that train in seconds on the CPU."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

TINY_RECIPE = """
name = "tiny"
description = "two configurations on 32x32 shapes"
seeds = [0]

[base.model]
backbone = "mobilenet_v3_small"
head = "deeplabv3plus"
bn_momentum = 0.1

[base.data]
name = "shapes"
classes = 3
image_size = 32
train_images = 16
val_images = 8

[base.train]
optimizer = "adamw"
lr = 0.003
epochs = 1
batch_size = 8
log_every = 1

[base.eval]
batch_size = 8
latency_runs = 2
latency_warmup = 1

[grid]
"model.keep_last_expansion" = [true, false]
"""


def pytest_configure(config) -> None:
    """Under pytest-xdist each worker's torch computes with its share of the cores: at
    torch's default (every core) two workers on two cores ran four threads, whose OpenMP
    barriers waited on each other (the model and cost tests took 96-134 s instead of
    40 s). Subprocesses the tests start choose their own threads, as users' do."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        from ablate.cpus import worker_threads

        torch.set_num_threads(worker_threads(workers))


def pytest_collection_modifyitems(items) -> None:
    """Under pytest-xdist (make test runs it), every test on the Slurm test cluster goes to
    one worker: the cluster has the machine's cores and no more, and a second test's jobs
    queued behind the first's would only wait out its timeouts."""
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.fixture(autouse=True)
def user_cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own empty per-user cache (cost cache): never the real home's, and no
    figures carried from one test to the next. Subprocesses inherit it."""
    path = tmp_path_factory.mktemp("ablate-cache")
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(path))
    return path


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(TINY_RECIPE))
    return path


@pytest.fixture
def write_recipe(tmp_path: Path):
    def write(text: str, name: str = "r.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
