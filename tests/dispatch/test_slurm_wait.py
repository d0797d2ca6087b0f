"""The Slurm fixture waits for a node that is completing the previous test's jobs."""

from __future__ import annotations

import subprocess

from tests.dispatch.conftest import wait_for_node


class FakeSinfo:
    """``sinfo -h -o %T`` answering each state in turn (the last one from then on)."""

    def __init__(self, *states: str) -> None:
        self.states = list(states)
        self.calls = 0

    def __call__(self, args, **kwargs) -> subprocess.CompletedProcess:
        assert args == ["sinfo", "-h", "-o", "%T"]
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        return subprocess.CompletedProcess(args, 0, stdout=f"{state}\n", stderr="")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_waits_while_the_node_is_completing():
    sinfo, clock = FakeSinfo("completing", "completing", "idle"), FakeClock()
    assert wait_for_node("x.conf", run=sinfo, sleep=clock.sleep, clock=clock) is None
    assert sinfo.calls == 3 and clock.sleeps == [1.0, 1.0]


def test_a_ready_node_with_a_state_flag_needs_no_wait():
    sinfo, clock = FakeSinfo("mixed*"), FakeClock()
    assert wait_for_node("x.conf", run=sinfo, sleep=clock.sleep, clock=clock) is None
    assert clock.sleeps == []


def test_gives_up_after_the_bound_with_the_last_state():
    sinfo, clock = FakeSinfo("completing"), FakeClock()
    problem = wait_for_node("x.conf", 60, run=sinfo, sleep=clock.sleep, clock=clock)
    assert problem == "sinfo with SLURM_CONF=x.conf: completing (no idle node after 60 s)"
    assert clock.now == 60.0 and sinfo.calls == 61


def test_no_sinfo_is_reported_at_once():
    def missing(args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "sinfo")

    clock = FakeClock()
    problem = wait_for_node("x.conf", run=missing, sleep=clock.sleep, clock=clock)
    assert problem == "sinfo failed: [Errno 2] No such file or directory: 'sinfo'"
    assert clock.sleeps == []
