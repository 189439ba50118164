"""Fixtures shared by the tests: one real control plane per test session, a fresh namespace per test,
the operator run exactly as users run it (``roost run``), and an S3 API server (moto) on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from roost import errors
    from roost.devcluster import binaries
    from roost.devcluster import cluster as cluster_mod

    try:
        binaries.ensure(echo=True)
    except errors.RoostError as e:
        pytest.exit(f"integration tests need a control plane: {e.message}", returncode=1)
    c = cluster_mod.Cluster(tmp_path_factory.mktemp("controlplane"))
    c.up()
    yield c
    c.down()


@pytest.fixture(scope="session")
def kubeconfig(cluster: Any) -> Path:
    return Path(cluster.kubeconfig)


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


def _fresh_namespace(api_client: Any, prefix: str) -> Iterator[str]:
    from kubernetes import client

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture()
def namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace, reconciled by the session operator once a test started it."""
    yield from _fresh_namespace(api_client, "t-")


@pytest.fixture()
def private_namespace(api_client: Any) -> Iterator[str]:
    """A fresh namespace the session operator never reconciles (``tk-*``): for a test's own operator, or
    for objects whose status a test writes itself."""
    yield from _fresh_namespace(api_client, PRIVATE_NAMESPACE_PREFIX)


def http_ready(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None,
               interval: float = 0.1) -> bool:
    """Poll ``GET url`` until it answers 200 (True); False once ``timeout`` seconds pass or ``process`` exits."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(interval)
    return False


def kubectl(kubeconfig: Path, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the machine's kubectl against the test control plane."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(["kubectl", *args], env=env, input=input, capture_output=True, text=True,
                          check=check, timeout=60)


# Namespaces named ``tk-*`` belong to a test's own operator (the KubernetesExecutor tests run one with
# ``-n <namespace>``); the session operator watches every other namespace (a kopf namespace pattern), so
# two operators never reconcile the same object.
PRIVATE_NAMESPACE_PREFIX = "tk-"


class Operator:
    """``roost run`` in a subprocess, logging to a file; restartable.

    Args:
        args: ``roost run`` arguments; default: every namespace except ``tk-*``, local executor.
        env: extra environment (e.g. ``ROOST_STORE`` for an s3:// store).
    """

    def __init__(self, kubeconfig: Path, workdir: Path,
                 args: Sequence[str] = ("--namespace", f"!{PRIVATE_NAMESPACE_PREFIX}*"),
                 env: Mapping[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.args = list(args)
        self.env = dict(env or {})
        self.store = self.env.get("ROOST_STORE", f"file://{workdir / 'store'}")
        self.log = workdir / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "ROOST_STATE_DIR": str(self.workdir / "state"),
               "ROOST_STORE": self.store, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "roost.cli", "run", *self.args], env=env,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop_servers(self) -> int:
        """Stop the model servers and routers this operator started (they outlive it by design)."""
        from roost.execution import serving_local

        return serving_local.LocalServing(self.workdir / "state" / "serving", self.store).stop_everything()

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(scope="session")
def operator(kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(kubeconfig, tmp_path_factory.mktemp("operator"))
    op.start()
    time.sleep(1.0)
    yield op
    op.stop()
    op.stop_servers()


class Roost:
    """Small helpers over the CustomObjects API for tests."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def plural(kind: str) -> str:
        from roost.api import kinds

        return kinds.BY_KIND[kind].plural

    def create(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
            "roost.dev", "v1alpha1", namespace, self.plural(manifest["kind"]), manifest)
        return obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "roost.dev", "v1alpha1", namespace, self.plural(kind), name)
        return obj

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object("roost.dev", "v1alpha1", namespace, self.plural(kind), name)

    def patch_spec(self, kind: str, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            "roost.dev", "v1alpha1", namespace, self.plural(kind), name, {"spec": spec})
        return obj

    def condition(self, obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
        return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)

    def wait(self, kind: str, namespace: str, name: str, type_: str = "Ready", status: str = "True",
             reason: str | None = None, timeout: float = 120.0, op: Operator | None = None) -> dict[str, Any]:
        """Poll until condition ``type_`` has ``status`` (and ``reason``); fail with the object's conditions."""
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                obj = self.get(kind, namespace, name)
            except Exception:
                obj = {}
            c = self.condition(obj, type_) if obj else None
            if c and c["status"] == status and (reason is None or c["reason"] == reason):
                return obj
            time.sleep(0.25)
        conds = (obj.get("status") or {}).get("conditions") if obj else None
        extra = f"\noperator log:\n{op.tail()}" if op else ""
        raise AssertionError(f"{kind} {namespace}/{name}: {type_} never became {status}/{reason}; "
                             f"conditions: {conds}{extra}")


@pytest.fixture(scope="session")
def roost(api_client: Any) -> Roost:
    return Roost(api_client)


S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture()
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server (the S3 API over HTTP) on a loopback port, with one bucket ``roost``; this
    process's environment points s3fs and boto3 at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {**S3_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1", "ROOST_S3_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="roost")
    try:
        yield endpoint
    finally:
        server.stop()
