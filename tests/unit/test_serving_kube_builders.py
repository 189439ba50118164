"""The Kubernetes serving backend's pure parts: names, labels, the objects it builds, how it reads them.

The builders return plain dicts, so these tests compare objects; the integration test
(``tests/integration/test_serving_kube.py``) checks that a real API server accepts and keeps them.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from roost import errors
from roost.execution import kube_jobs, serving_kube, serving_local
from roost.execution.executor import Owner
from roost.reconcile import deployment as reconcile_deploy
from roost.storage import store as store_mod

DIGEST = "sha256:" + "ab12" * 16
OWNER = Owner("Deployment", "team-a", "breast-cancer", "0f6c1c9e-1111-2222-3333-444455556666")
SERVER = reconcile_deploy.server_name("breast-cancer-v1", DIGEST)
STORE = "s3://models/roost"
CONFIG: dict[str, Any] = {
    "modelName": "breast-cancer", "modelVersion": "breast-cancer-v1", "namespace": "team-a",
    "artifact": {"uri": f"{STORE}/objects/sha256/{DIGEST[7:]}", "digest": DIGEST},
    "signature": {"inputs": [{"name": "mean_radius", "type": "numeric"}], "target": "target"},
    "store": STORE,
    "requestLog": {"uri": f"{STORE}/requestlogs/team-a/breast-cancer/breast-cancer-v1", "sampleRate": 1.0},
}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def server_deployment(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"store_root": STORE, "image": "registry.example/roost:1", **kwargs}
    return serving_kube.build_server_deployment(OWNER, SERVER, CONFIG, **args)


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# ----- names and labels ----------------------------------------------------------------------------
def test_child_names_are_owner_dash_server_when_that_fits() -> None:
    assert serving_kube.child_name("breast-cancer", SERVER) == f"breast-cancer-{SERVER}"
    assert serving_kube.child_name("breast-cancer") == "breast-cancer"


@pytest.mark.parametrize(
    "parts",
    [
        ("d" * 63, SERVER),
        ("breast-cancer", "v" * 52 + "-" + "a" * 10),
        ("x" * 40, "y" * 22 + "-"),
        ("7-eleven",),
        ("7" * 70, "v1-0123456789"),
    ],
    ids=["long-owner", "long-server", "dash-at-the-cut", "leading-digit", "long-and-leading-digit"],
)
def test_child_names_that_do_not_fit_are_hashed_into_dns_labels(parts: tuple[str, ...]) -> None:
    name = serving_kube.child_name(*parts)
    assert len(name) <= 63 and DNS1035.fullmatch(name), name
    assert name == serving_kube.child_name(*parts)  # deterministic: a restarted operator finds it again
    assert name != serving_kube.child_name(*parts[:-1], parts[-1] + "z")


@pytest.mark.parametrize("text", ["breast-cancer", "v" * 62 + "-", "a" * 100, "-x-", "é-model"])
def test_label_values_are_valid_and_deterministic(text: str) -> None:
    value = serving_kube.label_value(text)
    assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value
    assert value == serving_kube.label_value(text)
    if len(text) <= 63 and LABEL_VALUE.fullmatch(text):
        assert value == text


# ----- the apps/v1 Deployment ---------------------------------------------------------------------
def test_server_deployment_is_named_labelled_and_owned_by_the_roost_deployment() -> None:
    d = server_deployment()
    meta = d["metadata"]
    assert (d["apiVersion"], d["kind"]) == ("apps/v1", "Deployment")
    assert meta["name"] == f"breast-cancer-{SERVER}" and len(meta["name"]) <= 63
    assert meta["namespace"] == "team-a"
    assert meta["ownerReferences"] == [{
        "apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "name": "breast-cancer",
        "uid": OWNER.uid, "controller": True, "blockOwnerDeletion": True,
    }]
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "roost", "app.kubernetes.io/name": "roost-model-server",
        "app.kubernetes.io/component": "server", "roost.dev/deployment": "breast-cancer",
        "roost.dev/model-version": "breast-cancer-v1", "roost.dev/server": SERVER,
    }
    assert meta["annotations"]["roost.dev/server"] == SERVER
    template_labels = d["spec"]["template"]["metadata"]["labels"]
    assert template_labels == meta["labels"]
    assert d["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_server_deployment_runs_roost_serve_with_probes_on_the_health_endpoints() -> None:
    c = container(server_deployment())
    assert c["command"] == ["roost", "serve", "--config", "/etc/roost/config.json"]
    assert c["image"] == "registry.example/roost:1"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http", "scheme": "HTTP"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http", "scheme": "HTTP"}
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/live"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # loading a model may take minutes
    assert {"name": "config", "mountPath": "/etc/roost", "readOnly": True} in c["volumeMounts"]
    volumes = {v["name"]: v for v in server_deployment()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == f"breast-cancer-{SERVER}"
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
    annotations = server_deployment()["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}


def test_server_deployment_runs_as_non_root_without_capabilities() -> None:
    d = server_deployment()
    pod = d["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                      "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    sc = container(d)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_server_deployment_passes_replicas_and_resources_through() -> None:
    resources = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    d = server_deployment(replicas=3, resources=resources)
    assert d["spec"]["replicas"] == 3
    assert container(d)["resources"] == resources
    assert container(server_deployment())["resources"] == serving_kube.DEFAULT_RESOURCES
    assert d["metadata"]["annotations"]["roost.dev/input-hash"] != \
        server_deployment()["metadata"]["annotations"]["roost.dev/input-hash"]


def test_server_deployment_gets_store_settings_from_env_and_credentials_from_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROOST_S3_ENDPOINT_URL", "http://minio.storage:9000")
    monkeypatch.delenv("AWS_REGION", raising=False)
    c = container(server_deployment(secret="roost-store"))
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["ROOST_STORE"] == STORE
    assert env["ROOST_S3_ENDPOINT_URL"] == "http://minio.storage:9000"
    assert "AWS_REGION" not in env and "AWS_ACCESS_KEY_ID" not in env  # credentials never inline
    assert c["envFrom"] == [{"secretRef": {"name": "roost-store"}}]
    assert "envFrom" not in container(server_deployment())


def test_a_new_config_changes_the_pod_template_so_the_pods_roll() -> None:
    before = server_deployment()["spec"]["template"]["metadata"]["annotations"]["roost.dev/config-hash"]
    other = {**CONFIG, "requestLog": {**CONFIG["requestLog"], "sampleRate": 0.1}}
    after = serving_kube.build_server_deployment(OWNER, SERVER, other, store_root=STORE, image="i")
    assert after["spec"]["template"]["metadata"]["annotations"]["roost.dev/config-hash"] != before


def test_builders_are_deterministic() -> None:
    assert server_deployment() == server_deployment()
    assert serving_kube.build_config_map(OWNER, SERVER, CONFIG) == serving_kube.build_config_map(OWNER, SERVER, CONFIG)


# ----- the ConfigMap and the Services ---------------------------------------------------------------
def test_config_map_holds_the_serve_config_listening_on_all_interfaces() -> None:
    cm = serving_kube.build_config_map(OWNER, SERVER, CONFIG)
    assert cm["metadata"]["name"] == f"breast-cancer-{SERVER}"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert list(cm["data"]) == ["config.json"]
    assert json.loads(cm["data"]["config.json"]) == {**CONFIG, "host": "0.0.0.0", "port": 8080}


def test_version_service_selects_only_its_version() -> None:
    svc = serving_kube.build_version_service(OWNER, SERVER, "breast-cancer-v1")
    assert svc["metadata"]["name"] == f"breast-cancer-{SERVER}"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    pod_labels = server_deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    other = reconcile_deploy.server_name("breast-cancer-v2", "sha256:" + "cd" * 32)
    other_pods = serving_kube.build_server_deployment(OWNER, other, {**CONFIG, "modelVersion": "breast-cancer-v2"},
                                                      store_root=STORE, image="i")
    assert not svc["spec"]["selector"].items() <= other_pods["spec"]["template"]["metadata"]["labels"].items()


def test_stable_service_selects_every_version_and_records_the_intended_weights() -> None:
    backends = [{"version": "breast-cancer-v1", "url": "http://x", "weight": 100}]
    svc = serving_kube.build_stable_service(OWNER, backends, "header:x-user-id")
    assert svc["metadata"]["name"] == "breast-cancer"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "roost-model-server",
                                       "roost.dev/deployment": "breast-cancer"}
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == "http"
    annotations = svc["metadata"]["annotations"]
    assert annotations["roost.dev/traffic-split"] == "replica-ratio"
    assert json.loads(annotations["roost.dev/routes"]) == [{"version": "breast-cancer-v1", "weight": 100}]
    assert annotations["roost.dev/sticky-by"] == "header:x-user-id"
    for version in ("v1", "v2"):
        pods = serving_kube.build_server_deployment(OWNER, f"breast-cancer-{version}-0123456789", CONFIG,
                                                    store_root=STORE, image="i")
        assert svc["spec"]["selector"].items() <= pods["spec"]["template"]["metadata"]["labels"].items()
    assert serving_kube.service_url("breast-cancer", "team-a") == "http://breast-cancer.team-a.svc.cluster.local"


def test_merged_keeps_what_the_api_server_allocated_and_takes_our_spec() -> None:
    desired = serving_kube.build_version_service(OWNER, SERVER, "breast-cancer-v1")
    current = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": desired["metadata"]["name"], "resourceVersion": "42",
                     "annotations": {"someone/else": "x", "roost.dev/input-hash": "old"}},
        "spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "selector": {"stale": "1"}, "ports": []},
        "status": {"loadBalancer": {}},
    }
    out = serving_kube.merged(current, desired)
    assert out["spec"]["clusterIP"] == "10.0.0.7" and out["spec"]["selector"] == desired["spec"]["selector"]
    assert out["metadata"]["resourceVersion"] == "42"  # a replace is optimistic: a conflict is a retry
    assert out["metadata"]["annotations"]["someone/else"] == "x"
    assert out["metadata"]["annotations"]["roost.dev/input-hash"] == desired["metadata"]["annotations"][
        "roost.dev/input-hash"]
    assert "status" not in out


# ----- reading an apps/v1 Deployment ----------------------------------------------------------------
def observed(replicas: int = 2, ready: int = 0, updated: int | None = None, generation: int = 1,
             observed_generation: int = 1, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed_generation, "replicas": replicas, "readyReplicas": ready,
                       "updatedReplicas": replicas if updated is None else updated,
                       "conditions": conditions or []}}


DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "x" has timed out progressing.'}
REFUSED_POD = {"status": {"containerStatuses": [{
    "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
    "lastState": {"terminated": {"exitCode": 3, "message": "DigestMismatch: ..."}}}]}}
CRASHED_POD = {"status": {"containerStatuses": [{"restartCount": 1, "lastState": {"terminated": {"exitCode": 137}}}]}}


@pytest.mark.parametrize(
    ("deploy", "pods", "state", "message"),
    [
        (None, [], "Missing", ""),
        (observed(ready=0), [], "Starting", "0/2 replicas ready"),
        (observed(ready=1), [], "Starting", "1/2 replicas ready"),
        (observed(ready=2), [], "Ready", "2/2 replicas ready"),
        (observed(ready=2, updated=1), [], "Starting", "2/2 replicas ready"),
        (observed(ready=2, generation=2), [], "Starting", "waiting for the Deployment controller"),
        (observed(replicas=0), [], "Ready", "0/0 replicas ready"),
        (observed(ready=0, conditions=[DEADLINE]), [], "Failed", "has timed out progressing"),
        (observed(ready=0), [REFUSED_POD], "Failed", "refused to serve: DigestMismatch"),
        (observed(ready=1), [CRASHED_POD], "Starting", "1/2 replicas ready"),
    ],
    ids=["missing", "none-ready", "some-ready", "all-ready", "rolling", "stale-status", "scaled-to-zero",
         "progress-deadline", "artifact-refused", "crashed-but-retrying"],
)
def test_server_state_reads_the_deployment_status(deploy: dict[str, Any] | None, pods: list[dict[str, Any]],
                                                   state: str, message: str) -> None:
    s = serving_kube.server_state("v1-0123456789", "http://u", deploy, pods)
    assert s.state == state
    assert message in s.message
    assert s.url == (None if deploy is None else "http://u")


def test_server_state_counts_container_restarts() -> None:
    assert serving_kube.server_state("s", "u", observed(ready=1), [REFUSED_POD, CRASHED_POD]).restarts == 3


# ----- the backend's surface ----------------------------------------------------------------------------
def test_kubernetes_serving_has_the_local_backends_method_surface() -> None:
    public = {n for n, f in inspect.getmembers(serving_local.LocalServing, inspect.isfunction) if not n.startswith("_")}
    assert public == {"observe_server", "ensure_server", "server_names", "stop_server", "route", "router_ready",
                      "stop_all", "stop_everything", "mirror_supported", "weighted_split"}
    for name in public:
        local = inspect.signature(getattr(serving_local.LocalServing, name))
        kube = inspect.signature(getattr(serving_kube.KubernetesServing, name))
        assert list(local.parameters) == list(kube.parameters), name


def test_a_store_on_the_operators_disk_is_refused_before_any_api_call(tmp_path: Path) -> None:
    serving = serving_kube.KubernetesServing(client.ApiClient(), store_mod.Store(f"file://{tmp_path}"))
    with pytest.raises(errors.PermanentError) as info:
        serving.ensure_server("team-a", "breast-cancer", SERVER, CONFIG, owner_uid=OWNER.uid)
    assert info.value.reason == "StoreNotShared"


def test_the_server_image_defaults_like_the_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    store = store_mod.Store(f"file://{tmp_path}")
    for var in ("ROOST_SERVER_IMAGE", "ROOST_WORKER_IMAGE"):
        monkeypatch.delenv(var, raising=False)
    assert serving_kube.KubernetesServing(client.ApiClient(), store).image == kube_jobs.DEFAULT_IMAGE
    monkeypatch.setenv("ROOST_WORKER_IMAGE", "w:1")
    assert serving_kube.KubernetesServing(client.ApiClient(), store).image == "w:1"
    monkeypatch.setenv("ROOST_SERVER_IMAGE", "s:1")
    assert serving_kube.KubernetesServing(client.ApiClient(), store).image == "s:1"
