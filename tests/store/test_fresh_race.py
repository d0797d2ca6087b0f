"""Runners that start together on one new SQLite file all get in (none dies "locked")."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from ablate.store.store import Store

PROCESSES = 8
ROUNDS = 25


def _open(path: str, start, answers) -> None:
    try:
        start.wait(timeout=120)  # every process reaches the first connection together
        Store(path).upsert_study("race")
        answers.put("ok")
    except Exception as err:  # noqa: BLE001 - the test reports whatever failed
        answers.put(f"{type(err).__name__}: {err}")


@pytest.mark.slow
def test_processes_creating_one_database_at_once_all_connect(tmp_path):
    ctx = mp.get_context("fork")
    failed = []
    for n in range(ROUNDS):
        path = str(tmp_path / f"fresh{n}.db")
        # a barrier, not a start time: on a loaded machine the last fork may come late
        answers, start = ctx.Queue(), ctx.Barrier(PROCESSES)
        procs = [ctx.Process(target=_open, args=(path, start, answers)) for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        got = [answers.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        failed += [a for a in got if a != "ok"]
        assert [s.name for s in Store(path).studies()] == ["race"]
    assert not failed, failed
