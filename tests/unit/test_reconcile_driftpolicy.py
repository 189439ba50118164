"""DriftPolicy decisions: targets and references, checks and verdicts, retrain, evaluation, proposal."""

from __future__ import annotations

import datetime
from typing import Any

from roost.api import driftpolicy
from roost.execution.executor import State, UnitStatus
from roost.reconcile import driftpolicy as rdp
from roost.reconcile.conditions import get

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
OLD, NEW = "sha256:" + "0" * 64, "sha256:" + "1" * 64
TEMPLATE = {"model": "bc", "estimator": {"class": "sklearn.linear_model.LogisticRegression"}}
SPEC = driftpolicy.DriftPolicySpec.model_validate({
    "deploymentRef": {"name": "bc"}, "schedule": {"interval": "10s"}, "minSamples": 100,
    "action": {"type": "retrain", "cooldown": "1h", "propose": True, "template": TEMPLATE}})
GATES = {"thresholds": [{"metric": "accuracy", "min": 0.9}],
         "baseline": {"modelVersionRef": {"name": "bc-v0"}, "maxRegression": [{"metric": "roc_auc", "by": 0.01}]}}
SERVED: dict[str, Any] = {
    "metadata": {"name": "bc-v1"},
    "spec": {"model": "bc", "version": 1, "gates": GATES},
    "status": {"lineage": {"datasetVersion": {"name": "bc", "digest": OLD, "profileURI": "file:///p"}},
               "artifact": {"uri": "file:///served", "digest": "sha256:" + "s" * 64},
               "evaluationMetrics": ["accuracy", "roc_auc"], "metrics": {"accuracy": 0.95, "roc_auc": 0.99}},
}
DEPLOYMENT = {"stable": {"modelVersion": "bc-v1"}}
DATASET_NEW = {"history": [{"digest": NEW}, {"digest": OLD}]}
DATASET_SAME = {"history": [{"digest": OLD}]}
RUN_DONE: dict[str, Any] = {
    "conditions": [{"type": "Succeeded", "status": "True", "reason": "Trained", "message": ""}],
    "artifact": {"uri": "file:///new", "digest": "sha256:" + "n" * 64},
    "metrics": {"accuracy": 0.96, "roc_auc": 0.99, "f1": 0.97},
    "datasetVersion": {"name": "bc", "digest": NEW},
    "lineage": {"datasetVersion": {"name": "bc", "digest": NEW, "splitURI": "file:///x"}},
    "signature": {"outputs": {"task": "classification"}},
}
CHECKED = {"lastCheckTime": "2026-01-01T11:59:59Z", "observedGeneration": 1, "driftDetected": True, "driftedShare": 0.1,
           "reportURI": "file:///r.html"}


def obs(status: dict[str, Any], **kw: Any) -> rdp.Observed:
    base: dict[str, Any] = {"deployment": DEPLOYMENT, "served": SERVED, "dataset": DATASET_NEW}
    base.update(kw)
    return rdp.Observed("ns", "bc-drift", 1, SPEC, status, NOW, uid="u1", **base)


def cond(status: dict[str, Any], type_: str) -> tuple[str, str] | None:
    c = get(status.get("conditions", []), type_)
    return None if c is None else (c["status"], c["reason"])


def test_a_missing_deployment_or_reference_stalls_without_a_verdict() -> None:
    plan = rdp.reconcile(obs({}, deployment=None))
    assert cond(plan.status, "Drifted") == ("Unknown", "TargetNotFound") and plan.submit is None
    plan = rdp.reconcile(obs({}, served={"spec": {}, "status": {}}))
    assert cond(plan.status, "Drifted") == ("Unknown", "ReferenceNotFound") and plan.submit is None


def test_the_first_check_is_submitted_against_the_served_models_dataset_version() -> None:
    plan = rdp.reconcile(obs({}))
    assert plan.submit is not None and plan.submit.worker == "drift"
    assert plan.submit.payload["reference"]["digest"] == OLD
    assert plan.submit.payload["modelVersion"] == "bc-v1"
    assert cond(plan.status, "Drifted") == ("Unknown", "FirstCheckPending")


