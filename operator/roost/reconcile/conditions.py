"""One place for conditions (Kubernetes API conventions, ``metav1.Condition``).

``set_condition`` keeps ``lastTransitionTime`` when the status is unchanged, always records
``observedGeneration``, and replaces by type. ``phase`` is derived from the conditions, for display only.
"""

from __future__ import annotations

import datetime
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def now_rfc3339(now: datetime.datetime | None = None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def get(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    c = get(conditions, type_)
    return bool(c and c.get("status") == TRUE)


def set_condition(conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str,
                  generation: int, now: datetime.datetime | None = None) -> list[dict[str, Any]]:
    """Return a new list with condition ``type_`` set; the transition time moves only on a status change."""
    old = get(conditions, type_)
    changed = old is None or old.get("status") != status
    new = {
        "type": type_, "status": status, "reason": reason, "message": message[:32000],
        "lastTransitionTime": now_rfc3339(now) if changed or old is None else old["lastTransitionTime"],
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != type_] + [new]


def transitions(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conditions in ``after`` whose status or reason differs from ``before`` (for Events)."""
    out = []
    for c in after:
        old = get(before, c["type"])
        if old is None or old.get("status") != c["status"] or old.get("reason") != c["reason"]:
            out.append(c)
    return out


def phase(conditions: list[dict[str, Any]]) -> str:
    """A one-word summary for printer columns: Stalled reason, Ready, Progressing reason, or Pending."""
    stalled = get(conditions, "Stalled")
    if stalled and stalled["status"] == TRUE:
        return str(stalled["reason"])
    if is_true(conditions, "Ready"):
        return "Ready"
    ready = get(conditions, "Ready")
    if ready is not None:
        return str(ready["reason"])
    return "Pending"


class StatusBuilder:
    """Build a status in memory; the controller persists it once (Argo Rollouts' persistRolloutStatus)."""

    def __init__(self, status: dict[str, Any], generation: int, now: datetime.datetime | None = None) -> None:
        self.status = {k: v for k, v in status.items() if k not in ("kopf",)}
        self.generation = generation
        self.now = now
        self.before = list(self.status.get("conditions", []))

    def condition(self, type_: str, status: str, reason: str, message: str = "") -> StatusBuilder:
        self.status["conditions"] = set_condition(
            self.status.get("conditions", []), type_, status, reason, message, self.generation, self.now)
        return self

    def ready(self, reason: str, message: str = "") -> StatusBuilder:
        return (self.condition("Ready", TRUE, reason, message)
                .condition("Reconciling", FALSE, reason, message)
                .condition("Stalled", FALSE, reason, message))

    def progressing(self, reason: str, message: str) -> StatusBuilder:
        return (self.condition("Ready", FALSE, reason, message)
                .condition("Reconciling", TRUE, reason, message)
                .condition("Stalled", FALSE, reason, message))

    def stalled(self, reason: str, message: str) -> StatusBuilder:
        return (self.condition("Ready", FALSE, reason, message)
                .condition("Reconciling", FALSE, reason, message)
                .condition("Stalled", TRUE, reason, message))

    def build(self, observed: bool = True) -> dict[str, Any]:
        if observed:
            self.status["observedGeneration"] = self.generation
        self.status["phase"] = phase(self.status.get("conditions", []))
        return self.status

    def transitions(self) -> list[dict[str, Any]]:
        return transitions(self.before, self.status.get("conditions", []))
