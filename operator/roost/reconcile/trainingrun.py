"""TrainingRun decisions: wait for the Dataset, run attempts up to backoffLimit, record the result.

A TrainingRun is bounded work, like a Job: once Succeeded or Failed it never runs again (its spec is
immutable; a retrain is a new TrainingRun).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from roost.api import common, trainingrun
from roost.execution import executor
from roost.execution.executor import UnitStatus
from roost.reconcile import conditions, datasets, work
from roost.reconcile.conditions import FALSE, TRUE, UNKNOWN, StatusBuilder
from roost.reconcile.plan import Event, Job, Plan

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    generation: int
    spec: trainingrun.TrainingRunSpec
    status: dict[str, Any]
    now: datetime.datetime
    dataset: dict[str, Any] | None  # the Dataset's status, None when it does not exist
    unit: UnitStatus | None = None
    result: dict[str, Any] | None = None
    uid: str = ""  # work of a deleted and re-created object is never adopted


def finished(status: dict[str, Any]) -> bool:
    c = conditions.get(status.get("conditions", []), "Succeeded")
    return bool(c and c["status"] in (TRUE, FALSE) and c["reason"] != "Running")


def _job(obs: Observed, version: dict[str, Any], attempt: int) -> Job:
    name = executor.unit_name(f"{obs.name}-train", obs.uid, obs.generation, version["digest"], attempt)
    payload = {
        "run": {"namespace": obs.namespace, "name": obs.name},
        "spec": obs.spec.to_wire(),
        "dataset": {"name": obs.spec.dataset_ref.name, **version},
        "attempt": attempt,
    }
    resources = obs.spec.resources.to_wire() if obs.spec.resources else {}
    return Job(name, "train", payload, common.parse_duration(obs.spec.timeout).total_seconds(), resources)


def reconcile(obs: Observed) -> Plan:
    """Decide the TrainingRun's next step (see the module docstring)."""
    b = StatusBuilder(obs.status, obs.generation, obs.now)
    if finished(obs.status):
        return Plan(b.build(observed=False))
    now = obs.now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    attempts = int(obs.status.get("attempts") or 0)
    max_attempts = obs.spec.backoff_limit + 1
    job_name = obs.status.get("job")

    if job_name and obs.unit is not None:
        version = obs.status.get("datasetVersion") or {}
        d = work.decide(obs.unit.state, obs.unit.message, obs.result, attempts, max_attempts)
        if d.verdict == work.Verdict.WAIT:
            b.condition("Succeeded", UNKNOWN, "Running", f"attempt {attempts}: {d.message}")
            b.progressing("Training", f"attempt {attempts} of {max_attempts}: {d.message}")
            return Plan(b.build(), requeue_after=POLL_SECONDS)
        if d.verdict == work.Verdict.SUBMIT:
            return Plan(b.build(), submit=_job(obs, version, attempts), requeue_after=POLL_SECONDS)
        if d.verdict == work.Verdict.RETRY:
            job = _job(obs, version, attempts + 1)
            b.status.update({"attempts": attempts + 1, "job": job.name})
            message = f"attempt {attempts} failed ({d.reason}): {d.message[-500:]}; retrying"
            b.progressing("Retrying", message)
            return Plan(b.build(), submit=job, requeue_after=POLL_SECONDS,
                        events=[Event("Warning", "AttemptFailed", message)])
        start = obs.status.get("startTime")
        b.status["completionTime"] = now
        if d.verdict == work.Verdict.FAILED:
            invalid = d.reason == "InvalidSpec"
            reason = "InvalidSpec" if invalid else "Failed"
            message = f"{d.reason}: {d.message[-1500:]}"
            b.condition("Succeeded", FALSE, reason, message)
            b.stalled(reason, message)
            return Plan(b.build(), events=[Event("Warning", reason, message)])
        r = d.result or {}
        b.status.update({
            "metrics": r.get("metrics"), "objective": r.get("objective"), "artifact": r.get("artifact"),
            "signature": r.get("signature"), "trials": r.get("trials"), "trialsURI": r.get("trialsURI"),
            "bestParams": r.get("bestParams"),
            "lineage": {**(r.get("lineage") or {}), "datasetVersion": version},
            "durationSeconds": _seconds_between(start, now) if start else r.get("durationSeconds"),
        })
        summary = ", ".join(f"{k}={v:.4f}" for k, v in (r.get("metrics") or {}).items())
        b.condition("Succeeded", TRUE, "Succeeded", summary)
        b.ready("Succeeded", f"artifact {str((r.get('artifact') or {}).get('digest', ''))[:19]}: {summary}")
        return Plan(b.build(), events=[Event("Normal", "Succeeded", f"Trained model: {summary}")])

    version = datasets.resolve_version(obs.dataset, obs.spec.dataset_ref.digest)
    if version is None:
        if obs.dataset is None:
            message = f"Dataset {obs.spec.dataset_ref.name} does not exist yet"
        elif obs.spec.dataset_ref.digest:
            message = f"Dataset {obs.spec.dataset_ref.name} has no version {obs.spec.dataset_ref.digest[:19]}"
        else:
            message = f"Dataset {obs.spec.dataset_ref.name} is not Ready"
        b.condition("Succeeded", UNKNOWN, "WaitingForDataset", message)
        b.progressing("WaitingForDataset", message)
        return Plan(b.build())
    version = {"name": obs.spec.dataset_ref.name, **version}
    job = _job(obs, version, 1)
    b.status.update({"attempts": 1, "job": job.name, "startTime": now, "datasetDigest": version["digest"],
                     "datasetVersion": version})
    b.condition("Succeeded", UNKNOWN, "Running", "attempt 1 submitted")
    b.progressing("Training", f"training on Dataset {obs.spec.dataset_ref.name} {version['digest'][:19]}")
    return Plan(b.build(), submit=job, requeue_after=POLL_SECONDS,
                events=[Event("Normal", "Started", f"Started training on {version['digest'][:19]}")])


def _seconds_between(start: str, end: str) -> float:
    def parse(t: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))

    return max(0.0, (parse(end) - parse(start)).total_seconds())
