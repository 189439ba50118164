"""``roost demo``: the quickstart on the embedded default, for a person who has just cloned Roost.

Starts (or reuses) the local control plane and the operator, applies ``examples/quickstart/`` into
namespace ``roost-demo``, shows progress until the Deployment is Ready, sends holdout rows through the
Open Inference Protocol endpoint and prints what is where. ``roost demo --down`` stops it all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from roost import errors
from roost.controllers import kube as kube_mod
from roost.controllers import operator as operator_mod
from roost.devcluster import binaries, cluster
from roost.execution import local, serving_local
from roost.storage import store as store_mod

NAMESPACE = "roost-demo"
EXAMPLES = binaries.REPO_ROOT / "examples"
ORDER = ("Dataset", "TrainingRun", "ModelVersion", "Deployment")
TIMEOUT = 600.0

console = Console()


def _demo_dir() -> Path:
    return operator_mod.default_state_dir().parent / "demo"


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if local._alive(pid) else None


def ensure_operator(kubeconfig: Path) -> tuple[int, Path, bool]:
    """Start ``roost run -A`` in the background unless it runs; return (pid, log path, started)."""
    d = _demo_dir()
    d.mkdir(parents=True, exist_ok=True)
    pid_file, log = d / "operator.pid", d / "operator.log"
    pid = _pid(pid_file)
    if pid:
        return pid, log, False
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "roost.cli", "run", "-A"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    return proc.pid, log, True


def quickstart_manifests() -> list[dict[str, Any]]:
    """The quickstart manifests, the Dataset's URI pointed at this checkout's data."""
    docs = []
    for path in sorted((EXAMPLES / "quickstart").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == "Dataset":
                doc["spec"]["source"]["uri"] = f"file://{EXAMPLES / 'data' / 'breast_cancer.csv'}"
            docs.append(doc)
    return sorted(docs, key=lambda d: ORDER.index(d["kind"]))


def _condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


def _table(objects: dict[str, dict[str, Any] | None], started: float) -> Table:
    table = Table(title=f"roost-demo — {time.monotonic() - started:.0f}s", expand=False)
    for col in ("kind", "name", "ready", "reason", "message"):
        table.add_column(col)
    for key, obj in objects.items():
        kind, name = key.split("/")
        ready = _condition(obj, "Ready")
        stalled = _condition(obj, "Stalled").get("status") == "True"
        style = "green" if ready.get("status") == "True" else ("red" if stalled else "yellow")
        table.add_row(kind, name, f"[{style}]{ready.get('status', '…')}[/]", ready.get("reason", "Pending"),
                      (ready.get("message") or "")[:70])
    return table


def _done(key: str, obj: dict[str, Any] | None, serving_is_enough: bool) -> bool:
    if serving_is_enough and key.startswith("Deployment/"):
        return _condition(obj, "Available").get("status") == "True"
    return _condition(obj, "Ready").get("status") == "True"


def wait_ready(k: kube_mod.Kube, manifests: list[dict[str, Any]], log: Path,
               serving_is_enough: bool = False) -> dict[str, dict[str, Any]]:
    """Show progress until the Deployment is Ready (or, for the other scenarios, serves at all); raise on a
    Stalled object or the timeout."""
    keys = [f"{m['kind']}/{m['metadata']['name']}" for m in manifests]
    started = time.monotonic()
    objects: dict[str, dict[str, Any] | None] = dict.fromkeys(keys)
    with Live(_table(objects, started), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            for key in keys:
                kind, name = key.split("/")
                objects[key] = k.get(kind, NAMESPACE, name)
            live.update(_table(objects, started))
            stalled = [key for key, obj in objects.items() if _condition(obj, "Stalled").get("status") == "True"
                       and _observed(obj) and not _done(key, obj, serving_is_enough)]
            if stalled:
                raise errors.PermanentError("DemoFailed", _failure(k, objects, stalled, log))
            if all(_done(key, o, serving_is_enough) for key, o in objects.items()) and _answers(objects):
                return {key: obj for key, obj in objects.items() if obj is not None}
            if time.monotonic() - started > TIMEOUT:
                waiting = [key for key, o in objects.items() if _condition(o, "Ready").get("status") != "True"]
                raise errors.PermanentError("DemoTimedOut", _failure(k, objects, waiting, log))
            time.sleep(0.25)


def _observed(obj: dict[str, Any] | None) -> bool:
    """The status speaks for the current spec (not a stale one from before the apply)."""
    if not obj:
        return False
    return bool((obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation"))


def _answers(objects: dict[str, dict[str, Any] | None]) -> bool:
    """The Deployment's URL answers readiness (its status may predate a restart of the servers)."""
    deployment = next((o for k, o in objects.items() if k.startswith("Deployment/")), None)
    url = ((deployment or {}).get("status") or {}).get("url")
    if not url:
        return False
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _failure(k: kube_mod.Kube, objects: dict[str, dict[str, Any] | None], bad: list[str], log: Path) -> str:
    lines = []
    for key in bad:
        name = key.split("/")[1]
        lines.append(f"{key}:")
        for c in ((objects.get(key) or {}).get("status") or {}).get("conditions", []):
            lines.append(f"  {c['type']}={c['status']} {c['reason']}: {c.get('message', '')[:300]}")
        for e in k.events_for(NAMESPACE, name)[-3:]:
            lines.append(f"  event {e['type']} {e['reason']}: {e['message'][:200]}")
    tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
    lines.append(f"last lines of {log}:")
    lines += [f"  {t}" for t in tail]
    return "\n".join(lines)


