"""The lean path: ONNX Runtime serves a model only where it answers exactly as scikit-learn did.

Every allowlisted estimator is trained as Roost trains it (``train.build_pipeline``), classifiers on
breast-cancer and regressors on scikit-learn's diabetes data, then :func:`runtime.validate` converts it
and checks parity on the holdout. Where it converts, the ONNX predictor the server would load gives the
same labels and probabilities within 1e-5; where it does not, the result names ``sklearn`` with a reason.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn import model_selection
from sklearn.datasets import load_diabetes

from roost import errors
from roost.api import trainingrun
from roost.serving import protocol, runtime, server
from roost.storage import models
from roost.storage import store as store_mod
from roost.workers import _data, evaluate, train
from tests.unit import _fixtures as fx
from tests.unit import test_server_http as servers

#: Must convert: the benchmark's models and the common linear ones.
MUST_CONVERT = {
    "sklearn.linear_model.LogisticRegression", "sklearn.ensemble.RandomForestClassifier",
    "sklearn.linear_model.LinearRegression", "sklearn.linear_model.Ridge",
}
SMALL = {"n_estimators": 20}  # ensembles: enough trees to be forests, few enough to be quick


def _task_data(task: str) -> tuple[pd.DataFrame, pd.Series]:
    if task == "classification":
        frame = fx.breast_cancer()
        return frame.drop(columns=[fx.TARGET]), frame[fx.TARGET]
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return X, y


def _cases() -> list[tuple[str, str]]:
    cases = []
    for dotted in trainingrun.ESTIMATORS:
        for task in ("classification", "regression"):
            try:
                train.resolve_estimator(dotted, task)
            except errors.PermanentError:
                continue
            cases.append((dotted, task))
    return cases


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> store_mod.Store:
    return store_mod.Store(f"file://{tmp_path_factory.mktemp('store')}")


def _fit(dotted: str, task: str) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    X, y = _task_data(task)
    x_train, x_test, y_train, _ = model_selection.train_test_split(X, y, test_size=0.2, random_state=42)
    estimator = train.resolve_estimator(dotted, task)
    params = {k: v for k, v in SMALL.items() if k in estimator.get_params()}
    if "random_state" in estimator.get_params():
        params["random_state"] = 0
    estimator.set_params(**params)
    features = [_data.Feature(c, "numeric") for c in X.columns]
    model = train.build_pipeline(features, trainingrun.Preprocessing(numeric="standard"), estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the default parameters
        model.fit(x_train, y_train)
    return model, x_train, x_test


@pytest.mark.parametrize(("dotted", "task"), _cases(), ids=lambda v: v.rsplit(".", 1)[-1])
def test_onnx_answers_as_sklearn_on_the_holdout_or_sklearn_serves_with_a_reason(
    store: store_mod.Store, dotted: str, task: str,
) -> None:
    model, _, x_test = _fit(dotted, task)
    signature = models.signature_of(model, x_test, "target")

    result = runtime.validate(model, x_test, signature, store)

    if result["name"] == runtime.SKLEARN:
        assert dotted not in MUST_CONVERT, result["reason"]
        assert isinstance(result["reason"], str) and result["reason"]
        return
    assert result["parity"]["rows"] == len(x_test) and result["parity"]["labelMismatches"] == 0
    config = runtime.RuntimeConfig.from_dict(result)
    assert config.parity_passed
    sig = protocol.Signature.from_dict(signature)
    sklearn = runtime.SklearnPredictor(model, sig)
    onnx = runtime.load_onnx(store, config, sklearn, sig)
    block = x_test.to_numpy(dtype=np.float64)
    labels, proba = onnx.predict(block, labels=True, proba=sig.is_classifier)
    if sig.is_classifier:
        assert labels.tolist() == model.predict(x_test).tolist()
        assert proba is not None
        np.testing.assert_allclose(proba, model.predict_proba(x_test), rtol=0, atol=runtime.TOLERANCE)
    else:
        np.testing.assert_allclose(labels, model.predict(x_test), rtol=0, atol=runtime.TOLERANCE)


def test_near_ties_are_answered_by_sklearn() -> None:
    """A row whose ONNX probabilities are within the guard of a tie gets scikit-learn's answer."""

    class Output:
        def __init__(self, name: str) -> None:
            self.name = name

    class TiedSession:
        def get_outputs(self) -> list[Output]:
            return [Output("label"), Output("probabilities")]

        def get_inputs(self) -> list[Output]:
            return [Output("X")]

        def run(self, names: list[str], feed: dict[str, Any]) -> list[np.ndarray]:
            n = len(feed["X"])
            proba = np.tile([0.9, 0.1], (n, 1))
            proba[0] = [0.5 + 1e-6, 0.5 - 1e-6]  # ONNX says class 0 by a hair
            return [np.zeros(n, dtype=np.int64), proba]

    class Reference:
        classes_ = np.array([0, 1])

        def predict(self, X: pd.DataFrame) -> np.ndarray:
            return np.ones(len(X), dtype=np.int64)

        def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
            return np.tile([0.4999, 0.5001], (len(X), 1))

    sig = protocol.Signature.from_dict({
        "inputs": [{"name": "a"}, {"name": "b"}], "outputs": {"task": "classification", "classes": [0, 1]},
    })
    predictor = runtime.OnnxPredictor(TiedSession(), runtime.SklearnPredictor(Reference(), sig), sig)
    labels, proba = predictor.predict(np.zeros((3, 2)), labels=True, proba=True)
    assert labels.tolist() == [1, 0, 0]
    assert proba is not None and proba[0].tolist() == [0.4999, 0.5001] and proba[1].tolist() == [0.9, 0.1]


