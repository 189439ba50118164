"""The loop every kind shares: reconcile, persist status once, post events, start work, sleep or wake.

One kopf daemon per object runs :func:`run`; spec changes and transitions of referred objects set the
object's wake event, so nothing waits on a slow poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf

from roost import errors
from roost.api import common
from roost.controllers.runtime import Key, Runtime
from roost.execution import executor
from roost.reconcile import conditions
from roost.reconcile import plan as plan_mod
from roost.reconcile.conditions import StatusBuilder
from roost.workers import runner

log = logging.getLogger("roost.controllers")

IDLE_SECONDS = 300.0

Reconcile = Callable[[Runtime, dict[str, Any]], Awaitable[plan_mod.Plan | None]]


def _clean(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _clean(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_clean(v) for v in d]
    return d


def status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return bool(_clean({k: v for k, v in old.items() if k != "kopf"}) != _clean(new))


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: ``new``'s values, and None for every
    key ``old`` has and ``new`` lacks, at any depth -- a merge patch of ``new`` alone would keep a nested
    key the new status dropped (an old ``status.analysis.queryErrors``, a stale cursor)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        patch[key] = merge_patch(before, value) if isinstance(value, dict) and isinstance(before, dict) else value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def owner_of(body: dict[str, Any]) -> executor.Owner:
    meta = body["metadata"]
    return executor.Owner(body["kind"], meta["namespace"], meta["name"], meta.get("uid", ""))


def job_paths(rt: Runtime, body: dict[str, Any], job_name: str) -> tuple[str, str]:
    meta = body["metadata"]
    base = rt.store.uri("work", meta["namespace"], body["kind"].lower(), meta["name"], job_name)
    return f"{base}/input.json", base


def unit_for(rt: Runtime, body: dict[str, Any], job: plan_mod.Job | str, worker: str = "") -> executor.Unit:
    name = job if isinstance(job, str) else job.name
    input_uri, output_uri = job_paths(rt, body, name)
    if isinstance(job, str):
        return executor.Unit(name, owner_of(body), worker, input_uri, output_uri)
    return executor.Unit(name, owner_of(body), job.worker, input_uri, output_uri, job.timeout_seconds,
                         job.resources)


async def observe_unit(rt: Runtime, body: dict[str, Any], worker: str, job: str | None = None) -> tuple[
        executor.UnitStatus | None, dict[str, Any] | None]:
    """The executor's view of the unit ``job`` (default: ``status.job``) and, once it exited 0, its result."""
    job = job or (body.get("status") or {}).get("job")
    if not job:
        return None, None
    unit = unit_for(rt, body, job, worker)
    status = await asyncio.to_thread(rt.executor.poll, unit)
    result = None
    if status.state == executor.State.SUCCEEDED:
        try:
            result = await asyncio.to_thread(rt.store.read_json, runner.result_uri(unit.output_uri))
        except errors.RoostError:
            result = None
    return status, result


def transition_events(before: list[dict[str, Any]], after: list[dict[str, Any]],
                      planned: list[plan_mod.Event]) -> list[plan_mod.Event]:
    """Events for ``Ready`` becoming True and ``Stalled`` becoming True, unless the plan already says so."""
    said = {e.reason for e in planned}
    events = []
    for c in conditions.transitions(before, after):
        if c["status"] != "True" or c["type"] not in ("Ready", "Stalled") or c["reason"] in said:
            continue
        level = "Warning" if c["type"] == "Stalled" else "Normal"
        events.append(plan_mod.Event(level, c["reason"], (c["message"] or c["reason"])[:1000]))
    return events


