"""DriftPolicy decisions: when to check, how a check becomes status, when to retrain and propose.

Checks run on the policy's own schedule (``schedule.interval``) as ``drift`` units of work. Too few
samples is ``Drifted=Unknown`` (``InsufficientData``), never a verdict. On drift, when the action is
``retrain`` and the cooldown allows, a new TrainingRun is created against a Dataset version newer than
the one the served model was trained on (none newer: ``NoNewData``); with ``propose: true`` its
artifact is evaluated by an ``evaluate`` unit (no ModelVersion is created) against the served version's
gates, with the served model scored on the same new holdout rows as the baseline; if it passes, a
self-contained ModelVersion manifest and the Deployment change are recorded in ``status.proposal``. Roost never
changes what production serves on its own.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from roost.api import common, driftpolicy
from roost.execution import executor
from roost.execution.executor import UnitStatus
from roost.reconcile import conditions, trainingrun, work
from roost.reconcile.conditions import FALSE, TRUE, UNKNOWN, StatusBuilder
from roost.reconcile.plan import Event, Job, Plan

POLL_SECONDS = 0.5
MAX_ATTEMPTS = 2
TOP_FEATURES = 10


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    generation: int
    spec: driftpolicy.DriftPolicySpec
    status: dict[str, Any]
    now: datetime.datetime
    uid: str = ""
    deployment: dict[str, Any] | None = None   # the watched Deployment's status (None: not found)
    served: dict[str, Any] | None = None       # the served ModelVersion (whole object)
    dataset: dict[str, Any] | None = None      # the reference Dataset's status (its history: new data?)
    retrain_run: dict[str, Any] | None = None  # the retrain TrainingRun's status
    unit: UnitStatus | None = None
    result: dict[str, Any] | None = None
    evaluation: UnitStatus | None = None       # the proposal's evaluate unit (status.retrain.job)
    evaluation_result: dict[str, Any] | None = None
    latest_version: int = 0                    # the highest spec.version among the model's ModelVersions


@dataclass
class DriftPlan(Plan):
    create: list[dict[str, Any]] = field(default_factory=list)  # objects to create (a retrain TrainingRun)


def _parse(t: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))


def _stamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference_version(obs: Observed) -> dict[str, Any] | None:
    """The Dataset version checks compare with: explicit, or the one behind the served model (lineage)."""
    ref = obs.spec.reference
    if ref.dataset_ref is not None:
        history = (obs.dataset or {}).get("history", [])
        wanted = ref.dataset_ref.digest or (obs.dataset or {}).get("digest")
        version = next((h for h in history if h.get("digest") == wanted), None)
        return {"name": ref.dataset_ref.name, **version} if version else None
    served = (obs.served or {}).get("status") or {}
    lineage = served.get("lineage") or {}
    version = lineage.get("datasetVersion") or served.get("datasetVersion")
    return dict(version) if version and version.get("profileURI") else None


def _interval(obs: Observed) -> float:
    return common.parse_duration(obs.spec.schedule.interval).total_seconds()


def _check_job(obs: Observed, reference: dict[str, Any], attempt: int) -> Job:
    stable = (obs.deployment or {}).get("stable") or {}
    slot = obs.status.get("pendingCheckTime") or _stamp(obs.now)
    name = executor.unit_name(f"{obs.name}-drift", obs.uid, slot, attempt)
    payload = {
        "policy": {"namespace": obs.namespace, "name": obs.name},
        "deployment": obs.spec.deployment_ref.name,
        "modelVersion": stable.get("modelVersion"),
        "reference": reference,
        "features": obs.spec.features.to_wire(),
        "predictionDrift": obs.spec.prediction_drift.to_wire() if obs.spec.prediction_drift else None,
        "window": obs.spec.window.to_wire(),
        "minSamples": obs.spec.min_samples,
        "checkTime": slot,
    }
    return Job(name, "drift", payload, 600.0)


def reconcile(obs: Observed) -> DriftPlan:
    """Decide the DriftPolicy's next step (see the module docstring)."""
    b = StatusBuilder(obs.status, obs.generation, obs.now)
    plan = DriftPlan(b.status, requeue_after=_interval(obs))
    if obs.deployment is None:
        message = f"Deployment {obs.spec.deployment_ref.name} does not exist"
        b.stalled("TargetNotFound", message)
        b.condition("Drifted", UNKNOWN, "TargetNotFound", message)
        plan.status, plan.requeue_after = b.build(), 30.0
        return plan
    reference = reference_version(obs)
    if reference is None:
        message = "no reference: the served ModelVersion has no Dataset lineage with a profile" \
            if obs.spec.reference.from_lineage else "the reference Dataset version is not available"
        b.stalled("ReferenceNotFound", message)
        b.condition("Drifted", UNKNOWN, "ReferenceNotFound", message)
        plan.status, plan.requeue_after = b.build(), 30.0
        return plan
    b.status["reference"] = {k: reference.get(k) for k in ("name", "digest", "profileURI")}

    job_name = obs.status.get("job")
    attempts = int(obs.status.get("attempts") or 0)
    if job_name and obs.unit is not None:
        d = work.decide(obs.unit.state, obs.unit.message, obs.result, attempts, MAX_ATTEMPTS)
        if d.verdict == work.Verdict.WAIT:
            plan.status, plan.requeue_after = b.build(), POLL_SECONDS
            return plan
        if d.verdict in (work.Verdict.SUBMIT, work.Verdict.RETRY):
            attempt = attempts if d.verdict == work.Verdict.SUBMIT else attempts + 1
            job = _check_job(obs, reference, attempt)
            b.status.update({"job": job.name, "attempts": attempt})
            plan.status, plan.submit, plan.requeue_after = b.build(), job, POLL_SECONDS
            return plan
        b.status["job"] = None
        b.status["lastCheckTime"] = b.status.pop("pendingCheckTime", None) or _stamp(obs.now)
        if d.verdict == work.Verdict.FAILED:
            b.condition("Drifted", UNKNOWN, d.reason, d.message)
            b.stalled(d.reason, d.message)
            plan.events.append(Event("Warning", d.reason, d.message))
        else:
            _apply_check(obs, b, plan, d.result or {})
    else:
        last = obs.status.get("lastCheckTime")
        due = last is None or (obs.now - _parse(last)).total_seconds() >= _interval(obs)
        if due or obs.status.get("observedGeneration") != obs.generation:
            b.status["pendingCheckTime"] = _stamp(obs.now)
            job = _check_job(obs, reference, 1)
            b.status.update({"job": job.name, "attempts": 1})
            if not conditions.get(b.status.get("conditions", []), "Drifted"):
                b.condition("Drifted", UNKNOWN, "FirstCheckPending", "the first check is running")
                b.progressing("FirstCheckPending", "the first check is running")
            plan.status, plan.submit, plan.requeue_after = b.build(observed=False), job, POLL_SECONDS
            return plan
        plan.requeue_after = max(0.5, _interval(obs) - (obs.now - _parse(str(last))).total_seconds())
    _retrain(obs, b, plan, reference)
    plan.status = b.build()
    return plan


