"""The train worker on the real breast-cancer data: quality, artifact, reproducibility, tuning, refusals."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import model_selection

from roost import errors
from roost.storage import models
from roost.storage import store as store_mod
from roost.workers import _data, train
from tests.unit import _fixtures as fx

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
RANDOM_FOREST = "sklearn.ensemble.RandomForestClassifier"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> store_mod.Store:
    return store_mod.Store(f"file://{tmp_path_factory.mktemp('store')}")


@pytest.fixture(scope="module")
def dataset(store: store_mod.Store) -> dict[str, Any]:
    return fx.make_dataset(store, fx.breast_cancer())


def forest(n_estimators: int, **params: Any) -> dict[str, Any]:
    return {"class": RANDOM_FOREST, "params": {"n_estimators": n_estimators, **params}}


def test_random_forest_meets_the_quality_bar_and_its_artifact_round_trips(
    store: store_mod.Store, dataset: dict[str, Any],
) -> None:
    metrics = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
    job = fx.train_job(dataset, estimator=forest(100), metrics=metrics)

    result = train.run(job, store, "unused")

    assert result["ok"] is True
    assert list(result["metrics"]) == metrics
    assert result["metrics"]["accuracy"] >= 0.9
    assert result["metrics"]["roc_auc"] >= 0.97
    assert result["objective"] == {"name": "accuracy", "value": result["metrics"]["accuracy"]}
    assert (result["trainRows"], result["testRows"]) == (455, 114)
    artifact = result["artifact"]
    stored = store.read_bytes(artifact["uri"])
    assert artifact["digest"] == "sha256:" + hashlib.sha256(stored).hexdigest()
    assert artifact["format"] == "skops"
    # The stored model predicts exactly what the same pipeline fitted in memory predicts.
    data = _data.load(store, dataset)
    spec = train.parse_spec(job["spec"])
    estimator = train.resolve_estimator(RANDOM_FOREST, "classification")
    in_memory = train.build_pipeline(
        data.ref.model_features, spec.preprocessing,
        estimator.set_params(**train.initial_params(estimator, spec.estimator.params, spec.seed)),
    ).fit(data.x(data.split.train), data.y(data.split.train))
    loaded = models.load_verified(store, artifact["uri"], artifact["digest"])
    holdout = data.x(data.split.test)
    np.testing.assert_array_equal(loaded.predict_proba(holdout), in_memory.predict_proba(holdout))
    assert _data.score(loaded, holdout, data.y(data.split.test), metrics) == result["metrics"]


def test_result_records_signature_and_lineage(store: store_mod.Store, dataset: dict[str, Any]) -> None:
    result = train.run(fx.train_job(dataset, estimator=forest(5)), store, "unused")

    signature = result["signature"]
    assert [i["name"] for i in signature["inputs"]] == [f["name"] for f in dataset["schema"]]
    assert {(i["type"], i["datatype"]) for i in signature["inputs"]} == {("numeric", "FP64")}
    assert signature["outputs"] == {"task": "classification", "classes": [0, 1], "datatype": "INT64"}
    assert signature["target"] == "target"
    lineage = result["lineage"]
    assert lineage["dataset"] == {"name": "breast-cancer", "digest": dataset["digest"]}
    assert lineage["split"] == {
        "seed": 42, "testFraction": 0.2, "stratified": True, "digest": dataset["splitDigest"],
    }
    assert lineage["estimator"]["class"] == RANDOM_FOREST
    assert lineage["estimator"]["params"]["n_estimators"] == 5
    assert lineage["estimator"]["params"]["random_state"] == 0  # from spec.seed
    assert lineage["preprocessing"]["numeric"] == "standard"
    assert set(lineage["versions"]) == {"roost", "scikit-learn", "numpy", "pandas", "python", "skops"}
    assert RFC3339.match(lineage["startTime"]) and RFC3339.match(lineage["endTime"])
    assert (result["trials"], result["trialsURI"], result["bestParams"]) == ([], None, None)


def test_same_data_spec_and_seed_give_the_same_metrics_and_artifact(
    store: store_mod.Store, dataset: dict[str, Any],
) -> None:
    job = fx.train_job(dataset, estimator=forest(10), metrics=["accuracy", "roc_auc", "log_loss"], seed=7)

    first, second = train.run(job, store, "unused"), train.run(job, store, "unused")

    assert first["metrics"] == second["metrics"]
    assert first["artifact"] == second["artifact"]


def test_random_search_records_every_trial_and_refits_with_the_best(
    store: store_mod.Store, dataset: dict[str, Any],
) -> None:
    tuning = {
        "strategy": "random", "trials": 6, "parallelism": 2, "folds": 3,
        "objective": {"metric": "roc_auc", "goal": "maximize"},
        "space": [
            {"name": "max_depth", "int": {"min": 2, "max": 8}},
            {"name": "n_estimators", "choice": [5, 10, 20]},
            {"name": "max_features", "float": {"min": 0.1, "max": 0.9}},
        ],
    }

    result = train.run(fx.train_job(dataset, estimator=forest(5), tuning=tuning), store, "unused")

    document = store.read_json(result["trialsURI"])
    trials = document["trials"]
    assert sorted(t["index"] for t in trials) == list(range(6))
    assert all(t["value"] is not None for t in trials)
    best = max(trials, key=lambda t: t["value"])
    assert result["bestParams"] == best["params"]
    assert result["objective"] == {"name": "roc_auc", "value": best["value"]}
    assert [t["value"] for t in result["trials"]] == sorted((t["value"] for t in trials), reverse=True)
    final = result["lineage"]["estimator"]["params"]
    assert {k: final[k] for k in best["params"]} == best["params"]
    assert all(isinstance(t["params"]["max_depth"], int) for t in trials)
    assert all(0.1 <= t["params"]["max_features"] <= 0.9 for t in trials)
    assert result["lineage"]["tuning"]["trials"] == 6


def test_grid_search_tries_the_grid_in_order_up_to_the_trial_budget(
    store: store_mod.Store, dataset: dict[str, Any],
) -> None:
    space = [{"name": "max_depth", "int": {"min": 2, "max": 3}}, {"name": "n_estimators", "choice": [3, 6]}]
    tuning = {
        "strategy": "grid", "trials": 3, "parallelism": 1,
        "objective": {"metric": "accuracy"}, "space": space,
    }

    result = train.run(fx.train_job(dataset, estimator=forest(5), tuning=tuning), store, "unused")

    grid = model_selection.ParameterGrid({"max_depth": [2, 3], "n_estimators": [3, 6]})
    trials = sorted(store.read_json(result["trialsURI"])["trials"], key=lambda t: t["index"])
    assert [t["params"] for t in trials] == [grid[i] for i in range(3)]
    assert result["lineage"]["tuning"]["spaceSize"] == 4
    assert result["bestParams"] == max(trials, key=lambda t: (t["value"], -t["index"]))["params"]


def test_a_lower_is_better_objective_is_minimised(store: store_mod.Store, dataset: dict[str, Any]) -> None:
    tuning = {
        "strategy": "random", "trials": 4, "objective": {"metric": "log_loss"},
        "space": [{"name": "C", "float": {"min": 0.001, "max": 100.0, "log": True}}],
    }

    result = train.run(fx.train_job(dataset, tuning=tuning), store, "unused")

    values = [t["value"] for t in store.read_json(result["trialsURI"])["trials"]]
    assert result["objective"] == {"name": "log_loss", "value": min(values)}
    assert result["lineage"]["tuning"]["objective"] == {"metric": "log_loss", "goal": "minimize"}


def test_mixed_feature_types_are_encoded_and_datetime_is_left_out(store: store_mod.Store) -> None:
    frame = fx.with_mixed_types(fx.breast_cancer())
    mixed = fx.make_dataset(store, frame, name="mixed")

    for categorical in ("onehot", "ordinal"):
        job = fx.train_job(mixed, preprocessing={"numeric": "minmax", "categorical": categorical})
        result = train.run(job, store, "unused")

        assert result["metrics"]["roc_auc"] >= 0.97
        inputs = {i["name"]: (i["type"], i["datatype"]) for i in result["signature"]["inputs"]}
        assert inputs["radius_band"] == ("categorical", "BYTES")
        assert inputs["smooth"] == ("boolean", "BOOL")
        assert "taken" not in inputs
        assert result["lineage"]["preprocessing"]["droppedFeatures"] == ["taken"]
        model = models.load_verified(store, result["artifact"]["uri"], result["artifact"]["digest"])
        rows = frame[list(inputs)].head(3).copy()
        rows["radius_band"] = ["never-seen", None, "mid"]
        rows["smooth"] = [True, False, True]
        assert model.predict_proba(rows).shape == (3, 2)


def test_regression_reports_rmse_mae_and_r2(store: store_mod.Store) -> None:
    frame = fx.breast_cancer().drop(columns=["target", "mean_perimeter", "mean_radius"])
    regression = fx.make_dataset(store, frame, name="area", target="mean_area", stratified=False)
    job = fx.train_job(
        regression, task="regression", metrics=["r2", "rmse", "mae"],
        estimator={"class": "sklearn.linear_model.Ridge", "params": {"alpha": 1.0}},
    )

    result = train.run(job, store, "unused")

    assert result["metrics"]["r2"] > 0.9
    assert 0 < result["metrics"]["mae"] <= result["metrics"]["rmse"]
    assert result["signature"]["outputs"] == {"task": "regression", "datatype": "FP64"}


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ({"estimator": forest(5, n_trees=3)}, "n_trees"),
        ({"estimator": {"class": "sklearn.ensemble.IsolationForest"}}, "not allowed"),
        ({"estimator": {"class": "os.system"}}, "not allowed"),
        ({"estimator": {"class": "sklearn.ensemble.RandomForestRegressor"}}, "not a classifier"),
        ({"metrics": ["accuracy", "rmse"]}, "rmse"),
        ({"estimator": forest(-1)}, "n_estimators"),
        ({"tuning": {"objective": {"metric": "r2"}, "space": [{"name": "C", "choice": [1]}]}}, "r2"),
        ({"tuning": {"objective": {"metric": "log_loss", "goal": "maximize"},
                     "space": [{"name": "C", "choice": [1]}]}}, "worst trial"),
        ({"tuning": {"objective": {"metric": "f1"}, "space": [{"name": "depth", "choice": [1]}]}}, "depth"),
        ({"tuning": {"strategy": "grid", "objective": {"metric": "f1"},
                     "space": [{"name": "C", "float": {"min": 0.1, "max": 1.0}}]}}, "float range"),
        ({"tuning": {"objective": {"metric": "f1"}, "space": [{"name": "C"}]}}, "exactly one"),
        ({"tuning": {"objective": {"metric": "f1"},
                     "space": [{"name": "C", "float": {"min": 0.0, "max": 1.0, "log": True}}]}}, "min > 0"),
        ({"estimator": {"class": RANDOM_FOREST, "params": {}}, "bogusField": 1}, "bogusField"),
    ],
    ids=[
        "unknown-param", "not-allowlisted", "arbitrary-import", "regressor-for-classification",
        "metric-not-fitting-task", "invalid-param-value", "objective-not-fitting-task", "goal-against-metric",
        "unknown-search-param", "grid-float-range", "no-distribution", "log-range-from-zero",
        "unknown-spec-field",
    ],
)
def test_bad_specs_are_refused_as_invalid_spec(
    store: store_mod.Store, dataset: dict[str, Any], overrides: dict[str, Any], mentions: str,
) -> None:
    with pytest.raises(errors.PermanentError) as refused:
        train.run(fx.train_job(dataset, **overrides), store, "unused")

    assert refused.value.reason == "InvalidSpec"
    assert mentions in refused.value.message


def test_a_changed_snapshot_is_refused_with_digest_mismatch(tmp_path: Path) -> None:
    store = store_mod.Store(f"file://{tmp_path}")
    dataset = fx.make_dataset(store, fx.breast_cancer().head(200))
    store.write_bytes(dataset["snapshotURI"], store.read_bytes(dataset["snapshotURI"]) + b"\0")

    with pytest.raises(errors.PermanentError) as refused:
        train.run(fx.train_job(dataset), store, "unused")

    assert refused.value.reason == "DigestMismatch"


def test_multiclass_string_labels_get_weighted_metrics_and_a_bytes_signature(store: store_mod.Store) -> None:
    frame = fx.breast_cancer().drop(columns=["target", "mean_perimeter", "mean_area"])
    radius = frame["mean_radius"]
    frame["size"] = np.select([radius < 12, radius < 16], ["small", "mid"], "large")
    frame = frame.drop(columns=["mean_radius", "worst_radius", "worst_perimeter", "worst_area"])
    sizes = fx.make_dataset(store, frame, name="sizes", target="size")
    metrics = ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]

    result = train.run(fx.train_job(sizes, metrics=metrics), store, "unused")

    assert set(result["metrics"]) == set(metrics)
    assert result["metrics"]["roc_auc"] > 0.9
    assert result["signature"]["outputs"] == {
        "task": "classification", "classes": ["large", "mid", "small"], "datatype": "BYTES",
    }
