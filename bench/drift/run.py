"""Drift benchmark: Roost's drift checks against Evidently, alibi-detect and NannyML, side by side in one run.

One command (see bench/README.md)::

    .venv/bin/python bench/drift/run.py            # windows of 1k, 10k and 1M rows
    .venv/bin/python bench/drift/run.py --quick    # 1k and 10k, fewer repetitions

Data, generated here (no downloads), fixed seeds:

- ``breast-cancer``: scikit-learn's 569 rows x 30 numeric columns, bootstrapped (rows drawn with
  replacement) to a 100,000-row reference, each value jittered by Gaussian noise of 1% of its column's
  standard deviation; windows bootstrapped the same way (other seeds) with 1,000, 10,000 and 1,000,000 rows:
  (a) the same distribution, (b) 5 columns shifted by +0.25 reference standard deviations, (c) 5 columns
  spread about their reference mean so that their variance is x1.5.
- ``digits``: scikit-learn's 1,797 rows x 64 pixel columns with 17 levels (0-16), tested as categorical;
  bootstrapped without jitter; (b) and (c) as above on the 5 columns of largest spread, then rounded to the
  nearest level and clipped to 0-16.

Each library runs in its own process (and virtualenv, with exact pins, created once under
``~/.cache/roost/bench/venvs``), one process per data set and window size, with the data passed as ``.npy``
files (column-major, so every column is one contiguous array) in a temporary directory; see ``_child.py``
for how calls are timed and memory is read, and each ``*_runner.py`` for exactly what is called. Roost's
reference profile comes from its Dataset worker (:func:`roost.workers.profile.run`), run here once per
data set; its runner prepares it and calls :func:`roost.stats.verdict.check`, as the drift worker does.
BLAS/OpenMP thread pools are limited to one thread in every runner, so CPU seconds are per core.

Printed: per window, each competitor against Roost asking for the same tests and thresholds where Roost
has them (wall and CPU seconds, speed-up, drift flags against the 5 shifted columns, per-column agreement);
each library's flags under its own default test and threshold; reference preparation and peak memory;
the KS exactness check; Roost's ingest rate; the goals, PASS or MISS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("ROOST_BENCH_CACHE", Path.home() / ".cache" / "roost" / "bench"))
VENVS = CACHE / "venvs"
LOGS = CACHE / "drift-logs"
PINS = {
    "evidently": ["evidently==0.7.23", "pandas==2.3.3"],
    "alibi-detect": ["alibi-detect==0.13.0"],
    "nannyml": ["nannyml==0.13.1", "pandas==2.3.3", "statsmodels==0.15.0"],
}
RUNNERS = {"roost": "roost_runner.py", "evidently": "evidently_runner.py", "alibi-detect": "alibi_runner.py",
           "nannyml": "nannyml_runner.py"}
LIBRARIES = ("roost", "evidently", "alibi-detect", "nannyml")
REFERENCE_ROWS = 100_000
SIZES = (1_000, 10_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
SCENARIOS = {"a": "same distribution", "b": "mean +0.25 sd in 5 columns", "c": "variance x1.5 in 5 columns"}
JITTER = 0.01
SHIFT = 0.25
VARIANCE = 1.5
SHIFTED = 5
LEVELS = 16  # digits' pixel levels are 0..16
THREADS = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


@dataclass(frozen=True)
class Pairing:
    """A competitor's configuration and the Roost configuration that asks for the same tests."""

    label: str
    library: str
    config: str
    roost: str
    goal: float
    tests: str


