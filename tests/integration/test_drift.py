"""DriftPolicy on real data: no false alarm on holdout rows, drift on exactly the shifted features,
NoNewData without a newer Dataset version, and a retrain that ends in a reviewable proposal."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from roost.storage import store as store_mod
from tests.conftest import REPO, Operator, Roost, kubectl

pytestmark = pytest.mark.integration

CSV = REPO / "examples" / "data" / "breast_cancer.csv"
NS = "drift-local"
SHIFTED = ("mean_radius", "worst_texture", "mean_smoothness")


@pytest.fixture(scope="module")
def served(operator: Operator, roost: Roost, api_client: Any,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from kubernetes import client

    data = tmp_path_factory.mktemp("drift") / "breast_cancer.csv"
    shutil.copyfile(CSV, data)
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NS}})
    template = {"model": "bc", "estimator": {"class": "sklearn.linear_model.LogisticRegression",
                                             "params": {"max_iter": 500}},
                "preprocessing": {"numeric": "standard"}, "metrics": ["accuracy", "roc_auc"]}
    for manifest in [
        {"apiVersion": "roost.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "bc"},
         "spec": {"source": {"uri": f"file://{data}"}, "target": "target", "refreshInterval": "2s"}},
        {"apiVersion": "roost.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "lr"},
         "spec": {"datasetRef": {"name": "bc"}, **template}},
        {"apiVersion": "roost.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "bc-v1"},
         "spec": {"model": "bc", "version": 1, "source": {"trainingRunRef": {"name": "lr"}},
                  "gates": {"thresholds": [{"metric": "accuracy", "min": 0.9}]}}},
        {"apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "bc"},
         "spec": {"modelVersion": "bc-v1"}},
        {"apiVersion": "roost.dev/v1alpha1", "kind": "DriftPolicy", "metadata": {"name": "bc-drift"},
         "spec": {"deploymentRef": {"name": "bc"},
                  "features": {"numeric": {"method": "ks", "pValue": 0.01}, "correction": "bonferroni"},
                  "window": {"size": 600}, "minSamples": 200, "schedule": {"interval": "2s"},
                  "action": {"type": "retrain", "cooldown": "1h", "propose": True, "template": template}}},
    ]:
        roost.create(NS, manifest)
    deployment = roost.wait("Deployment", NS, "bc", timeout=180, op=operator)
    store = store_mod.Store(operator.store)
    dataset = roost.get("Dataset", NS, "bc")["status"]
    split = store.read_json(dataset["current"]["splitURI"])
    frame = pd.read_csv(CSV)
    return {"url": deployment["status"]["url"], "operator": operator, "data": data, "store": store,
            "holdout": frame.iloc[split["test"]], "frame": frame}


def _send(url: str, rows: pd.DataFrame, batch: int = 25) -> None:
    features = [c for c in rows.columns if c != "target"]
    with httpx.Client(timeout=20.0) as client:
        for i in range(0, len(rows), batch):
            part = rows.iloc[i:i + batch]
            body = {"inputs": [{"name": "x", "shape": [len(part), len(features)], "datatype": "FP64",
                                "data": part[features].to_numpy().ravel().tolist()}]}
            assert client.post(f"{url}/v2/models/bc/infer", json=body).status_code == 200


def _wait_check(roost: Roost, after: str | None, samples: int, op: Operator, timeout: float = 60) -> dict[str, Any]:
    """The policy after a check that ran later than ``after`` on at least ``samples`` rows."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = roost.get("DriftPolicy", NS, "bc-drift").get("status") or {}
        if (status.get("lastCheckTime") or "") > (after or "") and (status.get("samples") or 0) >= samples:
            return status
        time.sleep(0.5)
    raise AssertionError(f"no check on {samples} samples: {status}\n{op.tail()}")


def _drifted(status: dict[str, Any]) -> set[str]:
    return {f["name"] for f in status.get("features") or [] if f["drifted"]}


def test_holdout_traffic_raises_no_alarm(served: dict[str, Any], roost: Roost) -> None:
    rows = served["holdout"].sample(600, replace=True, random_state=7)
    _send(served["url"], rows)
    status = _wait_check(roost, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), 600, served["operator"])
    assert status["driftDetected"] is False, status["features"]
    assert _drifted(status) == set()
    obj = roost.get("DriftPolicy", NS, "bc-drift")
    assert roost.condition(obj, "Drifted")["reason"] == "NoDrift"  # type: ignore[index]
    assert roost.condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
    report = served["store"].read_bytes(status["reportURI"]).decode()
    assert "<svg" in report and "no drift" in report