def predict_holdout(objects: dict[str, dict[str, Any]], rows: int = 5) -> Table:
    """Send holdout rows to the V2 ``infer`` endpoint; a table of labels and answers."""
    ds = objects["Dataset/breast-cancer"]["status"]
    url = objects["Deployment/breast-cancer"]["status"]["url"]
    store = store_mod.Store()
    split = store.read_json(ds["current"]["splitURI"])
    data = pd.read_csv(EXAMPLES / "data" / "breast_cancer.csv")
    holdout = data.iloc[split["test"][:rows]]
    features = [c for c in data.columns if c != "target"]
    body = {"id": "roost-demo", "inputs": [{"name": "input-0", "shape": [len(holdout), len(features)],
                                            "datatype": "FP64", "data": holdout[features].to_numpy().tolist()}]}
    response = httpx.post(f"{url}/v2/models/breast-cancer/infer", json=body, timeout=10.0)
    response.raise_for_status()
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    table = Table(title=f"V2 infer at {url} (answered by {response.headers.get('x-roost-model-version')})")
    for col in ("holdout row", "label", "predicted", "p(benign)"):
        table.add_column(col, justify="right")
    proba = outputs["predict_proba"]["data"]
    for i, (index, label) in enumerate(zip(holdout.index, holdout["target"], strict=True)):
        table.add_row(str(index), str(label), str(outputs["predict"]["data"][i]), f"{proba[2 * i + 1]:.3f}")
    return table


def summary(objects: dict[str, dict[str, Any]], log: Path, kubeconfig: Path) -> str:
    ds = objects["Dataset/breast-cancer"]["status"]
    run = objects["TrainingRun/breast-cancer-rf"]["status"]
    mv = objects["ModelVersion/breast-cancer-v1"]["status"]
    dep = objects["Deployment/breast-cancer"]["status"]
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in (run.get("metrics") or {}).items())
    return "\n".join([
        f"Dataset      breast-cancer     {ds['rows']} rows, digest {ds['digest']}",
        f"TrainingRun  breast-cancer-rf  {metrics}",
        f"ModelVersion breast-cancer-v1  artifact {mv['artifact']['digest']} (verified)",
        f"Deployment   breast-cancer     {dep['url']}  serving {dep['stable']['modelVersion']}",
        "",
        "Look around:",
        f"  export KUBECONFIG={kubeconfig}",
        f"  kubectl get roost -n {NAMESPACE}",
        f"  kubectl describe modelversions.roost.dev breast-cancer-v1 -n {NAMESPACE}",
        f"  curl {dep['url']}/v2/models/breast-cancer",
        f"Operator log: {log}",
        "Stop everything: make down",
    ])


