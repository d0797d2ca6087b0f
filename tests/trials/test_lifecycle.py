"""The trial lifecycle as data: the transition table, its errors, the result file."""

from __future__ import annotations

import json

import pytest

from ablate.trials.lifecycle import (
    RESULT_NAME,
    TRANSITIONS,
    CorruptResult,
    IllegalTransition,
    TrialResult,
    TrialStatus,
    Verb,
    advance,
    table_text,
)

S = TrialStatus


def test_every_verb_has_one_row_and_every_state_is_reachable():
    assert set(TRANSITIONS) == set(Verb)
    reached = {target for _, target in TRANSITIONS.values()}
    assert reached == set(S)


@pytest.mark.parametrize("verb,start,end", [
    (Verb.CLAIM, S.PENDING, S.RUNNING), (Verb.CLAIM, S.FAILED, S.RUNNING),
    (Verb.CLAIM, S.PREEMPTED, S.RUNNING), (Verb.CLAIM, S.TIMED_OUT, S.RUNNING),
    (Verb.CLAIM, S.RUNNING, S.RUNNING), (Verb.PREEMPT, S.RUNNING, S.PREEMPTED),
    (Verb.TIME_OUT, S.RUNNING, S.TIMED_OUT), (Verb.RELEASE, S.RUNNING, S.PENDING),
    (Verb.RECORD_DONE, S.PREEMPTED, S.DONE), (Verb.RECORD_FAILED, S.RUNNING, S.FAILED),
    (Verb.RESET, S.DONE, S.PENDING), (Verb.SUBMIT, S.FAILED, S.RUNNING),
])
def test_allowed_transitions(verb, start, end):
    assert advance(start, verb) is end


@pytest.mark.parametrize("verb,start", [
    (Verb.CLAIM, S.DONE), (Verb.RECORD_DONE, S.DONE), (Verb.RECORD_FAILED, S.DONE),
    (Verb.PREEMPT, S.PENDING), (Verb.PREEMPT, S.DONE), (Verb.TIME_OUT, S.FAILED),
    (Verb.RELEASE, S.PREEMPTED), (Verb.RENEW, S.PENDING), (Verb.SUBMIT, S.DONE),
])
def test_an_illegal_transition_names_both_states(verb, start):
    with pytest.raises(IllegalTransition) as info:
        advance(start, verb, "abc123")
    target = TRANSITIONS[verb][1]
    assert str(info.value).startswith(
        f"trial abc123: cannot {verb} it when {start} ({start} -> {target} is not a transition")


def test_a_done_trial_is_left_only_by_reset():
    leaving = [verb for verb, (allowed, _) in TRANSITIONS.items() if S.DONE in allowed]
    assert leaving == [Verb.RESET]


def test_the_table_as_text():
    assert table_text().splitlines() == [
        "submit         running | pending | failed | preempted | timed_out -> running",
        "claim          running | pending | failed | preempted | timed_out -> running",
        "renew          running -> running",
        "release        running -> pending",
        "preempt        running -> preempted",
        "time_out       running -> timed_out",
        "record_done    running | pending | failed | preempted | timed_out -> done",
        "record_failed  running | pending | failed | preempted | timed_out -> failed",
        "reset          any state -> pending",
    ]


def test_the_status_values_fit_the_column():
    assert max(len(s.value) for s in S) <= 16
    assert [s for s in S if s.finished] == [S.DONE, S.FAILED]
    assert [s for s in S if s.interrupted] == [S.PREEMPTED, S.TIMED_OUT]


def test_a_result_round_trips_through_its_file(tmp_path):
    result = TrialResult("s", "t1", S.DONE, name="base/seed=0", run_dir=str(tmp_path),
                         final={"miou": 0.5}, epochs=[{"epoch": 1, "step": 2, "metrics": {}}],
                         environment={"torch": "x"}, claim_epoch=3)
    path = result.write(tmp_path)
    assert path == tmp_path / RESULT_NAME and not list(tmp_path.glob("*.tmp"))
    data = json.loads(path.read_text())
    assert data["format"] == 1 and data["status"] == "done" and data["claim_epoch"] == 3
    assert TrialResult.read(path) == result
    # a result trained without a claim writes no epoch at all (files of earlier versions)
    unclaimed = TrialResult.failure("s", "t2", "boom")
    assert "claim_epoch" not in unclaimed.to_json()
    assert TrialResult.from_json(unclaimed.to_json()) == unclaimed


@pytest.mark.parametrize("text,message", [
    ("{", "unreadable result file"),
    ('{"format": 1, "study": "s"}', "result file lacks format, study, trial_id, status"),
    ('{"format": 2, "study": "s", "trial_id": "t", "status": "done"}', "unknown result format"),
    ('{"format": 1, "study": "s", "trial_id": "t", "status": "held"}', "unknown result format"),
    ('{"format": 1, "study": "s", "trial_id": "t", "status": "done", "final": 3}', "t"),
])
def test_a_corrupt_result_file_is_refused(tmp_path, text, message):
    path = tmp_path / RESULT_NAME
    path.write_text(text)
    with pytest.raises(CorruptResult, match=message):
        TrialResult.read(path)


def test_a_result_is_done_or_failed():
    with pytest.raises(ValueError, match="done or failed, not running"):
        TrialResult("s", "t", S.RUNNING)