def _apply_check(obs: Observed, b: StatusBuilder, plan: DriftPlan, r: dict[str, Any]) -> None:
    features = sorted(r.get("features") or [], key=lambda f: (not f.get("drifted"), -abs(f.get("score") or 0)))
    b.status.update({"samples": r.get("samples"), "reportURI": r.get("reportURI"),
                     "features": features[:TOP_FEATURES] or None})
    before = conditions.get(obs.status.get("conditions", []), "Drifted")
    if r.get("insufficient") or r.get("driftDetected") is None:
        message = f"{r.get('samples', 0)} samples in the window; {obs.spec.min_samples} needed"
        b.status.update({"driftDetected": None, "driftedShare": None})
        b.condition("Drifted", UNKNOWN, "InsufficientData", message)
    else:
        share = float(r.get("driftedShare") or 0.0)
        drifted = [f["name"] for f in features if f.get("drifted")]
        b.status.update({"driftDetected": bool(r["driftDetected"]), "driftedShare": share})
        if r["driftDetected"]:
            message = f"{len(drifted)} feature(s) drifted ({share:.0%}): {', '.join(drifted[:5])}"
            b.condition("Drifted", TRUE, "DriftDetected", message)
        else:
            b.condition("Drifted", FALSE, "NoDrift", f"no drift over {r.get('samples')} samples "
                                                     f"(correction: {r.get('correction', 'none')})")
    after = conditions.get(b.status["conditions"], "Drifted")
    if after and (before is None or before["status"] != after["status"]):
        level = "Warning" if after["status"] == TRUE else "Normal"
        plan.events.append(Event(level, after["reason"], after["message"]))
    b.ready("Checking", f"checks run every {obs.spec.schedule.interval}; last at {b.status['lastCheckTime']}")


