"""TrainingRun and ModelVersion decisions: waiting, attempts, results, gates, duplicates."""

from __future__ import annotations

import datetime
from typing import Any

from roost.api import modelversion, trainingrun
from roost.execution.executor import State, UnitStatus
from roost.reconcile import modelversion as rmv
from roost.reconcile import trainingrun as rtr
from roost.reconcile.conditions import get

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
RUN_SPEC = trainingrun.TrainingRunSpec.model_validate({
    "datasetRef": {"name": "bc"}, "model": "bc", "backoffLimit": 1,
    "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 10}},
    "metrics": ["accuracy", "roc_auc"]})
DIGEST = "sha256:" + "d" * 64
READY_DATASET = {
    "conditions": [{"type": "Ready", "status": "True", "reason": "Profiled", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    "current": {"digest": DIGEST, "snapshotURI": "file:///s", "snapshotDigest": "sha256:s",
                "splitURI": "file:///x", "splitDigest": "sha256:x", "profileURI": "file:///p"},
    "schema": [{"name": "a", "type": "numeric", "missing": 0}], "target": {"name": "y"},
}
TRAIN_RESULT = {"ok": True, "metrics": {"accuracy": 0.95, "roc_auc": 0.99},
                "objective": {"name": "accuracy", "value": 0.95},
                "artifact": {"uri": "file:///m", "digest": "sha256:" + "m" * 64, "format": "skops"},
                "signature": {"outputs": {"task": "classification"}}, "lineage": {"dataset": {"name": "bc"}}}


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    c = get(status["conditions"], type_)
    assert c is not None, type_
    return c["status"], c["reason"]


def run_obs(status: dict[str, Any], dataset: dict[str, Any] | None = READY_DATASET,
            unit: UnitStatus | None = None, result: dict[str, Any] | None = None) -> rtr.Observed:
    return rtr.Observed("ns", "run", 1, RUN_SPEC, status, NOW, dataset, unit, result)


def test_run_waits_for_its_dataset() -> None:
    plan = rtr.reconcile(run_obs({}, dataset=None))
    assert plan.submit is None
    assert cond(plan.status, "Ready") == ("False", "WaitingForDataset")
    not_ready = {**READY_DATASET, "conditions": []}
    assert cond(rtr.reconcile(run_obs({}, dataset=not_ready)).status, "Reconciling") == ("True", "WaitingForDataset")


def test_run_starts_on_the_current_dataset_version() -> None:
    plan = rtr.reconcile(run_obs({}))
    assert plan.submit is not None and plan.submit.worker == "train"
    assert plan.submit.payload["dataset"]["digest"] == DIGEST
    assert plan.status["attempts"] == 1 and plan.status["datasetDigest"] == DIGEST


def test_run_retries_a_crash_then_fails_after_backoff_limit() -> None:
    started = rtr.reconcile(run_obs({})).status
    retry = rtr.reconcile(run_obs(started, unit=UnitStatus(State.FAILED, "exited 1")))
    assert retry.submit is not None and retry.status["attempts"] == 2
    assert retry.submit.name != started["job"]
    failed = rtr.reconcile(run_obs(retry.status, unit=UnitStatus(State.FAILED, "exited 1")))
    assert cond(failed.status, "Succeeded") == ("False", "Failed")
    assert cond(failed.status, "Stalled") == ("True", "Failed")
    assert rtr.finished(failed.status)


def test_invalid_spec_from_the_worker_is_not_retried() -> None:
    started = rtr.reconcile(run_obs({})).status
    bad = {"ok": False, "reason": "InvalidSpec", "message": "unknown parameter n_trees"}
    plan = rtr.reconcile(run_obs(started, unit=UnitStatus(State.SUCCEEDED), result=bad))
    assert cond(plan.status, "Stalled") == ("True", "InvalidSpec")
    assert "n_trees" in get(plan.status["conditions"], "Ready")["message"]  # type: ignore[index]


def test_successful_run_records_metrics_artifact_and_lineage() -> None:
    started = rtr.reconcile(run_obs({})).status
    plan = rtr.reconcile(run_obs(started, unit=UnitStatus(State.SUCCEEDED), result=TRAIN_RESULT))
    assert cond(plan.status, "Succeeded") == ("True", "Succeeded")
    assert cond(plan.status, "Ready") == ("True", "Succeeded")
    assert plan.status["artifact"]["digest"] == TRAIN_RESULT["artifact"]["digest"]  # type: ignore[index]
    assert plan.status["lineage"]["datasetVersion"]["digest"] == DIGEST
    assert rtr.reconcile(run_obs(plan.status)).submit is None


MV_SPEC = modelversion.ModelVersionSpec.model_validate({
    "model": "bc", "version": 1, "source": {"trainingRunRef": {"name": "run"}},
    "gates": {"thresholds": [{"metric": "roc_auc", "min": 0.97}]}})


def succeeded_run() -> dict[str, Any]:
    started = rtr.reconcile(run_obs({})).status
    return rtr.reconcile(run_obs(started, unit=UnitStatus(State.SUCCEEDED), result=TRAIN_RESULT)).status


def mv_obs(status: dict[str, Any], run: dict[str, Any] | None = None, duplicate_of: str | None = None,
           unit: UnitStatus | None = None, result: dict[str, Any] | None = None) -> rmv.Observed:
    return rmv.Observed("ns", "v1", 1, MV_SPEC, status, NOW, run=run, duplicate_of=duplicate_of, unit=unit,
                        result=result)


def test_version_waits_for_its_training_run() -> None:
    assert cond(rmv.reconcile(mv_obs({})).status, "Ready") == ("False", "WaitingForTrainingRun")
    running = rtr.reconcile(run_obs({})).status
    assert cond(rmv.reconcile(mv_obs({}, run=running)).status, "Ready") == ("False", "WaitingForTrainingRun")


def test_version_resolves_the_digest_once_and_evaluates_it() -> None:
    plan = rmv.reconcile(mv_obs({}, run=succeeded_run()))
    assert plan.submit is not None and plan.submit.worker == "evaluate"
    assert plan.status["artifact"]["digest"] == TRAIN_RESULT["artifact"]["digest"]  # type: ignore[index]
    assert plan.submit.payload["dataset"]["digest"] == DIGEST
    assert plan.submit.payload["metrics"] == ["accuracy", "roc_auc"]


def test_version_passing_gates_is_ready_and_final() -> None:
    started = rmv.reconcile(mv_obs({}, run=succeeded_run())).status
    result = {"ok": True, "verified": True, "metrics": {"accuracy": 0.95, "roc_auc": 0.99},
              "gates": [{"name": "threshold:roc_auc", "passed": True, "message": "roc_auc 0.99 >= 0.97"}]}
    plan = rmv.reconcile(mv_obs(started, unit=UnitStatus(State.SUCCEEDED), result=result))
    assert cond(plan.status, "Ready") == ("True", "GatesPassed")
    assert cond(plan.status, "ArtifactVerified") == ("True", "DigestVerified")
    assert plan.status["headline"] == {"name": "roc_auc", "value": 0.99}
    assert rmv.final(plan.status)


def test_version_failing_a_gate_is_rejected_naming_it() -> None:
    started = rmv.reconcile(mv_obs({}, run=succeeded_run())).status
    result = {"ok": False, "reason": "Rejected", "message": "threshold:roc_auc: 0.91 < 0.97",
              "metrics": {"roc_auc": 0.91}, "gates": [{"name": "threshold:roc_auc", "passed": False}]}
    plan = rmv.reconcile(mv_obs(started, unit=UnitStatus(State.SUCCEEDED), result=result))
    assert cond(plan.status, "Stalled") == ("True", "Rejected")
    assert cond(plan.status, "Validated") == ("False", "Rejected")
    assert "roc_auc" in get(plan.status["conditions"], "Ready")["message"]  # type: ignore[index]


def test_tampered_artifact_is_not_verified() -> None:
    started = rmv.reconcile(mv_obs({}, run=succeeded_run())).status
    result = {"ok": False, "reason": "DigestMismatch", "message": "expected sha256:m…, got sha256:0…"}
    plan = rmv.reconcile(mv_obs(started, unit=UnitStatus(State.SUCCEEDED), result=result))
    assert cond(plan.status, "ArtifactVerified") == ("False", "DigestMismatch")
    assert cond(plan.status, "Stalled") == ("True", "DigestMismatch")


def test_duplicate_model_version_pair_stalls() -> None:
    plan = rmv.reconcile(mv_obs({}, run=succeeded_run(), duplicate_of="v1-original"))
    assert cond(plan.status, "Stalled") == ("True", "DuplicateVersion")
    assert plan.submit is None


def test_a_baseline_that_ended_rejected_stalls_the_version_instead_of_waiting_forever() -> None:
    spec = modelversion.ModelVersionSpec.model_validate({
        "model": "bc", "version": 2, "source": {"trainingRunRef": {"name": "run"}},
        "gates": {"baseline": {"modelVersionRef": {"name": "bc-v1"},
                               "maxRegression": [{"metric": "roc_auc", "by": 0.01}]}}})
    run = succeeded_run()

    def obs(baseline: dict[str, Any]) -> rmv.Observed:
        return rmv.Observed("ns", "v2", 1, spec, {}, NOW, run=run, baseline=baseline)

    validating = {"conditions": [{"type": "Ready", "status": "False", "reason": "Validating", "message": ""}]}
    assert cond(rmv.reconcile(obs(validating)).status, "Ready") == ("False", "WaitingForBaseline")
    rejected = {"conditions": [
        {"type": "Ready", "status": "False", "reason": "Rejected", "message": ""},
        {"type": "Stalled", "status": "True", "reason": "Rejected", "message": "failed gates: roc_auc 0.9 < 0.97"}]}
    plan = rmv.reconcile(obs(rejected))
    assert cond(plan.status, "Stalled") == ("True", "BaselineNotUsable")
    assert plan.submit is None and [e.reason for e in plan.events] == ["BaselineNotUsable"]
    assert "roc_auc 0.9 < 0.97" in get(plan.status["conditions"], "Stalled")["message"]  # type: ignore[index]
