"""What to do with a unit of work, from what the executor reports and what it wrote.

Shared by every kind that runs workers (Dataset, TrainingRun, ModelVersion): a pure decision, so the
retry rules are tested once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from roost.execution.executor import State


class Verdict(StrEnum):
    WAIT = "Wait"            # pending or running: look again soon
    SUBMIT = "Submit"        # the executor does not know the unit: (re)submit it under the same name
    RETRY = "Retry"          # it crashed or hit a transient error, and attempts remain: a new attempt
    SUCCEEDED = "Succeeded"  # a good result
    FAILED = "Failed"        # a bad result, or no attempts left


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""
    message: str = ""
    result: dict[str, Any] | None = None


def decide(state: State, message: str, result: dict[str, Any] | None, attempts: int, max_attempts: int,
           retryable: frozenset[str] = frozenset()) -> Decision:
    """Decide the next step for a unit.

    Args:
        state: what the executor reports for the unit.
        message: the executor's message (shown to people when the unit failed).
        result: the unit's ``result.json`` when it exited 0, else ``None``.
        attempts: attempts started so far (>= 1 once a unit was submitted).
        max_attempts: attempts allowed in all (``backoffLimit + 1``).
        retryable: result reasons worth another attempt (e.g. ``SourceUnreachable``).
    """
    if state in (State.PENDING, State.RUNNING):
        return Decision(Verdict.WAIT, "Running" if state == State.RUNNING else "Pending", message)
    if state == State.MISSING:
        return Decision(Verdict.SUBMIT, "Submitted", message)
    if state == State.SUCCEEDED and result is not None:
        if result.get("ok"):
            return Decision(Verdict.SUCCEEDED, "Succeeded", "", result)
        reason = str(result.get("reason") or "Failed")
        text = str(result.get("message") or "")
        if reason in retryable and attempts < max_attempts:
            return Decision(Verdict.RETRY, reason, text, result)
        return Decision(Verdict.FAILED, reason, text, result)
    if state == State.SUCCEEDED:
        reason, text = "ResultMissing", "the unit exited 0 but wrote no result.json"
    else:
        reason = "DeadlineExceeded" if "DeadlineExceeded" in message else "WorkerFailed"
        text = message
    if attempts < max_attempts:
        return Decision(Verdict.RETRY, reason, text)
    return Decision(Verdict.FAILED, reason, f"{text} (after {attempts} attempts)")
