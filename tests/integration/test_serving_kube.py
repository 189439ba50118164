"""The Kubernetes serving backend against a real control plane (etcd, kube-apiserver, kube-controller-manager).

The objects are checked as the API server keeps them; the real Deployment and ReplicaSet controllers
take them from there. There is no kubelet and no scheduler, so Pods stay Pending: where a test needs a
Pod to be Ready it sets the Pod's status as the kubelet would (``pods/status``), and the real
controllers carry that up to the apps/v1 Deployment the backend reads. The store is ``s3://``: nothing
here reads or writes it (building objects does not touch the network), and nothing dials a Pod or
Service address. With the Gateway API's HTTPRoute CRD installed (the real one), the backend also keeps
an HTTPRoute with exact weights and request mirroring; without it, Shadow is refused.
"""

from __future__ import annotations

import asyncio
import json
import time
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from kubernetes import client

from roost import errors
from roost.api import deployment as deployment_api
from roost.controllers import deployment as deployment_controller
from roost.controllers import kube, runtime
from roost.devcluster import crds, gatewayapi
from roost.execution import serving_kube
from roost.reconcile import deployment as reconcile_deploy
from roost.storage import store as store_mod
from tests.conftest import Roost

pytestmark = pytest.mark.integration

T = TypeVar("T")
DIGEST = "sha256:" + "5e" * 32
DIGEST2 = "sha256:" + "7a" * 32
G, V = "gateway.networking.k8s.io", "v1"
STORE = "s3://roost-serving-test/root"
IMAGE = "registry.example/roost:test"
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
SIGNATURE = {"inputs": [{"name": "mean_radius", "type": "numeric"}], "outputs": {"type": "label"},
             "target": "target"}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture()
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and an S3 endpoint on loopback that nothing calls (the Store is lazy)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_REGION": "us-east-1", "ROOST_S3_ENDPOINT_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "ROOST_SERVER_IMAGE", "ROOST_STORE_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def store(s3_env: None) -> store_mod.Store:
    return store_mod.Store(STORE)


@pytest.fixture()
def serving(api_client: Any, store: store_mod.Store) -> serving_kube.KubernetesServing:
    return serving_kube.KubernetesServing(api_client, store, image=IMAGE, secret="roost-store")


class Served:
    """A roost.dev Deployment with a Ready ModelVersion, and the ``roost serve`` config of that version."""

    def __init__(self, roost: Roost, namespace: str, store: store_mod.Store, name: str = "breast-cancer",
                 version: str = "breast-cancer-v1", replicas: int = 2) -> None:
        roost.create(namespace, {
            "apiVersion": "roost.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": version},
            "spec": {"model": "breast-cancer", "version": 1,
                     "source": {"artifact": {"uri": store.object_uri(DIGEST), "digest": DIGEST,
                                             "datasetRef": {"name": "breast-cancer"}}}},
        })
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        roost.custom.patch_namespaced_custom_object_status(
            "roost.dev", "v1alpha1", namespace, "modelversions", version, {"status": {
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Validated", "message": "",
                                "lastTransitionTime": now, "observedGeneration": 1}],
                "artifact": {"uri": store.object_uri(DIGEST), "digest": DIGEST, "verified": True},
                "signature": SIGNATURE,
            }})
        self.body = roost.create(namespace, {
            "apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"modelVersion": version, "replicas": replicas, "resources": RESOURCES},
        })
        self.namespace, self.name, self.uid = namespace, name, self.body["metadata"]["uid"]
        spec = deployment_api.DeploymentSpec.model_validate(self.body["spec"])
        self.version = reconcile_deploy.desired_version(version, roost.get("ModelVersion", namespace, version))
        assert self.version.ready and self.version.digest == DIGEST
        self.server = reconcile_deploy.server_name(version, DIGEST)
        config = deployment_controller.server_config(types.SimpleNamespace(store=store), namespace, name, spec,
                                                     self.version)  # type: ignore[arg-type]
        assert config is not None
        self.config: dict[str, Any] = config
        self.child = f"{name}-{self.server}"

    def ensure(self, serving: serving_kube.KubernetesServing, replicas: int = 2, **kwargs: Any) -> Any:
        return serving.ensure_server(self.namespace, self.name, self.server, self.config, replicas=replicas,
                                     resources=RESOURCES, owner_uid=self.uid, **kwargs)