def _retrain(obs: Observed, b: StatusBuilder, plan: DriftPlan, reference: dict[str, Any]) -> None:
    action = obs.spec.action
    if action.type != driftpolicy.ActionType.RETRAIN:
        return
    retrain = dict(obs.status.get("retrain") or {})
    run = obs.retrain_run
    if retrain.get("state") == "Evaluating" and run is not None:
        _evaluate(obs, b, plan, retrain, run)
        return
    if retrain.get("name") and run is not None and not trainingrun.finished(run):
        return  # at most one retrain in flight
    if retrain.get("name") and run is not None and trainingrun.finished(run) and retrain.get("state") == "Running":
        ok = conditions.is_true(run.get("conditions", []), "Succeeded")
        retrain["state"] = "Succeeded" if ok else "Failed"
        if not ok:
            succeeded = conditions.get(run.get("conditions", []), "Succeeded") or {}
            message = f"TrainingRun {retrain['name']} failed: {succeeded.get('message', 'no reason given')}"
            b.condition("Retrained", FALSE, "RetrainFailed", message)
            plan.events.append(Event("Warning", "RetrainFailed", message))
        elif action.propose:
            retrain.update({"state": "Evaluating", "attempts": 1, "job": _evaluate_job(obs, run, 1).name})
            plan.submit = _evaluate_job(obs, run, 1)
            plan.requeue_after = POLL_SECONDS
            b.condition("Proposed", UNKNOWN, "Evaluating",
                        f"evaluating {retrain['name']}'s artifact against the served version's gates")
        b.status["retrain"] = retrain
        return
    if obs.status.get("driftDetected") is not True and b.status.get("driftDetected") is not True:
        return
    if retrain.get("time"):
        since = (obs.now - _parse(retrain["time"])).total_seconds()
        if since < common.parse_duration(action.cooldown).total_seconds():
            return
    dataset_name = reference.get("name")
    newest = ((obs.dataset or {}).get("history") or [{}])[0]
    if not newest.get("digest") or newest.get("digest") == reference.get("digest"):
        b.condition("Retrained", FALSE, "NoNewData",
                    f"drift detected, but Dataset {dataset_name} has no version newer than "
                    f"{str(reference.get('digest'))[:19]} (the served model's)")
        return
    template = dict(action.template or {})
    spec = {**template, "datasetRef": {"name": dataset_name, "digest": newest["digest"]}}
    digest_part = hashlib.sha256(f"{obs.uid}{newest['digest']}".encode()).hexdigest()[:8]
    run_name = f"{obs.name}-retrain-{digest_part}"[:63]
    plan.create.append({"apiVersion": common.API_VERSION, "kind": "TrainingRun",
                        "metadata": {"name": run_name, "labels": {"roost.dev/drift-policy": obs.name}},
                        "spec": spec})
    b.status["retrain"] = {"name": run_name, "datasetDigest": newest["digest"], "time": _stamp(obs.now),
                           "state": "Running"}
    b.condition("Retrained", TRUE, "RetrainStarted", f"TrainingRun {run_name} on {newest['digest'][:19]}")
    plan.events.append(Event("Normal", "RetrainStarted", f"Created TrainingRun {run_name} on the new data "
                                                         f"{newest['digest'][:19]}"))


def _proposed_version(obs: Observed) -> int:
    """One above every registered version of the model (the served one may not be the newest)."""
    served_spec = (obs.served or {}).get("spec") or {}
    return max(int(served_spec.get("version", 0)), obs.latest_version) + 1


def _proposed_name(obs: Observed) -> str:
    served_spec = (obs.served or {}).get("spec") or {}
    return f"{served_spec.get('model', 'model')}-v{_proposed_version(obs)}"


def _evaluate_job(obs: Observed, run: dict[str, Any], attempt: int) -> Job:
    """An ``evaluate`` unit: the retrained artifact against the served version's gates, on the new holdout.

    The served model is scored on the same rows (``compareWith``) and is the baseline of any
    ``maxRegression`` gate, so "no worse than what serves now" is judged on the new data.
    """
    served = obs.served or {}
    served_spec, served_status = served.get("spec") or {}, served.get("status") or {}
    gates = served_spec.get("gates") or {}
    artifact, served_artifact = run.get("artifact") or {}, served_status.get("artifact") or {}
    metrics = sorted(set(served_status.get("evaluationMetrics") or []) | set(run.get("metrics") or {})
                     | {t["metric"] for t in gates.get("thresholds") or []})
    payload = {
        "modelVersion": {"namespace": obs.namespace, "name": _proposed_name(obs)},
        "artifact": {"uri": artifact.get("uri"), "digest": artifact.get("digest")},
        "dataset": (run.get("lineage") or {}).get("datasetVersion") or run.get("datasetVersion"),
        "task": ((run.get("signature") or {}).get("outputs") or {}).get("task"),
        "metrics": metrics,
        "gates": gates,
        "maxRegression": (gates.get("baseline") or {}).get("maxRegression"),
        "compareWith": ({"uri": served_artifact["uri"], "digest": served_artifact["digest"]}
                        if served_artifact.get("uri") else None),
        "convert": False,
    }
    name = executor.unit_name(f"{obs.name}-propose", obs.uid, str(artifact.get("digest")), attempt)
    return Job(name, "evaluate", payload, 1800.0)


