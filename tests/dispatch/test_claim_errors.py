"""A database error while claiming is one outcome in every local worker path: the trial is
``Unclaimed`` (nothing trained, nothing recorded, it stays pending for the next run), the
run goes on with the others, says so, and exits non-zero. The error is injected into every
process of the run (the runner and its spawned workers) by ``claimfail/sitecustomize.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.dispatch.gpus import FAKE_GPUS_ENV, VISIBLE_ENV
from ablate.store import Store

HOOK = Path(__file__).parent / "claimfail"


@pytest.mark.slow
@pytest.mark.parametrize("path,extra,fake_gpus", [
    ("in-process", ["--jobs", "1"], None),
    ("pool", ["--jobs", "2"], None),
    ("gpu-slots", ["--jobs", "2"], "Fake GPU,Fake GPU"),
])
def test_a_claim_s_database_error_is_the_same_outcome_in_every_worker_path(
        tiny_recipe, tmp_path, path, extra, fake_gpus):
    env = {**os.environ, "ABLATE_TEST_CLAIM_FAILS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HOOK), os.environ.get("PYTHONPATH", "")])}
    env.pop(VISIBLE_ENV, None)
    if fake_gpus:
        env[FAKE_GPUS_ENV] = fake_gpus
    db = tmp_path / "c.db"
    done = subprocess.run([sys.executable, "-m", "ablate", "run", str(tiny_recipe), "--db",
                           str(db), "--runs-dir", str(tmp_path / "runs"), *extra],
                          capture_output=True, text=True, env=env, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Traceback" not in out
    assert out.count("not claimed") == 2 and out.count("the next run claims it") == 2
    assert out.count("could not claim") == 2 and "disk I/O error" in out
    records = Store(f"sqlite:///{db}").trials("tiny")
    assert [(r.status, r.attempts, r.error) for r in records] == [("pending", 0, None)] * 2
    assert not list((tmp_path / "runs").rglob("result.json"))
