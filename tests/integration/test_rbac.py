"""The operator's ClusterRole is enough: the operator, running as its least-privilege ServiceAccount
(the identity a real install uses), reconciles a Dataset and a TrainingRun to Ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.conftest import REPO, Operator, Roost, kubectl

pytestmark = pytest.mark.integration

CSV = REPO / "examples" / "data" / "breast_cancer.csv"


def _service_account_kubeconfig(api_client: Any, kubeconfig: Path, path: Path) -> Path:
    core = client.CoreV1Api(api_client)
    for create in (lambda: core.create_namespace({"metadata": {"name": "roost-system"}}),
                   lambda: core.create_namespaced_service_account(
                       "roost-system", {"metadata": {"name": "roost-operator"}})):
        try:
            create()
        except ApiException as e:
            assert e.status == 409
    token = core.create_namespaced_service_account_token(
        "roost-operator", "roost-system", {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
    }))
    return path


def test_operator_runs_as_its_service_account(kubeconfig: Path, api_client: Any, roost: Roost,
                                              tmp_path: Path) -> None:
    result = kubectl(kubeconfig, "apply", "-f", str(REPO / "manifests" / "base" / "rbac.yaml"))
    assert "clusterrole.rbac.authorization.k8s.io/roost-operator" in result.stdout
    sa_config = _service_account_kubeconfig(api_client, kubeconfig, tmp_path / "sa.kubeconfig")
    who = kubectl(sa_config, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", check=False)
    if who.returncode == 0:
        assert who.stdout == "system:serviceaccount:roost-system:roost-operator"
    denied = kubectl(sa_config, "get", "secrets", "-A", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr

    ns = "tk-rbac"
    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": ns}})
    op = Operator(sa_config, tmp_path / "op", args=("--namespace", ns))
    (tmp_path / "op").mkdir()
    op.start()
    try:
        roost.create(ns, {"apiVersion": "roost.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "bc"},
                          "spec": {"source": {"uri": f"file://{CSV}"}, "target": "target"}})
        roost.create(ns, {"apiVersion": "roost.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "lr"},
                          "spec": {"datasetRef": {"name": "bc"}, "model": "bc",
                                   "estimator": {"class": "sklearn.linear_model.LogisticRegression",
                                                 "params": {"max_iter": 300}}}})
        run = roost.wait("TrainingRun", ns, "lr", timeout=120, op=op)
        assert run["status"]["metrics"]["accuracy"] > 0.9
        events = client.CoreV1Api(api_client).list_namespaced_event(ns).items
        assert any(e.reason == "NewVersion" for e in events), "the operator could not post Events"
        assert "Forbidden" not in op.log.read_text() and "403" not in op.log.read_text()
    finally:
        op.stop()