@pytest.fixture()
def served(roost: Roost, private_namespace: str, store: store_mod.Store) -> Iterator[Served]:
    # A namespace the session operator never reconciles: these tests write ModelVersion status themselves.
    yield Served(roost, private_namespace, store)


def owner_ref(served: Served) -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "name": served.name, "uid": served.uid,
            "controller": True, "blockOwnerDeletion": True}


def as_dict(api_client: Any, obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = api_client.sanitize_for_serialization(obj)
    return out


# ----- the objects, as the API server keeps them ------------------------------------------------------
def test_ensure_server_creates_the_owned_deployment_configmap_and_service_as_built(
    api_client: Any, serving: serving_kube.KubernetesServing, served: Served,
) -> None:
    state = served.ensure(serving)
    assert state.state == "Starting"  # just created: the Deployment controller has not looked yet
    assert state.url == f"http://{served.child}.{served.namespace}.svc.cluster.local"

    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    d = as_dict(api_client, apps.read_namespaced_deployment(served.child, served.namespace))
    meta = d["metadata"]
    assert meta["ownerReferences"] == [owner_ref(served)]
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "roost", "app.kubernetes.io/name": "roost-model-server",
        "app.kubernetes.io/component": "server", "roost.dev/deployment": served.name,
        "roost.dev/model-version": "breast-cancer-v1", "roost.dev/server": served.server,
    }
    assert d["spec"]["replicas"] == 2
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == IMAGE
    assert c["command"] == ["roost", "serve", "--config", "/etc/roost/config.json"]
    assert c["resources"] == RESOURCES
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["port"] == "http" and c["ports"][0]["containerPort"] == 8080
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ROOST_STORE"] == STORE and env["ROOST_S3_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert "AWS_SECRET_ACCESS_KEY" not in env and c["envFrom"] == [{"secretRef": {"name": "roost-store"}}]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}

    cm = as_dict(api_client, core.read_namespaced_config_map(served.child, served.namespace))
    assert cm["metadata"]["ownerReferences"] == [owner_ref(served)]
    config = json.loads(cm["data"]["config.json"])
    assert config == {**served.config, "host": "0.0.0.0", "port": 8080}
    assert config["artifact"] == {"uri": f"{STORE}/objects/sha256/{DIGEST[7:]}", "digest": DIGEST}
    assert config["modelName"] == served.name and config["signature"] == SIGNATURE

    svc = as_dict(api_client, core.read_namespaced_service(served.child, served.namespace))
    assert svc["metadata"]["ownerReferences"] == [owner_ref(served)]
    assert svc["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, "http")]
    assert svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()

    # A second ensure (a restarted operator, or the next reconcile) finds them: no twin, no write.
    # The apps/v1 Deployment's status is written by kube-controller-manager at any time: compare its
    # generation (spec writes only); the ConfigMap and Service have no such writer.
    versions = {"d": str(d["metadata"]["generation"]), "cm": cm["metadata"]["resourceVersion"],
                "svc": svc["metadata"]["resourceVersion"]}
    served.ensure(serving)
    selector = f"roost.dev/deployment={served.name}"
    assert len(apps.list_namespaced_deployment(served.namespace, label_selector=selector).items) == 1
    assert len(core.list_namespaced_config_map(served.namespace, label_selector=selector).items) == 1
    assert len(core.list_namespaced_service(served.namespace, label_selector=selector).items) == 1
    again = {"d": apps.read_namespaced_deployment(served.child, served.namespace),
             "cm": core.read_namespaced_config_map(served.child, served.namespace),
             "svc": core.read_namespaced_service(served.child, served.namespace)}
    assert {"d": str(again["d"].metadata.generation), "cm": again["cm"].metadata.resource_version,
            "svc": again["svc"].metadata.resource_version} == versions
    assert serving.server_names(served.namespace, served.name) == [served.server]

    # A spec change (replicas) reaches the object in place; without a config, the ConfigMap's is kept.
    serving.ensure_server(served.namespace, served.name, served.server, None, replicas=3, resources=RESOURCES,
                          owner_uid=served.uid)
    assert apps.read_namespaced_deployment(served.child, served.namespace).spec.replicas == 3
    kept = core.read_namespaced_config_map(served.child, served.namespace)
    assert kept.metadata.resource_version == versions["cm"] and kept.data == cm["data"]


def test_route_creates_one_stable_service_selecting_every_version(
    api_client: Any, serving: serving_kube.KubernetesServing, served: Served,
) -> None:
    assert serving.router_ready(served.namespace, served.name) is False
    served.ensure(serving)
    backends = [{"version": "breast-cancer-v1", "url": "http://ignored", "weight": 100}]
    url = serving.route(served.namespace, served.name, backends, None, owner_uid=served.uid)
    assert url == f"http://{served.name}.{served.namespace}.svc.cluster.local"
    assert serving.router_ready(served.namespace, served.name) is True
    core = client.CoreV1Api(api_client)
    svc = as_dict(api_client, core.read_namespaced_service(served.name, served.namespace))
    assert svc["metadata"]["ownerReferences"] == [owner_ref(served)]
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "roost-model-server",
                                       "roost.dev/deployment": served.name}
    assert svc["spec"]["clusterIP"]  # allocated by the API server
    assert json.loads(svc["metadata"]["annotations"]["roost.dev/routes"]) == [
        {"version": "breast-cancer-v1", "weight": 100}]
    # New weights update the Service in place: its allocated clusterIP stays.
    serving.route(served.namespace, served.name, [{**backends[0], "weight": 90}], "header:x-user-id",
                  owner_uid=served.uid)
    after = as_dict(api_client, core.read_namespaced_service(served.name, served.namespace))
    assert after["spec"]["clusterIP"] == svc["spec"]["clusterIP"]
    assert after["metadata"]["annotations"]["roost.dev/sticky-by"] == "header:x-user-id"
    assert len(core.list_namespaced_service(served.namespace, label_selector="app.kubernetes.io/component=stable")
               .items) == 1


