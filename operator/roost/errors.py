"""Roost's own errors: a reason (CamelCase, shared by conditions and events) and a message for people.

Handlers map :class:`PermanentError` to ``kopf.PermanentError`` and a ``Stalled`` condition, and
:class:`TemporaryError` to ``kopf.TemporaryError(delay=...)``.
"""

from __future__ import annotations


class RoostError(Exception):
    """Base error: ``reason`` is one CamelCase word, ``message`` says what happened."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class PermanentError(RoostError):
    """Retrying will not help until the input changes (a bad spec, bad data, a missing binary)."""


class TemporaryError(RoostError):
    """A dependency is not ready yet; try again after ``delay`` seconds."""

    def __init__(self, reason: str, message: str, delay: float = 10.0) -> None:
        super().__init__(reason, message)
        self.delay = delay


class ExternalError(TemporaryError):
    """An outside system (store, source URI, API server) failed; retried with backoff."""
