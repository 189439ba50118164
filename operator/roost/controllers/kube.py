"""The one adapter between controllers and the Kubernetes API (the kubernetes client stays in here).

Calls are blocking; controllers run them in a thread (``asyncio.to_thread``). API exceptions are
mapped to :mod:`roost.errors`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from roost import errors
from roost.api import common, kinds


@contextlib.contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ApiException as e:
        try:
            message = json.loads(e.body or "{}").get("message", e.reason)
        except ValueError:
            message = e.reason
        if e.status == 404:
            raise errors.PermanentError("NotFound", f"{what}: {message}") from e
        if e.status == 409:
            raise errors.TemporaryError("Conflict", f"{what}: {message}", delay=0.5) from e
        raise errors.ExternalError("APIError", f"{what}: {e.status} {message}") from e


class Kube:
    """Typed-enough access to Roost objects and the few core objects the operator touches."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
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
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                common.GROUP, common.VERSION, namespace, self._plural(kind), name)
            return obj
        except ApiException as e:
            if e.status == 404:
                return None
            with mapped_errors(f"get {kind} {namespace}/{name}"):
                raise

    def list(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        with mapped_errors(f"list {kind} in {namespace}"):
            result = self.custom.list_namespaced_custom_object(
                common.GROUP, common.VERSION, namespace, self._plural(kind))
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """JSON merge patch of ``status`` (keys set to None are removed)."""
        with mapped_errors(f"patch status of {kind} {namespace}/{name}"):
            self.custom.patch_namespaced_custom_object_status(
                common.GROUP, common.VERSION, namespace, self._plural(kind), name, {"status": status})
