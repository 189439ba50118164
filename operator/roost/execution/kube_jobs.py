"""KubernetesExecutor: each unit of work is a ``batch/v1`` Job owned by the Roost object.

The Job's Pod cannot see the operator's disk, so the artifact store must be shared (s3://, gs://,
az://, or a PVC mounted at the same path): with a ``file://`` store, :meth:`submit` refuses with
reason ``StoreNotShared``. Retries are Roost attempts, one Job each (``backoffLimit: 0``), so every
attempt stays visible; ``activeDeadlineSeconds`` enforces the timeout. Store credentials come from a
Secret named by configuration (``envFrom``), never from a manifest.
"""

from __future__ import annotations

import os
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from roost import errors
from roost.api import common
from roost.execution.executor import State, Unit, UnitStatus
from roost.storage import store as store_mod

DEFAULT_IMAGE = "ghcr.io/roost-dev/roost:0.1.0"
RUN_AS_USER = 65532
STORE_ENV = ("ROOST_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION")


def labels(unit: Unit) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "roost",
        "app.kubernetes.io/name": "roost-worker",
        "roost.dev/kind": unit.owner.kind.lower(),
        "roost.dev/owner": unit.owner.name,
        "roost.dev/worker": unit.worker,
    }


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": common.API_VERSION, "kind": kind, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def build_job(unit: Unit, store_root: str, image: str, secret: str | None) -> dict[str, Any]:
    """The Job for ``unit``: a pure builder, so tests compare objects, not calls."""
    env = [{"name": "ROOST_STORE", "value": store_root}, {"name": "PYTHONUNBUFFERED", "value": "1"},
           # the root filesystem is read-only: numba caches the compiled drift kernels in the /tmp volume
           {"name": "NUMBA_CACHE_DIR", "value": "/tmp/numba-cache"}]
    env += [{"name": k, "value": os.environ[k]} for k in STORE_ENV if os.environ.get(k)]
    container: dict[str, Any] = {
        "name": "worker",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["roost", "worker", unit.worker, "--input", unit.input_uri, "--output", unit.output_uri,
                    "--store", store_root],
        "env": env,
        "resources": unit.resources or {"requests": {"cpu": "500m", "memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if secret:
        container["envFrom"] = [{"secretRef": {"name": secret}}]
    meta_labels = labels(unit)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": unit.name, "namespace": unit.owner.namespace, "labels": meta_labels,
            "ownerReferences": [owner_reference(unit.owner.kind, unit.owner.name, unit.owner.uid)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, int(unit.timeout_seconds)),
            "template": {
                "metadata": {"labels": meta_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                                        "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


class KubernetesExecutor:
    """Runs units as Jobs through the API server."""

    def __init__(self, api_client: client.ApiClient, store: store_mod.Store, image: str | None = None,
                 secret: str | None = None) -> None:
        self.batch = client.BatchV1Api(api_client)
        self.store = store
        self.image = image or os.environ.get("ROOST_WORKER_IMAGE", DEFAULT_IMAGE)
        self.secret = secret or os.environ.get("ROOST_STORE_SECRET")

    def submit(self, unit: Unit) -> UnitStatus:
        """Create the unit's Job (AlreadyExists is success).

        Raises:
            roost.errors.PermanentError: ``StoreNotShared`` when the store is ``file://``.
        """
        if not self.store.shared:
            raise errors.PermanentError(
                "StoreNotShared",
                f"the Kubernetes executor needs an artifact store that Pods can reach (s3://, gs://, az:// or a "
                f"PVC at the same path); {self.store.root} is on the operator's disk",
            )
        body = build_job(unit, self.store.root, self.image, self.secret)
        try:
            self.batch.create_namespaced_job(unit.owner.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise errors.ExternalError("APIError", f"create Job {unit.name}: {e.status} {e.reason}") from e
        return self.poll(unit)

    def poll(self, unit: Unit) -> UnitStatus:
        try:
            job = self.batch.read_namespaced_job(unit.name, unit.owner.namespace)
        except ApiException as e:
            if e.status == 404:
                return UnitStatus(State.MISSING)
            raise errors.ExternalError("APIError", f"read Job {unit.name}: {e.status} {e.reason}") from e
        for c in job.status.conditions or []:
            if c.status != "True":
                continue
            if c.type == "Complete":
                return UnitStatus(State.SUCCEEDED, "Job complete", 0)
            if c.type == "Failed":
                reason = c.reason or "Failed"
                return UnitStatus(State.FAILED, f"{reason}: {c.message or ''} (Job {unit.name})".strip(), 1)
        if job.status.active:
            return UnitStatus(State.RUNNING, f"Job {unit.name} running")
        return UnitStatus(State.PENDING, f"Job {unit.name} waiting for its Pod")

    def cancel(self, unit: Unit) -> None:
        try:
            self.batch.delete_namespaced_job(unit.name, unit.owner.namespace, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise errors.ExternalError("APIError", f"delete Job {unit.name}: {e.status}") from e