def up(keep_existing: bool = False) -> int:
    """The quickstart; with ``keep_existing`` (the other scenarios) objects that exist are left as they are."""
    t0 = time.monotonic()
    console.print("[bold]1/4[/] local control plane (first run builds it once: minutes)")
    c = cluster.Cluster()
    status = c.up()
    console.print(f"     ready at {status.server}; kubeconfig {c.kubeconfig}")
    pid, log, started = ensure_operator(c.kubeconfig)
    console.print(f"[bold]2/4[/] operator {'started' if started else 'already running'} (pid {pid}), log {log}")
    k = kube_mod.Kube(kubeconfig=str(c.kubeconfig))
    k.ensure_namespace(NAMESPACE)
    manifests = quickstart_manifests()
    applied = time.monotonic()
    for m in manifests:
        exists = k.get(m["kind"], NAMESPACE, m["metadata"]["name"]) is not None
        result = "kept" if keep_existing and exists else k.apply(NAMESPACE, m)
        console.print(f"     {m['kind'].lower()}.roost.dev/{m['metadata']['name']} {result}")
    console.print(f"[bold]3/4[/] waiting for the quickstart in namespace {NAMESPACE}")
    objects = wait_ready(k, manifests, log, serving_is_enough=keep_existing)
    ready_after = time.monotonic() - applied
    console.print(f"     Deployment Ready {ready_after:.1f}s after apply")
    console.print("[bold]4/4[/] predictions on holdout rows")
    console.print(predict_holdout(objects))
    console.print(summary(objects, log, c.kubeconfig))
    console.print(f"[green]done in {time.monotonic() - t0:.1f}s[/]")
    return 0


def down() -> int:
    """Stop the operator, every local server and worker it started, and the control plane."""
    d = _demo_dir()
    pid = _pid(d / "operator.pid")
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and local._alive(pid):
            time.sleep(0.1)
        console.print(f"stopped the operator (pid {pid})")
    (d / "operator.pid").unlink(missing_ok=True)
    state = operator_mod.default_state_dir()
    stopped = serving_local.LocalServing(state / "serving", store_mod.default_root()).stop_everything()
    console.print(f"stopped {stopped} model server/router process(es)")
    console.print("stopped " + (", ".join(cluster.Cluster().down()) or "no control plane (not running)"))
    return 0


