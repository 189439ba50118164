"""Manifests and look-ups shared by the Dataset, registry and KubernetesExecutor integration tests."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.conftest import REPO

DATA = REPO / "examples" / "data"
BREAST_CANCER_ROWS = 569
BREAST_CANCER_COLUMNS = 31  # 30 features + the target


def copy_data(tmp_path: Path, name: str) -> Path:
    """A private copy of ``examples/data/<name>`` (tests may change it)."""
    dest = tmp_path / name
    shutil.copyfile(DATA / name, dest)
    return dest


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def dataset(name: str, uri: str, target: str = "target", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": name},
            "spec": {"source": {"uri": uri, "format": "csv"}, "target": target, **spec}}


def training_run(name: str, dataset_name: str, estimator: str = "sklearn.ensemble.RandomForestClassifier",
                 params: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    params = {"n_estimators": 20} if params is None else params
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {"datasetRef": {"name": dataset_name}, "model": "breast-cancer",
                     "estimator": {"class": estimator, "params": params},
                     "metrics": ["accuracy", "roc_auc"], "seed": 0, "backoffLimit": 0, **spec}}


def model_version(name: str, version: int, source: dict[str, Any], gates: dict[str, Any] | None = None,
                  model: str = "breast-cancer") -> dict[str, Any]:
    return {"apiVersion": "roost.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name},
            "spec": {"model": model, "version": version, "source": source, "gates": gates or {}}}


def events(api_client: Any, namespace: str, name: str) -> list[client.CoreV1Event]:
    core = client.CoreV1Api(api_client)
    found: list[client.CoreV1Event] = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return found


def wait_event(api_client: Any, namespace: str, name: str, reason: str, type_: str | None = None,
               count: int = 1, timeout: float = 15.0) -> list[client.CoreV1Event]:
    """Wait until ``count`` Events (or one Event with ``count``) with ``reason`` exist for ``name``.

    kopf posts Events from a queue, shortly after the status patch that caused them.
    """
    deadline = time.monotonic() + timeout
    found: list[client.CoreV1Event] = []
    while time.monotonic() < deadline:
        found = [e for e in events(api_client, namespace, name)
                 if e.reason == reason and (type_ is None or e.type == type_)]
        if sum(e.count or 1 for e in found) >= count:
            return found
        time.sleep(0.25)
    seen = [(e.type, e.reason, e.count, e.message) for e in events(api_client, namespace, name)]
    raise AssertionError(f"no {count} {type_ or ''} Event(s) {reason} for {namespace}/{name}; events: {seen}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] | None = next(
        (c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)
    assert found is not None, f"no condition {type_} in {(obj.get('status') or {}).get('conditions')}"
    return found
