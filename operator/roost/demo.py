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


def wait_ready(k: kube_mod.Kube, manifests: list[dict[str, Any]], log: Path) -> dict[str, dict[str, Any]]:
    """Show progress until the Deployment is Ready; raise on a Stalled object or the timeout."""
    keys = [f"{m['kind']}/{m['metadata']['name']}" for m in manifests]
    started = time.monotonic()
    objects: dict[str, dict[str, Any] | None] = dict.fromkeys(keys)
    with Live(_table(objects, started), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            for key in keys:
                kind, name = key.split("/")
                objects[key] = k.get(kind, NAMESPACE, name)
            live.update(_table(objects, started))
            stalled = [key for key, obj in objects.items() if _condition(obj, "Stalled").get("status") == "True"]
            if stalled:
                raise errors.PermanentError("DemoFailed", _failure(k, objects, stalled, log))
            if all(_condition(o, "Ready").get("status") == "True" for o in objects.values()) and _answers(objects):
                return {key: obj for key, obj in objects.items() if obj is not None}
            if time.monotonic() - started > TIMEOUT:
                waiting = [key for key, o in objects.items() if _condition(o, "Ready").get("status") != "True"]
                raise errors.PermanentError("DemoTimedOut", _failure(k, objects, waiting, log))
            time.sleep(0.25)


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


def up() -> int:
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
        result = k.apply(NAMESPACE, m)
        console.print(f"     {m['kind'].lower()}.roost.dev/{m['metadata']['name']} {result}")
    console.print(f"[bold]3/4[/] waiting for the quickstart in namespace {NAMESPACE}")
    objects = wait_ready(k, manifests, log)
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


def main(stop: bool = False) -> int:
    try:
        return down() if stop else up()
    except errors.RoostError as e:
        console.print(f"[red]roost demo failed ({e.reason})[/]\n{e.message}")
        return 1
    except httpx.HTTPError as e:
        console.print(f"[red]roost demo: the inference request failed: {e}[/]")
        return 1



