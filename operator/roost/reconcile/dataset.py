"""Dataset decisions: when to fetch, how a profile result becomes status and history."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from roost.api import common, dataset
from roost.execution import executor
from roost.execution.executor import UnitStatus
from roost.reconcile import conditions, work
from roost.reconcile.conditions import FALSE, TRUE, StatusBuilder
from roost.reconcile.plan import Event, Job, Plan

MAX_ATTEMPTS = 3
HISTORY = 10
RETRYABLE = frozenset({"SourceUnreachable"})
RETRY_BASE_SECONDS = 2.0
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    generation: int
    spec: dataset.DatasetSpec
    status: dict[str, Any]
    now: datetime.datetime
    unit: UnitStatus | None = None
    result: dict[str, Any] | None = None
    uid: str = ""  # work of a deleted and re-created object is never adopted


def _refresh_due(obs: Observed) -> float | None:
    """Seconds until the next refresh (<= 0: due now), or None without a refreshInterval."""
    if not obs.spec.refresh_interval or not obs.status.get("lastFetchTime"):
        return None
    last = datetime.datetime.fromisoformat(obs.status["lastFetchTime"].replace("Z", "+00:00"))
    due = last + common.parse_duration(obs.spec.refresh_interval)
    return (due - obs.now).total_seconds()


def _job(obs: Observed, attempt: int) -> Job:
    anchor = obs.status.get("lastFetchTime") or ""
    name = executor.unit_name(f"{obs.name}-profile", obs.uid, obs.generation, anchor, attempt)
    payload = {
        "dataset": {"namespace": obs.namespace, "name": obs.name},
        "spec": obs.spec.to_wire(),
        "previousDigest": obs.status.get("digest"),
    }
    return Job(name=name, worker="profile", payload=payload, timeout_seconds=3600.0)


def reconcile(obs: Observed) -> Plan:
    """Decide the Dataset's next step.

    Fetch when the generation is new or the refresh interval elapsed; while a unit runs, report
    Reconciling; apply its result (a new version goes first in ``history``, with an Event); refuse bad
    data with the worker's reason (``DigestMismatch``, ``SchemaMismatch``, ``ValidationFailed``,
    ``MalformedData``, or ``SourceUnreachable`` after retries) as ``Stalled``.
    """
    b = StatusBuilder(obs.status, obs.generation, obs.now)
    job_name = obs.status.get("job")
    attempts = int(obs.status.get("attempts") or 0)

    # A unit named for another generation ran for a spec that has since changed: its result is not
    # this generation's, so the fetch starts over (below) instead of recording it.
    current = job_name is not None and job_name == _job(obs, attempts).name
    if job_name and obs.unit is not None and current:
        d = work.decide(obs.unit.state, obs.unit.message, obs.result, attempts, MAX_ATTEMPTS, RETRYABLE)
        if d.verdict == work.Verdict.WAIT:
            _fetching(b, "Fetching", f"fetching and profiling {obs.spec.source.uri} ({d.message})")
            return Plan(b.build(observed=False), requeue_after=POLL_SECONDS)
        if d.verdict == work.Verdict.SUBMIT:
            wait = _until(obs, obs.status.get("retryAt"))
            if wait > 0:  # backing off before the next attempt
                return Plan(b.build(observed=False), requeue_after=wait)
            b.status.pop("retryAt", None)
            return Plan(b.build(observed=False), submit=_job(obs, attempts), requeue_after=POLL_SECONDS)
        if d.verdict == work.Verdict.RETRY:
            # Exponential backoff (2 s, 4 s, ...): the next unit is named now, submitted when the wait is over.
            delay = RETRY_BASE_SECONDS * 2 ** (attempts - 1)
            b.status["attempts"] = attempts + 1
            b.status["retryAt"] = _stamp(obs.now + datetime.timedelta(seconds=delay))
            _fetching(b, "Retrying", f"attempt {attempts} failed ({d.reason}: {d.message}); retrying in {delay:g}s")
            b.status["job"] = _job(obs, attempts + 1).name
            return Plan(b.build(observed=False), requeue_after=delay)
        b.status["job"] = None
        b.status["lastFetchTime"] = obs.status.get("pendingFetchTime") or _now(obs)
        b.status.pop("pendingFetchTime", None)
        if d.verdict == work.Verdict.FAILED:
            b.condition("Validated", FALSE, d.reason, d.message)
            b.stalled(d.reason, d.message)
            return Plan(b.build(), events=[Event("Warning", d.reason, d.message)],
                        requeue_after=_next(obs))
        return _apply_result(obs, b, d.result or {})

    due = _refresh_due(obs)
    stale = (obs.status.get("observedGeneration") != obs.generation or not obs.status.get("conditions")
             or (job_name is not None and not current))
    if stale or (due is not None and due <= 0):
        b.status["attempts"] = 1
        b.status["pendingFetchTime"] = _now(obs)
        job = _job(obs, 1)
        b.status["job"] = job.name
        if conditions.is_true(b.status.get("conditions", []), "Ready"):
            b.condition("Reconciling", TRUE, "Refreshing", f"re-fetching {obs.spec.source.uri}")
        else:
            b.progressing("Fetching", f"fetching {obs.spec.source.uri}")
        return Plan(b.build(observed=False), submit=job, requeue_after=POLL_SECONDS)
    return Plan(b.build(observed=False), requeue_after=due)


def _fetching(b: StatusBuilder, reason: str, message: str) -> None:
    """Report a fetch in progress; a Dataset with a Ready version stays Ready (runs keep using it)."""
    if conditions.is_true(b.status.get("conditions", []), "Ready"):
        b.condition("Reconciling", TRUE, reason, message)
    else:
        b.progressing(reason, message)


def _stamp(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(obs: Observed) -> str:
    return _stamp(obs.now)


def _until(obs: Observed, stamp: str | None) -> float:
    """Seconds from now until ``stamp`` (RFC 3339); <= 0 when it passed or is unset."""
    if not stamp:
        return 0.0
    return (datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")) - obs.now).total_seconds()


def _next(obs: Observed) -> float | None:
    return common.parse_duration(obs.spec.refresh_interval).total_seconds() if obs.spec.refresh_interval else None


def _apply_result(obs: Observed, b: StatusBuilder, r: dict[str, Any]) -> Plan:
    events: list[Event] = []
    previous = obs.status.get("digest")
    version = {
        "digest": r["digest"], "rows": r["rows"], "snapshotURI": r["snapshotURI"],
        "profileURI": r["profileURI"], "splitURI": r["splitURI"], "snapshotDigest": r.get("snapshotDigest"),
        "splitDigest": r.get("splitDigest"), "profileDigest": r.get("profileDigest"),
        "trainRows": r.get("trainRows"), "testRows": r.get("testRows"), "time": b.status["lastFetchTime"],
    }
    history = [h for h in obs.status.get("history", []) if h.get("digest") != r["digest"]]
    if previous != r["digest"]:
        history = [version, *history][:HISTORY]
        events.append(Event("Normal", "NewVersion",
                            f"Snapshotted version {r['digest'][:19]} with {r['rows']} rows"))
    else:
        history = [next((h for h in obs.status.get("history", []) if h.get("digest") == r["digest"]), version),
                   *history][:HISTORY]
    b.status.update({
        "digest": r["digest"], "rows": r["rows"], "columns": r["columns"], "schema": r["schema"],
        "snapshotURI": r["snapshotURI"], "profileURI": r["profileURI"], "splitURI": r["splitURI"],
        "history": history, "current": version, "target": r.get("target"),
    })
    b.condition("Validated", TRUE, "Validated", f"{r['rows']} rows passed validation")
    b.ready("Profiled", f"version {r['digest'][:19]}: {r['rows']} rows, {r['columns']} columns")
    return Plan(b.build(), events=events, requeue_after=_next(obs))