def _evaluate(obs: Observed, b: StatusBuilder, plan: DriftPlan, retrain: dict[str, Any],
              run: dict[str, Any]) -> None:
    attempts = int(retrain.get("attempts") or 1)
    unit = obs.evaluation
    if unit is None:  # the unit was never recorded as submitted: submit it (again)
        plan.submit, plan.requeue_after = _evaluate_job(obs, run, attempts), POLL_SECONDS
        retrain["job"] = plan.submit.name
        b.status["retrain"] = retrain
        return
    d = work.decide(unit.state, unit.message, obs.evaluation_result, attempts, MAX_ATTEMPTS)
    if d.verdict == work.Verdict.WAIT:
        plan.requeue_after = POLL_SECONDS
        return
    if d.verdict in (work.Verdict.SUBMIT, work.Verdict.RETRY):
        attempt = attempts if d.verdict == work.Verdict.SUBMIT else attempts + 1
        plan.submit, plan.requeue_after = _evaluate_job(obs, run, attempt), POLL_SECONDS
        retrain.update({"attempts": attempt, "job": plan.submit.name})
        b.status["retrain"] = retrain
        return
    retrain["job"] = None
    if d.verdict == work.Verdict.SUCCEEDED:
        retrain["state"] = "Proposed"
        _propose(obs, b, plan, retrain, run, d.result or {})
    elif d.reason == "Rejected":  # a result: the retrained model does not pass the served version's gates
        retrain["state"] = "Rejected"
        b.condition("Proposed", FALSE, "GatesFailed", d.message)
        plan.events.append(Event("Warning", "GatesFailed", f"No proposal from {retrain['name']}: {d.message}"))
    else:
        retrain["state"] = "Failed"
        b.condition("Proposed", FALSE, d.reason, d.message)
        plan.events.append(Event("Warning", d.reason, f"Could not evaluate {retrain['name']}: {d.message}"))
    b.status["retrain"] = retrain


def _propose(obs: Observed, b: StatusBuilder, plan: DriftPlan, retrain: dict[str, Any],
             run: dict[str, Any], evaluation: dict[str, Any]) -> None:
    """Record a self-contained ModelVersion manifest and the Deployment change that would serve it.

    The manifest's source is the artifact itself (uri and digest) with the Dataset version it was
    trained on, never the generated TrainingRun: git must not point at objects that exist only in the
    cluster. A ModelVersion created from it re-verifies and re-evaluates the artifact before it serves.
    """
    served_spec = (obs.served or {}).get("spec") or {}
    artifact = run.get("artifact") or {}
    name = _proposed_name(obs)
    manifest = {
        "apiVersion": common.API_VERSION, "kind": "ModelVersion", "metadata": {"name": name},
        "spec": {"model": served_spec.get("model"), "version": _proposed_version(obs),
                 "source": {"artifact": {"uri": artifact.get("uri"), "digest": artifact.get("digest"),
                                         "datasetRef": {"name": (run.get("datasetVersion") or {}).get("name"),
                                                        "digest": retrain["datasetDigest"]}}},
                 "gates": served_spec.get("gates") or {}},
    }
    b.status["proposal"] = {
        "modelVersion": manifest,
        "deploymentPatch": {"metadata": {"name": obs.spec.deployment_ref.name},
                            "spec": {"modelVersion": name}},
        "evidence": {"reportURI": obs.status.get("reportURI") or b.status.get("reportURI"),
                     "driftedShare": b.status.get("driftedShare"),
                     "metrics": evaluation.get("metrics"),
                     "servedMetrics": evaluation.get("comparedMetrics"),
                     "servedVersion": (obs.served or {}).get("metadata", {}).get("name"),
                     "testRows": evaluation.get("testRows"),
                     "gates": evaluation.get("gates"),
                     "trainingRun": retrain["name"]},
        "time": _stamp(obs.now),
    }
    gates = ", ".join(g["message"] for g in evaluation.get("gates") or []) or "no gates"
    b.condition("Proposed", TRUE, "ProposalReady", f"{name} passes the served version's gates ({gates})")
    plan.events.append(Event("Normal", "ProposalReady", f"Proposed {name} (artifact "
                                                        f"{str(artifact.get('digest'))[:19]}) for review"))