PAIRINGS = (
    Pairing("Evidently default", "evidently", "default", "as-evidently", 100.0,
            "Wasserstein/std > 0.1 | JS > 0.1 (Evidently's default selection)"),
    Pairing("Evidently as Roost", "evidently", "as-roost", "default", 100.0,
            "PSI > 0.2 | chi2 p < 0.05/m (Roost's defaults; bins differ)"),
    Pairing("alibi-detect", "alibi-detect", "default", "as-alibi", 10.0,
            "KS p | chi2 p < 0.05/m (Bonferroni)"),
    Pairing("NannyML", "nannyml", "default", "as-nannyml", 10.0,
            "KS, JS, Wasserstein | chi2, JS; flags: JS (NannyML's default method)"),
)
OWN_DEFAULTS = (("roost", "default", "Roost"), ("evidently", "default", "Evidently"),
                ("alibi-detect", "default", "alibi"), ("nannyml", "default", "NannyML"))
INGEST_GOAL = 1_000_000.0
INGEST = {  # (label, Roost configuration, method within as-nannyml or None): one verdict.check each
    "numeric": [("psi", "default", None), ("wasserstein", "as-evidently", None), ("ks", "as-alibi", None),
                ("jensenshannon", "as-nannyml", "jensenshannon")],
    "categorical": [("chi2", "default", None), ("jensenshannon", "as-evidently", None)],
}


# ----- data ----------------------------------------------------------------------------------------------
@dataclass
class DataSet:
    name: str
    kind: str  # "numeric" or "categorical"
    columns: list[str]
    shifted: list[str]
    reference: np.ndarray  # (rows, columns), column-major
    target: np.ndarray
    source: np.ndarray  # the original rows the bootstrap draws from
    mean: np.ndarray
    std: np.ndarray


def load_datasets(names: Sequence[str]) -> list[DataSet]:
    from sklearn.datasets import load_breast_cancer, load_digits

    out = []
    for name in names:
        if name == "breast-cancer":
            bunch = load_breast_cancer()
            x, y = bunch.data.astype(np.float64), bunch.target
            columns = [str(c).replace(" ", "_") for c in bunch.feature_names]
            kind = "numeric"
            shifted_idx = [0, 7, 13, 20, 27]  # mean radius, mean concave points, area error, worst radius, ...
        else:
            bunch = load_digits()
            x, y = bunch.data.astype(np.int64), bunch.target
            columns = [str(c) for c in bunch.feature_names]
            kind = "categorical"
            order = np.argsort(-x.std(axis=0), kind="stable")  # the 5 columns of largest spread
            shifted_idx = sorted(int(i) for i in order[:SHIFTED])
        rng = np.random.default_rng(0)
        rows = rng.integers(0, x.shape[0], REFERENCE_ROWS)
        ref = _jitter(x[rows], x, rng, kind)
        out.append(DataSet(name, kind, columns, [columns[i] for i in shifted_idx], np.asfortranarray(ref), y[rows],
                           x, ref.mean(axis=0), ref.std(axis=0, ddof=1)))
    return out