def test_too_few_samples_is_insufficient_data_never_a_verdict() -> None:
    status = {**CHECKED, "driftDetected": None, "job": "j", "attempts": 1, "pendingCheckTime": "2026-01-01T12:00:00Z"}
    plan = rdp.reconcile(obs(status, unit=UnitStatus(State.SUCCEEDED),
                             result={"ok": True, "insufficient": True, "samples": 12, "driftDetected": None}))
    assert cond(plan.status, "Drifted") == ("Unknown", "InsufficientData")
    assert plan.status["driftDetected"] is None and plan.create == []


def test_drift_without_a_newer_dataset_version_is_no_new_data() -> None:
    plan = rdp.reconcile(obs(CHECKED, dataset=DATASET_SAME))
    assert cond(plan.status, "Retrained") == ("False", "NoNewData") and plan.create == []


def test_drift_with_new_data_creates_one_training_run_on_it_then_waits_for_it() -> None:
    plan = rdp.reconcile(obs(CHECKED))
    assert len(plan.create) == 1
    run = plan.create[0]
    assert run["kind"] == "TrainingRun" and run["spec"]["datasetRef"] == {"name": "bc", "digest": NEW}
    assert run["spec"]["model"] == "bc"
    assert plan.status["retrain"]["state"] == "Running"
    again = rdp.reconcile(obs(plan.status, retrain_run={"conditions": []}))
    assert again.create == [] and again.status["retrain"] == plan.status["retrain"]  # one in flight, no twin
    # a restart before the status was written plans the same name again: the create adopts, no twin
    assert rdp.reconcile(obs(CHECKED)).create[0]["metadata"]["name"] == run["metadata"]["name"]


def test_the_cooldown_holds_the_next_retrain() -> None:
    retrain = {"name": "r", "datasetDigest": NEW, "time": "2026-01-01T11:30:00Z", "state": "Proposed"}
    assert rdp.reconcile(obs({**CHECKED, "retrain": retrain}, retrain_run=RUN_DONE)).create == []
    later = {**retrain, "time": "2026-01-01T10:59:00Z"}
    newer = {"history": [{"digest": "sha256:" + "2" * 64}, {"digest": NEW}, {"digest": OLD}]}
    assert len(rdp.reconcile(obs({**CHECKED, "retrain": later}, retrain_run=RUN_DONE, dataset=newer)).create) == 1


def test_a_finished_run_is_evaluated_against_the_served_versions_gates_and_the_served_model() -> None:
    retrain = {"name": "r", "datasetDigest": NEW, "time": "2026-01-01T11:59:00Z", "state": "Running"}
    plan = rdp.reconcile(obs({**CHECKED, "retrain": retrain}, retrain_run=RUN_DONE))
    job = plan.submit
    assert job is not None and job.worker == "evaluate"
    assert job.payload["artifact"] == {"uri": "file:///new", "digest": RUN_DONE["artifact"]["digest"]}
    assert job.payload["dataset"]["digest"] == NEW  # the new data's holdout
    assert job.payload["compareWith"]["uri"] == "file:///served"
    assert job.payload["gates"] == SERVED["spec"]["gates"]
    assert job.payload["maxRegression"] == [{"metric": "roc_auc", "by": 0.01}]
    assert job.payload["convert"] is False
    assert plan.status["retrain"]["state"] == "Evaluating" and plan.status["retrain"]["job"] == job.name
    assert cond(plan.status, "Proposed") == ("Unknown", "Evaluating")
    assert "proposal" not in plan.status

    waiting = rdp.reconcile(obs(plan.status, retrain_run=RUN_DONE, evaluation=UnitStatus(State.RUNNING)))
    assert waiting.submit is None and waiting.status["retrain"]["state"] == "Evaluating"
    lost = rdp.reconcile(obs(plan.status, retrain_run=RUN_DONE, evaluation=UnitStatus(State.MISSING)))
    assert lost.submit is not None and lost.submit.name == job.name  # resubmitted under the same name


