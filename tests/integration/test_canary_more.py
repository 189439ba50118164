"""More shift-right on the local backend: manual gates, aborts, inconclusive and dry-run rollouts, a candidate
that cannot start, and sticky routing — real models, live traffic, in a namespace of their own."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sklearn import tree

from tests.conftest import REPO, Operator, Roost
from tests.integration.test_canary import CSV, DATA, FEATURES, Load, _run, poll, serve

pytestmark = pytest.mark.integration

NS = "canary-more"


def _version(name: str, number: int, source: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": "bc", "version": number, "source": source,
                     "gates": {"thresholds": [{"metric": "accuracy", "min": 0.85}]}}}


def _strategy(steps: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    return {"type": "Canary", "steps": steps, "analysis": {
        "warmup": "2s", "minRequests": 60, "maxDuration": "2m", "alpha": 0.05, "beta": 0.2,
        # error-rate only: a freshly started candidate is often measurably slower than a warm stable, which the
        # latency sequence (rightly, by design) calls a Fail — these tests are about the rollout's mechanics.
        "metrics": [{"name": "error-rate", "maxIncrease": 0.05}], **analysis}}


@pytest.fixture(scope="module")
def rollout(operator: Operator, roost: Roost, api_client: Any, tmp_path_factory: pytest.TempPathFactory,
            kubeconfig: Path) -> dict[str, Any]:
    from kubernetes import client

    from roost.storage import models

    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NS}})
    # A model of our own, registered from an external artifact: its bytes are corrupted after registration.
    external = tmp_path_factory.mktemp("external") / "tree.skops"
    model = tree.DecisionTreeClassifier(max_depth=3, random_state=7).fit(DATA[FEATURES], DATA["target"])
    external.write_bytes(models.dump(model))
    digest = "sha256:" + hashlib.sha256(external.read_bytes()).hexdigest()
    lr = "sklearn.linear_model.LogisticRegression"
    manifests = [
        {"apiVersion": "roost.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "bc"},
         "spec": {"source": {"uri": f"file://{CSV}"}, "target": "target"}},
        _run("lr", lr, {"max_iter": 500}),
        _run("lr2", lr, {"max_iter": 500, "C": 0.5}),
        _run("lr3", lr, {"max_iter": 500, "C": 2.0}),
        _run("lr4", lr, {"max_iter": 500, "C": 0.25}),
        # 1,500 boosting rounds: ~16 ms per row on scikit-learn (no ONNX conversion for it)
        _run("slow", "sklearn.ensemble.HistGradientBoostingClassifier",
             {"max_iter": 1500, "early_stopping": False, "learning_rate": 0.05}),
        _run("lr5", lr, {"max_iter": 500, "C": 4.0}),
        _version("bc-v1", 1, {"trainingRunRef": {"name": "lr"}}),
        _version("bc-v2", 2, {"trainingRunRef": {"name": "lr2"}}),
        _version("bc-v3", 3, {"trainingRunRef": {"name": "lr3"}}),
        _version("bc-v4", 4, {"trainingRunRef": {"name": "lr4"}}),
        _version("bc-v5", 5, {"trainingRunRef": {"name": "slow"}}),
        _version("bc-v6", 6, {"artifact": {"uri": external.as_uri(), "digest": digest,
                                           "datasetRef": {"name": "bc"}}}),
        _version("bc-v7", 7, {"trainingRunRef": {"name": "lr5"}}),
        {"apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "bc"},
         "spec": {"modelVersion": "bc-v1"}},
    ]
    return {**serve(roost, NS, manifests, operator), "kubeconfig": kubeconfig}


def _plugin(action: str, kubeconfig: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "roost.kubectl_plugin", action, "deployment/bc", "-n", NS,
                           "--kubeconfig", str(kubeconfig)], capture_output=True, text=True, timeout=60,
                          cwd=REPO, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    return done.stdout


def _poll(roost: Roost, what: str, check: Any, timeout: float, op: Operator) -> dict[str, Any]:
    return poll(roost, NS, what, check, timeout, op)


def _metrics(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in (status.get("analysis") or {}).get("metrics") or []}


def test_manual_pause_waits_for_kubectl_roost_promote(rollout: dict[str, Any], roost: Roost) -> None:
    op = rollout["operator"]
    with Load(rollout["url"]) as load:
        roost.patch_spec("Deployment", NS, "bc", {"modelVersion": "bc-v2", "strategy": _strategy(
            [{"setWeight": 20}, {"pause": {}}])})
        # Enough evidence to pass: the rollout still holds at the pause.
        _poll(roost, "a Pass verdict", lambda s: (s.get("analysis") or {}).get("verdict") == "Pass", 90, op)
        time.sleep(4)
        obj = roost.get("Deployment", NS, "bc")
        status = obj["status"]
        assert status["canary"]["modelVersion"] == "bc-v2" and status["canary"]["step"] == 1
        assert status["canary"]["weight"] == 20
        assert status["stable"]["modelVersion"] == "bc-v1"
        ready = roost.condition(obj, "Ready")
        assert ready is not None and ready["status"] == "False" and ready["reason"] == "WaitingForPromotion"
        out = _plugin("promote", rollout["kubeconfig"])
        assert "promote requested" in out
        obj = _poll(roost, "promoted", lambda s: (s.get("stable") or {}).get("modelVersion") == "bc-v2"
                    and not s.get("canary"), 30, op)
        time.sleep(1)
    assert load.failures == []
    assert load.seen["bc-v2"] > 0
    promotion = obj["status"]["promotion"]
    assert promotion["modelVersion"] == "bc-v2" and promotion["from"] == "bc-v1"
    assert roost.condition(obj, "Ready")["reason"] == "Promoted"  # type: ignore[index]
    annotations = obj["metadata"].get("annotations") or {}
    assert "@" in annotations.get("roost.dev/promote", "")


def test_kubectl_roost_abort_rolls_back_and_stable_keeps_serving(rollout: dict[str, Any], roost: Roost) -> None:
    op = rollout["operator"]
    with Load(rollout["url"]) as load:
        roost.patch_spec("Deployment", NS, "bc", {"modelVersion": "bc-v3", "strategy": _strategy(
            [{"setWeight": 30}, {"pause": {}}])})
        _poll(roost, "a running canary", lambda s: (s.get("canary") or {}).get("modelVersion") == "bc-v3"
              and (s.get("canary") or {}).get("weight") == 30, 60, op)
        time.sleep(3)
        _plugin("abort", rollout["kubeconfig"])
        obj = roost.wait("Deployment", NS, "bc", type_="RolledBack", status="True", reason="Aborted", timeout=30,
                         op=op)
        aborted_at = sum(load.seen.values())
        time.sleep(3)
    assert load.failures == []
    assert load.seen["bc-v3"] > 0
    status = obj["status"]
    assert status["stable"]["modelVersion"] == "bc-v2"
    assert status["rollback"]["modelVersion"] == "bc-v3" and status["rollback"]["reason"] == "Aborted"
    assert status.get("canary") is None
    # After the abort (and a moment for the router), only the stable version answers.
    late = load.answers[aborted_at + 30:]
    assert late and all(version == "bc-v2" for version, _ in late)


def test_no_traffic_ends_inconclusive_and_rolls_back(rollout: dict[str, Any], roost: Roost) -> None:
    op = rollout["operator"]
    roost.patch_spec("Deployment", NS, "bc", {"modelVersion": "bc-v4", "strategy": _strategy(
        [{"setWeight": 50}], maxDuration="20s")})
    obj = _poll(roost, "rolled back", lambda s: (s.get("rollback") or {}).get("modelVersion") == "bc-v4", 90, op)
    status = obj["status"]
    assert roost.condition(obj, "RolledBack")["status"] == "True"  # type: ignore[index]
    assert status["rollback"]["reason"] == "Inconclusive", status["rollback"]
    assert status["stable"]["modelVersion"] == "bc-v2"
    assert (status.get("promotion") or {}).get("modelVersion") != "bc-v4"


def test_dry_run_reports_a_fail_but_never_acts(rollout: dict[str, Any], roost: Roost) -> None:
    op = rollout["operator"]
    with Load(rollout["url"]) as load:
        roost.patch_spec("Deployment", NS, "bc", {"modelVersion": "bc-v5", "strategy": _strategy(
            [{"setWeight": 50}], dryRun=True,
            metrics=[{"name": "error-rate", "maxIncrease": 0.05}, {"name": "latency-p95", "maxRatio": 1.5}])})
        obj = _poll(roost, "a latency-p95 Fail",
                    lambda s: _metrics(s).get("latency-p95", {}).get("outcome") == "Fail", 120, op)
        assert obj["status"]["analysis"]["dryRun"] is True
        held_until = time.monotonic() + 10
        while time.monotonic() < held_until:
            obj = roost.get("Deployment", NS, "bc")
            status = obj["status"]
            assert (status.get("canary") or {}).get("modelVersion") == "bc-v5", status
            assert status["stable"]["modelVersion"] == "bc-v2", status
            assert (status.get("rollback") or {}).get("modelVersion") != "bc-v5", status["rollback"]
            rolled_back = roost.condition(obj, "RolledBack")
            assert rolled_back is None or rolled_back["status"] != "True", rolled_back
            assert (status.get("promotion") or {}).get("modelVersion") != "bc-v5", status["promotion"]
            time.sleep(0.5)
    assert load.failures == []
    assert load.seen["bc-v5"] > 0
    assert roost.condition(obj, "Ready")["reason"] == "DryRun"  # type: ignore[index]


def test_candidate_that_cannot_start_is_rolled_back(rollout: dict[str, Any], roost: Roost) -> None:
    op = rollout["operator"]
    mv = roost.get("ModelVersion", NS, "bc-v6")
    artifact = Path(urlparse(mv["status"]["artifact"]["uri"]).path)
    artifact.write_bytes(b"not a model" + artifact.read_bytes()[:100])  # the server checks the digest: exit 3
    with Load(rollout["url"]) as load:
        roost.patch_spec("Deployment", NS, "bc", {"modelVersion": "bc-v6", "strategy": _strategy(
            [{"setWeight": 50}])})
        obj = _poll(roost, "rolled back", lambda s: (s.get("rollback") or {}).get("modelVersion") == "bc-v6",
                    90, op)
        time.sleep(2)
    assert load.failures == []
    assert load.seen["bc-v2"] > 0 and load.seen["bc-v6"] == 0
    status = obj["status"]
    assert status["rollback"]["modelVersion"] == "bc-v6" and status["rollback"]["reason"] == "CandidateFailed"
    assert "failed to start" in status["rollback"]["message"], status["rollback"]
    assert status["stable"]["modelVersion"] == "bc-v2" and status.get("canary") is None


def test_sticky_by_header_keeps_each_user_on_one_version(rollout: dict[str, Any], roost: Roost) -> None:
    op = rollout["operator"]
    roost.patch_spec("Deployment", NS, "bc", {"modelVersion": "bc-v7", "strategy": {
        **_strategy([{"setWeight": 50}, {"pause": {"duration": "60s"}}]), "stickyBy": "header:x-user-id"}})
    _poll(roost, "at 50%", lambda s: (s.get("canary") or {}).get("modelVersion") == "bc-v7"
          and (s.get("canary") or {}).get("weight") == 50, 60, op)
    time.sleep(3)  # the router picks up its new routes
    row = DATA[FEATURES].iloc[0].tolist()
    body = {"inputs": [{"name": "x", "shape": [1, len(FEATURES)], "datatype": "FP64", "data": row}]}
    by_key: dict[str, set[str]] = {}
    with httpx.Client(timeout=20.0) as http:
        for k in range(20):
            for _ in range(10):
                r = http.post(f"{rollout['url']}/v2/models/bc/infer", json=body, headers={"x-user-id": f"user-{k}"})
                assert r.status_code == 200, r.text
                by_key.setdefault(f"user-{k}", set()).add(r.headers["x-roost-model-version"])
    status = roost.get("Deployment", NS, "bc")["status"]
    assert (status.get("canary") or {}).get("weight") == 50, status  # still held at the timed pause
    assert all(len(v) == 1 for v in by_key.values()), by_key
    assert set().union(*by_key.values()) == {"bc-v2", "bc-v7"}, by_key
