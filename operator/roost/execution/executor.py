"""The Executor protocol: submit a unit of work by a deterministic name, poll it, cancel it.

A unit runs ``roost worker <worker> --input <uri> --output <uri>``; its result is ``<output>/result.json``
in the artifact store. Submitting a name that already exists adopts it, so an operator restarted at
any moment creates no twins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class State(StrEnum):
    PENDING = "Pending"      # accepted, not started (queue full, Pod not scheduled)
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"  # exited 0: a result.json exists
    FAILED = "Failed"        # crashed, killed or timed out: no trustworthy result
    MISSING = "Missing"      # unknown to the executor


@dataclass(frozen=True)
class Owner:
    """The object a unit belongs to (for names, labels and ownerReferences)."""

    kind: str
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class Unit:
    """One unit of work."""

    name: str
    owner: Owner
    worker: str
    input_uri: str
    output_uri: str
    timeout_seconds: float = 1800.0
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitStatus:
    state: State
    message: str = ""
    exit_code: int | None = None


class Executor(Protocol):
    """Runs units of work somewhere; see :mod:`roost.execution.local` and :mod:`.kubernetes`."""

    def submit(self, unit: Unit) -> UnitStatus:
        """Start ``unit`` unless a unit with its name exists; return its status. Idempotent."""
        ...

    def poll(self, unit: Unit) -> UnitStatus:
        """The current status of ``unit``."""
        ...

    def cancel(self, unit: Unit) -> None:
        """Stop ``unit`` if it runs; forget it. Idempotent."""
        ...


def unit_name(owner: str, *inputs: Any, max_len: int = 63) -> str:
    """``<owner>-<10 hex of sha256(inputs)>``, DNS-safe and at most ``max_len`` characters."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:10]
    prefix = owner[: max_len - 11].rstrip("-")
    return f"{prefix}-{digest}"