# ----- the real controllers take it from there ------------------------------------------------------------
def mark_ready(core: client.CoreV1Api, pod: Any) -> None:
    """What the kubelet would write once the readiness probe passes."""
    conditions = [{"type": t, "status": "True"} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace,
                                     {"status": {"phase": "Running", "conditions": conditions}})


def test_observe_server_follows_the_real_controllers_from_starting_to_ready(
    api_client: Any, serving: serving_kube.KubernetesServing, served: Served,
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    assert serving.observe_server(served.namespace, served.name, served.server).state == "Missing"
    served.ensure(serving)
    selector = f"roost.dev/server={served.server}"

    def replica_set() -> Any:
        items = apps.list_namespaced_replica_set(served.namespace, label_selector=selector).items
        return items[0] if items else None

    rs = wait_for("the ReplicaSet of the apps/v1 Deployment", replica_set)
    assert rs.metadata.owner_references[0].kind == "Deployment"
    assert rs.metadata.owner_references[0].name == served.child
    pods = wait_for("two Pending Pods", lambda: (lambda p: p if len(p) == 2 else None)(
        core.list_namespaced_pod(served.namespace, label_selector=selector).items))
    assert {p.status.phase for p in pods} == {"Pending"}  # no kubelet here
    state = serving.observe_server(served.namespace, served.name, served.server)
    assert (state.state, state.message) == ("Starting", "0/2 replicas ready")

    mark_ready(core, pods[0])
    wait_for("1/2 ready", lambda: serving.observe_server(served.namespace, served.name, served.server)
             .message == "1/2 replicas ready")
    assert serving.observe_server(served.namespace, served.name, served.server).state == "Starting"
    mark_ready(core, pods[1])
    state = wait_for("Ready", lambda: (lambda s: s if s.state == "Ready" else None)(
        serving.observe_server(served.namespace, served.name, served.server)))
    assert state.message == "2/2 replicas ready"


def test_a_deployment_that_never_progresses_is_failed(
    api_client: Any, store: store_mod.Store, served: Served,
) -> None:
    impatient = serving_kube.KubernetesServing(api_client, store, image=IMAGE, progress_deadline_seconds=1)
    served.ensure(impatient)
    state = wait_for("ProgressDeadlineExceeded", lambda: (lambda s: s if s.state == "Failed" else None)(
        impatient.observe_server(served.namespace, served.name, served.server)), timeout=30)
    assert "progressing" in state.message


# ----- stopping -------------------------------------------------------------------------------------------
def test_stop_server_and_stop_all_delete_what_they_name(
    api_client: Any, serving: serving_kube.KubernetesServing, served: Served,
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    served.ensure(serving)
    other = reconcile_deploy.server_name("breast-cancer-v1", "sha256:" + "77" * 32)
    serving.ensure_server(served.namespace, served.name, other, served.config, owner_uid=served.uid)
    serving.route(served.namespace, served.name, [], owner_uid=served.uid)
    assert serving.server_names(served.namespace, served.name) == sorted([served.server, other])

    serving.stop_server(served.namespace, served.name, other)
    assert serving.server_names(served.namespace, served.name) == [served.server]
    assert serving.observe_server(served.namespace, served.name, other).state == "Missing"
    assert served.child in {c.metadata.name for c in core.list_namespaced_config_map(served.namespace).items}

    serving.stop_all(served.namespace, served.name)
    selector = f"roost.dev/deployment={served.name}"
    assert not apps.list_namespaced_deployment(served.namespace, label_selector=selector).items
    assert not core.list_namespaced_service(served.namespace, label_selector=selector).items
    assert not core.list_namespaced_config_map(served.namespace, label_selector=selector).items
    assert serving.router_ready(served.namespace, served.name) is False


def test_deleting_the_roost_deployment_garbage_collects_its_children(
    api_client: Any, roost: Roost, serving: serving_kube.KubernetesServing, served: Served,
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    served.ensure(serving)
    serving.route(served.namespace, served.name, [], owner_uid=served.uid)
    selector = f"roost.dev/deployment={served.name}"
    wait_for("the ReplicaSet", lambda: apps.list_namespaced_replica_set(served.namespace,
                                                                        label_selector=selector).items)
    # Foreground: the API server keeps the owner (deletionTimestamp + foregroundDeletion finalizer) until
    # the garbage collector has deleted its children, so this works even when the collector starts
    # watching the CRD's kind only after its next discovery refresh (every 30 s).
    roost.custom.delete_namespaced_custom_object("roost.dev", "v1alpha1", served.namespace, "deployments",
                                                 served.name, propagation_policy="Foreground")

    def children() -> list[str]:
        return ([f"Deployment/{d.metadata.name}" for d in
                 apps.list_namespaced_deployment(served.namespace, label_selector=selector).items]
                + [f"ReplicaSet/{r.metadata.name}" for r in
                   apps.list_namespaced_replica_set(served.namespace, label_selector=selector).items]
                + [f"Pod/{p.metadata.name}" for p in
                   core.list_namespaced_pod(served.namespace, label_selector=selector).items]
                + [f"Service/{s.metadata.name}" for s in
                   core.list_namespaced_service(served.namespace, label_selector=selector).items]
                + [f"ConfigMap/{c.metadata.name}" for c in
                   core.list_namespaced_config_map(served.namespace, label_selector=selector).items])

    try:
        wait_for("garbage collection", lambda: not children(), timeout=45, every=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}; left: {children()}") from None


# ----- refusal -------------------------------------------------------------------------------------------
def test_a_file_store_is_refused_with_store_not_shared(
    api_client: Any, roost: Roost, private_namespace: str, tmp_path: Any, s3_env: None,
) -> None:
    local = store_mod.Store(f"file://{tmp_path / 'store'}")
    served = Served(roost, private_namespace, local)
    serving = serving_kube.KubernetesServing(api_client, local, image=IMAGE)
    with pytest.raises(errors.PermanentError) as info:
        served.ensure(serving)
    assert info.value.reason == "StoreNotShared"
    assert not client.AppsV1Api(api_client).list_namespaced_deployment(private_namespace).items
    assert serving.server_names(private_namespace, served.name) == []


# ----- the controller drives this backend like the local one ------------------------------------------
def test_the_deployment_controller_serves_through_the_kubernetes_backend(
    api_client: Any, serving: serving_kube.KubernetesServing, served: Served, store: store_mod.Store,
    tmp_path: Any,
) -> None:
    rt = runtime.Runtime(store=store, executor=None, kube=kube.Kube(api_client),  # type: ignore[arg-type]
                         state_dir=tmp_path, serving=serving)
    body = dict(served.body)

    def reconcile() -> dict[str, Any]:
        plan = asyncio.run(deployment_controller.reconcile_once(rt, body))
        body["status"] = plan.status
        return {c["type"]: (c["status"], c["reason"]) for c in plan.status.get("conditions", [])}

    assert reconcile()["Ready"] == ("False", "Starting")
    assert client.AppsV1Api(api_client).read_namespaced_deployment(served.child, served.namespace).spec.replicas == 2
    core = client.CoreV1Api(api_client)
    selector = f"roost.dev/server={served.server}"
    pods = wait_for("two Pods", lambda: (lambda p: p if len(p) == 2 else None)(
        core.list_namespaced_pod(served.namespace, label_selector=selector).items))
    for pod in pods:
        mark_ready(core, pod)
    wait_for("Ready", lambda: serving.observe_server(served.namespace, served.name, served.server).state == "Ready")
    assert reconcile()["Ready"] == ("False", "Routing")  # the stable Service was just created
    assert reconcile()["Ready"] == ("True", "Serving")
    assert body["status"]["url"] == f"http://{served.name}.{served.namespace}.svc.cluster.local"
    assert body["status"]["stable"]["modelVersion"] == "breast-cancer-v1"


def test_the_deployment_controller_stalls_with_store_not_shared_on_a_file_store(
    api_client: Any, roost: Roost, private_namespace: str, tmp_path: Any, s3_env: None,
) -> None:
    local = store_mod.Store(f"file://{tmp_path / 'store'}")
    served = Served(roost, private_namespace, local)
    rt = runtime.Runtime(store=local, executor=None, kube=kube.Kube(api_client),  # type: ignore[arg-type]
                         state_dir=tmp_path, serving=serving_kube.KubernetesServing(api_client, local))
    plan = asyncio.run(deployment_controller.reconcile_once(rt, served.body))
    stalled = next(c for c in plan.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "StoreNotShared")


def test_without_the_gateway_api_a_shadow_rollout_is_refused_and_starts_no_candidate(
    api_client: Any, roost: Roost, private_namespace: str, store: store_mod.Store, tmp_path: Any,
) -> None:
    served = Served(roost, private_namespace, store)
    _second_version(roost, served, store)
    rt = _controller(api_client, store, tmp_path)
    assert rt.serving.mirror_supported() is False
    body = dict(served.body)
    _serve_v1(api_client, rt, served, body)
    body["spec"] = {**body["spec"], "modelVersion": "breast-cancer-v2", "strategy": {"type": "Shadow"}}
    plan = asyncio.run(deployment_controller.reconcile_once(rt, body))
    stalled = next(c for c in plan.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "MirrorUnsupported")
    assert "HTTPRoute" in stalled["message"]
    available = next(c for c in plan.status["conditions"] if c["type"] == "Available")
    assert available["status"] == "True"
    v2 = reconcile_deploy.server_name("breast-cancer-v2", DIGEST2)
    assert client.AppsV1Api(api_client).list_namespaced_deployment(
        served.namespace, label_selector=f"roost.dev/server={v2}").items == []


# ----- with the Gateway API installed: the real HTTPRoute CRD (standard channel, from the Go module proxy)
# validates every route with its own schema and CEL rules; it is removed again when this module ends. ------


@pytest.fixture(scope="module")
def gateway_api(api_client: Any) -> Iterator[None]:
    bodies = gatewayapi.crds(("httproutes",))
    crds.apply(api_client, bodies)
    yield
    ext = client.ApiextensionsV1Api(api_client)
    for body in bodies:
        ext.delete_custom_resource_definition(body["metadata"]["name"])
    wait_for("the HTTPRoute CRD gone", lambda: _gone(ext, bodies[0]["metadata"]["name"]), timeout=60)


def _gone(ext: client.ApiextensionsV1Api, name: str) -> bool:
    return all(c.metadata.name != name for c in ext.list_custom_resource_definition().items)


def _route(api_client: Any, served: Served) -> dict[str, Any]:
    out: dict[str, Any] = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        G, V, served.namespace, "httproutes", served.name)
    return out


def _svc(served: Served, server: str) -> str:
    return f"{served.name}-{server}"


def test_route_keeps_an_httproute_with_exact_weights_attached_to_the_stable_service(
    gateway_api: None, api_client: Any, store: store_mod.Store, served: Served,
) -> None:
    serving = serving_kube.KubernetesServing(api_client, store)
    assert serving.gateway_api() is True and serving.mirror_supported() is True
    v2 = reconcile_deploy.server_name("breast-cancer-v2", DIGEST2)
    backends = [{"version": "breast-cancer-v1", "server": served.server, "weight": 90},
                {"version": "breast-cancer-v2", "server": v2, "weight": 10}]
    serving.route(served.namespace, served.name, backends, owner_uid=served.uid)
    route = _route(api_client, served)
    assert route["metadata"]["ownerReferences"] == [owner_ref(served)]
    assert route["spec"]["parentRefs"] == [{"group": "", "kind": "Service", "name": served.name, "port": 80}]
    [rule] = route["spec"]["rules"]
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": _svc(served, served.server), "port": 80, "weight": 90},
        {"group": "", "kind": "Service", "name": _svc(served, v2), "port": 80, "weight": 10}]
    svc = client.CoreV1Api(api_client).read_namespaced_service(served.name, served.namespace)
    assert svc.metadata.annotations["roost.dev/traffic-split"] == "httproute"

    # the next step's weights update the same object in place
    uid = route["metadata"]["uid"]
    serving.route(served.namespace, served.name, [{**backends[0], "weight": 50}, {**backends[1], "weight": 50}],
                  owner_uid=served.uid)
    route = _route(api_client, served)
    assert route["metadata"]["uid"] == uid
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [50, 50]

    # a Gateway named in the spec is the parent instead
    serving.route(served.namespace, served.name, backends[:1], owner_uid=served.uid,
                  gateway={"name": "public", "namespace": "gateways", "sectionName": "https"})
    route = _route(api_client, served)
    assert route["spec"]["parentRefs"] == [{"group": G, "kind": "Gateway", "name": "public",
                                            "namespace": "gateways", "sectionName": "https"}]
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == [_svc(served, served.server)]


def test_a_shadow_candidate_is_a_request_mirror_never_a_backend(
    gateway_api: None, api_client: Any, store: store_mod.Store, served: Served,
) -> None:
    serving = serving_kube.KubernetesServing(api_client, store)
    v2 = reconcile_deploy.server_name("breast-cancer-v2", DIGEST2)
    serving.route(served.namespace, served.name, [
        {"version": "breast-cancer-v1", "server": served.server, "weight": 100},
        {"version": "breast-cancer-v2", "server": v2, "weight": 0, "mirror": True}], owner_uid=served.uid)
    [rule] = _route(api_client, served)["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == [_svc(served, served.server)]
    assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"group": "", "kind": "Service", "name": _svc(served, v2), "port": 80}}}]