def _jitter(rows: np.ndarray, source: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    if kind != "numeric":
        return rows
    noise = rng.standard_normal(rows.shape)
    noise *= JITTER * source.std(axis=0, ddof=1)
    return rows + noise


def window(data: DataSet, rows: int, scenario: str, seed: int) -> np.ndarray:
    """A window of ``rows`` bootstrapped rows, with ``scenario`` applied to the shifted columns."""
    rng = np.random.default_rng(seed)
    w = _jitter(data.source[rng.integers(0, data.source.shape[0], rows)], data.source, rng, data.kind)
    w = np.asfortranarray(w)
    for c in data.shifted:
        i = data.columns.index(c)
        col = w[:, i].astype(np.float64)
        if scenario == "b":
            col = col + SHIFT * data.std[i]
        elif scenario == "c":
            col = data.mean[i] + (col - data.mean[i]) * math.sqrt(VARIANCE)
        else:
            continue
        w[:, i] = col if data.kind == "numeric" else np.clip(np.rint(col), 0, LEVELS).astype(np.int64)
    return w


def roost_profile(data: DataSet, work: Path) -> tuple[Path, float]:
    """Run Roost's Dataset worker on the reference rows (Parquet) and save the profile document; its seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from roost.storage import store as store_mod
    from roost.workers import profile

    source = work / f"{data.name}-reference.parquet"
    table = {c: data.reference[:, i] for i, c in enumerate(data.columns)}
    pq.write_table(pa.table({**table, "target": data.target}), source)
    spec: dict[str, Any] = {"source": {"uri": f"file://{source}", "format": "parquet"}, "target": "target"}
    if data.kind == "categorical":
        spec["schema"] = {"features": [{"name": c, "type": "categorical"} for c in data.columns]}
    store = store_mod.Store(f"file://{work / 'store'}")
    t0 = time.perf_counter()
    result = profile.run({"dataset": {"namespace": "bench", "name": data.name}, "spec": spec, "previousDigest": None},
                         store, store.uri("work"))
    seconds = time.perf_counter() - t0
    path = work / f"{data.name}-profile.json"
    path.write_bytes(store.read_bytes(result["profileURI"], result["profileDigest"]))
    source.unlink()
    return path, seconds


# ----- environments ----------------------------------------------------------------------------------------
def ensure_venv(name: str) -> tuple[Path | None, str | None]:
    """The competitor's virtualenv with its exact pins (created once); ``(None, why)`` when it cannot be made."""
    venv = VENVS / name
    marker = venv / ".roost-pins"
    wanted = " ".join(PINS[name])
    if marker.exists() and marker.read_text() == wanted:
        return venv, None
    VENVS.mkdir(parents=True, exist_ok=True)
    print(f"installing {wanted} into {venv} ...", flush=True)
    if not (venv / "bin" / "python").exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if made.returncode != 0:
            return None, f"python -m venv failed: {made.stderr.strip()[-300:]}"
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *PINS[name]],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"`pip install {wanted}` failed: {done.stderr.strip()[-500:]}"
    marker.write_text(wanted)
    return venv, None