def test_non_numeric_inputs_are_served_by_sklearn_with_the_reason(store: store_mod.Store) -> None:
    frame = fx.with_mixed_types(fx.breast_cancer())
    features = [_data.Feature(f["name"], f["type"]) for f in fx.schema_of(frame) if f["type"] != "datetime"]
    model = train.build_pipeline(features, trainingrun.Preprocessing(), train.resolve_estimator(
        "sklearn.linear_model.LogisticRegression", "classification"))
    x = _data.feature_frame(frame, features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, frame[fx.TARGET])
    result = runtime.validate(model, x, models.signature_of(model, x, "target"), store)
    assert result["name"] == "sklearn"
    assert "numeric inputs of one datatype only" in result["reason"] and "categorical (BYTES)" in result["reason"]


# ----- through the evaluate worker --------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(store: store_mod.Store) -> dict[str, Any]:
    return fx.make_dataset(store, fx.breast_cancer())


@pytest.fixture(scope="module")
def trained(store: store_mod.Store, dataset: dict[str, Any]) -> dict[str, Any]:
    return train.run(fx.train_job(dataset, metrics=["accuracy"]), store, "unused")


def _evaluate_job(trained: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelVersion": {"namespace": "default", "name": "breast-cancer-v1"},
        "artifact": trained["artifact"], "dataset": dataset, "task": "classification",
        "metrics": ["accuracy"], "gates": {"thresholds": [{"metric": "accuracy", "min": 0.5}]},
    }


def test_evaluate_records_the_onnx_runtime_stored_content_addressed(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any],
) -> None:
    result = evaluate.run(_evaluate_job(trained, dataset), store, "unused")

    assert result["ok"] is True
    chosen = result["runtime"]
    assert chosen["name"] == "onnx", chosen
    assert chosen["parity"]["rows"] == result["testRows"] and chosen["parity"]["labelMismatches"] == 0
    assert chosen["parity"]["maxProbabilityDiff"] <= 1e-5
    graph = store.read_bytes(chosen["artifact"]["uri"], chosen["artifact"]["digest"])  # digest checked
    assert chosen["artifact"]["digest"] == store_mod.digest_bytes(graph)


