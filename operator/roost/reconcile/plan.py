"""The plan a reconciler returns: the new status, the work to start or stop, when to look again."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Job:
    """A unit of work the controller must start (after persisting ``status.job``)."""

    name: str
    worker: str
    payload: dict[str, Any]
    timeout_seconds: float = 1800.0
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    status: dict[str, Any]
    submit: Job | None = None
    requeue_after: float | None = None
    events: list[Event] = field(default_factory=list)