def test_a_passing_evaluation_becomes_a_self_contained_proposal() -> None:
    retrain = {"name": "r", "datasetDigest": NEW, "time": "2026-01-01T11:59:00Z", "state": "Evaluating",
               "job": "e", "attempts": 1}
    result = {"ok": True, "metrics": {"accuracy": 0.96, "roc_auc": 0.991}, "testRows": 120,
              "comparedMetrics": {"accuracy": 0.93, "roc_auc": 0.98},
              "gates": [{"name": "threshold:accuracy", "passed": True, "message": "accuracy 0.96 >= 0.9"}]}
    plan = rdp.reconcile(obs({**CHECKED, "retrain": retrain}, retrain_run=RUN_DONE,
                             evaluation=UnitStatus(State.SUCCEEDED), evaluation_result=result))
    proposal = plan.status["proposal"]
    manifest = proposal["modelVersion"]
    assert manifest["metadata"]["name"] == "bc-v2" and manifest["spec"]["version"] == 2
    assert manifest["spec"]["source"] == {"artifact": {"uri": "file:///new", "digest": RUN_DONE["artifact"]["digest"],
                                                       "datasetRef": {"name": "bc", "digest": NEW}}}
    assert proposal["deploymentPatch"] == {"metadata": {"name": "bc"}, "spec": {"modelVersion": "bc-v2"}}
    evidence = proposal["evidence"]
    assert evidence["metrics"] == result["metrics"] and evidence["servedMetrics"] == result["comparedMetrics"]
    assert evidence["reportURI"] == "file:///r.html" and evidence["servedVersion"] == "bc-v1"
    assert cond(plan.status, "Proposed") == ("True", "ProposalReady")
    assert plan.status["retrain"]["state"] == "Proposed" and plan.status["retrain"]["job"] is None
    assert [e.reason for e in plan.events] == ["ProposalReady"]
    # v2 and v3 registered already (say, earlier canaries): the proposal takes the next free version
    later = rdp.reconcile(obs({**CHECKED, "retrain": retrain}, retrain_run=RUN_DONE, latest_version=3,
                              evaluation=UnitStatus(State.SUCCEEDED), evaluation_result=result))
    assert later.status["proposal"]["modelVersion"]["metadata"]["name"] == "bc-v4"
    assert later.status["proposal"]["modelVersion"]["spec"]["version"] == 4


def test_a_rejected_evaluation_records_why_and_proposes_nothing() -> None:
    retrain = {"name": "r", "datasetDigest": NEW, "time": "2026-01-01T11:59:00Z", "state": "Evaluating",
               "job": "e", "attempts": 1}
    result = {"ok": False, "reason": "Rejected",
              "message": "failed gates: baseline:roc_auc (roc_auc 0.95 < 0.99 - 0.01)"}
    plan = rdp.reconcile(obs({**CHECKED, "retrain": retrain}, retrain_run=RUN_DONE,
                             evaluation=UnitStatus(State.SUCCEEDED), evaluation_result=result))
    assert "proposal" not in plan.status
    assert cond(plan.status, "Proposed") == ("False", "GatesFailed")
    assert "baseline:roc_auc" in get(plan.status["conditions"], "Proposed")["message"]  # type: ignore[index]
    assert plan.status["retrain"]["state"] == "Rejected"


def test_a_failed_retrain_is_said_and_not_evaluated() -> None:
    retrain = {"name": "r", "datasetDigest": NEW, "time": "2026-01-01T11:59:00Z", "state": "Running"}
    failed = {**RUN_DONE, "conditions": [{"type": "Succeeded", "status": "False", "reason": "TrainingFailed",
                                          "message": "boom"}]}
    plan = rdp.reconcile(obs({**CHECKED, "retrain": retrain}, retrain_run=failed))
    assert plan.submit is None and plan.status["retrain"]["state"] == "Failed"
    assert cond(plan.status, "Retrained") == ("False", "RetrainFailed")
