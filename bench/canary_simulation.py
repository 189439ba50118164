"""Canary judges side by side on the same seeded request streams (a benchmark, not a test).

    python bench/canary_simulation.py --reps 2000 --jobs 2   # the full run (about 30 min on 2 cores)
    python bench/canary_simulation.py                        # quick: 200 reps (a few minutes)
    python bench/canary_simulation.py --weight 0.1           # a 10 % canary instead of 50 %

Judges, each fed the same streams:

1. **roost** — :class:`roost.stats.canary.Analysis` (the operator's code path) with error-rate
   (``maxIncrease`` = ``--margin``) and latency-p95 (``maxRatio`` = ``--ratio``), ``alpha``,
   ``beta``, ``minRequests``; judged after every ``--batch`` candidate requests; Fail rolls back,
   Pass promotes; no verdict by ``--horizon`` x the fixed-horizon size rolls back (Inconclusive,
   as ``maxDuration`` does).
2. **fixed** — a fixed-horizon test sized for the same budgets: ``n`` candidate requests from the
   normal approximation for two proportions (one-sided, ``alpha / 2`` per metric, power ``1 - beta``
   at the margin, the traffic split's allocation ratio), the larger of the error-rate ``n`` and the
   latency ``n`` (share of requests above stable's p95: 5 % vs. its value at the margin ratio, for
   the simulated log-normal — an oracle advantage). At ``n``: roll back if either one-sided z-test
   rejects, else promote.
3. **flagger** — a Flagger-style rule: every 60 candidate requests, check success rate >= 99 % and
   p99 <= 500 ms; roll back after 2 failed checks, promote after 10 passed ones.

Streams: stable at ``--base`` error rate (0.5 %), latencies log-normal (median 100 ms, sigma 0.5:
p95 228 ms, p99 320 ms); the candidate the same except the scenario's regression — 0, 1x, 2x, 4x the
margin in error rate, or in p95 latency (all latencies scaled by 1 + k (ratio - 1)). Traffic split
``--weight`` to the candidate, deterministic per batch.

Printed per judge and scenario: rollback rate (with a 95 % Wilson interval), Roost's Fail / Pass /
timeout split, median and p90 candidate requests to the decision, and compute time per batch (the
judge's own work for one batch: both versions' updates and the judgement, mean); and, for Roost with
all six metrics, the cost of one ``update`` of 100 requests and of one judgement, and the state's
JSON size. Then the goals: false rollback <= 0.05 at zero effect; detection >= 0.8 at the margin;
requests to a decision <= 0.35 x the fixed ``n`` to roll back at 2x, <= 0.15 x at 4x, <= 0.6 x to
promote at zero effect (medians).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from roost.stats import canary

MEDIAN_MS = 100.0
SIGMA = 0.5
FLAGGER_INTERVAL = 60
FLAGGER_THRESHOLD = 2
FLAGGER_ITERATIONS = 10


@dataclass(frozen=True)
class Scenario:
    name: str
    error: float  # candidate error rate
    scale: float  # candidate latency factor
    effect: float  # regression in margins (0 = none)
    metric: str  # which metric regresses


@dataclass(frozen=True)
class Config:
    reps: int
    seed: int
    weight: float
    batch: int
    base: float
    margin: float
    ratio: float
    alpha: float
    beta: float
    min_requests: int
    horizon: float
    n_fixed: int


@dataclass(frozen=True)
class Decision:
    rollback: bool
    kind: str  # fail | pass | timeout | reject | accept | rollback | promote
    requests: int  # candidate requests at the decision
    seconds_per_batch: float  # the judge's compute per batch of candidate requests (updates + decision)


def scenarios(cfg: Config) -> list[Scenario]:
    out = [Scenario("no regression", cfg.base, 1.0, 0, "-")]
    out += [Scenario(f"error {k}x margin", cfg.base + k * cfg.margin, 1.0, k, "error") for k in (1, 2, 4)]
    out += [Scenario(f"p95 {k}x margin", cfg.base, 1 + k * (cfg.ratio - 1), k, "latency") for k in (1, 2, 4)]
    return out


def n_two_proportions(p0: float, p1: float, alpha: float, beta: float, k: float) -> float:
    """Candidate requests for a one-sided two-proportion z-test, ``k`` stable requests per candidate one."""
    za, zb = stats.norm.ppf(1 - alpha), stats.norm.ppf(1 - beta)
    pbar = (p1 + k * p0) / (1 + k)
    num = za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k)) + zb * math.sqrt(p1 * (1 - p1) + p0 * (1 - p0) / k)
    return (num / (p1 - p0)) ** 2


def fixed_n(base: float, margin: float, ratio: float, alpha: float, beta: float, weight: float) -> int:
    k = (1 - weight) / weight
    n_err = n_two_proportions(base, base + margin, alpha / 2, beta, k)
    above = float(stats.norm.sf(stats.norm.ppf(0.95) - math.log(ratio) / SIGMA))  # P(cand > stable p95)
    n_lat = n_two_proportions(0.05, above, alpha / 2, beta, k)
    return math.ceil(max(n_err, n_lat))


def stream(rng: np.random.Generator, n: int, error: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    codes = np.where(rng.random(n) < error, 503, 200)
    lat = scale * MEDIAN_MS * np.exp(SIGMA * rng.standard_normal(n))
    return codes, lat


def batches(cfg: Config, n_c: int) -> Iterator[tuple[slice, slice]]:
    """Per batch: the slice of candidate and of stable requests (deterministic split)."""
    k = (1 - cfg.weight) / cfg.weight
    for start in range(0, n_c, cfg.batch):
        stop = min(start + cfg.batch, n_c)
        yield slice(start, stop), slice(round(start * k), round(stop * k))


def roost(cfg: Config, cand: tuple[np.ndarray, np.ndarray], stab: tuple[np.ndarray, np.ndarray]) -> Decision:
    specs = [canary.metric_spec("error-rate", max_increase=cfg.margin),
             canary.metric_spec("latency-p95", max_ratio=cfg.ratio)]
    analysis = canary.Analysis(specs, alpha=cfg.alpha, beta=cfg.beta, min_requests=cfg.min_requests)
    spent, updates, n = 0.0, 0, 0
    for sc, ss in batches(cfg, cand[0].size):
        t0 = time.perf_counter()
        analysis.update("candidate", cand[0][sc], cand[1][sc])
        analysis.update("stable", stab[0][ss], stab[1][ss])
        verdict = analysis.judge(intervals=False)  # the verdict is the same with intervals
        spent += time.perf_counter() - t0
        updates += 1
        n = sc.stop
        if verdict.outcome == canary.Outcome.FAIL:
            return Decision(True, "fail", n, spent / updates)
        if verdict.outcome == canary.Outcome.PASS:
            return Decision(False, "pass", n, spent / updates)
    return Decision(True, "timeout", n, spent / max(updates, 1))


def fixed(cfg: Config, cand: tuple[np.ndarray, np.ndarray], stab: tuple[np.ndarray, np.ndarray]) -> Decision:
    t0 = time.perf_counter()
    n_c = cfg.n_fixed
    n_s = round(n_c * (1 - cfg.weight) / cfg.weight)
    za = stats.norm.ppf(1 - cfg.alpha / 2)

    def z(x_c: float, x_s: float) -> float:
        pooled = (x_c * n_c + x_s * n_s) / (n_c + n_s)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_s))
        return (x_c - x_s) / se if se > 0 else 0.0

    err = z(float(np.mean(cand[0][:n_c] >= 500)), float(np.mean(stab[0][:n_s] >= 500)))
    p95 = np.quantile(stab[1][:n_s], 0.95)
    lat = z(float(np.mean(cand[1][:n_c] > p95)), float(np.mean(stab[1][:n_s] > p95)))
    reject = bool(err > za or lat > za)
    spent = time.perf_counter() - t0
    return Decision(reject, "reject" if reject else "accept", n_c, spent / math.ceil(n_c / cfg.batch))


def flagger(cfg: Config, cand: tuple[np.ndarray, np.ndarray]) -> Decision:
    t0 = time.perf_counter()
    failed = passed = checks = 0
    for start in range(0, cand[0].size - FLAGGER_INTERVAL + 1, FLAGGER_INTERVAL):
        codes = cand[0][start:start + FLAGGER_INTERVAL]
        lat = cand[1][start:start + FLAGGER_INTERVAL]
        checks += 1
        ok = np.mean(codes < 500) >= 0.99 and np.quantile(lat, 0.99) <= 500.0
        failed, passed = (failed, passed + 1) if ok else (failed + 1, passed)
        n = start + FLAGGER_INTERVAL
        if failed >= FLAGGER_THRESHOLD:
            return Decision(True, "rollback", n, (time.perf_counter() - t0) / checks)
        if passed >= FLAGGER_ITERATIONS:
            return Decision(False, "promote", n, (time.perf_counter() - t0) / checks)
    return Decision(True, "timeout", cand[0].size, (time.perf_counter() - t0) / max(checks, 1))


def run_one(args: tuple[Config, Scenario, int]) -> dict[str, Decision]:
    cfg, sc, rep = args
    rng = np.random.default_rng([cfg.seed, rep])  # the same streams for every judge (and scenario)
    n_c = math.ceil(cfg.horizon * cfg.n_fixed)
    n_s = round(n_c * (1 - cfg.weight) / cfg.weight) + 1
    stab = stream(rng, n_s, cfg.base, 1.0)
    cand = stream(rng, n_c, sc.error, sc.scale)
    return {"roost": roost(cfg, cand, stab), "fixed": fixed(cfg, cand, stab), "flagger": flagger(cfg, cand)}


def micro_benchmark(repeat: int = 1000, size: int = 100) -> dict[str, float]:
    """Mean microseconds: one ``update`` of ``size`` requests (status, latency, prediction) per version,
    and one judgement with and without intervals, for all six metrics."""
    rng = np.random.default_rng(0)
    specs = [canary.metric_spec("error-rate", max_increase=0.01),
             canary.metric_spec("rejection-rate", max_increase=0.01),
             canary.metric_spec("latency-p95", max_ratio=1.2),
             canary.metric_spec("latency-p99", max_ratio=1.5),
             canary.metric_spec("prediction-shift", max=0.1),
             canary.metric_spec("agreement", max=0.1)]
    a = canary.Analysis(specs, min_requests=200)
    data = [(np.where(rng.random(size) < 0.01, 503, 200), MEDIAN_MS * np.exp(SIGMA * rng.standard_normal(size)),
             rng.choice(3, size, p=[0.5, 0.3, 0.2]), rng.random(size) > 0.05) for _ in range(16)]
    t_update = 0.0
    for i in range(repeat):
        codes, lat, pred, agree = data[i % 16]
        version = "candidate" if i % 2 else "stable"
        t0 = time.perf_counter()
        a.update(version, codes, lat, pred, agree if version == "candidate" else None)
        t_update += time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        a.judge(intervals=False)
    t_fast = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    for _ in range(5):
        a.judge()
    t_full = (time.perf_counter() - t0) / 5
    return {"update": 1e6 * t_update / repeat, "judge": 1e6 * t_fast, "judge_intervals": 1e6 * t_full,
            "state_bytes": float(len(json.dumps(a.to_dict())))}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--weight", type=float, default=0.5, help="share of traffic to the candidate")
    ap.add_argument("--batch", type=int, default=10, help="candidate requests per judgement")
    ap.add_argument("--base", type=float, default=0.005, help="stable error rate")
    ap.add_argument("--margin", type=float, default=0.01, help="error-rate maxIncrease")
    ap.add_argument("--ratio", type=float, default=1.2, help="latency-p95 maxRatio")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--beta", type=float, default=0.2)
    ap.add_argument("--min-requests", type=int, default=200)
    ap.add_argument("--horizon", type=float, default=3.0, help="give up after this many fixed-horizon n")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args(argv)
    n = fixed_n(a.base, a.margin, a.ratio, a.alpha, a.beta, a.weight)
    cfg = Config(a.reps, a.seed, a.weight, a.batch, a.base, a.margin, a.ratio, a.alpha, a.beta, a.min_requests,
                 a.horizon, n)
    print(f"reps {cfg.reps}, weight {cfg.weight}, base error {cfg.base}, margins +{cfg.margin} / x{cfg.ratio}, "
          f"alpha {cfg.alpha}, beta {cfg.beta}, minRequests {cfg.min_requests}, batch {cfg.batch}; "
          f"fixed-horizon n = {n} candidate requests")
    t0 = time.perf_counter()
    table: dict[tuple[str, str], list[Decision]] = {}
    scs = scenarios(cfg)
    work = [(cfg, sc, rep) for sc in scs for rep in range(cfg.reps)]
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as pool:
            results = list(pool.map(run_one, work, chunksize=8))
    else:
        results = [run_one(w) for w in work]
    for (_, sc, _), res in zip(work, results, strict=True):
        for judge, d in res.items():
            table.setdefault((sc.name, judge), []).append(d)
    print(f"({time.perf_counter() - t0:.0f} s)\n")
    mb = micro_benchmark()
    print(f"roost, six metrics: update of 100 requests {mb['update']:.0f} us (mean of 1000); judge "
          f"{mb['judge']:.0f} us, with intervals {mb['judge_intervals'] / 1000:.1f} ms; "
          f"state {mb['state_bytes'] / 1024:.1f} KB of JSON\n")
    head = (f"{'scenario':<18} {'judge':<8} {'rollback':>8} {'95% CI':>15} {'fail/pass/timeout':>18} "
            f"{'median n':>9} {'p90 n':>7} {'x fixed n':>9} {'us/batch':>9}")
    print(head)
    print("-" * len(head))
    summary: dict[tuple[str, str], tuple[float, float]] = {}
    for sc in scs:
        for judge in ("roost", "fixed", "flagger"):
            ds = table[(sc.name, judge)]
            k = sum(d.rollback for d in ds)
            lo, hi = wilson(k, len(ds))
            reqs = np.array([d.requests for d in ds])
            kinds = {kk: sum(d.kind == kk for d in ds) for kk in ("fail", "pass", "timeout")}
            split = f"{kinds['fail']}/{kinds['pass']}/{kinds['timeout']}" if judge == "roost" else ""
            med, p90 = float(np.median(reqs)), float(np.quantile(reqs, 0.9))
            us = 1e6 * float(np.mean([d.seconds_per_batch for d in ds]))
            summary[(sc.name, judge)] = (k / len(ds), med / n)
            print(f"{sc.name:<18} {judge:<8} {k / len(ds):>8.3f} [{lo:>6.3f},{hi:>6.3f}] {split:>18} "
                  f"{med:>9.0f} {p90:>7.0f} {med / n:>9.2f} {us:>9.0f}")
        print()
    print("Goals for roost (median requests to a decision as a share of the fixed-horizon n):")
    r0 = summary[("no regression", "roost")]
    goals = [
        ("false rollback at zero effect <= 0.05", r0[0], r0[0] <= 0.05),
        ("detection at 1x margin (error) >= 0.8", summary[("error 1x margin", "roost")][0],
         summary[("error 1x margin", "roost")][0] >= 0.8),
        ("detection at 1x margin (p95) >= 0.8", summary[("p95 1x margin", "roost")][0],
         summary[("p95 1x margin", "roost")][0] >= 0.8),
        ("roll back at 2x (error) <= 0.35 n", summary[("error 2x margin", "roost")][1],
         summary[("error 2x margin", "roost")][1] <= 0.35),
        ("roll back at 2x (p95) <= 0.35 n", summary[("p95 2x margin", "roost")][1],
         summary[("p95 2x margin", "roost")][1] <= 0.35),
        ("roll back at 4x (error) <= 0.15 n", summary[("error 4x margin", "roost")][1],
         summary[("error 4x margin", "roost")][1] <= 0.15),
        ("roll back at 4x (p95) <= 0.15 n", summary[("p95 4x margin", "roost")][1],
         summary[("p95 4x margin", "roost")][1] <= 0.15),
        ("promote at zero effect <= 0.6 n", r0[1], r0[1] <= 0.6),
    ]
    for text, value, ok in goals:
        print(f"  {'met   ' if ok else 'MISSED'} {text:<42} {value:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