def _second_version(roost: Roost, served: Served, store: store_mod.Store) -> None:
    roost.create(served.namespace, {
        "apiVersion": "roost.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "breast-cancer-v2"},
        "spec": {"model": "breast-cancer", "version": 2,
                 "source": {"artifact": {"uri": store.object_uri(DIGEST2), "digest": DIGEST2,
                                         "datasetRef": {"name": "breast-cancer"}}}}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    roost.custom.patch_namespaced_custom_object_status(
        "roost.dev", "v1alpha1", served.namespace, "modelversions", "breast-cancer-v2", {"status": {
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Validated", "message": "",
                            "lastTransitionTime": now, "observedGeneration": 1}],
            "artifact": {"uri": store.object_uri(DIGEST2), "digest": DIGEST2, "verified": True},
            "signature": served.config.get("signature")}})


def _controller(api_client: Any, store: store_mod.Store, tmp_path: Any) -> runtime.Runtime:
    return runtime.Runtime(store=store, executor=None, kube=kube.Kube(api_client),  # type: ignore[arg-type]
                           state_dir=tmp_path, serving=serving_kube.KubernetesServing(api_client, store))


def _serve_v1(api_client: Any, rt: runtime.Runtime, served: Served, body: dict[str, Any]) -> None:
    core = client.CoreV1Api(api_client)
    for _ in range(20):
        plan = asyncio.run(deployment_controller.reconcile_once(rt, body))
        body["status"] = plan.status
        if (body["status"].get("stable") or {}).get("modelVersion") and body["status"].get("url"):
            return
        selector = "roost.dev/deployment=" + served.name
        for pod in core.list_namespaced_pod(served.namespace, label_selector=selector).items:
            if not any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])):
                mark_ready(core, pod)
        time.sleep(0.5)
    raise AssertionError(body.get("status"))