async def apply(rt: Runtime, body: dict[str, Any], plan: plan_mod.Plan) -> None:
    """Persist the plan's status (only if it changed), post its events, then start its work."""
    meta = body["metadata"]
    kind, ns, name = body["kind"], meta["namespace"], meta["name"]
    old = body.get("status") or {}
    if status_changed(old, plan.status):
        patch = merge_patch({k: v for k, v in old.items() if k != "kopf"}, plan.status)
        await asyncio.to_thread(rt.kube.patch_status, kind, ns, name, patch)
        for event in transition_events(old.get("conditions", []), plan.status.get("conditions", []), plan.events):
            kopf.event(cast(Any, body), type=event.type, reason=event.reason, message=event.message)
    for e in plan.events:
        kopf.event(cast(Any, body), type=e.type, reason=e.reason, message=e.message[:1000])
    if plan.submit is not None:
        unit = unit_for(rt, body, plan.submit)
        input_uri, _ = job_paths(rt, body, plan.submit.name)
        await asyncio.to_thread(rt.store.write_json, input_uri, plan.submit.payload)
        try:
            submitted = await asyncio.to_thread(rt.executor.submit, unit)
        except errors.PermanentError as e:
            await _stall(rt, body, plan.status, e)
            return
        if submitted.state == executor.State.PENDING:  # queued behind the executor's concurrency limit
            log.debug("Queued %s unit %s for %s %s/%s: %s", plan.submit.worker, unit.name, kind, ns, name,
                      submitted.message)
        else:
            log.info("Submitted %s unit %s for %s %s/%s", plan.submit.worker, unit.name, kind, ns, name)
    # Referrers wait on this object's outcome: Ready (go on) or Stalled (e.g. a failed run: give up).
    settled = any(conditions.is_true(plan.status.get("conditions", []), t)
                  and not conditions.is_true(old.get("conditions", []), t) for t in ("Ready", "Stalled"))
    if settled:
        woken = rt.wake_referrers((kind, ns, name))
        if woken:
            log.info("Woke %d referrer(s) of %s %s/%s", len(woken), kind, ns, name)


async def _stall(rt: Runtime, body: dict[str, Any], status: dict[str, Any], error: errors.PermanentError) -> None:
    """The executor refused the work for good (e.g. ``StoreNotShared``): say so in conditions and an Event."""
    meta = body["metadata"]
    b = StatusBuilder(status, meta.get("generation", 0))
    b.status["job"] = None
    if conditions.get(b.status.get("conditions", []), "Succeeded") is not None:
        # Bounded work (a TrainingRun) that can never start has failed; otherwise it is submitted again.
        b.condition("Succeeded", conditions.FALSE, error.reason, error.message)
    b.stalled(error.reason, error.message)
    await asyncio.to_thread(rt.kube.patch_status, body["kind"], meta["namespace"], meta["name"], b.build())
    kopf.event(cast(Any, body), type="Warning", reason=error.reason, message=error.message[:1000])
    rt.wake_referrers((body["kind"], meta["namespace"], meta["name"]))


async def run(rt: Runtime, kind: str, namespace: str, name: str, reconcile: Reconcile,
              stopped: Any) -> None:
    """Reconcile one object until it is deleted: the body of its kopf daemon."""
    key: Key = (kind, namespace, name)
    waker = rt.waker(key)
    backoff = 1.0
    try:
        while not stopped:
            waker.clear()
            delay: float = IDLE_SECONDS
            try:
                body = await asyncio.to_thread(rt.kube.get, kind, namespace, name)
                if body is None or body["metadata"].get("deletionTimestamp"):
                    return
                plan = await reconcile(rt, body)
                if plan is not None:
                    await apply(rt, body, plan)
                    delay = plan.requeue_after if plan.requeue_after is not None else IDLE_SECONDS
                backoff = 1.0
            except errors.TemporaryError as e:
                delay = e.delay if e.reason == "Conflict" else backoff
                backoff = min(backoff * 2, 60.0)
                log.warning("Retrying %s %s/%s in %.1fs: %s", kind, namespace, name, delay, e)
            except errors.RoostError as e:
                delay = backoff
                backoff = min(backoff * 2, 60.0)
                log.warning("Failed to reconcile %s %s/%s: %s", kind, namespace, name, e)
            except Exception:
                delay = backoff
                backoff = min(backoff * 2, 60.0)
                log.exception("Unexpected error reconciling %s %s/%s", kind, namespace, name)
            await _sleep(waker, stopped, max(0.05, delay))
    finally:
        rt.forget(key)


async def _sleep(waker: asyncio.Event, stopped: Any, seconds: float) -> None:
    wake = asyncio.ensure_future(waker.wait())
    stop = asyncio.ensure_future(stopped.wait(seconds))
    try:
        await asyncio.wait({wake, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (wake, stop):
            t.cancel()


def group_kind(plural: str) -> tuple[str, str, str]:
    return (common.GROUP, common.VERSION, plural)
