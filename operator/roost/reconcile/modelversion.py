"""ModelVersion decisions: resolve the source to a digest once, verify and re-evaluate, apply gates.

A registry version never changes under its name: once ``status.artifact`` holds a digest it is kept,
and a version that became Ready or was rejected is final (its spec is immutable).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from roost.api import modelversion
from roost.execution import executor
from roost.execution.executor import UnitStatus
from roost.reconcile import conditions, datasets, trainingrun, work
from roost.reconcile.conditions import FALSE, TRUE, UNKNOWN, StatusBuilder
from roost.reconcile.plan import Event, Job, Plan

POLL_SECONDS = 0.5
MAX_ATTEMPTS = 3
ARTIFACT_REASONS = frozenset({"DigestMismatch", "UntrustedType", "InvalidArtifact"})


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    generation: int
    spec: modelversion.ModelVersionSpec
    status: dict[str, Any]
    now: datetime.datetime
    run: dict[str, Any] | None = None            # the TrainingRun's status (trainingRunRef source)
    dataset: dict[str, Any] | None = None        # the Dataset's status (artifact source)
    baseline: dict[str, Any] | None = None       # the baseline ModelVersion's status
    duplicate_of: str | None = None              # an older ModelVersion with the same (model, version)
    unit: UnitStatus | None = None
    result: dict[str, Any] | None = None
    uid: str = ""  # work of a deleted and re-created object is never adopted


def final(status: dict[str, Any]) -> bool:
    conds = status.get("conditions", [])
    stalled = conditions.get(conds, "Stalled")
    return conditions.is_true(conds, "Ready") or bool(
        stalled and stalled["status"] == TRUE and stalled["reason"] != "DuplicateVersion")


def _job(obs: Observed, artifact: dict[str, Any], version: dict[str, Any], attempt: int,
         status: dict[str, Any] | None = None) -> Job:
    status = obs.status if status is None else status
    gates = obs.spec.gates.to_wire()
    signature = status.get("signature") or {}
    metrics = sorted(set(status.get("evaluationMetrics") or [])
                     | {t.metric for t in obs.spec.gates.thresholds})
    payload = {
        "modelVersion": {"namespace": obs.namespace, "name": obs.name},
        "artifact": {"uri": artifact["uri"], "digest": artifact["digest"]},
        "dataset": version,
        "task": (signature.get("outputs") or {}).get("task"),
        "metrics": metrics,  # empty for an artifact source: the worker picks the model's task's default
        "gates": gates,
        "baselineMetrics": (obs.baseline or {}).get("metrics"),
        "maxRegression": gates.get("baseline", {}).get("maxRegression"),
    }
    name = executor.unit_name(f"{obs.name}-eval", obs.uid, artifact["digest"], attempt)
    return Job(name, "evaluate", payload, 1800.0)


def _wait(b: StatusBuilder, reason: str, message: str) -> Plan:
    b.condition("ArtifactVerified", UNKNOWN, reason, message)
    b.progressing(reason, message)
    return Plan(b.build())


def reconcile(obs: Observed) -> Plan:
    """Decide the ModelVersion's next step (see the module docstring)."""
    b = StatusBuilder(obs.status, obs.generation, obs.now)
    if final(obs.status):
        return Plan(b.build(observed=False))
    if obs.duplicate_of:
        message = (f"ModelVersion {obs.duplicate_of} already registers {obs.spec.model} "
                   f"version {obs.spec.version}")
        b.stalled("DuplicateVersion", message)
        return Plan(b.build(), events=[Event("Warning", "DuplicateVersion", message)])

    attempts = int(obs.status.get("attempts") or 0)
    job_name = obs.status.get("job")
    if job_name and obs.unit is not None:
        artifact = obs.status["artifact"]
        version = obs.status.get("datasetVersion") or {}
        d = work.decide(obs.unit.state, obs.unit.message, obs.result, attempts, MAX_ATTEMPTS)
        if d.verdict == work.Verdict.WAIT:
            b.progressing("Validating", f"verifying and evaluating {artifact['digest'][:19]}")
            return Plan(b.build(), requeue_after=POLL_SECONDS)
        if d.verdict == work.Verdict.SUBMIT:
            return Plan(b.build(), submit=_job(obs, artifact, version, attempts), requeue_after=POLL_SECONDS)
        if d.verdict == work.Verdict.RETRY:
            job = _job(obs, artifact, version, attempts + 1)
            b.status.update({"attempts": attempts + 1, "job": job.name})
            b.progressing("Retrying", f"evaluation attempt {attempts} failed ({d.reason}); retrying")
            return Plan(b.build(), submit=job, requeue_after=POLL_SECONDS)
        return _apply(obs, b, d)

    artifact = obs.status.get("artifact")
    source = obs.spec.source
    if source.training_run_ref is not None:
        run_name = source.training_run_ref.name
        if obs.run is None:
            return _wait(b, "WaitingForTrainingRun", f"TrainingRun {run_name} does not exist yet")
        if not trainingrun.finished(obs.run):
            return _wait(b, "WaitingForTrainingRun", f"TrainingRun {run_name} is still running")
        if not conditions.is_true(obs.run.get("conditions", []), "Succeeded"):
            message = f"TrainingRun {run_name} failed; nothing to register"
            b.stalled("TrainingRunFailed", message)
            return Plan(b.build(), events=[Event("Warning", "TrainingRunFailed", message)])
        if artifact is None:
            run_artifact = obs.run["artifact"]
            artifact = {"uri": run_artifact["uri"], "digest": run_artifact["digest"],
                        "format": run_artifact.get("format", "skops"), "verified": False}
            b.status.update({"lineage": {**(obs.run.get("lineage") or {}), "trainingRun": run_name},
                             "signature": obs.run.get("signature")})
        version = (obs.run.get("lineage") or {}).get("datasetVersion") or obs.run.get("datasetVersion")
    else:
        assert source.artifact is not None
        if artifact is None:
            artifact = {"uri": source.artifact.uri, "digest": source.artifact.digest, "format": "skops",
                        "verified": False}
            b.status["lineage"] = {"artifact": source.artifact.to_wire()}
        version = datasets.resolve_version(obs.dataset, source.artifact.dataset_ref.digest)
        if version is not None:
            version = {"name": source.artifact.dataset_ref.name, **version}
        if version is None:
            return _wait(b, "WaitingForDataset",
                         f"Dataset {source.artifact.dataset_ref.name} has no Ready version to evaluate on")
    b.status["artifact"] = artifact
    if obs.spec.gates.baseline is not None:
        base_name = obs.spec.gates.baseline.model_version_ref.name
        if obs.baseline is not None and final(obs.baseline) and not conditions.is_true(
                obs.baseline.get("conditions", []), "Ready"):
            # A baseline that ended without becoming Ready (rejected, failed) never will: nothing to compare with.
            why = (conditions.get(obs.baseline.get("conditions", []), "Stalled") or {}).get("message", "")
            message = f"baseline ModelVersion {base_name} will never be Ready ({why}); name another baseline"
            b.stalled("BaselineNotUsable", message)
            b.condition("ArtifactVerified", UNKNOWN, "BaselineNotUsable", message)
            return Plan(b.build(), events=[Event("Warning", "BaselineNotUsable", message)])
        if obs.baseline is None or not conditions.is_true(obs.baseline.get("conditions", []), "Ready"):
            return _wait(b, "WaitingForBaseline", f"baseline ModelVersion {base_name} is not Ready")
    b.status["evaluationMetrics"] = sorted((obs.run or {}).get("metrics", {}) or {})
    job = _job(obs, artifact, version or {}, 1, b.status)
    b.status.update({"attempts": 1, "job": job.name, "datasetVersion": version})
    b.condition("ArtifactVerified", UNKNOWN, "Validating", "verifying the artifact digest and types")
    b.progressing("Validating", f"verifying and evaluating {artifact['digest'][:19]} on the holdout")
    return Plan(b.build(), submit=job, requeue_after=POLL_SECONDS)


