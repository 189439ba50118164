"""The shared work decision: wait, (re)submit, retry, succeed or fail."""

from __future__ import annotations

import pytest

from roost.execution.executor import State
from roost.reconcile import work
from roost.reconcile.work import Verdict

OK = {"ok": True, "digest": "sha256:x"}
BAD = {"ok": False, "reason": "ValidationFailed", "message": "minRows: 3 < 100"}
FLAKY = {"ok": False, "reason": "SourceUnreachable", "message": "timed out"}


@pytest.mark.parametrize(("state", "result", "attempts", "retryable", "expected", "reason"), [
    (State.PENDING, None, 1, frozenset(), Verdict.WAIT, "Pending"),
    (State.RUNNING, None, 1, frozenset(), Verdict.WAIT, "Running"),
    (State.MISSING, None, 1, frozenset(), Verdict.SUBMIT, "Submitted"),
    (State.SUCCEEDED, OK, 1, frozenset(), Verdict.SUCCEEDED, "Succeeded"),
    (State.SUCCEEDED, BAD, 1, frozenset(), Verdict.FAILED, "ValidationFailed"),
    (State.SUCCEEDED, FLAKY, 1, frozenset({"SourceUnreachable"}), Verdict.RETRY, "SourceUnreachable"),
    (State.SUCCEEDED, FLAKY, 3, frozenset({"SourceUnreachable"}), Verdict.FAILED, "SourceUnreachable"),
    (State.SUCCEEDED, None, 1, frozenset(), Verdict.RETRY, "ResultMissing"),
    (State.FAILED, None, 1, frozenset(), Verdict.RETRY, "WorkerFailed"),
    (State.FAILED, None, 3, frozenset(), Verdict.FAILED, "WorkerFailed"),
], ids=["pending", "running", "missing-resubmits", "good-result", "bad-input-is-final",
        "transient-retries", "transient-exhausted", "no-result-retries", "crash-retries", "crash-exhausted"])
def test_decide(state: State, result: dict[str, object] | None, attempts: int, retryable: frozenset[str],
                expected: Verdict, reason: str) -> None:
    d = work.decide(state, "", result, attempts, 3, retryable)
    assert d.verdict == expected
    assert d.reason == reason


def test_deadline_is_named_when_the_supervisor_killed_the_unit() -> None:
    d = work.decide(State.FAILED, "DeadlineExceeded: killed after 60s", None, 2, 2)
    assert d.verdict == Verdict.FAILED
    assert d.reason == "DeadlineExceeded"
    assert "after 2 attempts" in d.message


def test_status_merge_patch_removes_nested_keys_the_new_status_dropped() -> None:
    from roost.controllers import loop

    old = {"phase": "Progressing", "analysis": {"cursor": {"stable": 1.0, "prometheus": {"m": {"x": 1}}},
                                                "queryErrors": {"m": "down"}, "verdict": "Inconclusive"},
           "canary": {"weight": 10}}
    new = {"phase": "Progressing", "analysis": {"cursor": {"stable": 2.0}, "verdict": "Pass"},
           "promotion": {"modelVersion": "v2"}}
    assert loop.merge_patch(old, new) == {
        "phase": "Progressing", "analysis": {"cursor": {"stable": 2.0, "prometheus": None}, "queryErrors": None,
                                             "verdict": "Pass"},
        "promotion": {"modelVersion": "v2"}, "canary": None}
