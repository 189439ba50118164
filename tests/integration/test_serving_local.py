"""The roost.dev Deployment on the local backend: a stable URL, restarts, zero-failure switches, refusals."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import REPO, Operator, Roost

pytestmark = pytest.mark.integration

CSV = REPO / "examples" / "data" / "breast_cancer.csv"
FEATURES = [c for c in pd.read_csv(CSV, nrows=1).columns if c != "target"]
ROWS = pd.read_csv(CSV).head(20)


def _manifests() -> list[dict[str, Any]]:
    def run(name: str, estimator: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "roost.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name},
                "spec": {"datasetRef": {"name": "bc"}, "model": "bc",
                         "estimator": {"class": estimator, "params": params},
                         "preprocessing": {"numeric": "standard"}, "metrics": ["accuracy", "roc_auc"]}}

    def version(name: str, number: int, run_name: str, min_accuracy: float) -> dict[str, Any]:
        return {"apiVersion": "roost.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
                "spec": {"model": "bc", "version": number, "source": {"trainingRunRef": {"name": run_name}},
                         "gates": {"thresholds": [{"metric": "accuracy", "min": min_accuracy}]}}}

    return [
        {"apiVersion": "roost.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "bc"},
         "spec": {"source": {"uri": f"file://{CSV}"}, "target": "target"}},
        run("rf", "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 20, "max_depth": 6}),
        run("lr", "sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
        version("bc-v1", 1, "rf", 0.9),
        version("bc-v2", 2, "lr", 0.9),
        version("bc-v3", 3, "lr", 0.9999),  # a gate no model reaches: Rejected
        {"apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "bc"},
         "spec": {"modelVersion": "bc-v1"}},
    ]


@pytest.fixture(scope="module")
def served(operator: Operator, roost: Roost, api_client: Any) -> dict[str, Any]:
    from kubernetes import client

    ns = "serving-local"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    for manifest in _manifests():
        roost.create(ns, manifest)
    for name in ("bc-v1", "bc-v2"):
        roost.wait("ModelVersion", ns, name, timeout=180, op=operator)
    roost.wait("ModelVersion", ns, "bc-v3", type_="Stalled", reason="Rejected", timeout=120, op=operator)
    deployment = roost.wait("Deployment", ns, "bc", timeout=120, op=operator)
    return {"namespace": ns, "url": deployment["status"]["url"], "operator": operator}


def _v2(url: str, rows: pd.DataFrame = ROWS) -> httpx.Response:
    body = {"inputs": [{"name": f, "shape": [len(rows)], "datatype": "FP64", "data": rows[f].tolist()}
                       for f in FEATURES]}
    return httpx.post(f"{url}/v2/models/bc/infer", json=body, timeout=10.0)


def test_stable_url_answers_both_protocols(served: dict[str, Any]) -> None:
    url = served["url"]
    v2 = _v2(url)
    assert v2.status_code == 200, v2.text
    assert v2.headers["x-roost-model-version"] == "bc-v1"
    predictions = next(o for o in v2.json()["outputs"] if o["name"] == "predict")["data"]
    v1 = httpx.post(f"{url}/v1/models/bc:predict", json={"instances": ROWS[FEATURES].to_numpy().tolist()},
                    timeout=10.0)
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == predictions
    assert sum(p == t for p, t in zip(predictions, ROWS["target"], strict=True)) >= 18


def _server_pid(operator: Operator, namespace: str, version: str) -> int:
    servers = operator.workdir / "state" / "serving" / namespace / "bc" / "servers"
    folder = next(p for p in servers.iterdir() if p.name.startswith(version + "-"))
    return int((folder / "pid").read_text())


def test_killed_server_is_restarted(served: dict[str, Any], roost: Roost) -> None:
    ns, op = served["namespace"], served["operator"]
    pid = _server_pid(op, ns, "bc-v1")
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _server_pid(op, ns, "bc-v1") != pid and _v2(served["url"]).status_code == 200:
                break
        except (httpx.HTTPError, StopIteration, OSError, ValueError):
            pass
        time.sleep(0.3)
    else:
        pytest.fail(f"the server was not restarted; operator log:\n{op.tail()}")
    assert roost.wait("Deployment", ns, "bc", timeout=30)["status"]["stable"]["modelVersion"] == "bc-v1"


def _load(url: str, stop: threading.Event, seen: Counter[str], failures: list[str]) -> None:
    with httpx.Client(timeout=10.0) as client:
        while not stop.is_set():
            body = {"inputs": [{"name": "x", "shape": [1, len(FEATURES)], "datatype": "FP64",
                                "data": ROWS[FEATURES].iloc[0].tolist()}]}
            try:
                r = client.post(f"{url}/v2/models/bc/infer", json=body)
                if r.status_code == 200:
                    seen[r.headers["x-roost-model-version"]] += 1
                else:
                    failures.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as e:
                failures.append(repr(e))


def test_switching_versions_under_load_fails_no_request(served: dict[str, Any], roost: Roost) -> None:
    ns, url = served["namespace"], served["url"]
    stop, seen, failures = threading.Event(), Counter[str](), []
    worker = threading.Thread(target=_load, args=(url, stop, seen, failures))
    worker.start()
    try:
        time.sleep(1.0)
        roost.patch_spec("Deployment", ns, "bc", {"modelVersion": "bc-v2"})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            obj = roost.get("Deployment", ns, "bc")
            if (obj.get("status") or {}).get("stable", {}).get("modelVersion") == "bc-v2" and seen["bc-v2"] > 20:
                break
            time.sleep(0.2)
        time.sleep(3.0)  # past the drain period: the old server is gone
    finally:
        stop.set()
        worker.join()
    assert failures == []
    assert seen["bc-v1"] > 0 and seen["bc-v2"] > 20
    status = roost.get("Deployment", ns, "bc")["status"]
    v2_digest = roost.get("ModelVersion", ns, "bc-v2")["status"]["artifact"]["digest"]
    assert status["stable"]["digest"] == v2_digest
    assert _v2(url).headers["x-roost-model-version"] == "bc-v2"


def test_rejected_version_is_never_served(served: dict[str, Any], roost: Roost) -> None:
    ns, url = served["namespace"], served["url"]
    before = roost.get("Deployment", ns, "bc")["status"]["stable"]["modelVersion"]
    roost.patch_spec("Deployment", ns, "bc", {"modelVersion": "bc-v3"})
    obj = roost.wait("Deployment", ns, "bc", type_="Stalled", reason="VersionNotReady", timeout=30)
    assert "bc-v3" in roost.condition(obj, "Ready")["message"]  # type: ignore[index]
    assert roost.condition(obj, "Available")["status"] == "True"  # type: ignore[index]
    response = _v2(url)
    assert response.status_code == 200
    assert response.headers["x-roost-model-version"] == before
    assert obj["status"]["stable"]["modelVersion"] == before


def test_request_log_records_served_requests(served: dict[str, Any]) -> None:
    from roost.serving import requestlog
    from roost.storage import store as store_mod

    op: Operator = served["operator"]
    store = store_mod.Store(op.store)
    for _ in range(5):
        assert _v2(served["url"]).status_code == 200
    deadline = time.monotonic() + 15
    frame = pd.DataFrame()
    while time.monotonic() < deadline:
        prefix = store.uri("requestlogs", served["namespace"], "bc")
        frames = [requestlog.read_log(store, p) for p in store.list(prefix)]
        frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if frames else frame
        if len(frame) >= 5:
            break
        time.sleep(0.5)
    assert len(frame) >= 5
    assert set(frame["status"]) >= {200}
    assert frame["rows"].max() == len(ROWS)


