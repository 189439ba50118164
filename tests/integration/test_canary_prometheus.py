"""A canary judged on a metric of the user's own from a real Prometheus (built from the Go module proxy,
cached like the control plane), scraping the local backend's model servers through the scrape-targets
file the backend writes (file-based service discovery, loopback only).

The metric: the share of rows a version predicts "malignant" (class 0), say a referral rate the clinic
watches. A candidate trained on mislabelled data refers about twice as many patients as stable: the
Prometheus metric rolls it back, with both versions' shares in the evidence. A second metric with a
broken PromQL query shows the provider's error in status and blocks nothing else.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from roost.devcluster import cluster
from roost.devcluster import prometheus as prometheus_build
from tests.conftest import Operator, Roost, http_ready
from tests.integration.test_canary import DATA, Load, poll, serve
from tests.integration.test_canary_live import _dataset, _run, _version, mislabelled

pytestmark = pytest.mark.integration

NS = "canary-prom"


@pytest.fixture(scope="module")
def prom(operator: Operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus scraping every process the session operator's local backend runs, every second."""
    binary = prometheus_build.ensure()
    folder = tmp_path_factory.mktemp("prometheus")
    targets = operator.workdir / "state" / "serving" / "scrape-targets.json"
    targets.parent.mkdir(parents=True, exist_ok=True)
    if not targets.exists():
        targets.write_text("[]")
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
              "scrape_configs": [{"job_name": "roost", "file_sd_configs": [
                  {"files": [str(targets)], "refresh_interval": "1s"}]}]}
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"http://127.0.0.1:{cluster.free_port()}"
    with open(folder / "log", "wb") as log:
        proc = subprocess.Popen([str(binary), f"--config.file={folder / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={folder / 'data'}",
                                 f"--web.listen-address={address.removeprefix('http://')}"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        if not http_ready(f"{address}/-/ready", 60, proc, interval=0.3):
            raise AssertionError(f"Prometheus never ready: {(folder / 'log').read_text()[-2000:]}")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def rollout(operator: Operator, roost: Roost, api_client: Any, prom: str,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from kubernetes import client

    client.CoreV1Api(api_client).create_namespace({"metadata": {"name": NS}})
    folder = tmp_path_factory.mktemp("canary-prom")
    DATA.to_csv(folder / "bc.csv", index=False)
    mislabelled().to_csv(folder / "bc-mislabelled.csv", index=False)
    manifests = [
        _dataset("bc", folder / "bc.csv"), _dataset("bc-mislabelled", folder / "bc-mislabelled.csv"),
        _run("lr", "bc"), _run("mislabelled", "bc-mislabelled"),
        _version("pm-v1", 1, "lr"), _version("pm-v2", 2, "mislabelled"),
        {"apiVersion": "roost.dev/v1alpha1", "kind": "Deployment", "metadata": {"name": "bc"},
         "spec": {"modelVersion": "pm-v1"}},
    ]
    return {**serve(roost, NS, manifests, operator), "prometheus": prom}


def _query(address: str, promql: str) -> float:
    body = httpx.get(f"{address}/api/v1/query", params={"query": promql}, timeout=5.0).json()
    assert body["status"] == "success", body
    return sum(float(s["value"][1]) for s in body["data"]["result"])


def test_a_prometheus_metric_rolls_back_a_candidate_that_refers_twice_as_many(rollout: dict[str, Any],
                                                                                roost: Roost) -> None:
    op, address = rollout["operator"], rollout["prometheus"]
    per_version = f'roost_namespace="{NS}",version="{{{{version}}}}"'
    referral = {"name": "referral-rate", "maxIncrease": 0.05, "prometheus": {
        "address": address,
        "bad": f'roost_predictions_total{{{per_version},class="0"}}',
        "total": f"sum by (instance) (roost_predictions_total{{{per_version}}})"}}
    broken = {"name": "broken-query", "maxIncrease": 0.05,
              "prometheus": {"address": address, "bad": "sum(", "total": "sum(up)"}}
    strategy = {"type": "Canary", "steps": [{"setWeight": 50}, {"pause": {"duration": "90s"}}], "analysis": {
        "warmup": "3s", "minRequests": 60, "maxDuration": "3m", "alpha": 0.05, "beta": 0.2,
        "metrics": [{"name": "error-rate", "maxIncrease": 0.05}, referral, broken]}}
    with Load(rollout["url"]) as load:
        roost.patch_spec("Deployment", NS, "bc", {"modelVersion": "pm-v2", "strategy": strategy})
        obj = poll(roost, NS, "rolled back", lambda s: (s.get("rollback") or {}).get("modelVersion") == "pm-v2",
                   150, op)
    status = obj["status"]
    assert load.failures == []
    assert status["rollback"]["reason"] == "AnalysisFailed", status["rollback"]
    metrics = {m["name"]: m for m in status["rollback"]["evidence"]["metrics"]}
    failed = metrics["referral-rate"]
    assert failed["outcome"] == "Fail", metrics
    assert "referral-rate" in status["rollback"]["message"]
    # What the clients saw: the share of "malignant" answers per version, against what Prometheus counted.
    share = {v: sum(1 for version, out in load.answers if version == v and int(out[0]) == 0)
             / max(1, sum(1 for version, _ in load.answers if version == v)) for v in ("pm-v1", "pm-v2")}
    assert share["pm-v2"] > share["pm-v1"] + 0.15, share
    assert failed["candidate"] == pytest.approx(share["pm-v2"], abs=0.08), (failed, share)
    assert failed["stable"] == pytest.approx(share["pm-v1"], abs=0.08), (failed, share)
    assert failed["lower"] > 0
    assert failed["observations"]["candidate"] >= 60 and failed["observations"]["stable"] >= 60
    # Counted from one baseline, taken once both versions' series exist: at a 50 % split, about as many each
    # (a candidate counted from its start, warm-up included, would show several times stable's count).
    assert 0.6 < failed["observations"]["candidate"] / failed["observations"]["stable"] < 1.7, failed
    # The counts came from Prometheus: it holds at least as many predictions as the analysis counted (the
    # candidate's server is gone, so its series are stale now: the largest value of the last 5 minutes).
    candidate_series = f'roost_predictions_total{{roost_namespace="{NS}",version="pm-v2"}}'
    scraped = _query(address, f"sum(max_over_time({candidate_series}[5m]))")
    assert scraped >= failed["observations"]["candidate"]
    # A broken query never passes and says why; the other metrics were judged regardless.
    assert metrics["broken-query"]["outcome"] == "Inconclusive"
    errors = status["analysis"]["queryErrors"]
    assert "broken-query" in errors and "bad_data" in errors["broken-query"], errors
    assert status["stable"]["modelVersion"] == "pm-v1" and status.get("canary") is None


def test_scrape_targets_list_the_running_processes(rollout: dict[str, Any]) -> None:
    """The file lists what runs (the rolled-back candidate is gone from it, and the rollout's baseline
    once it has drained); Prometheus follows it."""
    path = Path(rollout["operator"].workdir / "state" / "serving" / "scrape-targets.json")
    deadline = time.monotonic() + 20
    while True:
        listed = {t["targets"][0]: t["labels"]["roost_process"] for t in json.loads(path.read_text())
                  if t["labels"]["roost_namespace"] == NS}
        if not any(p.endswith("-baseline") for p in listed.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(p.rsplit("-", 1)[0] if p != "router" else p for p in listed.values()) == ["pm-v1", "router"], listed
    deadline = time.monotonic() + 20
    while True:
        body = httpx.get(f"{rollout['prometheus']}/api/v1/targets", timeout=5.0).json()
        active = {t["labels"]["instance"]: t for t in body["data"]["activeTargets"]
                  if t["labels"].get("roost_namespace") == NS}
        if set(active) == set(listed) and all(t["health"] == "up" for t in active.values()):
            break
        if time.monotonic() > deadline:
            raise AssertionError({i: (t["health"], t["lastError"]) for i, t in active.items()})
        time.sleep(0.5)
    assert {i: t["labels"]["roost_process"] for i, t in active.items()} == listed