class Traffic:
    """Holdout rows sent one at a time to the demo's stable URL from a background thread."""

    def __init__(self, url: str, rows: pd.DataFrame) -> None:
        self.url, self.rows = url, rows
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        features = [c for c in self.rows.columns if c != "target"]
        data = self.rows[features].to_numpy()
        with httpx.Client(timeout=20.0) as client:
            while not self.stop.is_set():
                row = data[self.sent % len(data)].tolist()
                body = {"inputs": [{"name": "x", "shape": [1, len(features)], "datatype": "FP64", "data": row}]}
                try:
                    ok = client.post(f"{self.url}/v2/models/breast-cancer/infer", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.sent += 1
                self.failed += 0 if ok else 1

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def _apply_files(k: kube_mod.Kube, *names: str) -> None:
    for name in names:
        for doc in yaml.safe_load_all((EXAMPLES / name).read_text()):
            try:
                result = k.apply(NAMESPACE, doc)
            except errors.PermanentError as e:
                if "immutable" not in e.message:
                    raise
                raise errors.PermanentError(
                    "DemoStateStale", f"{doc['kind']} {doc['metadata']['name']} exists from an older demo with "
                    f"another spec, and its spec is immutable: kubectl delete namespace {NAMESPACE}, then run "
                    "the demo again") from e
            console.print(f"     {doc['kind'].lower()}.roost.dev/{doc['metadata']['name']} {result}")


def _wait_versions(k: kube_mod.Kube, names: list[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    with console.status(f"training and validating {', '.join(names)}"):
        while time.monotonic() < deadline:
            objs = [k.get("ModelVersion", NAMESPACE, n) for n in names]
            if all(_condition(o, "Ready").get("status") == "True" for o in objs):
                return
            bad = [n for n, o in zip(names, objs, strict=True) if _condition(o, "Stalled").get("status") == "True"]
            if bad:
                why = _condition(k.get("ModelVersion", NAMESPACE, bad[0]), "Ready").get("message")
                raise errors.PermanentError("DemoFailed", f"ModelVersion {bad[0]} was rejected: {why}")
            time.sleep(0.5)
    raise errors.PermanentError("DemoTimedOut", f"{', '.join(names)} did not become Ready")


def _evidence(evidence: dict[str, Any], title: str) -> Table:
    metrics = evidence.get("metrics") or []
    caption = ("latency against a baseline: a fresh copy of stable taking the candidate's share"
               if evidence.get("latencyComparedWith") == "baseline" else None)
    table = Table(title=title, caption=caption)
    for col in ("metric", "verdict", "candidate", "stable", "interval", "margin", "requests (cand/stable)"):
        table.add_column(col)
    for m in metrics:
        interval = "-" if m.get("lower") is None else f"[{m['lower']:.4g}, {m['upper']:.4g}]"
        def num(x: Any) -> str:
            return "-" if x is None else f"{x:.4g}"
        obs = m.get("observations") or {}
        table.add_row(m["name"], m["outcome"], num(m.get("candidate")), num(m.get("stable")), interval,
                      str(m.get("margin")), f"{obs.get('candidate', 0)}/{obs.get('stable', 0)}")
    return table


def _roll_out(k: kube_mod.Kube, manifest: str, version: str, url: str, rows: pd.DataFrame) -> dict[str, Any]:
    """Apply a Deployment change and send traffic until the rollout of ``version`` ends either way."""
    _apply_files(k, manifest)
    last = ""
    with Traffic(url, rows) as traffic:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            status = (k.get("Deployment", NAMESPACE, "breast-cancer") or {}).get("status") or {}
            canary = status.get("canary") or {}
            verdict = (status.get("analysis") or {}).get("verdict", "starting")
            baseline = canary.get("baselineWeight")
            share = f" (baseline {baseline}%)" if baseline is not None else ""
            line = (f"     canary {canary.get('modelVersion')} step {canary.get('step')} "
                    f"weight {canary.get('weight')}%{share} — {verdict}") if canary else ""
            if line and line != last:
                console.print(line)
                last = line
            if (status.get("stable") or {}).get("modelVersion") == version and not canary:
                console.print(f"     [green]promoted {version}[/] after {traffic.sent} requests, "
                              f"{traffic.failed} failed")
                return status
            if (status.get("rollback") or {}).get("modelVersion") == version:
                console.print(f"     [red]rolled back {version}[/] after {traffic.sent} requests, "
                              f"{traffic.failed} failed: {status['rollback']['message']}")
                return status
            time.sleep(0.5)
    raise errors.PermanentError("DemoTimedOut", f"the rollout of {version} did not end")


def canary_scenario() -> int:
    """``make demo-canary``: a good version promoted and a slow one rolled back, on live traffic."""
    up(keep_existing=True)
    k = kube_mod.Kube(kubeconfig=str(cluster.Cluster().kubeconfig))
    console.print("[bold]canary 1/3[/] two more versions: breast-cancer-v2 (logistic regression), "
                  "breast-cancer-v3 (1,500 boosting rounds: accurate, slow)")
    _apply_files(k, "canary/trainingrun-lr.yaml", "canary/modelversion-v2.yaml", "canary/trainingrun-slow.yaml",
                 "canary/modelversion-v3.yaml")
    _wait_versions(k, ["breast-cancer-v2", "breast-cancer-v3"])
    deployment = k.get("Deployment", NAMESPACE, "breast-cancer") or {}
    url = deployment["status"]["url"]
    rows = pd.read_csv(EXAMPLES / "data" / "breast_cancer.csv").sample(300, random_state=0)
    console.print("[bold]canary 2/3[/] roll out v2 as a canary (10% → 50%), judged against v1")
    status = deployment["status"]
    if (status.get("rollback") or {}).get("modelVersion") == "breast-cancer-v2":
        console.print(f"     v2 was rolled back earlier ({status['rollback']['message']}); Roost does not retry "
                      "a rolled-back artifact: `make down`, delete namespace roost-demo and run again to replay")
    elif (status.get("stable") or {}).get("modelVersion") not in ("breast-cancer-v2", "breast-cancer-v3"):
        status = _roll_out(k, "canary/deployment-canary-v2.yaml", "breast-cancer-v2", url, rows)
    if (status.get("promotion") or {}).get("modelVersion") == "breast-cancer-v2":
        console.print(_evidence(status["promotion"].get("evidence") or {}, "evidence for promoting v2"))
    elif (status.get("rollback") or {}).get("modelVersion") == "breast-cancer-v2":
        console.print(_evidence(status["rollback"].get("evidence") or {}, "evidence for rolling back v2"))
    console.print("[bold]canary 3/3[/] roll out v3 the same way")
    if (status.get("rollback") or {}).get("modelVersion") != "breast-cancer-v3":
        status = _roll_out(k, "canary/deployment-canary-v3.yaml", "breast-cancer-v3", url, rows)
    console.print(_evidence((status.get("rollback") or {}).get("evidence") or {}, "evidence for rolling back v3"))
    console.print(f"Serving: {status['stable']['modelVersion']}; the spec names breast-cancer-v3 (as git does), "
                  "and the status says why it is not served:")
    console.print(f"  kubectl describe deployments.roost.dev breast-cancer -n {NAMESPACE}")
    return 0


def drift_scenario() -> int:
    """``make demo-drift``: holdout traffic raises no alarm; shifted traffic drifts on exactly those features."""
    up(keep_existing=True)
    k = kube_mod.Kube(kubeconfig=str(cluster.Cluster().kubeconfig))
    url = (k.get("Deployment", NAMESPACE, "breast-cancer") or {})["status"]["url"]
    _apply_files(k, "drift/driftpolicy.yaml")
    data = pd.read_csv(EXAMPLES / "data" / "breast_cancer.csv")
    shifted = data.sample(500, replace=True, random_state=1)
    moved = ["mean_radius", "worst_texture", "mean_smoothness"]
    for name in moved:
        shifted[name] = shifted[name] + data[name].std()
    for label, rows in (("holdout-like traffic", data.sample(500, replace=True, random_state=0)),
                        (f"traffic with {', '.join(moved)} shifted by one standard deviation", shifted)):
        console.print(f"[bold]drift[/] sending 500 rows of {label}")
        for i in range(0, len(rows), 25):
            part = rows.iloc[i:i + 25]
            features = [c for c in part.columns if c != "target"]
            httpx.post(f"{url}/v2/models/breast-cancer/infer", timeout=20.0, json={"inputs": [
                {"name": "x", "shape": [len(part), 30], "datatype": "FP64",
                 "data": part[features].to_numpy().ravel().tolist()}]}).raise_for_status()
        # the servers flush their request log every 2 s: a check that starts after that sees only these rows
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = (k.get("DriftPolicy", NAMESPACE, "breast-cancer-drift") or {}).get("status") or {}
            if (status.get("lastCheckTime") or "") > started and (status.get("samples") or 0) >= 500:
                break
            time.sleep(0.5)
        drifted = [f["name"] for f in status.get("features") or [] if f["drifted"]]
        console.print(f"     drift detected: {status.get('driftDetected')}; drifted features: {drifted or 'none'}")
        console.print(f"     report: {status.get('reportURI')}")
    _new_data_and_proposal(k, shifted)
    console.print(f"Look: kubectl get driftpolicies -n {NAMESPACE}; open the report file in a browser.")
    return 0


def _new_data_and_proposal(k: kube_mod.Kube, labelled: pd.DataFrame) -> None:
    """New labelled data arrives: the Dataset gets a new version, the policy retrains and proposes."""
    policy = (k.get("DriftPolicy", NAMESPACE, "breast-cancer-drift") or {}).get("status") or {}
    if not policy.get("proposal"):
        data = pd.read_csv(EXAMPLES / "data" / "breast_cancer.csv")
        export = _demo_dir() / "data" / "breast_cancer-with-production-labels.csv"
        export.parent.mkdir(parents=True, exist_ok=True)
        pd.concat([data, labelled]).to_csv(export, index=False)
        console.print(f"[bold]drift[/] new data: the {len(labelled)} shifted rows come back labelled; the Dataset "
                      f"now reads {export.name} ({len(data) + len(labelled)} rows)")
        dataset = k.get("Dataset", NAMESPACE, "breast-cancer") or {}
        spec = dataset["spec"]
        k.apply(NAMESPACE, {"apiVersion": dataset["apiVersion"], "kind": "Dataset",
                            "metadata": {"name": "breast-cancer"},
                            "spec": {**spec, "source": {**spec["source"], "uri": f"file://{export}"}}})
    deadline = time.monotonic() + TIMEOUT
    last = ""
    with console.status("retraining on the new version, then evaluating it against the served version's gates"):
        while time.monotonic() < deadline:
            policy = (k.get("DriftPolicy", NAMESPACE, "breast-cancer-drift") or {}).get("status") or {}
            obj = {"status": policy}
            retrained, proposed = _condition(obj, "Retrained"), _condition(obj, "Proposed")
            line = f"     retrain: {retrained.get('reason')} — {retrained.get('message')}" if retrained else ""
            if line and line != last:
                console.print(line)
                last = line
            if policy.get("proposal") or proposed.get("status") == "False":
                break
            time.sleep(0.5)
    proposal = policy.get("proposal")
    if not proposal:
        proposed = _condition({"status": policy}, "Proposed")
        console.print(f"     no proposal: {proposed.get('reason')} — {proposed.get('message')}")
        return
    manifest = proposal["modelVersion"]
    path = _demo_dir() / f"{manifest['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    evidence = proposal["evidence"]
    table = Table(title=f"proposal {manifest['metadata']['name']} vs served {evidence.get('servedVersion')} "
                        f"on the new holdout ({evidence.get('testRows')} rows)")
    for col in ("metric", "proposed", "served"):
        table.add_column(col)
    for name, value in sorted((evidence.get("metrics") or {}).items()):
        served = (evidence.get("servedMetrics") or {}).get(name)
        table.add_row(name, f"{value:.4f}", "-" if served is None else f"{served:.4f}")
    console.print(table)
    console.print(f"     the proposed ModelVersion (self-contained: artifact uri + digest) is in {path}")
    console.print(f"     to serve it, commit that file and set spec.modelVersion: {manifest['metadata']['name']} "
                  "on the Deployment; Roost never changes production on its own")


def main(stop: bool = False, scenario: str = "quickstart") -> int:
    try:
        if stop:
            return down()
        return {"quickstart": up, "canary": canary_scenario, "drift": drift_scenario}[scenario]()
    except errors.RoostError as e:
        console.print(f"[red]roost demo failed ({e.reason})[/]\n{e.message}")
        return 1
    except httpx.HTTPError as e:
        console.print(f"[red]roost demo: the inference request failed: {e}[/]")
        return 1