def test_a_conversion_failure_never_fails_the_evaluation(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(model: Any, signature: Any) -> bytes:
        raise RuntimeError("converter bug\nwith a traceback")

    monkeypatch.setattr(runtime, "convert", broken)
    result = evaluate.run(_evaluate_job(trained, dataset), store, "unused")

    assert result["ok"] is True and "reason" not in result
    assert result["runtime"] == {
        "name": "sklearn", "reason": "the ONNX conversion failed: RuntimeError: converter bug",
    }


def test_failed_parity_is_a_sklearn_runtime(
    store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = runtime.check_parity

    def off_by_a_bit(*args: Any) -> dict[str, Any]:
        measured = real(*args)
        measured["figures"]["maxProbabilityDiff"] = 2e-5
        return {**measured, "passed": False, "reason": "ONNX parity failed: max probability difference 2e-05"}

    monkeypatch.setattr(runtime, "check_parity", off_by_a_bit)
    result = evaluate.run(_evaluate_job(trained, dataset), store, "unused")
    assert result["ok"] is True
    assert result["runtime"]["name"] == "sklearn" and "parity failed" in result["runtime"]["reason"]


# ----- the server chooses its runtime by the config ------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_config(store: store_mod.Store, dataset: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    result = evaluate.run(_evaluate_job(trained, dataset), store, "unused")
    return {
        "modelName": servers.MODEL, "modelVersion": f"{servers.MODEL}-v1", "namespace": "default",
        "artifact": {"uri": trained["artifact"]["uri"], "digest": trained["artifact"]["digest"]},
        "signature": result["signature"], "store": store.root, "runtime": result["runtime"],
    }


def _load(store: store_mod.Store, config: dict[str, Any]) -> server.Model:
    return server.load_model(store, server.ServerConfig.from_dict(config))


def test_the_server_uses_onnx_only_when_parity_passed(store: store_mod.Store, onnx_config: dict[str, Any]) -> None:
    assert _load(store, onnx_config).runtime.name == "onnx"
    failed = {**onnx_config["runtime"], "parity": {**onnx_config["runtime"]["parity"], "labelMismatches": 1}}
    assert _load(store, {**onnx_config, "runtime": failed}).runtime.name == "sklearn"
    refused = {"name": "sklearn", "reason": "not converted"}
    assert _load(store, {**onnx_config, "runtime": refused}).runtime.name == "sklearn"
    assert _load(store, {k: v for k, v in onnx_config.items() if k != "runtime"}).runtime.name == "sklearn"


def test_a_tampered_onnx_artifact_is_refused(store: store_mod.Store, onnx_config: dict[str, Any]) -> None:
    artifact = onnx_config["runtime"]["artifact"]
    other = store.put_bytes(b"not the graph")
    wrong = {**onnx_config["runtime"], "artifact": {"uri": other.uri, "digest": artifact["digest"]}}
    with pytest.raises(errors.PermanentError) as refused:
        _load(store, {**onnx_config, "runtime": wrong})
    assert refused.value.reason == "DigestMismatch"


def test_onnx_server_answers_as_the_estimator(
    store: store_mod.Store, onnx_config: dict[str, Any], trained: dict[str, Any], tmp_path: Path,
) -> None:
    model = models.load_verified(store, trained["artifact"]["uri"], trained["artifact"]["digest"])
    rows = fx.breast_cancer().drop(columns=[fx.TARGET]).iloc[::7]
    cfg = server.ServerConfig.from_dict(onnx_config)
    app = server.create_app(cfg, server.load_model(store, cfg), store=store)
    with servers.ThreadServer(app) as running, httpx.Client(base_url=running.url) as client:
        v2 = client.post(f"/v2/models/{servers.MODEL}/infer", json=servers.v2_matrix(rows)).json()
        v1 = client.post(f"/v1/models/{servers.MODEL}:predict", json=servers.v1_rows(rows)).json()
    assert servers.output(v2, "predict")["data"] == model.predict(rows).tolist()
    proba = np.array(servers.output(v2, "predict_proba")["data"]).reshape(len(rows), 2)
    np.testing.assert_allclose(proba, model.predict_proba(rows), rtol=0, atol=runtime.TOLERANCE)
    assert v1 == {"predictions": model.predict(rows).tolist()}


def _outcome(predictor: Any, row: np.ndarray, classifier: bool) -> tuple[str, Any]:
    try:
        labels, proba = predictor.predict(row, labels=True, proba=classifier)
    except protocol.ProtocolError as e:
        return "refused", (e.status, e.reason)
    return "answered", (labels.tolist(), None if proba is None else np.round(proba, 5).tolist())


@pytest.mark.parametrize(("dotted", "task"), [
    ("sklearn.linear_model.LogisticRegression", "classification"),
    ("sklearn.ensemble.RandomForestClassifier", "classification"),
    ("sklearn.linear_model.Ridge", "regression"),
], ids=lambda v: v.rsplit(".", 1)[-1])
def test_values_the_model_cannot_take_are_refused_alike_by_both_runtimes(
    store: store_mod.Store, dotted: str, task: str,
) -> None:
    """Finite values beyond what the model handles (a scaler overflowing to infinity, float32's range for
    trees) are refused with a 400 by scikit-learn; ONNX Runtime answers those rows as scikit-learn does."""
    model, _, x_test = _fit(dotted, task)
    signature = models.signature_of(model, x_test, "target")
    sig = protocol.Signature.from_dict(signature)
    sklearn = runtime.SklearnPredictor(model, sig)
    onnx = runtime.load_onnx(store, runtime.RuntimeConfig.from_dict(runtime.validate(model, x_test, signature, store)),
                             sklearn, sig)
    base = x_test.to_numpy(dtype=np.float64)[:1]
    outcomes = []
    for value in (1.7e308, -1.7e308, 1e39, 3.5e38):
        for columns in (slice(0, 1), slice(None)):  # one value, or every value of the row
            row = base.copy()
            row[0, columns] = value
            expected = _outcome(sklearn, row, sig.is_classifier)
            assert _outcome(onnx, row, sig.is_classifier) == expected, (value, columns)
            outcomes.append(expected)
    assert ("refused", (400, "UnpredictableInput")) in outcomes  # 1.7e308 everywhere overflows the scaler
    assert _outcome(sklearn, base, sig.is_classifier)[0] == "answered"