def _apply(obs: Observed, b: StatusBuilder, d: work.Decision) -> Plan:
    r = d.result or {}
    b.status["job"] = None
    if r.get("metrics"):
        b.status["metrics"] = r["metrics"]
    if r.get("gates") is not None:
        b.status["gates"] = r["gates"]
    if r.get("signature") and not b.status.get("signature"):
        b.status["signature"] = r["signature"]
    if r.get("runtime"):
        b.status["runtime"] = r["runtime"]
    headline_metric = (obs.spec.gates.thresholds[0].metric if obs.spec.gates.thresholds
                       else next(iter(sorted(r.get("metrics") or {})), None))
    if headline_metric and (r.get("metrics") or {}).get(headline_metric) is not None:
        b.status["headline"] = {"name": headline_metric, "value": r["metrics"][headline_metric]}
    if d.verdict == work.Verdict.SUCCEEDED:
        b.status["artifact"] = {**b.status["artifact"], "verified": True}
        b.condition("ArtifactVerified", TRUE, "DigestVerified", f"sha256 matched {b.status['artifact']['digest']}")
        b.condition("Validated", TRUE, "GatesPassed", _gates_text(r))
        b.ready("GatesPassed", _gates_text(r) or "no gates")
        return Plan(b.build(), events=[Event("Normal", "Ready", f"Registered {obs.spec.model} "
                                                                f"v{obs.spec.version}: {_gates_text(r)}")])
    reason = d.reason
    if r.get("verified"):
        b.condition("ArtifactVerified", TRUE, "DigestVerified", "sha256 matched")
        b.status["artifact"] = {**b.status["artifact"], "verified": True}
    elif reason in ARTIFACT_REASONS:
        b.condition("ArtifactVerified", FALSE, reason, d.message)
    else:
        b.condition("ArtifactVerified", UNKNOWN, reason, d.message)
    b.condition("Validated", FALSE, reason, d.message)
    b.stalled(reason, d.message)
    return Plan(b.build(), events=[Event("Warning", reason, d.message)])


def _gates_text(r: dict[str, Any]) -> str:
    return "; ".join(str(g.get("message") or g.get("name")) for g in r.get("gates") or [])
