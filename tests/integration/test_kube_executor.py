"""The KubernetesExecutor against a real API server and kube-controller-manager, with an S3 store on loopback.

A second operator runs here with ``--executor kubernetes -n tk-...`` (the session operator leaves
``tk-*`` namespaces alone). Nothing runs Pods on this control plane, so the test acts as the kubelet:
it runs the Job's container command with the Job's env on this machine, then reports the Pod's exit
as the kubelet would (``pods/status``); the Job controller completes the Job, and the operator reads
the worker's result from the store. The test therefore exercises exactly what the operator wrote.
"""

from __future__ import annotations

import base64
import datetime
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from roost.storage import store as store_mod
from tests.conftest import S3_CREDENTIALS, Operator, Roost
from tests.integration import _lifecycle as lc

pytestmark = pytest.mark.integration

BUCKET = "roost"
STORE = f"s3://{BUCKET}/roost"
SECRET = "roost-store"


def _private_operator(kubeconfig: Path, workdir: Path, namespace: str, env: dict[str, str],
                      executor: str = "kubernetes") -> Operator:
    """An operator of this test's own, watching only ``namespace``."""
    workdir.mkdir()
    op = Operator(kubeconfig, workdir, args=["--executor", executor, "--namespace", namespace], env=env)
    op.start()
    return op


@pytest.fixture()
def kube_operator(kubeconfig: Path, tmp_path: Path, private_namespace: str, s3_endpoint: str) -> Iterator[Operator]:
    env = {"ROOST_STORE": STORE, "ROOST_S3_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
           "ROOST_STORE_SECRET": SECRET, **S3_CREDENTIALS}
    op = _private_operator(kubeconfig, tmp_path / "kube-operator", private_namespace, env)
    yield op
    op.stop()


# ----- acting as the kubelet -----------------------------------------------------------------------


