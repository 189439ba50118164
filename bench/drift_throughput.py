"""Drift check throughput: a 1M-row window of 30 numeric columns against a prepared 100k-row reference.

The reference is profiled by the real Dataset worker (:mod:`roost.workers.profile`: decile
histogram, 10,000-value sorted sample per column) and prepared once (:func:`roost.stats.reference.prepare`);
then :func:`roost.stats.verdict.check` ingests the window with each numeric method. One thread, so
rows/s is per core. The columns mix shapes (normal, lognormal, integer counts, Student t with
heavy tails, a zero-inflated exponential); a third of them are shifted by one standard deviation
so both the no-drift and the drift paths run. The scipy baseline (``ks_2samp``,
``wasserstein_distance``, which sort the window) runs on a few columns and is scaled to 30.

Then the step before the statistics: reading the window back from the request log
(:func:`roost.workers.drift.window_frame`). The same window is written as the server logs it (float
blocks, a batch per ``flushRows`` = 1,000 requests or 20,000 predicted rows), once as 1,000-row requests and
once as one-row requests, and read back into the frame the check takes (pyarrow decompresses with its own
threads, so its CPU time counts every thread).

Run: ``.venv/bin/python bench/drift_throughput.py [--rows 1000000] [--reference-rows 100000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from scipy import stats

from roost.serving import requestlog
from roost.stats import reference, verdict
from roost.storage import store as store_mod
from roost.workers import drift, profile

COLUMNS = 30
METHODS: dict[str, dict[str, Any]] = {
    "psi": {"method": "psi", "threshold": 0.2},
    "ks": {"method": "ks", "pValue": 0.05},
    "wasserstein": {"method": "wasserstein", "threshold": 0.1},
    "jensenshannon": {"method": "jensenshannon", "threshold": 0.1},
}


def draw(rng: np.random.Generator, rows: int, shift: bool) -> dict[str, np.ndarray]:
    """30 columns of mixed shapes; with ``shift``, every third column moves by one standard deviation."""
    out: dict[str, np.ndarray] = {}
    for i in range(COLUMNS):
        kind = i % 5
        if kind == 0:
            v = rng.normal(10 + i, 1 + i / 10, rows)
            sd = 1 + i / 10
        elif kind == 1:
            v = rng.lognormal(0, 1, rows)
            sd = float(np.sqrt((np.e - 1) * np.e))
        elif kind == 2:
            v = rng.poisson(20, rows).astype(np.float64)
            sd = float(np.sqrt(20))
        elif kind == 3:
            v = rng.standard_t(3, rows)
            sd = float(np.sqrt(3))
        else:
            v = np.where(rng.random(rows) < 0.3, 0.0, rng.exponential(5, rows))
            sd = 5.0
        if shift and i % 3 == 0:
            v = v + sd
        out[f"x{i:02d}"] = v
    return out


def build_reference(rows: int, workdir: Path) -> reference.Reference:
    rng = np.random.default_rng(0)
    data = draw(rng, rows, shift=False)
    data["y"] = rng.integers(0, 2, rows)
    path = workdir / "reference.csv"
    pacsv.write_csv(pa.table(data), str(path))
    store = store_mod.Store(f"file://{workdir / 'store'}")
    job = {"dataset": {"namespace": "bench", "name": "drift"},
           "spec": {"source": {"uri": f"file://{path}"}, "target": "y"}, "previousDigest": None}
    result = profile.run(job, store, store.uri("work"))
    doc = json.loads(store.read_bytes(result["profileURI"], result["profileDigest"]))
    return reference.prepare(doc)


def write_log(window: pd.DataFrame, rows_per_request: int, workdir: Path) -> tuple[store_mod.Store, str]:
    """``window`` logged as requests of ``rows_per_request`` rows, batched as the server flushes them."""
    store = store_mod.Store(f"file://{workdir}")
    prefix = store.uri("requestlogs", "bench", "drift")
    values, names = window.to_numpy(), tuple(window.columns)
    per_batch = max(1, min(requestlog.RequestLogConfig.flush_rows, requestlog.FLUSH_INPUT_ROWS // rows_per_request))
    start = time.time() - 3600
    for first in range(0, len(values), per_batch * rows_per_request):
        starts = range(first, min(len(values), first + per_batch * rows_per_request), rows_per_request)
        blocks = [(r, values[r:r + rows_per_request]) for r in starts]
        entries = [requestlog.Entry(start + r * 1e-6, "v2/infer", 200, 1.0, f"r{r}", len(block), block,
                                    np.zeros(len(block), int)) for r, block in blocks]
        batch = requestlog.encode_batch(entries, "drift", "v1", "sha256:0", columns=names)
        store.write_bytes(requestlog.batch_uri(f"{prefix}/v1", start + first * 1e-6), batch)
    return store, prefix


def time_log_reads(window: pd.DataFrame, repeat: int) -> None:
    print(f"{'window read from':<24} {'requests':>9} {'wall s':>7} {'cpu s':>7} {'rows/s/core':>12}")
    for rows_per_request in (1000, 1):
        with tempfile.TemporaryDirectory(prefix="roost-bench-log-") as tmp:
            store, prefix = write_log(window, rows_per_request, Path(tmp))
            best_wall = best_cpu = float("inf")
            for _ in range(repeat):
                w0, c0 = time.perf_counter(), time.process_time()
                frame = drift.window_frame(store, prefix, len(window), None)
                best_cpu = min(best_cpu, time.process_time() - c0)
                best_wall = min(best_wall, time.perf_counter() - w0)
            np.testing.assert_array_equal(frame[window.columns].to_numpy(), window.to_numpy())
            label = f"{rows_per_request}-row requests"
            print(f"{label:<24} {len(window) // rows_per_request:>9,} {best_wall:7.3f} {best_cpu:7.3f} "
                  f"{len(window) / best_cpu:12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per method")
    parser.add_argument("--baseline-columns", type=int, default=3, help="columns timed with scipy (0: skip)")
    parser.add_argument("--no-log", action="store_true", help="skip the window read from the request log")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        t0 = time.perf_counter()
        ref = build_reference(args.reference_rows, Path(tmp))
        t_profile = time.perf_counter() - t0
    t0 = time.perf_counter()
    window = pd.DataFrame(draw(np.random.default_rng(1), args.rows, shift=True))
    t_window = time.perf_counter() - t0
    sample = next(iter(ref.features.values()))
    assert isinstance(sample, reference.NumericReference)
    print(f"reference: {args.reference_rows} rows x {COLUMNS} numeric columns, profiled in {t_profile:.1f} s "
          f"(sample {sample.sample.size} values per column); window: {args.rows} rows ({t_window:.1f} s to draw)")
    print(f"one thread, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("rows/s/core from CPU time (the one thread's own seconds; wall time suffers when the cores are shared)")
    print(f"{'method':<18} {'wall s':>7} {'cpu s':>7} {'rows/s/core':>12} {'ns/value':>9} {'drifted':>8}")
    expected = {f"x{i:02d}" for i in range(COLUMNS) if i % 3 == 0}
    for name, test in METHODS.items():
        best_wall = best_cpu = float("inf")
        report = None
        for _ in range(args.repeat):
            w0, c0 = time.perf_counter(), time.process_time()
            report = verdict.check(ref, window, {"numeric": test})
            best_cpu = min(best_cpu, time.process_time() - c0)
            best_wall = min(best_wall, time.perf_counter() - w0)
        assert report is not None
        values = args.rows * COLUMNS
        found = set(report.drifted)
        mark = "" if found == expected else f"  (expected {sorted(expected)})"
        print(f"{name:<18} {best_wall:7.3f} {best_cpu:7.3f} {args.rows / best_cpu:12,.0f} "
              f"{best_cpu / values * 1e9:9.1f} {len(found):>5}/{COLUMNS}{mark}")

    if args.baseline_columns:
        cols = [f"x{i:02d}" for i in range(args.baseline_columns)]
        for name, fn in (("scipy ks_2samp", stats.ks_2samp), ("scipy wasserstein", stats.wasserstein_distance)):
            w0, c0 = time.perf_counter(), time.process_time()
            for c in cols:
                r = ref.features[c]
                assert isinstance(r, reference.NumericReference)
                fn(r.sample.values, window[c].to_numpy())
            scale = COLUMNS / len(cols)
            wall, cpu = (time.perf_counter() - w0) * scale, (time.process_time() - c0) * scale
            print(f"{name:<18} {wall:7.3f} {cpu:7.3f} {args.rows / cpu:12,.0f} {cpu / (args.rows * COLUMNS) * 1e9:9.1f}"
                  f"   (baseline: {len(cols)} columns, scaled to {COLUMNS})")
    if not args.no_log:
        time_log_reads(window, args.repeat)


if __name__ == "__main__":
    main()