def test_a_canary_through_the_controller_splits_replicas_and_route_weights(
    gateway_api: None, api_client: Any, roost: Roost, private_namespace: str, store: store_mod.Store, tmp_path: Any,
) -> None:
    served = Served(roost, private_namespace, store, replicas=10)
    _second_version(roost, served, store)
    rt = _controller(api_client, store, tmp_path)
    body = dict(served.body)
    _serve_v1(api_client, rt, served, body)
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    assert apps.read_namespaced_deployment(served.child, served.namespace).spec.replicas == 10
    body["spec"] = {**body["spec"], "modelVersion": "breast-cancer-v2", "strategy": {
        "type": "Canary", "steps": [{"setWeight": 20}, {"pause": {}}]}}
    v2 = reconcile_deploy.server_name("breast-cancer-v2", DIGEST2)
    for _ in range(40):
        plan = asyncio.run(deployment_controller.reconcile_once(rt, body))
        body["status"] = plan.status
        if (body["status"].get("canary") or {}).get("weight") == 20:
            break
        for pod in core.list_namespaced_pod(served.namespace, label_selector=f"roost.dev/server={v2}").items:
            if not any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])):
                mark_ready(core, pod)
        time.sleep(0.5)
    assert (body["status"].get("canary") or {}).get("weight") == 20, body["status"]
    assert apps.read_namespaced_deployment(served.child, served.namespace).spec.replicas == 8
    assert apps.read_namespaced_deployment(_svc(served, v2), served.namespace).spec.replicas == 2
    assert body["status"]["backend"]["replicas"] == {served.server: 8, v2: 2}
    weights = {b["name"]: b["weight"] for b in _route(api_client, served)["spec"]["rules"][0]["backendRefs"]}
    assert weights == {_svc(served, served.server): 80, _svc(served, v2): 20}
