"""The main job, end to end, as a user runs it: the quickstart manifests, `roost run`, real data."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from roost import demo
from roost.storage import models
from roost.storage import store as store_mod
from tests.conftest import REPO, Operator, Roost

pytestmark = pytest.mark.e2e

CSV = REPO / "examples" / "data" / "breast_cancer.csv"


@pytest.fixture(scope="module")
def quickstart(operator: Operator, roost: Roost, api_client: Any) -> dict[str, Any]:
    from kubernetes import client

    ns = "e2e-quickstart"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    for manifest in demo.quickstart_manifests():
        roost.create(ns, manifest)
    deployment = roost.wait("Deployment", ns, "breast-cancer", timeout=180, op=operator)
    return {
        "namespace": ns,
        "dataset": roost.get("Dataset", ns, "breast-cancer"),
        "run": roost.get("TrainingRun", ns, "breast-cancer-rf"),
        "version": roost.get("ModelVersion", ns, "breast-cancer-v1"),
        "deployment": deployment,
        "store": store_mod.Store(operator.store),
    }


def test_dataset_digest_is_the_sha256_of_the_committed_csv(quickstart: dict[str, Any]) -> None:
    status = quickstart["dataset"]["status"]
    assert status["digest"] == "sha256:" + hashlib.sha256(CSV.read_bytes()).hexdigest()
    assert status["rows"] == 569
    assert status["columns"] == 31


def test_run_metrics_are_real_holdout_metrics(quickstart: dict[str, Any]) -> None:
    metrics = quickstart["run"]["status"]["metrics"]
    assert metrics["accuracy"] >= 0.9
    assert metrics["roc_auc"] >= 0.97


def test_version_registers_the_runs_artifact_with_lineage(quickstart: dict[str, Any]) -> None:
    run, version = quickstart["run"]["status"], quickstart["version"]["status"]
    assert version["artifact"]["digest"] == run["artifact"]["digest"]
    assert version["artifact"]["verified"] is True
    assert version["lineage"]["datasetVersion"]["digest"] == quickstart["dataset"]["status"]["digest"]
    data = quickstart["store"].read_bytes(version["artifact"]["uri"])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == version["artifact"]["digest"]


def test_served_digest_is_the_versions_digest(quickstart: dict[str, Any]) -> None:
    deployment = quickstart["deployment"]["status"]
    assert deployment["stable"]["modelVersion"] == "breast-cancer-v1"
    assert deployment["stable"]["digest"] == quickstart["version"]["status"]["artifact"]["digest"]


def test_endpoint_answers_like_the_artifact_loaded_independently(quickstart: dict[str, Any]) -> None:
    store: store_mod.Store = quickstart["store"]
    version = quickstart["version"]["status"]
    split = store.read_json(quickstart["dataset"]["status"]["current"]["splitURI"])
    data = pd.read_csv(CSV)
    holdout = data.iloc[split["test"]]
    features = [c for c in data.columns if c != "target"]
    estimator = models.load_verified(store, version["artifact"]["uri"], version["artifact"]["digest"])
    url = quickstart["deployment"]["status"]["url"]
    body = {"id": "e2e", "inputs": [{"name": "input-0", "shape": [len(holdout), len(features)],
                                      "datatype": "FP64", "data": holdout[features].to_numpy().ravel().tolist()}]}
    response = httpx.post(f"{url}/v2/models/breast-cancer/infer", json=body, timeout=30.0)
    assert response.status_code == 200, response.text
    assert response.headers["x-roost-model-version"] == "breast-cancer-v1"
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["predict"]["data"] == estimator.predict(holdout[features]).tolist()
    served = np.asarray(outputs["predict_proba"]["data"]).reshape(len(holdout), 2)
    np.testing.assert_allclose(served, estimator.predict_proba(holdout[features]), atol=1e-5)


@pytest.mark.timeout(1800)  # a cold control plane, the quickstart, two rollouts and a retrain, one after another
def test_make_demo_runs_the_quickstart_from_a_fresh_state(tmp_path: Path) -> None:
    """The README's first command, with every state directory in a temporary folder, then the two
    scenarios on top of it (make demo-canary, make demo-drift) as the README lists them."""
    env = {**os.environ, "ROOST_DEV_STATE_DIR": str(tmp_path / "dev"), "ROOST_STATE_DIR": str(tmp_path / "operator"),
           "ROOST_STORE": f"file://{tmp_path / 'store'}", "TERM": "dumb", "COLUMNS": "120"}
    env.pop("KUBECONFIG", None)
    try:
        result = subprocess.run(["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "done in" in result.stdout
        assert "breast-cancer-v1" in result.stdout
        again = subprocess.run(["make", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout[-3000:]
        assert "already running" in again.stdout
        canary = subprocess.run(["make", "demo-canary"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=900)
        assert canary.returncode == 0, canary.stdout[-3000:] + canary.stderr[-3000:]
        out = " ".join(canary.stdout.split())  # rich wraps lines
        # on failure, the demo's own account (which metric, both values, the interval) is the diagnosis
        assert "promoted breast-cancer-v2 after" in out and "evidence for promoting v2" in out, canary.stdout[-5000:]
        assert re.search(r"rolled back breast-cancer-v3 after \d+ requests, 0 failed: latency-p95", out), out[-2000:]
        drift = subprocess.run(["make", "demo-drift"], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=600)
        assert drift.returncode == 0, drift.stdout[-3000:] + drift.stderr[-3000:]
        out = " ".join(drift.stdout.split())  # rich wraps lines
        assert "drift detected: False; drifted features: none" in out, drift.stdout[-5000:]
        drifted = re.search(r"drift detected: True; drifted features: \[([^\]]*)\]", out)
        assert drifted and sorted(drifted.group(1).replace("'", "").split(", ")) == [
            "mean_radius", "mean_smoothness", "worst_texture"]
        # v2 serves since the canary; v3 is registered (rolled back): the proposal takes the next free number
        assert "RetrainStarted" in out and "proposal breast-cancer-v4 vs served breast-cancer-v2" in out
        proposal = yaml.safe_load((tmp_path / "demo" / "breast-cancer-v4.yaml").read_text())
        assert proposal["spec"]["source"]["artifact"]["digest"].startswith("sha256:")
    finally:
        down = subprocess.run(["make", "down"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped the operator" in down.stdout
    state = json.loads((tmp_path / "dev" / "state.json").read_text())
    assert state["pids"] == {}