def versions(python: str, names: Sequence[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    done = subprocess.run([python, "-c", code, *names], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def run_child(library: str, python: str, job: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """Run one runner on one job; its JSON answer, or ``{"error": ...}``."""
    tag = f"{library}-{job['dataset']}-{job['windows'][0]['rows']}"
    job_path = work / f"{tag}.json"
    job_path.write_text(json.dumps(job))
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{tag}.log"
    env = {**os.environ, **THREADS, "DO_NOT_TRACK": "1", "NML_DISABLE_USAGE_LOGGING": "1",
           "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        done = subprocess.run([python, str(HERE / RUNNERS[library]), str(job_path)], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=work)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {timeout:.0f} s"}
    log.write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit code {done.returncode}: {tail} (log: {log})"}
    answer: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    return answer


# ----- report ---------------------------------------------------------------------------------------------------
def short(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows >= 1_000_000 else f"{rows // 1000}k"


def seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.4f}" if s < 1 else f"{s:.2f}" if s < 100 else f"{s:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and b > 0 else None


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x"


def rate_text(rate: float) -> str:
    return f"{rate / 1e6:.2f}M/s" if rate >= 1e5 else f"{rate / 1e3:.1f}k/s"


def tally(flags: dict[str, bool | None] | None, shifted: Sequence[str]) -> str:
    """``hits/false alarms`` against the shifted columns (``?`` counts columns without a verdict)."""
    if flags is None:
        return "-"
    hits = sum(1 for c in shifted if flags.get(c))
    false = sum(1 for c, f in flags.items() if f and c not in shifted)
    unknown = sum(1 for f in flags.values() if f is None)
    return f"{hits}/{false}" + (f" ?{unknown}" if unknown else "")


def agreement(a: dict[str, bool | None] | None, b: dict[str, bool | None] | None) -> str:
    if a is None or b is None:
        return "-"
    same = sum(1 for c in a if c in b and a[c] is not None and bool(a[c]) == bool(b[c]))
    return f"{same}/{len(a)}"


def entry(results: dict[tuple[str, str, int], dict[str, Any]], library: str, dataset: str, rows: int,
          scenario: str, config: str) -> dict[str, Any] | None:
    answer = results.get((library, dataset, rows))
    if not answer or "error" in answer:
        return None
    for w in answer.get("windows", []):
        if w["scenario"] == scenario:
            got: dict[str, Any] | None = w["configs"].get(config)
            return got
    return None


def report(results: dict[tuple[str, str, int], dict[str, Any]], datasets: list[DataSet], sizes: Sequence[int],
           profiles: dict[str, float], info: dict[str, Any]) -> dict[str, Any]:
    """Print every table; return the goals' verdicts."""
    print()
    print("Same windows, same tests where Roost has them. Times: median seconds per window, all columns; x = the")
    print("competitor's time / Roost's. Flags: hits/false alarms against the 5 shifted columns (? = no verdict).")
    print("agree: columns where the two libraries' flags are equal.")
    header = (f"{'data':<14}{'rows':>5} {'sc':<3}{'competitor':<20}{'their wall':>11}{'Roost wall':>11}{'x wall':>8}"
              f"{'their cpu':>11}{'Roost cpu':>11}{'x cpu':>8}{'theirs':>8}{'Roost':>8}{'agree':>7}")
    speedups: dict[str, list[tuple[float | None, float | None, str]]] = {p.label: [] for p in PAIRINGS}
    for p in PAIRINGS:
        print(f"\n{p.label}: {p.tests}")
        print(header)
        for data in datasets:
            for rows in sizes:
                for sc in SCENARIOS:
                    theirs = entry(results, p.library, data.name, rows, sc, p.config)
                    ours = entry(results, "roost", data.name, rows, sc, p.roost)
                    shifted = data.shifted if sc != "a" else []
                    tw, tc = (theirs or {}).get("wall"), (theirs or {}).get("cpu")
                    rw, rc = (ours or {}).get("wall"), (ours or {}).get("cpu")
                    tf, rf = (theirs or {}).get("flags"), (ours or {}).get("flags")
                    xw, xc = ratio(tw, rw), ratio(tc, rc)
                    where = f"{data.name} {short(rows)} {sc}"
                    speedups[p.label].append((xw, xc, where))
                    print(f"{data.name:<14}{short(rows):>5} {sc:<3}{p.label:<20}{seconds(tw):>11}{seconds(rw):>11}"
                          f"{fmt_ratio(xw):>8}{seconds(tc):>11}{seconds(rc):>11}{fmt_ratio(xc):>8}"
                          f"{tally(tf, shifted):>8}{tally(rf, shifted):>8}{agreement(tf, rf):>7}")

    print("\nOwn defaults: each library's default test and threshold (Roost: PSI > 0.2 | chi2 Bonferroni; Evidently:")
    print("Wasserstein/std >= 0.1 | JS >= 0.1; alibi: KS | chi2 Bonferroni; NannyML: JS > mean + 3 sd of reference")
    print("chunks). Flags hits/false alarms; agree = columns where the flags equal Roost's.")
    print(f"{'data':<14}{'rows':>5} {'sc':<3}" + "".join(f"{lab:>11}{'agree':>7}" for _, _, lab in OWN_DEFAULTS))
    for data in datasets:
        for rows in sizes:
            for sc in SCENARIOS:
                shifted = data.shifted if sc != "a" else []
                base = (entry(results, "roost", data.name, rows, sc, "default") or {}).get("flags")
                cells = []
                for library, config, _ in OWN_DEFAULTS:
                    flags = (entry(results, library, data.name, rows, sc, config) or {}).get("flags")
                    cells.append(f"{tally(flags, shifted):>11}{agreement(flags, base):>7}")
                print(f"{data.name:<14}{short(rows):>5} {sc:<3}" + "".join(cells))

    print("\nNannyML's other methods (its thresholds: KS and Wasserstein mean + 3 sd of reference chunks, chi2")
    print("p < 0.05) against Roost's (KS p < 0.05, Wasserstein/std > 0.1, chi2 p < 0.05, all uncorrected here):")
    print(f"{'data':<14}{'rows':>5} {'sc':<3}{'method':<14}{'NannyML':>9}{'Roost':>9}{'agree':>7}")
    pairs = {"numeric": [("kolmogorov_smirnov", "ks"), ("wasserstein", "wasserstein")],
             "categorical": [("chi2", "chi2")]}
    for data in datasets:
        for rows in sizes:
            for sc in SCENARIOS:
                shifted = data.shifted if sc != "a" else []
                theirs = (entry(results, "nannyml", data.name, rows, sc, "default") or {}).get("methods") or {}
                ours = (entry(results, "roost", data.name, rows, sc, "as-nannyml") or {}).get("methods") or {}
                for nm, rm in pairs[data.kind]:
                    a, b = (theirs.get(nm) or {}).get("flags"), (ours.get(rm) or {}).get("flags")
                    print(f"{data.name:<14}{short(rows):>5} {sc:<3}{nm:<14}{tally(a, shifted):>9}{tally(b, shifted):>9}"
                          f"{agreement(a, b):>7}")

    print("\nReference preparation (seconds, once per reference unless said) and peak memory (MiB, the process's")
    print("peak RSS: after loading the reference and preparing it / at the end of its windows of that size):")
    for data in datasets:
        print(f"  {data.name}: Roost's Dataset worker (fetch, validate, snapshot, split, profile of {REFERENCE_ROWS:,}"
              f" rows) {profiles.get(data.name, float('nan')):.2f} s")
        for rows in sizes:
            cells = []
            for library in LIBRARIES:
                answer = results.get((library, data.name, rows)) or {}
                if "error" in answer or not answer:
                    cells.append(f"{library}: {answer.get('error', 'not run')}")
                    continue
                prep = ", ".join(f"{k} {v:.3f}" for k, v in answer.get("prep", {}).items())
                cells.append(f"{library}: {prep}; {answer.get('rssPrepMiB', 0):.0f}/{answer.get('rssPeakMiB', 0):.0f}")
            window_mib = rows * len(data.columns) * 8 / 2**20
            print(f"  {data.name} {short(rows)} (window {window_mib:.0f} MiB): " + " | ".join(cells))

    print("\nKS exactness: Roost's KS against the profile's capped sorted reference sample, compared with")
    print("scipy.stats.ks_2samp(that same sample, window, method=Roost's mode) (statistic to 1e-12, raw p-value to")
    print("1e-6); and, for")
    print("information, how far that D is from the D against all 100,000 reference rows (what alibi-detect uses).")
    ks_pass = True
    ks_seen = False
    for data in datasets:
        for rows in sizes:
            answer = results.get(("roost", data.name, rows)) or {}
            for row in answer.get("ksCheck", []):
                ks_seen = True
                ks_pass = ks_pass and bool(row["pass"])
                print(f"  {data.name} {short(rows)} {row['scenario']}: {row['columns']} columns, sample "
                      f"{'/'.join(str(s) for s in row['sampleSizes'])} values, p-value mode {'/'.join(row['modes'])}: "
                      f"max |D - D_scipy| {row['dGap']:.1e}, max |p - p_scipy| {row['pGap']:.1e} "
                      f"{'PASS' if row['pass'] else 'MISS'}; max |D - D_all rows| {row['fullReferenceDGap']:.4f}")

    print("\nDiagnostic, not the operator's path: Roost's as-alibi check with scipy's exact KS p-values throughout")
    print("(scipy's method='auto' is exact for samples of up to 10,000 values; the operator's is asymptotic above an")
    print("effective size of 400, as alibi-detect always is); CPU seconds, and alibi-detect's time / this one:")
    for data in datasets:
        if data.kind != "numeric":
            continue
        for rows in sizes:
            cells = []
            for sc in SCENARIOS:
                diag = entry(results, "roost", data.name, rows, sc, "ks-exact")
                theirs = entry(results, "alibi-detect", data.name, rows, sc, "default")
                if diag:
                    x = ratio((theirs or {}).get("cpu"), diag["cpu"])
                    flags = tally(diag["flags"], data.shifted if sc != "a" else [])
                    cells.append(f"{sc} {seconds(diag['cpu'])} s ({fmt_ratio(x)}, flags {flags})")
            print(f"  {data.name} {short(rows)}: " + "; ".join(cells))

    print("\nRoost ingest rate: window rows / CPU seconds of one check (one method per kind) over all columns,")
    print("one thread, slowest scenario:")
    ingest: dict[str, float] = {}
    for data in datasets:
        for rows in sizes:
            cells = []
            for label, config, method in INGEST[data.kind]:
                rates = []
                for sc in SCENARIOS:
                    e = entry(results, "roost", data.name, rows, sc, config)
                    if e and method:
                        e = (e.get("methods") or {}).get(method)
                    if e and e.get("cpu", 0) > 0:
                        rates.append(rows / e["cpu"])
                if rates:
                    cells.append(f"{label} {rate_text(min(rates))}")
                    if rows == max(sizes):
                        ingest[f"{data.name} {label}"] = min(rates)
            print(f"  {data.name:<14}{short(rows):>4}: " + ", ".join(cells))

    print("\nGoals. Speed-ups: the smallest over all windows and scenarios, on CPU seconds (per core; the machine is")
    print("shared, so wall seconds carry other processes' load) and on wall seconds:")
    verdicts: dict[str, Any] = {}
    for p in PAIRINGS:
        xs = speedups[p.label]
        walls = [(x, where) for x, _, where in xs if x is not None]
        cpus = [(c, where) for _, c, where in xs if c is not None]
        if not cpus:
            print(f"  >= {p.goal:.0f}x vs {p.label}: not measured")
            continue
        cpu_min, wall_min = min(cpus), min(walls)
        by_size = {short(r): min(c for c, where in cpus if where.split()[1] == short(r)) for r in sizes
                   if any(where.split()[1] == short(r) for _, where in cpus)}
        ok = cpu_min[0] >= p.goal
        verdicts[p.label] = {"goal": p.goal, "minCpu": cpu_min[0], "minWall": wall_min[0], "pass": ok,
                             "minCpuBySize": by_size}
        print(f"  >= {p.goal:.0f}x vs {p.label}: CPU min {fmt_ratio(cpu_min[0])} ({cpu_min[1]}), wall min "
              f"{fmt_ratio(wall_min[0])} ({wall_min[1]}); CPU min by window: "
              + ", ".join(f"{k} {fmt_ratio(v)}" for k, v in by_size.items()) + f": {'PASS' if ok else 'MISS'}")
    if ingest:
        slowest = min(ingest, key=lambda k: ingest[k])
        ok = ingest[slowest] >= INGEST_GOAL
        verdicts["ingest"] = {"min": ingest[slowest], "pass": ok, "rates": ingest}
        print(f"  >= 1M rows/s per core ingesting a {short(max(sizes))}-row window, every check: slowest "
              f"{rate_text(ingest[slowest])} ({slowest}): {'PASS' if ok else 'MISS'}")
    if ks_seen:
        verdicts["ksExact"] = ks_pass
        print("  KS statistic to 1e-12 and p-value to 1e-6 of scipy on the same sample: "
              f"{'PASS' if ks_pass else 'MISS'}")
    one, five, fifteen = os.getloadavg()
    print(f"\nload average at the end {one:.2f}, {five:.2f}, {fifteen:.2f} (at the start {info['loadStart']})")
    return verdicts


# ----- main ---------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="windows of 1k and 10k rows, fewer repetitions")
    parser.add_argument("--sizes", default=None, help="window rows, comma-separated (default 1000,10000,1000000)")
    parser.add_argument("--datasets", default="breast-cancer,digits")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--repeat", type=int, default=None, help="Roost's calls per window (median; default 7)")
    parser.add_argument("--competitor-repeat", type=int, default=None, help="competitors' calls (default 3)")
    parser.add_argument("--budget", type=float, default=20.0, help="stop repeating a call after this many seconds")
    parser.add_argument("--timeout", type=float, default=5400.0, help="seconds one runner may take")
    parser.add_argument("--out", type=Path, default=CACHE / "drift-results.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    repeat = args.repeat or (3 if args.quick else 7)
    competitor_repeat = args.competitor_repeat or (1 if args.quick else 3)
    libraries = [lib for lib in LIBRARIES if lib in args.libraries.split(",")]

    one, five, fifteen = os.getloadavg()
    info: dict[str, Any] = {"loadStart": f"{one:.2f}, {five:.2f}, {fifteen:.2f}", "cpus": os.cpu_count()}
    print(f"drift benchmark: reference {REFERENCE_ROWS:,} rows; windows {', '.join(f'{s:,}' for s in sizes)} rows; "
          f"{os.cpu_count()} CPUs, load average {info['loadStart']}; one BLAS/OpenMP thread per runner")
    pythons = {"roost": sys.executable}
    why_not: dict[str, str] = {}
    for library in libraries:
        if library == "roost":
            continue
        venv, why = ensure_venv(library)
        if venv is None:
            why_not[library] = why or "unknown"
            print(f"  {library}: NOT RUN: {why}")
        else:
            pythons[library] = str(venv / "bin" / "python")
    for library, python in pythons.items():
        names = ["evidently", "alibi-detect", "nannyml", "numpy", "scipy", "pandas", "scikit-learn"]
        found = versions(python, names)
        info[f"versions-{library}"] = found
        print(f"  {library:<13}" + ", ".join(f"{k} {v}" for k, v in found.items()))

    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    profiles: dict[str, float] = {}
    datasets = load_datasets(args.datasets.split(","))
    with tempfile.TemporaryDirectory(prefix="roost-drift-bench-") as tmp:
        work = Path(tmp)
        for data in datasets:
            print(f"\n{data.name}: {len(data.columns)} {data.kind} columns, shifted in (b) and (c): "
                  f"{', '.join(data.shifted)}", flush=True)
            ref_path = work / f"{data.name}-reference.npy"
            np.save(ref_path, data.reference)
            profile_path = None
            if "roost" in pythons:
                profile_path, profiles[data.name] = roost_profile(data, work)
                print(f"  Roost's Dataset worker profiled the reference in {profiles[data.name]:.2f} s", flush=True)
            for si, rows in enumerate(sizes):
                windows = []
                for k, sc in enumerate(SCENARIOS):
                    path = work / f"{data.name}-{rows}-{sc}.npy"
                    np.save(path, window(data, rows, sc, seed=1000 + 10 * si + k))
                    windows.append({"scenario": sc, "rows": rows, "path": str(path)})
                for library, python in pythons.items():
                    job = {"dataset": data.name, "kind": data.kind, "columns": data.columns,
                           "reference": str(ref_path), "profile": str(profile_path), "windows": windows,
                           "repeat": repeat if library == "roost" else competitor_repeat, "budget": args.budget,
                           "warmup": rows <= 10_000}
                    t0 = time.perf_counter()
                    answer = run_child(library, python, job, work, args.timeout)
                    results[(library, data.name, rows)] = answer
                    state = answer.get("error") or "ok"
                    print(f"  {short(rows):>3} windows: {library:<13} {time.perf_counter() - t0:7.1f} s  {state}",
                          flush=True)
                for w in windows:
                    Path(w["path"]).unlink()
        for library, why in why_not.items():
            for data in datasets:
                for rows in sizes:
                    results[(library, data.name, rows)] = {"error": f"not installed: {why}"}
        verdicts = report(results, datasets, sizes, profiles, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "info": info, "sizes": sizes, "profiles": profiles, "goals": verdicts,
        "datasets": [{"name": d.name, "kind": d.kind, "columns": d.columns, "shifted": d.shifted} for d in datasets],
        "results": [{"library": k[0], "dataset": k[1], "rows": k[2], **v} for k, v in results.items()],
    }, default=float, indent=1))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
