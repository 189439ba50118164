"""The evaluate worker re-verifies a registered artifact on the holdout and judges its gates."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio
from sklearn import pipeline, preprocessing

from roost import errors
from roost.storage import store as store_mod
from roost.workers import evaluate, runner, train
from tests.unit import _fixtures as fx


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> store_mod.Store:
    return store_mod.Store(f"file://{tmp_path_factory.mktemp('store')}")


@pytest.fixture(scope="module")
def dataset(store: store_mod.Store) -> dict[str, Any]:
    return fx.make_dataset(store, fx.breast_cancer())


@pytest.fixture(scope="module")
def trained(store: store_mod.Store, dataset: dict[str, Any]) -> dict[str, Any]:
    """A logistic regression run; its artifact is what the ModelVersion registers."""
    return train.run(fx.train_job(dataset, metrics=["accuracy", "roc_auc", "log_loss"]), store, "unused")


def evaluate_job(
    trained: dict[str, Any], dataset: dict[str, Any], gates: dict[str, Any] | None = None, **extra: Any,
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "modelVersion": {"namespace": "default", "name": "breast-cancer-v1"},
        "artifact": {"uri": trained["artifact"]["uri"], "digest": trained["artifact"]["digest"]},
        "dataset": dataset,
        "task": "classification",
        "metrics": ["accuracy", "roc_auc"],
        "gates": gates or {},
        "baselineMetrics": None,
        "maxRegression": None,
    }
    job.update(extra)
    return job


def test_a_good_model_passes_its_gates_with_the_runs_own_numbers(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    gates = {"thresholds": [{"metric": "roc_auc", "min": 0.97}, {"metric": "log_loss", "max": 0.5}]}

    result = evaluate.run(evaluate_job(trained, dataset, gates), store, "unused")

    assert result["ok"] is True and result["verified"] is True
    assert "reason" not in result
    assert result["metrics"] == trained["metrics"]  # same holdout, same definitions
    assert [(g["name"], g["passed"]) for g in result["gates"]] == [
        ("threshold:roc_auc", True), ("threshold:log_loss", True),
    ]
    assert result["gates"][0]["message"] == f"roc_auc {trained['metrics']['roc_auc']:.4g} >= 0.97"
    assert result["signature"] == trained["signature"]
    assert result["testRows"] == 114


def test_an_artifact_registered_without_a_run_is_judged_by_its_own_task(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    # A ModelVersion with source.artifact has no run signature to name the task or the metrics.
    result = evaluate.run(evaluate_job(trained, dataset, task=None, metrics=[]), store, "unused")

    assert result["ok"] is True
    assert result["metrics"] == {"accuracy": trained["metrics"]["accuracy"]}
    assert result["signature"]["outputs"]["task"] == "classification"


def test_an_unreachable_threshold_rejects_the_model_naming_the_metric(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    gates = {"thresholds": [{"metric": "roc_auc", "min": 0.97}, {"metric": "accuracy", "min": 0.9999}]}

    result = evaluate.run(evaluate_job(trained, dataset, gates), store, "unused")

    assert result["ok"] is False
    assert result["reason"] == "Rejected"
    assert "threshold:accuracy" in result["message"] and "< 0.9999" in result["message"]
    assert "roc_auc" not in result["message"]
    assert [g["passed"] for g in result["gates"]] == [True, False]
    assert set(result["metrics"]) == {"accuracy", "roc_auc"}


@pytest.mark.parametrize(
    ("metric", "baseline_delta", "by", "passes"),
    [
        ("roc_auc", +0.05, 0.01, False),   # 0.05 worse than the baseline, 0.01 allowed
        ("roc_auc", +0.005, 0.01, True),   # within the allowance
        ("roc_auc", 0.0, 0.0, True),       # equal to the baseline, no allowance
        ("log_loss", -0.05, 0.01, False),  # lower is better: 0.05 higher than the baseline
        ("log_loss", -0.005, 0.01, True),
    ],
    ids=["auc-regressed", "auc-within", "auc-equal", "logloss-regressed", "logloss-within"],
)
def test_baseline_regression_is_judged_in_the_metrics_direction(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
    metric: str, baseline_delta: float, by: float, passes: bool,
) -> None:
    value = trained["metrics"][metric]
    gates = {"baseline": {"modelVersionRef": {"name": "breast-cancer-v0"},
                          "maxRegression": [{"metric": metric, "by": by}]}}
    job = evaluate_job(trained, dataset, gates, baselineMetrics={metric: value + baseline_delta})

    result = evaluate.run(job, store, "unused")

    assert result["ok"] is passes
    assert result["gates"][0]["name"] == f"baseline:{metric}"
    assert result["gates"][0]["passed"] is passes
    if not passes:
        assert result["reason"] == "Rejected" and f"baseline:{metric}" in result["message"]


def test_an_explicit_max_regression_overrides_the_gates_and_a_missing_baseline_value_fails(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    job = evaluate_job(
        trained, dataset, baselineMetrics={"accuracy": 0.5}, maxRegression=[{"metric": "f1", "by": 0.1}],
    )

    result = evaluate.run(job, store, "unused")

    assert result["ok"] is False
    assert result["gates"] == [
        {"name": "baseline:f1", "passed": False, "message": "the baseline has no f1 value"},
    ]
    assert "f1" in result["metrics"]


def test_tampered_artifact_bytes_are_refused_with_digest_mismatch(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    tampered = bytearray(store.read_bytes(trained["artifact"]["uri"]))
    tampered[len(tampered) // 2] ^= 0x01
    elsewhere = store.uri("tampered", "model.skops")
    store.write_bytes(elsewhere, bytes(tampered))
    job = evaluate_job(trained, dataset)
    job["artifact"]["uri"] = elsewhere

    with pytest.raises(errors.PermanentError) as refused:
        evaluate.run(job, store, "unused")

    assert refused.value.reason == "DigestMismatch"


def test_an_artifact_with_an_untrusted_type_is_refused(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    hostile = store.put_bytes(sio.dumps(pipeline.make_pipeline(preprocessing.FunctionTransformer(os.system))))
    job = evaluate_job(trained, dataset, artifact={"uri": hostile.uri, "digest": hostile.digest})

    with pytest.raises(errors.PermanentError) as refused:
        evaluate.run(job, store, "unused")

    assert refused.value.reason == "UntrustedType"
    assert "system" in refused.value.message


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"task": "regression", "metrics": ["rmse"]}, "InvalidSpec"),
        ({"metrics": ["rmse"]}, "InvalidSpec"),
        ({"gates": {"thresholds": [{"metric": "accuracy", "minimum": 1}]}}, "InvalidSpec"),
    ],
    ids=["classifier-judged-as-regressor", "metric-not-fitting-task", "malformed-gates"],
)
def test_jobs_that_do_not_fit_the_model_are_refused(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
    overrides: dict[str, Any], reason: str,
) -> None:
    with pytest.raises(errors.PermanentError) as refused:
        evaluate.run(evaluate_job(trained, dataset, **overrides), store, "unused")

    assert refused.value.reason == reason


def test_through_the_runner_a_rejection_keeps_metrics_and_a_mismatch_is_a_bare_failure(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any], tmp_path: Path,
) -> None:
    rejected = evaluate_job(trained, dataset, {"thresholds": [{"metric": "accuracy", "min": 0.9999}]})
    mismatched = evaluate_job(trained, dataset)
    mismatched["artifact"]["digest"] = "sha256:" + "0" * 64
    outcomes = {}
    for name, job in (("rejected", rejected), ("mismatched", mismatched)):
        input_uri, output = store.uri("jobs", name, "input.json"), store.uri("jobs", name)
        store.write_json(input_uri, job)
        code = runner.main("evaluate", input_uri, output, store.root)
        assert code == 0
        outcomes[name] = store.read_json(runner.result_uri(store.uri("jobs", name)))

    assert outcomes["rejected"]["ok"] is False and outcomes["rejected"]["reason"] == "Rejected"
    assert outcomes["rejected"]["metrics"]["accuracy"] == trained["metrics"]["accuracy"]
    assert outcomes["mismatched"]["ok"] is False and outcomes["mismatched"]["reason"] == "DigestMismatch"
    assert "metrics" not in outcomes["mismatched"]


def test_a_proposal_is_judged_against_the_served_model_on_the_same_rows(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    # The drift proposal's evaluation: the served model (here a 3-tree forest) scored on the same
    # holdout rows is the baseline of the maxRegression gates; nothing is converted.
    served = train.run(fx.train_job(dataset, estimator={
        "class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 3, "random_state": 0}}),
        store, "unused")
    compare = {"uri": served["artifact"]["uri"], "digest": served["artifact"]["digest"]}

    result = evaluate.run(evaluate_job(trained, dataset, {"baseline": {
        "modelVersionRef": {"name": "served"}, "maxRegression": [{"metric": "roc_auc", "by": 0.0}]}},
        compareWith=compare, convert=False), store, "unused")

    assert result["comparedMetrics"] == served["metrics"]  # same rows, same definitions
    assert result["ok"] is (trained["metrics"]["roc_auc"] >= served["metrics"]["roc_auc"])
    assert result["gates"][0]["message"].startswith(f"roc_auc {trained['metrics']['roc_auc']:.4g}")
    assert "runtime" not in result

    worse = evaluate.run(evaluate_job(served, dataset, {"baseline": {
        "modelVersionRef": {"name": "served"}, "maxRegression": [{"metric": "roc_auc", "by": 0.0}]}},
        compareWith={"uri": trained["artifact"]["uri"], "digest": trained["artifact"]["digest"]}, convert=False),
        store, "unused")
    assert worse["ok"] is False and worse["reason"] == "Rejected"
    assert "baseline:roc_auc" in worse["message"]