def _job_of(api_client: Any, roost: Roost, kind: str, namespace: str, name: str, op: Operator,
            timeout: float = 60) -> client.V1Job:
    """The Job named by the object's ``status.job``, once it exists."""
    batch = client.BatchV1Api(api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job_name = (roost.get(kind, namespace, name).get("status") or {}).get("job")
        if job_name:
            try:
                job: client.V1Job = batch.read_namespaced_job(job_name, namespace)
                return job
            except ApiException as e:
                if e.status != 404:
                    raise
        time.sleep(0.2)
    raise AssertionError(f"no Job for {kind} {namespace}/{name}; operator log:\n{op.tail()}")


def _pod_of(api_client: Any, job: client.V1Job, timeout: float = 60) -> client.V1Pod:
    """The Pod kube-controller-manager's Job controller created (Pending: nothing schedules it)."""
    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(job.metadata.namespace,
                                        label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}").items
        if pods:
            pod: client.V1Pod = pods[0]
            return pod
        time.sleep(0.2)
    raise AssertionError(f"the Job controller created no Pod for Job {job.metadata.name}")


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_as_kubelet(api_client: Any, job: client.V1Job, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Run the Job's container as written (command, env, envFrom Secret), then report the Pod's exit."""
    core = client.CoreV1Api(api_client)
    namespace = job.metadata.namespace
    container = job.spec.template.spec.containers[0]
    env: dict[str, str] = {}
    for source in container.env_from or []:
        secret = core.read_namespaced_secret(source.secret_ref.name, namespace)
        env.update({k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()})
    env.update({e.name: e.value for e in container.env or []})
    workdir.mkdir(parents=True, exist_ok=True)
    env.update({"PATH": str(Path(sys.executable).parent), "HOME": str(workdir), "TMPDIR": str(workdir)})
    assert container.command[0] == "roost"
    argv = [str(Path(sys.executable).parent / "roost"), *container.command[1:]]
    pod = _pod_of(api_client, job)
    assert pod.status.phase == "Pending"
    started = datetime.datetime.now(datetime.UTC)
    done = subprocess.run(argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=300)
    finished = datetime.datetime.now(datetime.UTC)
    core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "phase": "Succeeded" if done.returncode == 0 else "Failed",
        "startTime": _rfc3339(started),
        "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": False, "restartCount": 0,
            "started": False, "state": {"terminated": {
                "exitCode": done.returncode, "reason": "Completed" if done.returncode == 0 else "Error",
                "startedAt": _rfc3339(started), "finishedAt": _rfc3339(finished)}},
        }],
    }})
    return done


def _jobs(api_client: Any, namespace: str, kind: str, owner: str) -> list[client.V1Job]:
    items: list[client.V1Job] = client.BatchV1Api(api_client).list_namespaced_job(
        namespace, label_selector=f"roost.dev/kind={kind},roost.dev/owner={owner}").items
    return items


# ----- tests -------------------------------------------------------------------------------------


def test_profile_and_train_run_as_jobs_that_the_operator_names_owns_adopts_and_reads_back(
        roost: Roost, api_client: Any, private_namespace: str, kube_operator: Operator, s3_endpoint: str,
        tmp_path: Path) -> None:
    ns = private_namespace
    client.CoreV1Api(api_client).create_namespaced_secret(ns, {
        "metadata": {"name": SECRET}, "stringData": S3_CREDENTIALS})
    store = store_mod.Store(STORE)
    csv = lc.DATA / "breast_cancer.csv"
    source = f"s3://{BUCKET}/data/breast_cancer.csv"
    store.write_bytes(source, csv.read_bytes())
    ds = roost.create(ns, lc.dataset("breast-cancer", source))

    job = _job_of(api_client, roost, "Dataset", ns, "breast-cancer", kube_operator)

    name = job.metadata.name
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    assert name.startswith("breast-cancer-profile-")
    [owner] = job.metadata.owner_references
    assert (owner.api_version, owner.kind, owner.name, owner.uid, owner.controller) == (
        "roost.dev/v1alpha1", "Dataset", "breast-cancer", ds["metadata"]["uid"], True)
    assert job.metadata.labels == {
        "app.kubernetes.io/managed-by": "roost", "app.kubernetes.io/name": "roost-worker",
        "roost.dev/kind": "dataset", "roost.dev/owner": "breast-cancer", "roost.dev/worker": "profile"}
    assert job.spec.backoff_limit == 0
    assert job.spec.active_deadline_seconds == 3600
    pod_spec = job.spec.template.spec
    assert pod_spec.restart_policy == "Never"
    assert pod_spec.automount_service_account_token is False
    assert pod_spec.security_context.run_as_non_root is True
    assert pod_spec.security_context.seccomp_profile.type == "RuntimeDefault"
    [container] = pod_spec.containers
    work = f"{STORE}/work/{ns}/dataset/breast-cancer/{name}"
    assert container.command == ["roost", "worker", "profile", "--input", f"{work}/input.json",
                                 "--output", work, "--store", STORE]
    env = {e.name: e.value for e in container.env}
    assert env["ROOST_STORE"] == STORE
    assert env["ROOST_S3_ENDPOINT_URL"] == s3_endpoint
    assert env["NUMBA_CACHE_DIR"].startswith("/tmp/")  # the Job's only writable path (its /tmp volume)
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env), "credentials belong in the Secret"
    assert [s.secret_ref.name for s in container.env_from] == [SECRET]
    security = container.security_context
    assert (security.allow_privilege_escalation, security.read_only_root_filesystem, security.run_as_non_root) == (
        False, True, True)
    assert security.capabilities.drop == ["ALL"]
    assert store.read_json(f"{work}/input.json")["spec"]["source"]["uri"] == source

    # A restarted operator adopts the Job by its name instead of creating a twin.
    kube_operator.restart(kill=True)
    done = run_as_kubelet(api_client, job, tmp_path / "kubelet-profile")
    assert done.returncode == 0, done.stderr

    obj = roost.wait("Dataset", ns, "breast-cancer", timeout=60, op=kube_operator)
    assert obj["status"]["rows"] == lc.BREAST_CANCER_ROWS
    assert obj["status"]["digest"] == lc.sha256_of(csv)
    assert obj["status"]["snapshotURI"].startswith(f"{STORE}/objects/sha256/")
    assert [j.metadata.name for j in _jobs(api_client, ns, "dataset", "breast-cancer")] == [name]
    completed = client.BatchV1Api(api_client).read_namespaced_job(name, ns)
    assert any(c.type == "Complete" and c.status == "True" for c in completed.status.conditions)

    roost.create(ns, lc.training_run("rf", "breast-cancer", params={"n_estimators": 10}, timeout="10m",
                                     resources={"requests": {"cpu": "250m", "memory": "256Mi"}}))
    job = _job_of(api_client, roost, "TrainingRun", ns, "rf", kube_operator)
    [container] = job.spec.template.spec.containers
    assert container.command[:3] == ["roost", "worker", "train"]
    assert job.spec.active_deadline_seconds == 600
    assert container.resources.requests == {"cpu": "250m", "memory": "256Mi"}
    assert job.metadata.labels["roost.dev/worker"] == "train"
    done = run_as_kubelet(api_client, job, tmp_path / "kubelet-train")
    assert done.returncode == 0, done.stderr

    run = roost.wait("TrainingRun", ns, "rf", "Succeeded", timeout=60, op=kube_operator)
    artifact = run["status"]["artifact"]
    assert artifact["uri"].startswith(f"{STORE}/objects/sha256/")
    assert store_mod.digest_bytes(store.read_bytes(artifact["uri"])) == artifact["digest"]
    assert run["status"]["metrics"]["accuracy"] >= 0.9
    assert [j.metadata.name for j in _jobs(api_client, ns, "trainingrun", "rf")] == [job.metadata.name]


def test_a_store_pods_cannot_reach_stalls_the_work_as_store_not_shared(
        roost: Roost, api_client: Any, kubeconfig: Path, private_namespace: str, tmp_path: Path) -> None:
    ns = private_namespace
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    # The data was profiled by a local operator; then the operator is switched to Jobs on the same file:// store.
    op = _private_operator(kubeconfig, tmp_path / "operator", ns, {"ROOST_STORE": f"file://{tmp_path / 'store'}"},
                           executor="local")
    try:
        roost.create(ns, lc.dataset("profiled", csv.as_uri()))
        roost.wait("Dataset", ns, "profiled", op=op)
        op.args = ["--executor", "kubernetes", "--namespace", ns]
        op.restart(kill=False)

        roost.create(ns, lc.dataset("fresh", csv.as_uri()))
        roost.create(ns, lc.training_run("rf", "profiled"))

        stalled = {"fresh": roost.wait("Dataset", ns, "fresh", "Stalled", reason="StoreNotShared", timeout=60, op=op),
                   "rf": roost.wait("TrainingRun", ns, "rf", "Stalled", reason="StoreNotShared", timeout=60, op=op)}
        for name, obj in stalled.items():
            assert "s3://" in lc.condition(obj, "Stalled")["message"], name
            assert obj["status"].get("job") is None, name
            lc.wait_event(api_client, ns, name, "StoreNotShared", "Warning")
        succeeded = lc.condition(stalled["rf"], "Succeeded")
        assert (succeeded["status"], succeeded["reason"]) == ("False", "StoreNotShared")
        assert client.BatchV1Api(api_client).list_namespaced_job(ns).items == []
        time.sleep(2)  # a stalled object stays put: no resubmission, no second Warning
        for name, obj in stalled.items():
            kind = obj["kind"]
            assert roost.get(kind, ns, name)["status"] == obj["status"], name
            assert sum(e.count or 1 for e in lc.events(api_client, ns, name) if e.reason == "StoreNotShared") == 1
    finally:
        op.stop()
