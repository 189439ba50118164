"""KubernetesServing: each version's model server is an ``apps/v1`` Deployment, behind one stable Service.

The in-cluster twin of :mod:`roost.execution.serving_local`, with the same method surface, so the
roost.dev Deployment controller drives either. For a roost.dev Deployment ``<d>`` and a version
server ``<s>`` (``reconcile.deployment.server_name``: ``<modelVersion>-<10 hex of the digest>``):

==================================  ===============================================================
``ConfigMap <d>-<s>``               ``config.json``: the ``roost serve`` config (host 0.0.0.0, port 8080)
``Deployment <d>-<s>`` (apps/v1)    ``spec.replicas`` Pods running ``roost serve --config
                                    /etc/roost/config.json``; probes on ``/v2/health/*``; non-root,
                                    read-only root filesystem, no capabilities, seccomp RuntimeDefault
``Service <d>-<s>``                 ClusterIP, port 80 -> 8080, this version's Pods only
``Service <d>``                     ClusterIP, port 80 -> 8080, the Pods of *every* version of ``<d>``:
                                    the stable URL ``http://<d>.<namespace>.svc.cluster.local``
==================================  ===============================================================

Names longer than 63 characters (or not DNS-1035 labels) become ``<head>-<10 hex of sha256>``;
label values likewise. Every object has a controller ownerReference to the roost.dev Deployment,
so deleting it garbage-collects them (kube-controller-manager), and an ``roost.dev/input-hash``
annotation: an object is replaced only when what we would build differs from what was built, and
an object of that name owned by someone else is refused (``NameConflict``), never adopted.

Traffic, in this backend: the stable Service selects the Pods of all versions, so kube-proxy splits
requests by the ratio of *ready* Pods; the controller sizes each version's Deployment by its weight
(:func:`roost.reconcile.deployment.replica_split`), as Argo Rollouts' basic canary does. When the
Gateway API's HTTPRoute CRD (``httproutes.gateway.networking.k8s.io``, v1) is installed, ``route()``
also keeps an ``HTTPRoute <d>`` with the exact weights over the version Services and a
``RequestMirror`` filter for a shadow candidate; it attaches to ``spec.gatewayRef`` or, by default,
to the stable Service itself (GAMMA: a mesh applies it to in-cluster calls of the stable URL).
Without it there is no mirroring, and a Shadow rollout is refused (``mirror_supported``): the stable
Service would send clients to the candidate. ``stickyBy`` is recorded as an annotation (session
persistence is not in the Gateway API's standard channel).

Like the Kubernetes executor, the Pods cannot see the operator's disk: with a ``file://`` store,
:meth:`KubernetesServing.ensure_server` refuses with reason ``StoreNotShared``. Nothing here dials a
Pod or Service address: readiness is what the API server reports.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from roost import errors
from roost.api import common
from roost.api import deployment as roost_deployment
from roost.execution import kube_jobs
from roost.execution.executor import Owner
from roost.execution.kube_errors import mapped_errors
from roost.execution.serving_local import ServerState
from roost.storage import store as store_mod

OWNER_KIND = roost_deployment.KIND.kind  # roost.dev/v1alpha1 Deployment
CONFIG_DIR = "/etc/roost"
CONFIG_KEY = "config.json"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_KEY}"
PORT = 8080
SERVICE_PORT = 80
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
PROGRESS_DEADLINE_SECONDS = 600
REFUSED_EXIT_CODE = 3  # ``roost serve`` refused the artifact: restarting will not help
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "250m", "memory": "512Mi"}}

MAX_NAME = 63
HASH_CHARS = 10
INPUT_HASH = "roost.dev/input-hash"
CONFIG_HASH = "roost.dev/config-hash"
SERVER_ANNOTATION = "roost.dev/server"
ROUTES_ANNOTATION = "roost.dev/routes"
STICKY_ANNOTATION = "roost.dev/sticky-by"
TRAFFIC_ANNOTATION = "roost.dev/traffic-split"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
HTTPROUTE_CRD = f"{HTTPROUTE_PLURAL}.{GATEWAY_GROUP}"
GATEWAY_RECHECK_SECONDS = 60.0
NAME_LABEL = "app.kubernetes.io/name"
SERVER_APP = "roost-model-server"
MANAGED = {"app.kubernetes.io/managed-by": "roost", NAME_LABEL: SERVER_APP}
MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED.items())

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# ----- names and labels ------------------------------------------------------------------------------
def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def child_name(*parts: str) -> str:
    """``<part>-<part>...`` when that is a DNS-1035 label of at most 63 characters (Service names must
    be), else ``<head>-<10 hex of the sha256 of the full name>``: deterministic, DNS-safe, <= 63."""
    full = "-".join(parts)
    if len(full) <= MAX_NAME and _DNS1035.fullmatch(full):
        return full
    head = re.sub(r"[^a-z0-9-]", "-", full.lower())
    if not head[:1].isalpha():
        head = "r" + head
    head = head[:MAX_NAME - HASH_CHARS - 1].rstrip("-")
    return f"{head}-{_short_hash(full)}"


def label_value(text: str) -> str:
    """``text`` when it is a valid label value, else a truncated head plus a hash (<= 63 characters)."""
    if len(text) <= MAX_NAME and _LABEL_VALUE.fullmatch(text):
        return text
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:MAX_NAME - HASH_CHARS - 1]
    head = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", head)
    return f"{head}-{_short_hash(text)}" if head else _short_hash(text)


def stable_selector(deployment: str) -> dict[str, str]:
    """The Pods of every version of a roost.dev Deployment."""
    return {NAME_LABEL: SERVER_APP, "roost.dev/deployment": label_value(deployment)}


def version_selector(deployment: str, server: str) -> dict[str, str]:
    """The Pods of one version server (immutable: the apps/v1 Deployment's ``spec.selector``)."""
    return {**stable_selector(deployment), "roost.dev/server": label_value(server)}


def deployment_labels(deployment: str) -> dict[str, str]:
    return {**MANAGED, "roost.dev/deployment": label_value(deployment)}


def version_labels(deployment: str, server: str, model_version: str) -> dict[str, str]:
    return {**deployment_labels(deployment), "app.kubernetes.io/component": "server",
            "roost.dev/model-version": label_value(model_version), "roost.dev/server": label_value(server)}


def service_url(name: str, namespace: str) -> str:
    """The in-cluster URL of a Service (for clients in the cluster; the operator never dials it)."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def input_hash(obj: dict[str, Any]) -> str:
    """sha256 of everything we build (the ``roost.dev/input-hash`` annotation itself excluded)."""
    clean = copy.deepcopy(obj)
    clean.get("metadata", {}).get("annotations", {}).pop(INPUT_HASH, None)
    return hashlib.sha256(json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _stamped(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("annotations", {})[INPUT_HASH] = input_hash(obj)
    return obj


def _metadata(owner: Owner, name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": owner.namespace, "labels": labels, "annotations": annotations,
            "ownerReferences": [kube_jobs.owner_reference(OWNER_KIND, owner.name, owner.uid)]}


# ----- pure builders -------------------------------------------------------------------------------
def server_config_text(config: dict[str, Any]) -> str:
    """The ``config.json`` a Pod reads: the controller's config, listening on all interfaces, port 8080."""
    return json.dumps({**config, "host": "0.0.0.0", "port": PORT}, indent=2, sort_keys=True)


def build_config_map(owner: Owner, server: str, config: dict[str, Any]) -> dict[str, Any]:
    """The ConfigMap holding one version server's ``roost serve`` config."""
    model_version = str(config.get("modelVersion", ""))
    return _stamped({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _metadata(owner, child_name(owner.name, server),
                              version_labels(owner.name, server, model_version), {SERVER_ANNOTATION: server}),
        "data": {CONFIG_KEY: server_config_text(config)},
    })


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http", "scheme": "HTTP"}, "periodSeconds": period,
            "timeoutSeconds": 2, "failureThreshold": failures}