def test_shifted_features_drift_and_no_others(served: dict[str, Any], roost: Roost) -> None:
    rows = served["holdout"].sample(600, replace=True, random_state=8).copy()
    for name in SHIFTED:
        rows[name] = rows[name] + served["frame"][name].std()
    _send(served["url"], rows)
    status = _wait_check(roost, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), 600, served["operator"])
    assert status["driftDetected"] is True
    assert _drifted(status) == set(SHIFTED)
    obj = roost.get("DriftPolicy", NS, "bc-drift")
    assert roost.condition(obj, "Drifted")["status"] == "True"  # type: ignore[index]
    retrained = roost.condition(obj, "Retrained")
    assert retrained is not None and retrained["reason"] == "NoNewData"


def test_roost_report_drift_writes_the_latest_report(served: dict[str, Any], kubeconfig: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "roost.cli", "report", "drift", "bc-drift", "-n", NS,
                             "--out", str(out), "--kubeconfig", str(kubeconfig)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    page = out.read_text()
    assert "drift detected" in page and all(name in page for name in SHIFTED)


def test_new_data_retrains_and_proposes_a_reviewable_version(served: dict[str, Any], roost: Roost,
                                                           kubeconfig: Path) -> None:
    frame = served["frame"]
    extra = frame.sample(120, replace=True, random_state=9)
    noise = np.random.default_rng(9).normal(0, 0.01, size=(len(extra), len(frame.columns) - 1))
    extra.iloc[:, :-1] = extra.iloc[:, :-1] * (1 + noise)
    pd.concat([frame, extra]).to_csv(served["data"], index=False)
    deadline = time.monotonic() + 120
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = roost.get("DriftPolicy", NS, "bc-drift").get("status") or {}
        if status.get("proposal"):
            break
        time.sleep(1.0)
    assert status.get("proposal"), f"{status}\n{served['operator'].tail()}"
    run = roost.get("TrainingRun", NS, status["retrain"]["name"])
    assert roost.condition(run, "Succeeded")["status"] == "True"  # type: ignore[index]
    assert run["spec"]["datasetRef"]["digest"] == roost.get("Dataset", NS, "bc")["status"]["digest"]
    proposal = status["proposal"]
    manifest = proposal["modelVersion"]
    assert manifest["spec"]["source"]["artifact"]["digest"] == run["status"]["artifact"]["digest"]
    assert "trainingRunRef" not in manifest["spec"]["source"]
    assert proposal["deploymentPatch"]["spec"]["modelVersion"] == manifest["metadata"]["name"]
    assert manifest["metadata"]["name"] == "bc-v2" and manifest["spec"]["gates"]["thresholds"][0]["min"] == 0.9
    # judged by an evaluate unit on the new version's holdout, the served model scored on the same rows
    evidence = proposal["evidence"]
    assert evidence["servedVersion"] == "bc-v1" and evidence["testRows"] == 138  # 20 % of 569 + 120 rows
    assert set(evidence["metrics"]) >= {"accuracy", "roc_auc"} and set(evidence["servedMetrics"]) >= {"accuracy"}
    assert evidence["metrics"]["accuracy"] >= 0.9
    assert evidence["gates"] == [{"name": "threshold:accuracy", "passed": True,
                                  "message": f"accuracy {evidence['metrics']['accuracy']:.4g} >= 0.9"}]
    policy = roost.get("DriftPolicy", NS, "bc-drift")
    assert roost.condition(policy, "Proposed")["reason"] == "ProposalReady"  # type: ignore[index]
    assert status["retrain"]["state"] == "Proposed"
    result = kubectl(kubeconfig, "apply", "--dry-run=server", "-n", NS, "-f", "-", input=yaml.safe_dump(manifest),
                     check=False)
    assert result.returncode == 0, result.stderr
    deployment = roost.get("Deployment", NS, "bc")
    assert deployment["spec"]["modelVersion"] == "bc-v1"  # Roost never changes production by itself
