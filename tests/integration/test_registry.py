"""The registry on a real control plane with the real operator: training, tuning, gates, verified artifacts."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skops.io as sio
from sklearn import tree

from roost.storage import models
from tests.conftest import Operator, Roost
from tests.integration import _lifecycle as lc
from tests.integration import _untrusted

pytestmark = pytest.mark.integration

RANDOM_FOREST = "sklearn.ensemble.RandomForestClassifier"


def _time(rfc3339: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


def test_run_created_before_its_dataset_is_woken_and_its_version_registers_the_verified_artifact(
        roost: Roost, operator: Operator, namespace: str, tmp_path: Path) -> None:
    roost.create(namespace, lc.training_run("rf", "breast-cancer", params={"n_estimators": 100}))
    roost.create(namespace, lc.model_version("v1", 1, {"trainingRunRef": {"name": "rf"}}, gates={
        "thresholds": [{"metric": "accuracy", "min": 0.9}, {"metric": "roc_auc", "min": 0.97}]}))
    waiting = roost.wait("TrainingRun", namespace, "rf", "Reconciling", reason="WaitingForDataset", op=operator)
    assert lc.condition(waiting, "Succeeded")["status"] == "Unknown"
    roost.wait("ModelVersion", namespace, "v1", "Reconciling", reason="WaitingForTrainingRun", op=operator)

    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    roost.create(namespace, lc.dataset("breast-cancer", csv.as_uri()))
    ds = roost.wait("Dataset", namespace, "breast-cancer", op=operator)
    seen_ready = time.monotonic()
    # The operator's idle requeue is 300 s: a run that starts at once was woken by the Dataset's transition.
    run = roost.wait("TrainingRun", namespace, "rf", "Succeeded", timeout=60, op=operator)
    assert time.monotonic() - seen_ready < 45
    ready_at = _time(lc.condition(ds, "Ready")["lastTransitionTime"])
    assert _time(run["status"]["startTime"]) - ready_at <= datetime.timedelta(seconds=3)

    metrics = run["status"]["metrics"]
    assert metrics["accuracy"] >= 0.9
    assert metrics["roc_auc"] >= 0.97
    artifact = run["status"]["artifact"]
    assert run["status"]["lineage"]["dataset"]["digest"] == ds["status"]["digest"]
    assert run["status"]["lineage"]["datasetVersion"]["digest"] == ds["status"]["digest"]

    mv = roost.wait("ModelVersion", namespace, "v1", timeout=60, op=operator)
    status = mv["status"]
    assert status["artifact"]["digest"] == artifact["digest"]
    assert status["artifact"]["verified"] is True
    assert lc.condition(mv, "ArtifactVerified")["status"] == "True"
    assert lc.condition(mv, "Validated")["status"] == "True"
    assert status["lineage"]["datasetVersion"]["digest"] == ds["status"]["digest"]
    assert status["lineage"]["trainingRun"] == "rf"
    assert {g["name"]: g["passed"] for g in status["gates"]} == {"threshold:accuracy": True, "threshold:roc_auc": True}
    assert status["metrics"]["roc_auc"] == pytest.approx(metrics["roc_auc"])
    stored = Path(artifact["uri"].removeprefix("file://"))
    assert lc.sha256_of(stored) == artifact["digest"]
    assert artifact["uri"].startswith(operator.store)


def test_random_search_records_every_trial_and_refits_with_the_best(
        roost: Roost, operator: Operator, namespace: str, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    roost.create(namespace, lc.dataset("breast-cancer", csv.as_uri()))
    roost.create(namespace, lc.training_run("tuned", "breast-cancer", params={}, tuning={
        "strategy": "random", "trials": 6, "parallelism": 2,
        "objective": {"metric": "roc_auc", "goal": "maximize"},
        "space": [{"name": "max_depth", "int": {"min": 2, "max": 12}},
                  {"name": "n_estimators", "choice": [10, 30]}],
    }))

    run = roost.wait("TrainingRun", namespace, "tuned", "Succeeded", timeout=120, op=operator)

    status = run["status"]
    trials = status["trials"]
    assert len(trials) == 6
    assert sorted(t["index"] for t in trials) == list(range(6))
    for t in trials:
        assert 2 <= t["params"]["max_depth"] <= 12
        assert t["params"]["n_estimators"] in (10, 30)
    best = max(trials, key=lambda t: (t["value"], -t["index"]))
    assert status["objective"] == {"name": "roc_auc", "value": best["value"]}
    assert status["bestParams"] == best["params"]
    assert status["lineage"]["estimator"]["params"]["max_depth"] == best["params"]["max_depth"]
    assert status["lineage"]["tuning"]["trials"] == 6
    from roost.storage import store as store_mod

    document = store_mod.Store(operator.store).read_json(status["trialsURI"])
    assert len(document["trials"]) == 6


def test_gates_reject_a_version_below_a_threshold_or_regressing_against_its_baseline(
        roost: Roost, operator: Operator, namespace: str, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    roost.create(namespace, lc.dataset("breast-cancer", csv.as_uri()))
    roost.create(namespace, lc.training_run("forest", "breast-cancer", params={"n_estimators": 50}))
    roost.create(namespace, lc.training_run("stump", "breast-cancer", "sklearn.tree.DecisionTreeClassifier",
                                            params={"max_depth": 1}))
    roost.create(namespace, lc.model_version("strict", 1, {"trainingRunRef": {"name": "forest"}}, gates={
        "thresholds": [{"metric": "accuracy", "min": 0.9999}]}))
    roost.create(namespace, lc.model_version("base", 2, {"trainingRunRef": {"name": "forest"}}))
    roost.create(namespace, lc.model_version("weak", 3, {"trainingRunRef": {"name": "stump"}}, gates={
        "baseline": {"modelVersionRef": {"name": "base"}, "maxRegression": [{"metric": "roc_auc", "by": 0.001}]}}))

    strict = roost.wait("ModelVersion", namespace, "strict", "Stalled", reason="Rejected", timeout=90, op=operator)
    message = lc.condition(strict, "Stalled")["message"]
    assert "threshold:accuracy" in message and "0.9999" in message
    assert lc.condition(strict, "Ready")["status"] == "False"
    assert lc.condition(strict, "ArtifactVerified")["status"] == "True"  # the bytes are fine; the model is not
    assert [g["passed"] for g in strict["status"]["gates"]] == [False]

    base = roost.wait("ModelVersion", namespace, "base", timeout=90, op=operator)
    weak = roost.wait("ModelVersion", namespace, "weak", "Stalled", reason="Rejected", timeout=90, op=operator)
    message = lc.condition(weak, "Stalled")["message"]
    assert "baseline:roc_auc" in message
    assert weak["status"]["metrics"]["roc_auc"] < base["status"]["metrics"]["roc_auc"] - 0.001
    assert {g["name"]: g["passed"] for g in weak["status"]["gates"]} == {"baseline:roc_auc": False}


def test_second_version_with_the_same_model_and_number_stalls_as_duplicate(
        roost: Roost, operator: Operator, namespace: str, api_client: Any) -> None:
    roost.create(namespace, lc.model_version("first", 7, {"trainingRunRef": {"name": "not-yet"}}))
    roost.wait("ModelVersion", namespace, "first", "Reconciling", reason="WaitingForTrainingRun", op=operator)
    roost.create(namespace, lc.model_version("second", 7, {"trainingRunRef": {"name": "not-yet"}}))

    second = roost.wait("ModelVersion", namespace, "second", "Stalled", reason="DuplicateVersion", op=operator)
    assert "first" in lc.condition(second, "Stalled")["message"]
    lc.wait_event(api_client, namespace, "second", "DuplicateVersion", "Warning")
    first = roost.get("ModelVersion", namespace, "first")
    assert lc.condition(first, "Stalled")["status"] == "False"


def test_unknown_estimator_parameter_stalls_the_run_as_invalid_spec_and_its_version_at_once(
        roost: Roost, operator: Operator, namespace: str, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    roost.create(namespace, lc.dataset("breast-cancer", csv.as_uri()))
    roost.create(namespace, lc.training_run("typo", "breast-cancer", params={"n_trees": 5}))
    roost.create(namespace, lc.model_version("v1", 1, {"trainingRunRef": {"name": "typo"}}))

    run = roost.wait("TrainingRun", namespace, "typo", "Stalled", reason="InvalidSpec", timeout=60, op=operator)

    assert "n_trees" in lc.condition(run, "Stalled")["message"]
    succeeded = lc.condition(run, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "InvalidSpec")
    assert run["status"]["attempts"] == 1  # a bad spec is not retried
    # The waiting version is woken by the run's failure (the idle requeue is 300 s).
    mv = roost.wait("ModelVersion", namespace, "v1", "Stalled", reason="TrainingRunFailed", timeout=20, op=operator)
    assert lc.condition(mv, "Ready")["status"] == "False"


def _fitted_tree(csv: Path) -> Any:
    frame = pd.read_csv(csv)
    model = tree.DecisionTreeClassifier(max_depth=2, random_state=0)
    model.fit(frame.drop(columns="target"), frame["target"])
    return model


def test_an_external_artifact_registers_by_digest_and_is_evaluated_on_the_holdout(
        roost: Roost, operator: Operator, namespace: str, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    external = tmp_path / "external.skops"
    external.write_bytes(models.dump(_fitted_tree(csv)))
    roost.create(namespace, lc.model_version("external", 1, {"artifact": {
        "uri": external.as_uri(), "digest": lc.sha256_of(external), "datasetRef": {"name": "breast-cancer"}}},
        gates={"thresholds": [{"metric": "roc_auc", "min": 0.9}]}))
    roost.wait("ModelVersion", namespace, "external", "Reconciling", reason="WaitingForDataset", op=operator)
    roost.create(namespace, lc.dataset("breast-cancer", csv.as_uri()))

    mv = roost.wait("ModelVersion", namespace, "external", timeout=60, op=operator)

    status = mv["status"]
    assert status["artifact"] == {"uri": external.as_uri(), "digest": lc.sha256_of(external), "format": "skops",
                                  "verified": True}
    assert status["metrics"]["roc_auc"] >= 0.9
    assert status["signature"]["outputs"]["task"] == "classification"
    assert status["datasetVersion"]["digest"] == lc.sha256_of(csv)


def test_artifacts_whose_bytes_changed_or_that_name_untrusted_types_are_refused_before_loading(
        roost: Roost, operator: Operator, namespace: str, api_client: Any, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    roost.create(namespace, lc.dataset("breast-cancer", csv.as_uri()))

    tampered = tmp_path / "tampered.skops"
    tampered.write_bytes(models.dump(_fitted_tree(csv)))
    pinned = lc.sha256_of(tampered)
    tampered.write_bytes(tampered.read_bytes() + b"\0")  # changed after the digest was reviewed

    marker = tmp_path / "marker"
    hidden = _fitted_tree(csv)
    hidden.hook = _untrusted.Marker(str(marker))  # a well-formed model with a payload in an attribute
    crafted = tmp_path / "crafted.skops"
    crafted.write_bytes(sio.dumps(hidden))
    ref = {"name": "breast-cancer"}
    roost.create(namespace, lc.model_version("tampered", 1, {"artifact": {
        "uri": tampered.as_uri(), "digest": pinned, "datasetRef": ref}}))
    roost.create(namespace, lc.model_version("crafted", 2, {"artifact": {
        "uri": crafted.as_uri(), "digest": lc.sha256_of(crafted), "datasetRef": ref}}))

    mv = roost.wait("ModelVersion", namespace, "tampered", "Stalled", reason="DigestMismatch", timeout=90,
                    op=operator)
    verified = lc.condition(mv, "ArtifactVerified")
    assert (verified["status"], verified["reason"]) == ("False", "DigestMismatch")
    assert mv["status"]["artifact"]["verified"] is False
    lc.wait_event(api_client, namespace, "tampered", "DigestMismatch", "Warning")

    mv = roost.wait("ModelVersion", namespace, "crafted", "Stalled", reason="UntrustedType", timeout=90,
                    op=operator)
    verified = lc.condition(mv, "ArtifactVerified")
    assert (verified["status"], verified["reason"]) == ("False", "UntrustedType")
    assert "tests.integration._untrusted.Marker" in verified["message"]
    assert not marker.exists(), "loading the model file ran code"
    # The file really would run code if a loader trusted its types: the refusal is what kept it out.
    sio.loads(crafted.read_bytes(), trusted=sio.get_untrusted_types(data=crafted.read_bytes()))
    assert marker.exists()