def build_server_deployment(owner: Owner, server: str, config: dict[str, Any], *, store_root: str, image: str,
                            secret: str | None = None, replicas: int = 1, resources: dict[str, Any] | None = None,
                            progress_deadline_seconds: int = PROGRESS_DEADLINE_SECONDS) -> dict[str, Any]:
    """The apps/v1 Deployment of one version server: a pure builder, so tests compare objects, not calls.

    Args:
        owner: the roost.dev Deployment (namespace, name, uid).
        server: the version server's name (``reconcile.deployment.server_name``).
        config: the ``roost serve`` config without host/port (it goes to the ConfigMap; its hash to the
            Pod template, so a new config rolls the Pods).
        replicas: ``spec.replicas`` of the roost.dev Deployment, passed through.
        resources: ``{"requests": {...}, "limits": {...}}`` in Kubernetes quantities; None = defaults.
    """
    name = child_name(owner.name, server)
    labels = version_labels(owner.name, server, str(config.get("modelVersion", "")))
    env = [{"name": "ROOST_STORE", "value": store_root}, {"name": "PYTHONUNBUFFERED", "value": "1"},
           {"name": "HOME", "value": "/tmp"}]
    env += [{"name": k, "value": os.environ[k]} for k in kube_jobs.STORE_ENV if os.environ.get(k)]
    container: dict[str, Any] = {
        "name": "server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["roost", "serve", "--config", CONFIG_PATH],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": env,
        "resources": resources or DEFAULT_RESOURCES,
        # The artifact loads before the port opens: the startup probe gives it 5 minutes, then liveness
        # takes over; readiness gates traffic.
        "startupProbe": _probe(LIVE_PATH, 5, 60),
        "readinessProbe": _probe(READY_PATH, 5, 3),
        "livenessProbe": _probe(LIVE_PATH, 10, 3),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "runAsUser": kube_jobs.RUN_AS_USER,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    return _stamped({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(owner, name, labels, {SERVER_ANNOTATION: server}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": version_selector(owner.name, server)},
            "progressDeadlineSeconds": progress_deadline_seconds,
            "revisionHistoryLimit": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                # prometheus.io/*: the annotations Prometheus's common kubernetes_sd scrape configs (the
                # community Helm chart's, for one) look for; the metrics carry the version label themselves
                "metadata": {"labels": labels,
                             "annotations": {CONFIG_HASH: _short_hash(server_config_text(config)),
                                             "prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": kube_jobs.RUN_AS_USER,
                                        "runAsGroup": kube_jobs.RUN_AS_USER, "fsGroup": kube_jobs.RUN_AS_USER,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": name, "items": [
                                    {"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
                                {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    })


def _service_spec(selector: dict[str, str]) -> dict[str, Any]:
    return {"type": "ClusterIP", "selector": selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]}


def build_version_service(owner: Owner, server: str, model_version: str) -> dict[str, Any]:
    """The Service of one version server (its Pods only): for pinned traffic and analysis."""
    return _stamped({
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(owner, child_name(owner.name, server),
                              version_labels(owner.name, server, model_version), {SERVER_ANNOTATION: server}),
        "spec": _service_spec(version_selector(owner.name, server)),
    })


def build_stable_service(owner: Owner, backends: list[dict[str, Any]], sticky_by: str | None = None,
                         split: str = "replica-ratio") -> dict[str, Any]:
    """The one stable Service ``<deployment>``: every version's ready Pods.

    ``backends`` (``[{"version", "weight", ...}]``), how they are split (``replica-ratio`` or
    ``httproute``) and ``sticky_by`` are recorded as annotations for people and tools.
    """
    routes = [{"version": b.get("version"), "weight": b.get("weight"), **({"mirror": True} if b.get("mirror") else {})}
              for b in backends]
    annotations = {TRAFFIC_ANNOTATION: split, ROUTES_ANNOTATION: json.dumps(routes, sort_keys=True)}
    if sticky_by:
        annotations[STICKY_ANNOTATION] = sticky_by
    return _stamped({
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(owner, child_name(owner.name),
                              {**deployment_labels(owner.name), "app.kubernetes.io/component": "stable"},
                              annotations),
        "spec": _service_spec(stable_selector(owner.name)),
    })


def build_http_route(owner: Owner, backends: list[dict[str, Any]],
                     gateway: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``HTTPRoute <deployment>`` (gateway.networking.k8s.io/v1): exact weights over version Services.

    Args:
        backends: ``[{"version", "server", "weight", "mirror"?}]``; routed ones become ``backendRefs``
            with their weight (Gateway API: a backend's share is its weight over the rule's sum), a
            mirrored one a ``RequestMirror`` filter (clients never see its answers).
        gateway: ``{"name", "namespace"?, "sectionName"?}`` of a Gateway; None attaches the route to
            the stable Service (GAMMA, Gateway API for service mesh).
    """
    def ref(server: str) -> dict[str, Any]:
        return {"group": "", "kind": "Service", "name": child_name(owner.name, server), "port": SERVICE_PORT}

    parent = ({"group": GATEWAY_GROUP, "kind": "Gateway", **{k: v for k, v in gateway.items() if v}}
              if gateway else {"group": "", "kind": "Service", "name": child_name(owner.name), "port": SERVICE_PORT})
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{**ref(b["server"]), "weight": int(b.get("weight") or 0)}
                        for b in backends if not b.get("mirror")],
    }
    mirrors = [{"type": "RequestMirror", "requestMirror": {"backendRef": ref(b["server"])}}
               for b in backends if b.get("mirror")]
    if mirrors:
        rule["filters"] = mirrors
    return _stamped({
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}", "kind": "HTTPRoute",
        "metadata": _metadata(owner, child_name(owner.name),
                              {**deployment_labels(owner.name), "app.kubernetes.io/component": "route"}, {}),
        "spec": {"parentRefs": [parent], "rules": [rule]},
    })


# ----- pure observation ------------------------------------------------------------------------------
def _refusal(pods: list[dict[str, Any]]) -> str | None:
    """The last words of a container that exited with ``REFUSED_EXIT_CODE``, if any did."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                term = state.get("terminated") or {}
                if term.get("exitCode") == REFUSED_EXIT_CODE:
                    return (term.get("message") or term.get("reason") or "exit code 3").strip()[-500:]
    return None


def server_state(server: str, url: str, deploy: dict[str, Any] | None,
                 pods: list[dict[str, Any]] | None = None) -> ServerState:
    """Read an apps/v1 Deployment (and its Pods) into Ready | Starting | Failed | Missing.

    Failed: the Deployment controller reports ``ProgressDeadlineExceeded``, or a server refused its
    artifact (exit code 3). Ready: the controller saw the current generation and every desired replica
    is updated and ready (zero desired replicas counts as Ready: scaled to zero, nothing to wait for).
    """
    if deploy is None:
        return ServerState(server, "Missing")
    pods = pods or []
    restarts = sum(int(cs.get("restartCount") or 0) for p in pods
                   for cs in (p.get("status") or {}).get("containerStatuses") or [])
    meta, spec, status = deploy.get("metadata") or {}, deploy.get("spec") or {}, deploy.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("status") == "False" and \
                c.get("reason") == "ProgressDeadlineExceeded":
            return ServerState(server, "Failed", url, c.get("message") or "progress deadline exceeded", restarts)
    refused = _refusal(pods)
    if refused is not None:
        return ServerState(server, "Failed", url, f"refused to serve: {refused}", restarts)
    desired = int(spec.get("replicas", 1))
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return ServerState(server, "Starting", url, "waiting for the Deployment controller", restarts)
    ready, updated = int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0)
    message = f"{ready}/{desired} replicas ready"
    if ready >= desired and updated >= desired:
        return ServerState(server, "Ready", url, message, restarts)
    return ServerState(server, "Starting", url, message, restarts)


def _owned_by_other(current: dict[str, Any], desired: dict[str, Any]) -> str | None:
    """The uid of another controller owning ``current``, if any."""
    want = desired["metadata"]["ownerReferences"][0]["uid"]
    for ref in (current.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") != want:
            return str(ref.get("uid"))
    return None


def merged(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """``current`` brought to ``desired`` for a replace: our labels, annotations, owner and spec/data
    win; what the API server and other controllers set (clusterIP, revision annotations...) stays."""
    out = copy.deepcopy(current)
    out.pop("status", None)
    meta, want = out.setdefault("metadata", {}), desired["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), **want["labels"]}
    meta["annotations"] = {**(meta.get("annotations") or {}), **want["annotations"]}
    meta["ownerReferences"] = want["ownerReferences"]
    if "spec" in desired:
        out["spec"] = {**(out.get("spec") or {}), **desired["spec"]}
    if "data" in desired:
        out["data"] = desired["data"]
    return out


# ----- effects -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ops:
    read: Callable[..., Any]
    create: Callable[..., Any]
    replace: Callable[..., Any]
    delete: Callable[..., Any]
    list: Callable[..., Any]
    list_all: Callable[..., Any]


def _custom_ops(api: client.CustomObjectsApi, group: str, version: str, plural: str) -> tuple[Callable[..., Any], ...]:
    """read, create, replace, delete, list, list_all of a custom resource, shaped like the typed APIs."""
    return (
        lambda name, ns: api.get_namespaced_custom_object(group, version, ns, plural, name),
        lambda ns, body: api.create_namespaced_custom_object(group, version, ns, plural, body),
        lambda name, ns, body: api.replace_namespaced_custom_object(group, version, ns, plural, name, body),
        lambda name, ns, **kw: api.delete_namespaced_custom_object(group, version, ns, plural, name, **kw),
        lambda ns, **kw: api.list_namespaced_custom_object(group, version, ns, plural, **kw),
        lambda **kw: api.list_cluster_custom_object(group, version, plural, **kw),
    )


class KubernetesServing:
    """Model servers as apps/v1 Deployments and Services through the API server (blocking calls)."""

    def __init__(self, api_client: client.ApiClient, store: store_mod.Store, image: str | None = None,
                 secret: str | None = None, progress_deadline_seconds: int = PROGRESS_DEADLINE_SECONDS) -> None:
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.extensions = client.ApiextensionsV1Api(api_client)
        self._gateway_api: tuple[float, bool] | None = None  # (checked at, installed)
        self.store = store
        self.image = (image or os.environ.get("ROOST_SERVER_IMAGE") or os.environ.get("ROOST_WORKER_IMAGE")
                      or kube_jobs.DEFAULT_IMAGE)
        self.secret = secret or os.environ.get("ROOST_STORE_SECRET")
        self.progress_deadline_seconds = progress_deadline_seconds
        self._ops = {
            "Deployment": _Ops(self.apps.read_namespaced_deployment, self.apps.create_namespaced_deployment,
                               self.apps.replace_namespaced_deployment, self.apps.delete_namespaced_deployment,
                               self.apps.list_namespaced_deployment, self.apps.list_deployment_for_all_namespaces),
            "Service": _Ops(self.core.read_namespaced_service, self.core.create_namespaced_service,
                            self.core.replace_namespaced_service, self.core.delete_namespaced_service,
                            self.core.list_namespaced_service, self.core.list_service_for_all_namespaces),
            "ConfigMap": _Ops(self.core.read_namespaced_config_map, self.core.create_namespaced_config_map,
                              self.core.replace_namespaced_config_map, self.core.delete_namespaced_config_map,
                              self.core.list_namespaced_config_map,
                              self.core.list_config_map_for_all_namespaces),
            "HTTPRoute": _Ops(*_custom_ops(self.custom, GATEWAY_GROUP, GATEWAY_VERSION, HTTPROUTE_PLURAL)),
        }

    # ----- helpers ---------------------------------------------------------------------------------
    def _dict(self, obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = self.api_client.sanitize_for_serialization(obj)
        return out

    @staticmethod
    def _call(what: str, fn: Callable[..., Any], *args: Any, tolerate: int | None = None, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with errors mapped; None when the API answers ``tolerate`` (404, 409)."""
        with mapped_errors(what):
            try:
                return fn(*args, **kwargs)
            except ApiException as e:
                if tolerate is not None and e.status == tolerate:
                    return None
                raise

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._call(f"read {kind} {namespace}/{name}", self._ops[kind].read, name, namespace, tolerate=404)
        return None if obj is None else self._dict(obj)

    def _apply(self, desired: dict[str, Any]) -> str:
        """Create ``desired`` or replace what differs from it; return Created | Updated | Unchanged.

        Raises:
            roost.errors.PermanentError: ``NameConflict`` when another owner controls the name.
        """
        kind, meta = desired["kind"], desired["metadata"]
        ns, name = meta["namespace"], meta["name"]
        ops = self._ops[kind]
        current = self._read(kind, ns, name)
        if current is None:
            if self._call(f"create {kind} {ns}/{name}", ops.create, ns, desired, tolerate=409) is not None:
                return "Created"
            current = self._read(kind, ns, name)  # created meanwhile: AlreadyExists is success
            if current is None:
                raise errors.TemporaryError("Conflict", f"{kind} {ns}/{name} came and went", delay=0.5)
        other = _owned_by_other(current, desired)
        if other is not None:
            raise errors.PermanentError(
                "NameConflict", f"{kind} {ns}/{name} exists and is controlled by another object (uid {other})")
        if (current["metadata"].get("annotations") or {}).get(INPUT_HASH) == meta["annotations"][INPUT_HASH]:
            return "Unchanged"
        self._call(f"replace {kind} {ns}/{name}", ops.replace, name, ns, merged(current, desired))
        return "Updated"

    def _delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (its dependents in the background); False when it was not there."""
        done = self._call(f"delete {kind} {namespace}/{name}", self._ops[kind].delete, name, namespace,
                          propagation_policy="Background", tolerate=404)
        return done is not None

    def _list(self, kind: str, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        ops = self._ops[kind]
        what = f"list {kind} in {namespace or 'all namespaces'}"
        result = (self._call(what, ops.list, namespace, label_selector=selector) if namespace
                  else self._call(what, ops.list_all, label_selector=selector))
        items = result["items"] if isinstance(result, dict) else result.items  # custom objects come as dicts
        return [self._dict(item) for item in items]

    def _owner(self, namespace: str, deployment: str, owner_uid: str | None) -> Owner:
        if owner_uid:
            return Owner(OWNER_KIND, namespace, deployment, owner_uid)
        what = f"read Deployment.roost.dev {namespace}/{deployment}"
        obj = self._call(what, self.custom.get_namespaced_custom_object, common.GROUP, common.VERSION, namespace,
                         roost_deployment.KIND.plural, deployment, tolerate=404)
        if obj is None:
            raise errors.PermanentError("OwnerNotFound", f"Deployment.roost.dev {namespace}/{deployment} is gone")
        return Owner(OWNER_KIND, namespace, deployment, str(obj["metadata"]["uid"]))

    def _require_shared_store(self) -> None:
        if not self.store.shared:
            raise errors.PermanentError(
                "StoreNotShared",
                f"Kubernetes serving needs an artifact store that Pods can reach (s3://, gs://, az:// or a "
                f"PVC at the same path); {self.store.root} is on the operator's disk",
            )

    # ----- model servers -------------------------------------------------------------------------------
    def observe_server(self, namespace: str, deployment: str, name: str) -> ServerState:
        """What the API server says of version server ``name``, without changing anything."""
        child = child_name(deployment, name)
        deploy = self._read("Deployment", namespace, child)
        if deploy is None:
            return ServerState(name, "Missing")
        selector = ",".join(f"{k}={v}" for k, v in version_selector(deployment, name).items())
        listed = self._call(f"list Pods of {namespace}/{child}", self.core.list_namespaced_pod, namespace,
                            label_selector=selector)
        pods = [self._dict(p) for p in listed.items]
        return server_state(name, service_url(child, namespace), deploy, pods)

    def ensure_server(self, namespace: str, deployment: str, name: str, config: dict[str, Any] | None, *,
                      replicas: int = 1, resources: dict[str, Any] | None = None,
                      owner_uid: str | None = None) -> ServerState:
        """Create or update the ConfigMap, apps/v1 Deployment and Service of version server ``name``.

        Args:
            config: the ``roost serve`` config without host/port; None reuses the ConfigMap's.
            replicas: ``spec.replicas`` of the roost.dev Deployment.
            resources: ``spec.resources`` in wire form (``{"requests": {"cpu": "1"}}``); None = defaults.
            owner_uid: the roost.dev Deployment's uid (read from the API server when None).

        Raises:
            roost.errors.PermanentError: ``StoreNotShared`` with a ``file://`` store; ``NameConflict``;
                ``OwnerNotFound``.
        """
        self._require_shared_store()
        child = child_name(deployment, name)
        if config is None:
            cm = self._read("ConfigMap", namespace, child)
            try:
                saved = json.loads(((cm or {}).get("data") or {})[CONFIG_KEY])
            except (KeyError, ValueError):
                return ServerState(name, "Failed", None, "no config to start the server with")
            config = {k: v for k, v in saved.items() if k not in ("host", "port")}
        owner = self._owner(namespace, deployment, owner_uid)
        model_version = str(config.get("modelVersion", ""))
        self._apply(build_config_map(owner, name, config))
        self._apply(build_server_deployment(
            owner, name, config, store_root=self.store.root, image=self.image, secret=self.secret,
            replicas=replicas, resources=resources, progress_deadline_seconds=self.progress_deadline_seconds))
        self._apply(build_version_service(owner, name, model_version))
        return self.observe_server(namespace, deployment, name)

    def server_names(self, namespace: str, deployment: str) -> list[str]:
        """The version servers that exist for ``deployment`` (from their apps/v1 Deployments)."""
        selector = ",".join(f"{k}={v}" for k, v in deployment_labels(deployment).items())
        names = set()
        for d in self._list("Deployment", namespace, selector):
            meta = d["metadata"]
            names.add((meta.get("annotations") or {}).get(SERVER_ANNOTATION)
                      or (meta.get("labels") or {}).get("roost.dev/server") or meta["name"])
        return sorted(names)

    def stop_server(self, namespace: str, deployment: str, name: str) -> None:
        """Delete version server ``name`` (its Pods go with the Deployment's ReplicaSet)."""
        child = child_name(deployment, name)
        for kind in ("Service", "Deployment", "ConfigMap"):
            self._delete(kind, namespace, child)

    # ----- the stable endpoint ---------------------------------------------------------------------------
    def route(self, namespace: str, deployment: str, backends: list[dict[str, Any]],
              sticky_by: str | None = None, *, owner_uid: str | None = None,
              gateway: dict[str, Any] | None = None) -> str:
        """Create or update the stable Service and, with the Gateway API installed, the HTTPRoute.

        Args:
            backends: ``[{"version", "server", "weight", "mirror"?, "url"?}]``.
            gateway: ``spec.gatewayRef`` in wire form (see :func:`build_http_route`).

        Returns:
            The stable in-cluster URL ``http://<deployment>.<namespace>.svc.cluster.local``.
        """
        owner = self._owner(namespace, deployment, owner_uid)
        exact = self.gateway_api()
        service = build_stable_service(owner, backends, sticky_by, "httproute" if exact else "replica-ratio")
        self._apply(service)
        if exact:
            self._apply(build_http_route(owner, backends, gateway))
        return service_url(service["metadata"]["name"], namespace)

    def gateway_api(self) -> bool:
        """Whether the HTTPRoute CRD is installed (asked again at most every ``GATEWAY_RECHECK_SECONDS``)."""
        now = time.monotonic()
        if self._gateway_api is None or now - self._gateway_api[0] > GATEWAY_RECHECK_SECONDS:
            found = self._call(f"read CustomResourceDefinition {HTTPROUTE_CRD}",
                               self.extensions.read_custom_resource_definition, HTTPROUTE_CRD, tolerate=404)
            served = found is not None and any(v.name == GATEWAY_VERSION and v.served for v in found.spec.versions)
            self._gateway_api = (now, served)
        return self._gateway_api[1]

    def mirror_supported(self) -> bool:
        """Request mirroring (Shadow) needs the HTTPRoute's RequestMirror filter here."""
        return self.gateway_api()

    def weighted_split(self) -> bool:
        """No baseline here: without the Gateway API the split follows ready Pods (each Pod is asked as
        often as any other); with it, replicas are split by weight too, so Pods are asked about equally
        often once ``replicas`` x weight reaches 1 (10 replicas for 10 % steps)."""
        return False

    def router_ready(self, namespace: str, deployment: str) -> bool:
        """Whether the stable Service exists (the API server, not a probe, is the evidence)."""
        return self._read("Service", namespace, child_name(deployment)) is not None

    def stop_all(self, namespace: str, deployment: str) -> None:
        """Delete every object of a roost.dev Deployment (garbage collection would, later)."""
        selector = ",".join(f"{k}={v}" for k, v in deployment_labels(deployment).items())
        for kind in ("HTTPRoute", "Service", "Deployment", "ConfigMap") if self.gateway_api() else (
                "Service", "Deployment", "ConfigMap"):
            for obj in self._list(kind, namespace, selector):
                self._delete(kind, namespace, obj["metadata"]["name"])

    def stop_everything(self) -> int:
        """Delete every Roost serving object in every namespace; return how many servers were stopped.

        The operator recreates them for roost.dev Deployments that still exist.
        """
        count = 0
        for kind in ("Service", "Deployment", "ConfigMap"):
            for obj in self._list(kind, None, MANAGED_SELECTOR):
                meta = obj["metadata"]
                if self._delete(kind, meta["namespace"], meta["name"]) and kind == "Deployment":
                    count += 1
        return count
