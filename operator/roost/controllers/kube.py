"""The one adapter between controllers and the Kubernetes API (the kubernetes client stays in here).

Calls are blocking; controllers run them in a thread (``asyncio.to_thread``). API exceptions are
mapped to :mod:`roost.errors`.
"""

from __future__ import annotations

import builtins
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from roost.api import common, kinds
from roost.execution.kube_errors import mapped_errors


def _contains(have: Any, want: Any) -> bool:
    """Whether ``have`` already holds everything ``want`` sets (the API server adds defaults)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_contains(have.get(k), v) for k, v in want.items())
    return bool(have == want)


class Kube:
    """Typed-enough access to Roost objects and the few core objects the operator touches."""

    def __init__(self, api_client: client.ApiClient | None = None, kubeconfig: str | None = None) -> None:
        if api_client is None and kubeconfig:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def _plural(kind: str) -> str:
        return kinds.BY_KIND[kind].plural

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        with mapped_errors(f"get {kind} {namespace}/{name}"):
            try:
                obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                    common.GROUP, common.VERSION, namespace, self._plural(kind), name)
                return obj
            except ApiException as e:
                if e.status == 404:
                    return None
                raise

    def list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        with mapped_errors(f"list {kind} in {namespace}"):
            result = self.custom.list_namespaced_custom_object(
                common.GROUP, common.VERSION, namespace, self._plural(kind))
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    def apply(self, namespace: str, manifest: dict[str, Any]) -> str:
        """Create ``manifest`` or bring an existing object's spec to it; return created|configured|unchanged.

        Immutable kinds refuse a changed spec (the API server's CEL rule), which surfaces as an error.
        """
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        current = self.get(kind, namespace, name)
        if current is None:
            with mapped_errors(f"create {kind} {namespace}/{name}"):
                self.custom.create_namespaced_custom_object(
                    common.GROUP, common.VERSION, namespace, self._plural(kind), manifest)
            return "created"
        if _contains(current.get("spec", {}), manifest.get("spec", {})):
            return "unchanged"
        with mapped_errors(f"patch {kind} {namespace}/{name}"):
            self.custom.patch_namespaced_custom_object(
                common.GROUP, common.VERSION, namespace, self._plural(kind), name, {"spec": manifest["spec"]})
        return "configured"

    def create(self, namespace: str, manifest: dict[str, Any]) -> bool:
        """Create ``manifest``; False when an object of that name exists already (adopted, not twinned)."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        try:
            self.custom.create_namespaced_custom_object(
                common.GROUP, common.VERSION, namespace, self._plural(kind), manifest)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            with mapped_errors(f"create {kind} {namespace}/{name}"):
                raise

    def annotate(self, kind: str, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge ``annotations`` into the object's metadata (never its spec)."""
        with mapped_errors(f"annotate {kind} {namespace}/{name}"):
            self.custom.patch_namespaced_custom_object(
                common.GROUP, common.VERSION, namespace, self._plural(kind), name,
                {"metadata": {"annotations": annotations}})

    def ensure_namespace(self, name: str) -> None:
        core = client.CoreV1Api(self.api_client)
        try:
            core.read_namespace(name)
        except ApiException as e:
            if e.status != 404:
                with mapped_errors(f"read namespace {name}"):
                    raise
            with mapped_errors(f"create namespace {name}"):
                core.create_namespace({"metadata": {"name": name}})

    def events_for(self, namespace: str, name: str) -> builtins.list[dict[str, Any]]:
        """Core/v1 Events whose involved object is ``name``, oldest first."""
        core = client.CoreV1Api(self.api_client)
        with mapped_errors(f"list events in {namespace}"):
            events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        out = [{"type": e.type, "reason": e.reason, "message": e.message, "kind": e.involved_object.kind,
                "time": str(e.last_timestamp or e.event_time or "")} for e in events.items]
        return sorted(out, key=lambda e: e["time"])

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """JSON merge patch of ``status`` (keys set to None are removed)."""
        with mapped_errors(f"patch status of {kind} {namespace}/{name}"):
            self.custom.patch_namespaced_custom_object_status(
                common.GROUP, common.VERSION, namespace, self._plural(kind), name, {"status": status})
