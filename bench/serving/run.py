"""Serving benchmark: Roost's model server against MLServer and KServe, side by side in one run.

One command (see bench/README.md)::

    .venv/bin/python bench/serving/run.py            # 10 s x 3 repetitions per cell, median
    .venv/bin/python bench/serving/run.py --quick    # 3 s x 1 repetition

Models: breast-cancer LogisticRegression and RandomForest(100 trees), digits LogisticRegression (64
features, 10 classes: a wider payload). Payloads: Open Inference Protocol (V2) infer with 1 row and with
1000 rows, KServe V1 predict with 1 row. Concurrency 1 and 32. Each server is pinned to one core
(``taskset -c 0``) and wrk to another (``-c 1``); every cell is checked before and after its wrk run
with a Python client (labels equal ``estimator.predict``) and fails on any non-2xx answer.

Competitors run in their own virtualenvs with exact pins, created under ~/.cache/roost/bench/venvs:
MLServer (``mlserver==1.7.1``, ``mlserver-sklearn==1.7.1``, ``uvloop==0.21.0``; ``parallel_workers`` 0
and default, the better per cell, with its adaptive batching for concurrency 32) and KServe
(``kserve==0.21.0``: ``kserve.ModelServer`` with a minimal ``kserve.Model`` that loads the joblib
model and calls ``predict``, as KServe's scikit-learn server does). Roost serves the same fitted
pipelines (skops), with the ONNX runtime its evaluate worker would choose, batching, request log and
metrics on. Ceilings on the same core: a no-op ASGI endpoint (uvicorn + orjson), in-process predict
calls/s, batched rows/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("ROOST_BENCH_CACHE", Path.home() / ".cache" / "roost" / "bench"))
VENVS = CACHE / "venvs"
PINS = {
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"],
    "kserve": ["kserve==0.21.0"],
}
MODELS = ("breast-cancer-lr", "breast-cancer-rf", "digits-lr")
PAYLOADS = ("v2-1", "v2-1000", "v2-1000-bin", "v1-1")
#: The binary tensor data extension of the Open Inference Protocol: the JSON part's length, in this header.
BINARY_HEADER = "inference-header-content-length"
CONCURRENCY = (1, 32)


# ----- environment ----------------------------------------------------------------------------------
def check_tools() -> None:
    missing = [t for t in ("wrk", "taskset") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: install with `apt-get install -y wrk util-linux`")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: the server on core 0, wrk on core 1")


def ensure_venv(name: str, log: list[str]) -> Path | None:
    """The competitor's virtualenv with its exact pins (created once); None when it cannot be made."""
    venv = VENVS / name
    marker = venv / ".roost-pins"
    wanted = " ".join(PINS[name])
    if marker.exists() and marker.read_text() == wanted:
        return venv
    VENVS.mkdir(parents=True, exist_ok=True)
    print(f"creating {venv} with {wanted} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    done = subprocess.run([*pip, *PINS[name], "scikit-learn", "joblib"], capture_output=True, text=True)
    if done.returncode != 0:
        log.append(f"{name}: `pip install {wanted}` failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    marker.write_text(wanted)
    return venv


def versions(venv: Path, names: list[str]) -> dict[str, str]:
    code = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code, *names], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} cores"


# ----- models and payloads ------------------------------------------------------------------------------
@dataclass
class Bench:
    name: str
    X: Any  # DataFrame
    estimator: Any
    joblib_path: Path
    roost_config: Path
    runtime: dict[str, Any]
    bodies: dict[tuple[str, str], Path] = field(default_factory=dict)  # (flavor, payload) -> file
    json_lengths: dict[str, int] = field(default_factory=dict)  # "<payload>-<flavor>" -> JSON part (binary bodies)
    expected: dict[str, list[Any]] = field(default_factory=dict)  # payload -> labels


