"""Who is dead: a holder on this host whose process is gone or whose pid was reused."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ablate.dispatch.liveness import holder_is_dead, process_start, this_process
from ablate.store import Store


def test_a_live_process_is_alive_and_a_reused_pid_or_gone_process_is_dead():
    me = this_process()
    assert me["pid"] == os.getpid() and me["started"] == process_start(os.getpid())
    assert not holder_is_dead(me)
    assert holder_is_dead({**me, "started": me["started"] + "0"})  # same pid, another start
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert holder_is_dead({"host": socket.gethostname(), "pid": child.pid, "started": None})
    # another host: only its lease can tell
    assert not holder_is_dead({**me, "host": "elsewhere", "pid": child.pid})
    # recorded before start times were: a live pid counts as alive
    assert not holder_is_dead({"host": socket.gethostname(), "pid": os.getpid()})
    assert not holder_is_dead(None) and not holder_is_dead({"host": socket.gethostname()})


def test_a_dead_holder_s_live_lease_does_not_protect_its_trial(tmp_path):
    from ablate.recipes.loader import parse_recipe
    from ablate.trials.expand import expand
    from tests.dispatch.test_sigkill import THREE

    store = Store(f"sqlite:///{tmp_path / 'l.db'}")
    store.upsert_study("three")
    trial = expand(parse_recipe(THREE, "three.toml"))[0]
    store.register_trials("three", [trial])
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {"host": socket.gethostname(), "pid": child.pid, "started": "x", "executor": "local"}
    assert store.claim("three", trial.trial_id, gone, 600).epoch == 1  # a 10-minute lease
    me = {**this_process(), "executor": "local"}
    busy = store.claim("three", trial.trial_id, me, 600)
    assert busy.status == "running"  # without the liveness check the lease protects it
    assert store.claimable("three", [trial.trial_id]) == []
    assert store.claimable("three", [trial.trial_id], dead=holder_is_dead) == [trial.trial_id]
    taken = store.claim("three", trial.trial_id, me, 600, dead=holder_is_dead)
    assert taken.epoch == 2 and taken.taken_over["pid"] == child.pid


def test_a_live_holder_here_keeps_its_trial_and_a_reused_pid_loses_it(tmp_path):
    """Through the claim itself: a live process of this host with its recorded start
    keeps the trial (lease or not); the same live pid with another start was reused."""
    from ablate.recipes.loader import parse_recipe
    from ablate.trials.expand import expand
    from tests.dispatch.test_sigkill import THREE

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.upsert_study("three")
    trial = expand(parse_recipe(THREE, "three.toml"))[0]
    store.register_trials("three", [trial])
    # alive until the test ends it (a sleeping holder would die on its own on a slow day)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        live = {"host": socket.gethostname(), "pid": holder.pid,
                "started": process_start(holder.pid), "executor": "local", "job_id": None}
        assert live["started"] is not None
        store.claim("three", trial.trial_id, live, 600)
        me = {**this_process(), "executor": "local", "job_id": None}
        busy = store.claim("three", trial.trial_id, me, 600, dead=holder_is_dead)
        assert busy.status == "running" and busy.holder["pid"] == holder.pid
        assert store.claimable("three", [trial.trial_id], dead=holder_is_dead) == []

        # the pid now names another process: record the holder as started at another time
        store.reset("three", [trial.trial_id])
        reused = {**live, "started": live["started"] + "1"}
        store.claim("three", trial.trial_id, reused, 600)
        taken = store.claim("three", trial.trial_id, me, 600, dead=holder_is_dead)
        assert taken.taken_over == reused and taken.holder["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_in_another_pid_namespace_is_left_to_its_lease():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    gone = {**this_process(), "pid": child.pid}
    assert holder_is_dead(gone)
    # a container sharing this host's name: the pid names nothing of ours
    assert not holder_is_dead({**gone, "pidns": "pid:[1]"})
