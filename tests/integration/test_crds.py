"""The CRDs on a real API server: established, examples accepted, bad manifests refused by name."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from roost.api import kinds
from tests.conftest import REPO, Roost, kubectl

pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "a" * 64


def _examples() -> list[Path]:
    return sorted(p for p in (REPO / "examples").rglob("*.yaml") if p.name != "kustomization.yaml")


def test_every_crd_is_established(api_client: Any) -> None:
    api = client.ApiextensionsV1Api(api_client)
    for info in kinds.ALL:
        crd = api.read_custom_resource_definition(info.crd_name)
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions["Established"] == "True", info.crd_name
        assert crd.spec.names.categories == ["roost"]


@pytest.mark.parametrize("path", _examples(), ids=lambda p: str(p.relative_to(REPO)))
def test_example_manifest_is_accepted_by_server_side_dry_run(kubeconfig: Path, namespace: str, path: Path) -> None:
    result = kubectl(kubeconfig, "apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout


def _dataset() -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "d"},
            "spec": {"source": {"uri": "file:///data.csv"}, "target": "y"}}


def _run() -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "r"},
            "spec": {"datasetRef": {"name": "d"}, "model": "m",
                     "estimator": {"class": "sklearn.linear_model.LogisticRegression"}}}


def _mv() -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "v"},
            "spec": {"model": "m", "version": 1, "source": {"trainingRunRef": {"name": "r"}}}}


def _deploy() -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "dep"},
            "spec": {"modelVersion": "v"}}


def _drift() -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "DriftPolicy", "metadata": {"name": "p"},
            "spec": {"deploymentRef": {"name": "dep"}}}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    m = copy.deepcopy(base)
    node = m
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return m


_DELETE = object()

INVALID = [
    ("dataset-missing-target", _with(_dataset(), "spec.target", _DELETE), "spec.target"),
    ("dataset-bad-format", _with(_dataset(), "spec.source.format", "xlsx"), "spec.source.format"),
    ("dataset-bad-uri", _with(_dataset(), "spec.source.uri", "ftp://x"), "spec.source.uri"),
    ("dataset-bad-digest", _with(_dataset(), "spec.source.digest", "md5:1"), "spec.source.digest"),
    ("dataset-test-fraction-out-of-range", _with(_dataset(), "spec.split.testFraction", 1.5),
     "spec.split.testFraction"),
    ("dataset-bad-duration", _with(_dataset(), "spec.refreshInterval", "one hour"), "spec.refreshInterval"),
    ("dataset-unknown-feature-type", _with(_dataset(), "spec.schema",
                                           {"features": [{"name": "a", "type": "text"}]}),
     "spec.schema.features[0].type"),
    ("run-estimator-not-allowlisted", _with(_run(), "spec.estimator.class", "os.system"), "spec.estimator.class"),
    ("run-metric-does-not-fit-task", _with(_run(), "spec.metrics", ["rmse"]), "metrics of a classification task"),
    ("run-regressor-for-classification", _with(_run(), "spec.estimator.class",
                                               "sklearn.ensemble.RandomForestRegressor"), "is not a classifier"),
    ("run-negative-backoff", _with(_run(), "spec.backoffLimit", -1), "spec.backoffLimit"),
    ("run-tuning-objective-does-not-fit", _with(_run(), "spec.tuning", {
        "objective": {"metric": "r2"}, "space": [{"name": "C", "choice": [1, 2]}]}), "tuning.objective.metric"),
    ("mv-two-sources", _with(_mv(), "spec.source.artifact", {"uri": "file:///m.skops", "digest": DIGEST,
                                                               "datasetRef": {"name": "d"}}),
     "exactly one of source.trainingRunRef and source.artifact"),
    ("mv-no-source", _with(_mv(), "spec.source", {}), "exactly one of source.trainingRunRef and source.artifact"),
    ("mv-threshold-without-bound", _with(_mv(), "spec.gates", {"thresholds": [{"metric": "accuracy"}]}),
     "a threshold needs min or max"),
    ("mv-negative-version", _with(_mv(), "spec.version", -1), "spec.version"),
    ("deploy-bad-strategy", _with(_deploy(), "spec.strategy", {"type": "BlueGreen"}), "spec.strategy.type"),
    ("deploy-canary-without-steps", _with(_deploy(), "spec.strategy", {"type": "Canary"}),
     "a Canary strategy needs steps"),
    ("deploy-weight-over-100", _with(_deploy(), "spec.strategy", {"type": "Canary", "steps": [{"setWeight": 120}]}),
     "setWeight"),
    ("deploy-weights-decrease", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 50}, {"setWeight": 10}]}), "canary step weights must not decrease"),
    ("deploy-step-both", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 10, "pause": {}}]}), "exactly one of setWeight and pause"),
    ("deploy-metric-two-margins", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 10}],
        "analysis": {"metrics": [{"name": "error-rate", "max": 0.1, "maxRatio": 2}]}}), "exactly one of maxIncrease"),
    ("deploy-unknown-metric-without-source", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 10}],
        "analysis": {"metrics": [{"name": "checkout-failures", "maxIncrease": 0.01}]}}),
     "has a name of its own and a prometheus query"),
    ("deploy-prometheus-on-a-standard-name", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 10}], "analysis": {"metrics": [{
            "name": "error-rate", "maxIncrease": 0.01,
            "prometheus": {"address": "http://prom:9090", "bad": "a", "total": "b"}}]}}),
     "has a name of its own and a prometheus query"),
    ("deploy-prometheus-with-a-ratio", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 10}], "analysis": {"metrics": [{
            "name": "checkout-failures", "maxRatio": 2,
            "prometheus": {"address": "http://prom:9090", "bad": "a", "total": "b"}}]}}),
     "a prometheus metric is a share of events: it takes maxIncrease"),
    ("deploy-prometheus-address-not-a-url", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 10}], "analysis": {"metrics": [{
            "name": "checkout-failures", "maxIncrease": 0.01,
            "prometheus": {"address": "prom:9090", "bad": "a", "total": "b"}}]}}),
     "spec.strategy.analysis.metrics[0].prometheus.address"),
    ("deploy-alpha-out-of-range", _with(_deploy(), "spec.strategy", {
        "type": "Canary", "steps": [{"setWeight": 10}], "analysis": {"alpha": 0.9}}), "alpha"),
    ("drift-ks-with-threshold", _with(_drift(), "spec.features", {"numeric": {"method": "ks", "threshold": 0.1}}),
     "ks and chi2 take pValue"),
]


@pytest.mark.parametrize(("manifest", "expected"), [(m, e) for _, m, e in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_manifest_is_refused_naming_the_field(roost: Roost, namespace: str, manifest: dict[str, Any],
                                                      expected: str) -> None:
    with pytest.raises(ApiException) as info:
        roost.create(namespace, manifest)
    assert info.value.status in (400, 422)
    assert expected in info.value.body, info.value.body


def test_unknown_field_is_refused_by_kubectl_strict_validation(kubeconfig: Path, namespace: str) -> None:
    manifest = _with(_drift(), "spec.schedule", {"every": "5m"})
    result = kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.schedule.every"' in result.stderr


@pytest.mark.parametrize("make", [_run, _mv], ids=["TrainingRun", "ModelVersion"])
def test_spec_of_bounded_kinds_is_immutable(roost: Roost, namespace: str, make: Any) -> None:
    manifest = make()
    roost.create(namespace, manifest)
    change = {"model": "other"}
    with pytest.raises(ApiException) as info:
        roost.patch_spec(manifest["kind"], namespace, manifest["metadata"]["name"], change)
    assert info.value.status == 422
    assert "spec is immutable" in info.value.body


def test_status_is_a_subresource(roost: Roost, namespace: str) -> None:
    created = roost.create(namespace, {**_dataset(), "status": {"rows": 5}})
    assert "status" not in created or "rows" not in (created.get("status") or {})


def test_kubectl_explain_shows_field_descriptions(kubeconfig: Path) -> None:
    out = kubectl(kubeconfig, "explain", "deployments.roost.dev.spec.strategy").stdout
    assert "Rollout strategy." in out
    assert "Canary steps, in order." in out
    out = kubectl(kubeconfig, "explain", "trainingruns.spec.tuning.space").stdout
    assert "The search space, one entry per parameter." in out


def test_kubectl_get_roost_lists_every_kind(kubeconfig: Path, roost: Roost, namespace: str) -> None:
    for make in (_dataset, _run, _mv, _deploy, _drift):
        roost.create(namespace, make())
    out = kubectl(kubeconfig, "get", "roost", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(n.split("/")[0] for n in out) == sorted(
        f"{k.kind.lower()}.roost.dev" for k in kinds.ALL)
    wide = kubectl(kubeconfig, "get", "deployments.roost.dev", "-n", namespace).stdout
    assert "SERVING" in wide and "CANARY" in wide and "WEIGHT" in wide


def test_examples_parse_with_the_api_models() -> None:
    for path in _examples():
        for doc in yaml.safe_load_all(path.read_text()):
            info = kinds.BY_KIND[doc["kind"]]
            info.spec.model_validate(doc["spec"])


def test_install_manifests_are_accepted_by_the_api_server(kubeconfig: Path, api_client: Any) -> None:
    core = client.CoreV1Api(api_client)
    try:
        core.create_namespace({"metadata": {"name": "roost-system"}})
    except ApiException as e:
        assert e.status == 409
    result = kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k",
                     str(REPO / "manifests"), check=False)
    assert result.returncode == 0, result.stderr
    for expected in ("clusterrole.rbac.authorization.k8s.io/roost-operator", "deployment.apps/roost-operator",
                     "customresourcedefinition.apiextensions.k8s.io/datasets.roost.dev"):
        assert expected in result.stdout