def prepare(work: Path) -> list[Bench]:
    """Fit the three models, store them for each server, write the request bodies."""
    import joblib
    import orjson
    import pandas as pd
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from roost.serving import runtime
    from roost.storage import models
    from roost.storage import store as store_mod

    store = store_mod.Store(f"file://{work / 'store'}")
    benches = []
    for name in MODELS:
        loader = load_digits if name.startswith("digits") else load_breast_cancer
        X, y = loader(return_X_y=True, as_frame=True)
        X.columns = [str(c).replace(" ", "_") for c in X.columns]
        X = X.astype("float64")
        x_train, x_test, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
        if name.endswith("-rf"):
            estimator = make_pipeline(RandomForestClassifier(n_estimators=100, random_state=0))
        else:
            estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        estimator.fit(x_train, y_train)
        folder = work / name
        folder.mkdir(parents=True, exist_ok=True)
        joblib_path = folder / "model.joblib"
        joblib.dump(estimator, joblib_path)
        stored = store.put_bytes(models.dump(estimator))
        signature = models.signature_of(estimator, x_test, "target")
        chosen = runtime.validate(estimator, x_test, signature, store)  # as the evaluate worker does
        config = {
            "modelName": name, "modelVersion": f"{name}-v1", "namespace": "bench",
            "artifact": {"uri": stored.uri, "digest": stored.digest}, "signature": signature,
            "store": store.root, "runtime": chosen,
            "requestLog": {"uri": store.uri("requestlogs", name), "sampleRate": 1.0, "flushInterval": 2.0,
                           "flushRows": 1000, "maxBufferedRows": 100_000},
            "host": "127.0.0.1", "port": 0,
        }
        config_path = folder / "roost.json"
        config_path.write_text(json.dumps(config))
        bench = Bench(name, X, estimator, joblib_path, config_path, chosen)
        big = pd.concat([X] * (1000 // len(X) + 1), ignore_index=True).iloc[:1000]
        for payload, rows in (("v2-1", X.iloc[7:8]), ("v2-1000", big), ("v2-1000-bin", big), ("v1-1", X.iloc[7:8])):
            data = rows.to_numpy(dtype="float64")
            for flavor in ("any", "kserve"):  # KServe refuses "outputs" naming predict: it answers output-0
                if payload.endswith("-bin"):  # JSON header, then the [N, F] float64 values, little-endian
                    raw = data.astype("<f8").tobytes()
                    header: dict[str, Any] = {"inputs": [{
                        "name": "input-0", "shape": list(data.shape), "datatype": "FP64",
                        "parameters": {"binary_data_size": len(raw)},
                    }]}
                    if flavor == "any":
                        header["outputs"] = [{"name": "predict"}]
                    encoded = orjson.dumps(header)
                    path = folder / f"{payload}-{flavor}.bin"
                    path.write_bytes(encoded + raw)
                    bench.bodies[(flavor, payload)] = path
                    bench.json_lengths[f"{payload}-{flavor}"] = len(encoded)
                    continue
                if payload.startswith("v2"):
                    body: dict[str, Any] = {"inputs": [{"name": "input-0", "shape": list(data.shape),
                                                        "datatype": "FP64", "data": data.reshape(-1).tolist()}]}
                    if flavor == "any":
                        body["outputs"] = [{"name": "predict"}]
                else:
                    body = {"instances": data.tolist()}
                path = folder / f"{payload}-{flavor}.json"
                path.write_bytes(orjson.dumps(body))
                bench.bodies[(flavor, payload)] = path
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bench.expected[payload] = estimator.predict(rows).tolist()
        benches.append(bench)
    return benches


# ----- servers ------------------------------------------------------------------------------------------
@dataclass
class Running:
    label: str
    url: str
    paths: dict[str, str]  # payload -> path (absent: the server does not speak it)
    process: subprocess.Popen[bytes]
    log: Path


def start(label: str, argv: list[str], port: int, paths: dict[str, str], ready: str, log: Path,
          core: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Running:
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        ["taskset", "-c", core, *argv], stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{label} exited with {process.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + ready, timeout=2).status_code == 200:
                return Running(label, url, paths, process, log)
        time.sleep(0.3)
    stop(Running(label, url, paths, process, log))
    raise RuntimeError(f"{label} did not become ready; see {log}")


def stop(running: Running) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(running.process.pid, signal.SIGTERM)
    try:
        running.process.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.process.pid, signal.SIGKILL)
        running.process.wait(10)


@contextlib.contextmanager
def serving(label: str, *args: Any, **kwargs: Any) -> Iterator[Running]:
    running = start(label, *args, **kwargs)
    try:
        yield running
    finally:
        stop(running)


def roost_server(bench: Bench, work: Path, core: str, *, onnx: bool = True) -> Any:
    config = json.loads(bench.roost_config.read_text())
    port = free_port()
    config["port"] = port
    if not onnx:
        config["runtime"] = {"name": "sklearn", "reason": "benchmark variant"}
    path = work / bench.name / f"roost-{port}.json"
    path.write_text(json.dumps(config))
    name = bench.name
    paths = {"v2-1": f"/v2/models/{name}/infer", "v2-1000": f"/v2/models/{name}/infer",
             "v2-1000-bin": f"/v2/models/{name}/infer",
             "v1-1": f"/v1/models/{name}:predict"}
    label = "roost" if onnx else "roost-sklearn"
    return serving(label, [sys.executable, "-m", "roost.cli", "serve", "--config", str(path)], port, paths,
                   "/v2/health/ready", work / bench.name / f"{label}.log", core)


def mlserver_server(bench: Bench, work: Path, core: str, venv: Path, *, workers: int | None,
                    batching: bool) -> Any:
    folder = work / bench.name / f"mlserver-{workers}-{int(batching)}"
    model_dir = folder / bench.name
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(bench.joblib_path, model_dir / "model.joblib")
    port = free_port()
    settings: dict[str, Any] = {"http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
                                "debug": False}
    if workers is not None:
        settings["parallel_workers"] = workers
    (folder / "settings.json").write_text(json.dumps(settings))
    model: dict[str, Any] = {"name": bench.name, "implementation": "mlserver_sklearn.SKLearnModel",
                             "parameters": {"uri": "./model.joblib", "version": "v1"}}
    if batching:
        model |= {"max_batch_size": 32, "max_batch_time": 0.002}
    (model_dir / "model-settings.json").write_text(json.dumps(model))
    paths = {"v2-1": f"/v2/models/{bench.name}/infer", "v2-1000": f"/v2/models/{bench.name}/infer"}
    label = f"mlserver(pw={'default' if workers is None else workers}{', batching' if batching else ''})"
    return serving(label, [str(venv / "bin" / "mlserver"), "start", str(folder)], port, paths,
                   f"/v2/models/{bench.name}/ready", folder / "server.log", core, cwd=folder)


def kserve_server(bench: Bench, work: Path, core: str, venv: Path) -> Any:
    port = free_port()
    paths = {"v2-1": f"/v2/models/{bench.name}/infer", "v2-1000": f"/v2/models/{bench.name}/infer",
             "v2-1000-bin": f"/v2/models/{bench.name}/infer", "v1-1": f"/v1/models/{bench.name}:predict"}
    argv = [str(venv / "bin" / "python"), str(HERE / "kserve_server.py"), "--model_name", bench.name,
            "--model_path", str(bench.joblib_path), "--http_port", str(port)]
    return serving("kserve", argv, port, paths, f"/v2/models/{bench.name}/ready",
                   work / bench.name / "kserve.log", core)


def noop_server(work: Path, core: str) -> Any:
    port = free_port()
    paths = dict.fromkeys(("v2-1",), "/noop")
    return serving("noop", [sys.executable, str(HERE / "noop.py"), str(port)], port, paths, "/noop",
                   work / "noop.log", core)


# ----- load and checks ----------------------------------------------------------------------------------
def answer_labels(body: dict[str, Any], payload: str) -> list[Any]:
    if payload.startswith("v1"):
        labels: list[Any] = body["predictions"]
        return labels
    outputs = body["outputs"]
    chosen = next((o for o in outputs if o["name"] == "predict"), outputs[0])
    data: list[Any] = chosen["data"]
    return data


def flavor(running: Running) -> str:
    return "kserve" if running.label == "kserve" else "any"


def check(running: Running, bench: Bench, payload: str) -> None:
    """A Python client's answer must equal ``estimator.predict`` on the same rows."""
    import httpx

    body = bench.bodies[(flavor(running), payload)].read_bytes()
    response = httpx.post(running.url + running.paths[payload], content=body,
                          headers=request_headers(bench, payload, flavor(running)), timeout=60)
    if response.status_code != 200:
        raise AssertionError(f"{running.label} {payload}: HTTP {response.status_code}: {response.text[:300]}")
    got = answer_labels(response.json(), payload)
    if [int(v) for v in got] != [int(v) for v in bench.expected[payload]]:
        raise AssertionError(f"{running.label} {payload}: predictions differ from estimator.predict")


def request_headers(bench: Bench | None, payload: str, flavor_: str) -> dict[str, str]:
    """JSON, or for binary tensor data the binary extension's header (and a content type that is not JSON)."""
    if bench is None or not payload.endswith("-bin"):
        return {"content-type": "application/json"}
    return {"content-type": "application/octet-stream",
            BINARY_HEADER: str(bench.json_lengths[f"{payload}-{flavor_}"])}


def wrk(running: Running, bench: Bench | None, payload: str, connections: int, seconds: float,
        core: str, body: Path) -> dict[str, Any]:
    headers = request_headers(bench, payload, flavor(running))
    argv = ["taskset", "-c", core, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s",
            "-s", str(HERE / "post.lua"), running.url + running.paths[payload], "--", str(body),
            headers["content-type"], headers.get(BINARY_HEADER, "")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRK_JSON "))
    result: dict[str, Any] = json.loads(line[len("WRK_JSON "):])
    errors = {k: result[k] for k in ("connect", "read", "write", "status", "timeout") if result[k]}
    if errors:
        raise AssertionError(f"{running.label} {payload} c={connections}: wrk saw errors {errors}")
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def measure(running: Running, bench: Bench | None, payload: str, connections: int, args: argparse.Namespace,
            body: Path) -> dict[str, Any]:
    if bench is not None:
        check(running, bench, payload)
    wrk(running, bench, payload, connections, min(2.0, args.duration), args.client_core, body)  # warm-up
    runs = [wrk(running, bench, payload, connections, args.duration, args.client_core, body)
            for _ in range(args.repeats)]
    if bench is not None:
        check(running, bench, payload)
    median = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return {"rps": statistics.median(r["rps"] for r in runs), "p50_ms": median["p50_us"] / 1000,
            "p99_ms": median["p99_us"] / 1000, "runs": [round(r["rps"], 1) for r in runs]}


# ----- in-process ceilings ------------------------------------------------------------------------------
def inprocess(config_path: str) -> dict[str, Any]:
    """Predict calls/s (1 row) and rows/s (batches of 64 and 1000) of the runtime the server uses."""
    import numpy as np
    import pandas as pd

    from roost.serving import server
    from roost.storage import store as store_mod

    cfg = server.ServerConfig.from_dict(json.loads(Path(config_path).read_text()))
    model = server.load_model(store_mod.Store(cfg.store), cfg)
    width = len(cfg.signature.inputs)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"runtime": model.runtime.name}

    def rate(fn: Any, seconds: float = 1.5) -> float:
        fn()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            n += 1
        return n / (time.perf_counter() - start)

    for rows in (1, 64, 1000):
        block = np.ascontiguousarray(rng.normal(size=(rows, width)))
        calls = rate(lambda b=block: model.runtime.predict(b, labels=True, proba=False))
        out[f"{model.runtime.name}_{rows}"] = {"calls_per_s": calls, "rows_per_s": calls * rows}
    frame = pd.DataFrame(rng.normal(size=(1, width)), columns=cfg.signature.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["sklearn_1"] = {"calls_per_s": rate(lambda: model.estimator.predict(frame), 1.0)}
    return out


def ceilings(bench: Bench, core: str) -> dict[str, Any]:
    argv = ["taskset", "-c", core, sys.executable, str(Path(__file__)), "--inprocess", str(bench.roost_config)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ----- report -------------------------------------------------------------------------------------------
def report(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    goals: list[str] = []
    for name, cells in results["models"].items():
        noop = results.get("noop", {}).get(name, {})
        lines.append(f"\n== {name} (runtime: {results['runtimes'][name]})")
        lines.append(f"{'cell':<18}{'server':<30}{'req/s':>10}{'rows/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
        for cell, servers_ in cells.items():
            rows = 1000 if "1000" in cell else 1
            for label, r in servers_.items():
                lines.append(f"{cell:<18}{label:<30}{r['rps']:>10.0f}{r['rps'] * rows:>11.0f}"
                             f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}")
            roost = servers_.get("roost")
            others = {k: v for k, v in servers_.items() if not k.startswith("roost")}
            if roost and others:
                best_label, best = max(others.items(), key=lambda kv: kv[1]["rps"])
                answered = {k: v for k, v in others.items() if v["rps"]} or others
                fastest_label, fastest = min(answered.items(), key=lambda kv: kv[1]["p50_ms"])
                ratio = roost["rps"] / best["rps"] if best["rps"] else float("inf")  # no answer in the run
                p50_ratio = roost["p50_ms"] / fastest["p50_ms"] if fastest["p50_ms"] else float("nan")
                lines.append(f"{'':<18}roost / best competitor ({best_label}): {ratio:.1f}x req/s; p99 "
                             f"{roost['p99_ms']:.2f} vs {best['p99_ms']:.2f} ms; p50 {p50_ratio:.2f}x of "
                             f"{fastest_label}'s")
                goals.extend(_goals(name, cell, roost, best, ratio, p50_ratio, noop.get(f"v2-1 {cell.split()[-1]}")))
        ceiling = results["ceilings"].get(name)
        if ceiling:
            rt = ceiling["runtime"]
            lines.append(f"ceilings on one core: {rt} predict 1 row {ceiling[f'{rt}_1']['calls_per_s']:.0f} calls/s; "
                         f"batched {ceiling[f'{rt}_64']['rows_per_s']:.0f} rows/s (64-row batches), "
                         f"{ceiling[f'{rt}_1000']['rows_per_s']:.0f} rows/s (1000-row); scikit-learn predict "
                         f"1 row {ceiling['sklearn_1']['calls_per_s']:.0f} calls/s")
        if noop:
            lines.append("no-op ASGI ceiling (uvicorn+uvloop+httptools+orjson, same core, just before Roost's runs): "
                         + ", ".join(f"{cell} {r['rps']:.0f} req/s (p50 {r['p50_ms']:.2f} ms)"
                                     for cell, r in noop.items()))
    lines.append("\n== goals")
    lines.extend(goals)
    return lines


def _goals(name: str, cell: str, roost: dict[str, Any], best: dict[str, Any], ratio: float, p50_ratio: float,
           noop: dict[str, Any] | None) -> list[str]:
    out = []
    p99_ok = roost["p99_ms"] <= best["p99_ms"]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    if name.endswith("-lr") and cell.endswith("-1 c=32"):
        share = roost["rps"] / noop["rps"] if noop else float("nan")
        ok = ratio >= 4 and p99_ok and share >= 0.5
        out.append(f"{verdict(ok)} {name} {cell}: {ratio:.1f}x req/s (goal >= 4x, stretch 8x), p99 "
                   f"{'<=' if p99_ok else '>'} competitor's, {share:.0%} of the no-op ceiling (goal >= 50%)")
    if name.endswith("-lr") and cell.endswith("-1 c=1"):
        out.append(f"{verdict(p50_ratio <= 0.25)} {name} {cell}: p50 {p50_ratio:.2f}x the competitor's (goal <= 0.25x)")
    if name.endswith("-rf") and "-1 " in cell:
        out.append(f"{verdict(ratio >= 20)} {name} {cell}: {ratio:.1f}x req/s (goal >= 20x)")
    if "1000" in cell:
        out.append(f"{verdict(ratio >= 10 and p99_ok)} {name} {cell}: {ratio:.1f}x rows/s (goal >= 10x) at p99 "
                   f"{roost['p99_ms']:.1f} vs {best['p99_ms']:.1f} ms")
    return out


# ----- main ---------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s x 1 repetition per cell")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="wrk runs per cell; the median is reported")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--servers", default="roost,mlserver,kserve,roost-sklearn",
                        help="comma-separated: roost, roost-sklearn, mlserver, kserve")
    parser.add_argument("--server-core", default="0")
    parser.add_argument("--client-core", default="1")
    parser.add_argument("--out", default=str(CACHE / "results.json"))
    parser.add_argument("--inprocess", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inprocess:
        print(json.dumps(inprocess(args.inprocess)))
        return 0
    if args.quick:
        args.duration, args.repeats = 3.0, 1
    check_tools()
    chosen = set(args.servers.split(","))
    notes: list[str] = []
    venvs = {name: ensure_venv(name, notes) for name in ("mlserver", "kserve") if name in chosen}
    work = Path(tempfile.mkdtemp(prefix="roost-bench-"))
    print(f"workdir {work}; {load()}", flush=True)
    benches = [b for b in prepare(work) if b.name in args.models.split(",")]
    results: dict[str, Any] = {"models": {}, "ceilings": {}, "runtimes": {}, "notes": notes,
                               "load": {"start": load()}, "duration": args.duration, "repeats": args.repeats}
    versions_seen = {"roost": versions(Path(sys.prefix), ["scikit-learn", "onnxruntime", "uvicorn", "uvloop"])}
    for name, venv in venvs.items():
        if venv is not None:
            versions_seen[name] = versions(venv, [*(p.split("==")[0] for p in PINS[name]), "scikit-learn"])
    results["versions"] = versions_seen
    sc = args.server_core
    results["noop"] = {}
    for bench in benches:
        results["runtimes"][bench.name] = bench.runtime.get("name") + (
            f" ({bench.runtime['reason']})" if bench.runtime.get("reason") else "")
        results["ceilings"][bench.name] = ceilings(bench, sc)
        cells: dict[str, dict[str, Any]] = {f"{p} c={c}": {} for p in PAYLOADS for c in CONCURRENCY}

        def run_all(running: Running, concurrency: tuple[int, ...] = CONCURRENCY, bench: Bench = bench,
                    cells: dict[str, dict[str, Any]] = cells) -> None:
            for payload in PAYLOADS:
                if payload not in running.paths:
                    continue
                for c in concurrency:
                    r = measure(running, bench, payload, c, args, bench.bodies[(flavor(running), payload)])
                    key = f"{payload} c={c}"
                    label = running.label.split("(")[0] if running.label.startswith("mlserver") else running.label
                    best = cells[key].get(label)
                    if best is None or r["rps"] > best["rps"]:
                        cells[key][label] = {**r, "variant": running.label}
                    print(f"  {bench.name:<18}{key:<18}{running.label:<34}{r['rps']:>9.0f} req/s  "
                          f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms", flush=True)

        print(f"{bench.name}: {load()}", flush=True)
        # the no-op ceiling just before Roost's runs of this model: a share measured minutes apart on a
        # shared machine would compare different loads
        with noop_server(work, sc) as noop:
            results["noop"][bench.name] = {f"v2-1 c={c}": measure(noop, None, "v2-1", c, args,
                                                                  bench.bodies[("any", "v2-1")])
                                           for c in CONCURRENCY}
        for key, r in results["noop"][bench.name].items():
            print(f"  {bench.name:<18}{key:<18}{'no-op ASGI endpoint':<34}{r['rps']:>9.0f} req/s  "
                  f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms", flush=True)
        if "roost" in chosen:
            with roost_server(bench, work, sc) as running:
                run_all(running)
        if "roost-sklearn" in chosen:
            with roost_server(bench, work, sc, onnx=False) as running:
                run_all(running)
        if "kserve" in chosen and venvs.get("kserve"):
            with kserve_server(bench, work, sc, venvs["kserve"]) as running:  # type: ignore[arg-type]
                run_all(running)
        if "mlserver" in chosen and venvs.get("mlserver"):
            for workers in (0, None):
                for batching, concurrency in ((False, (1,)), (True, (32,))):
                    try:
                        with mlserver_server(bench, work, sc, venvs["mlserver"],  # type: ignore[arg-type]
                                             workers=workers, batching=batching) as running:
                            run_all(running, concurrency)
                    except (RuntimeError, AssertionError) as e:
                        notes.append(f"mlserver pw={workers} batching={batching} on {bench.name}: {e}")
                        print(f"  {e}", flush=True)
        results["models"][bench.name] = {k: v for k, v in cells.items() if v}
    results["load"]["end"] = load()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    lines = report(results)
    print("\n".join(lines))
    print(f"\nversions: {json.dumps(versions_seen)}")
    print("KServe: kserve.ModelServer with a minimal kserve.Model that loads the joblib model and calls "
          "predict (get_predict_input/get_predict_response), as KServe's scikit-learn server does.")
    print("MLServer speaks no KServe V1: the v1 rows compare Roost with KServe only.")
    print("v2-1000-bin: the Open Inference Protocol's binary tensor data extension (inference-header-content-length,"
          " float64 little-endian after the JSON); KServe accepts it, MLServer 1.7.1's REST server does not (500 on"
          " application/octet-stream, 422 on JSON), so those rows compare Roost with KServe only; v2-1000 compares"
          " JSON with JSON.")
    for note in notes:
        print(f"note: {note}")
    print(f"{results['load']['start']} at start, {results['load']['end']} at end; results in {args.out}; "
          f"workdir {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
