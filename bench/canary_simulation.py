"""Canary judges side by side on the same seeded request streams (a benchmark, not a test).

    python bench/canary_simulation.py                          # 10,000 reps per scenario, 50 % canary
    python bench/canary_simulation.py --weight 0.1             # a 10 % canary
    python bench/canary_simulation.py --reps 1000 --quick      # a few minutes

Judges, each fed the same streams (common random numbers across judges and scenarios):

1. **roost** — Roost's analysis: the functions :class:`roost.stats.canary.Analysis` runs
   (:func:`canary.proportion_step`, :func:`canary.proportion_tests`, :func:`canary.quantile_ranks`,
   :func:`canary.rank_edges`, :func:`canary.quantile_tests`, :func:`sequential.bernoulli_bounds`,
   :func:`canary.js_bounds_array`), called on arrays of runs at once; only the bookkeeping (counting,
   the histogram's order statistics) is the simulation's. The first ``--check`` runs of every
   scenario are also fed, request batch by request batch, to a real ``Analysis`` object, and the two
   must reach the same verdict after the same number of requests, or the study stops. Judged after
   every ``--batch`` candidate requests; Fail rolls back, Pass promotes; no verdict by ``--horizon``
   x the fixed-horizon size rolls back (Inconclusive, as ``maxDuration`` does).
2. **fixed** — a fixed-horizon test sized for the same budgets: ``n`` candidate requests (with
   ``n (1 - w) / w`` stable ones) from the normal approximation for two proportions, one-sided,
   ``alpha / m`` per metric, power ``1 - beta`` at the margin, the largest over the metrics (for a
   quantile: the share above stable's quantile, ``1 - p`` against its value at the margin ratio for
   the simulated log-normal — an oracle advantage; prediction shift is not used for sizing). At ``n``:
   roll back if any one-sided z-test rejects (prediction shift: a Wald test of the Jensen-Shannon
   distance above ``max``, delta-method standard error), else promote.
3. **sprt** — Wald's SPRT per metric, simple hypotheses "no difference" against "worse by the
   margin": the conditional SPRT on which version each event (5xx, 4xx, a latency above stable's
   *true* quantile — an oracle threshold) came from, rate ratio 1 against the ratio at the margin
   (Poisson approximation; prediction shift on the candidate's classes with stable's shares known),
   boundaries ``(1 - beta) / (alpha / m)`` and
   ``beta / (1 - alpha / m)``; roll back when a metric reaches the upper boundary, promote when every
   metric has reached the lower one; the same ``minRequests``. The efficiency floor for the
   comparison — *not* a valid procedure here: its error rates hold only at the two simple hypotheses
   (the real nulls are composite — any stable rate, any difference
   <= 0 — and an SPRT is not valid for them under continuous monitoring), and it uses oracle
   knowledge of stable's distribution.
4. **kayenta** — a Kayenta-style judge (Spinnaker's Mann-Whitney classifier, reimplemented from its
   description): at the fixed test's ``n``, each version's requests cut into 50 intervals, one point
   per interval and metric (5xx share, 4xx share, p95, p99); points beyond 3 IQR from the quartiles
   dropped; a two-sided Mann-Whitney U with a 98 % Hodges-Lehmann interval for candidate minus
   stable; roll back when an interval lies above 0. For context: not sized for ``alpha``/``beta``.
5. **flagger** — a Flagger-style rule: every 60 candidate requests, check success rate (non-5xx)
   >= 99 % and p99 <= 500 ms; roll back after 2 failed checks, promote after 10 passed ones. It sees
   neither 4xx nor predictions.
6. **confseq** — optional, when ``~/.cache/roost/bench/venvs/seqbase`` has the ``confseq`` package
   (``bench/canary_confseq.py`` says how to make it): Roost with its proportion metrics judged by two
   one-sample confidence sequences from confseq instead of its two-sample e-processes — an ablation,
   on the two-metric scenarios. ``savvi`` (0.3.1) is not used: its tests (multinomial
   sample-ratio mismatch, Bernoulli-process rates, regression coefficients) test equality, so they
   could roll back but never judge "no worse than the margin", and it needs numpy >= 2 where confseq
   0.0.11 needs numpy < 2.

Streams: stable at ``--base`` 5xx share (0.5 %) and ``--base-4xx`` 4xx share (1 %), latencies
log-normal (median 100 ms, sigma 0.5: p95 228 ms, p99 320 ms), predicted classes with shares
0.5/0.3/0.2. The candidate is the same except for the scenario's regression: 0, 1x, 2x, 4x the margin
in error rate, in p95 latency (all latencies scaled by ``1 + k (ratio - 1)``), in 4xx share; class
shares moved to a Jensen-Shannon distance of 0.5x and 2x ``max``. Two metric sets: ``core``
(error-rate +``--margin``, latency-p95 x``--ratio``) and ``all`` (those, rejection-rate
+``--margin``, latency-p99 x``--ratio99``, prediction-shift ``--shift-max``: five metrics, so
``alpha / 5`` each — the check of the split). Traffic split ``--weight`` to the candidate,
deterministic per batch.

Printed per judge and scenario: rollback rate with its 95 % Wilson interval, median and p90 candidate
requests to the decision (and as a share of the fixed ``n``, and of SPRT's median), and the decision's
compute time per update (one batch of both versions: Roost's real ``Analysis`` on one stream — update
of both versions and the judgement; the others' own code on one stream). Then Roost with all six
metrics: one ``update`` of 100 requests, one judgement, the state's size. Then the goals.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from roost.stats import canary, sequential

Arr = npt.NDArray[Any]
MEDIAN_MS = 100.0
SIGMA = 0.5
CLASSES = (0.5, 0.3, 0.2)
SHIFT_TO = (0.2, 0.3, 0.5)
FLAGGER_INTERVAL = 60
FLAGGER_THRESHOLD = 2
FLAGGER_ITERATIONS = 10
FLAGGER_SUCCESS = 0.99
FLAGGER_P99_MS = 500.0
KAYENTA_POINTS = 50
KAYENTA_CONFIDENCE = 0.98
JUDGES = ("roost", "fixed", "sprt", "kayenta", "flagger", "confseq")
#: The optional baselines' virtualenv (``bench/canary_confseq.py``), never the project's.
SEQBASE = Path.home() / ".cache" / "roost" / "bench" / "venvs" / "seqbase" / "bin" / "python"
OK, REJECTED, ERROR = 0, 4, 5


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    reps: int
    seed: int
    weight: float
    batch: int
    base: float
    base_4xx: float
    margin: float
    ratio: float
    ratio99: float
    shift_max: float
    alpha: float
    beta: float
    min_requests: int
    horizon: float
    check: int
    chunk: int


@dataclass(frozen=True)
class Scenario:
    name: str
    metrics: str  # core | all
    error: float
    rejection: float
    scale: float
    classes: tuple[float, ...]
    bad: bool | None  # the right decision: roll back (True), promote (False), either (None)
    group: str  # what regresses: none | error | p95 | 4xx | shift
    effect: float  # in margins


def specs_of(cfg: Config, metrics: str) -> list[canary.MetricSpec]:
    core = [canary.metric_spec("error-rate", max_increase=cfg.margin),
            canary.metric_spec("latency-p95", max_ratio=cfg.ratio)]
    if metrics == "core":
        return core
    return [core[0], canary.metric_spec("rejection-rate", max_increase=cfg.margin), core[1],
            canary.metric_spec("latency-p99", max_ratio=cfg.ratio99),
            canary.metric_spec("prediction-shift", max=cfg.shift_max, max_classes=len(CLASSES))]


def shifted(target: float) -> tuple[float, ...]:
    """Class shares on the line from :data:`CLASSES` to :data:`SHIFT_TO` at JS distance ``target``."""
    a, b = np.asarray(CLASSES), np.asarray(SHIFT_TO)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if canary.js_distance(a + mid * (b - a), a) < target:
            lo = mid
        else:
            hi = mid
    return tuple(float(x) for x in a + lo * (b - a))


def scenarios(cfg: Config) -> list[Scenario]:
    base = dict(error=cfg.base, rejection=cfg.base_4xx, scale=1.0, classes=CLASSES)
    out = [Scenario("no regression", "core", **base, bad=False, group="none", effect=0)]  # type: ignore[arg-type]
    for k in (1, 2, 4):
        out.append(Scenario(f"error {k}x margin", "core", **{**base, "error": cfg.base + k * cfg.margin},  # type: ignore[arg-type]
                            bad=True, group="error", effect=k))
    for k in (1, 2, 4):
        out.append(Scenario(f"p95 {k}x margin", "core", **{**base, "scale": 1 + k * (cfg.ratio - 1)},  # type: ignore[arg-type]
                            bad=True, group="p95", effect=k))
    out.append(Scenario("all: no regression", "all", **base, bad=False, group="none", effect=0))  # type: ignore[arg-type]
    for k in (1, 2, 4):
        out.append(Scenario(f"all: 4xx {k}x margin", "all", **{**base, "rejection": cfg.base_4xx + k * cfg.margin},  # type: ignore[arg-type]
                            bad=True, group="4xx", effect=k))
    out.append(Scenario("all: shift 0.5x max", "all", **{**base, "classes": shifted(0.5 * cfg.shift_max)},  # type: ignore[arg-type]
                        bad=False, group="shift", effect=0.5))
    out.append(Scenario("all: shift 2x max", "all", **{**base, "classes": shifted(2 * cfg.shift_max)},  # type: ignore[arg-type]
                        bad=True, group="shift", effect=2))
    return out


def n_two_proportions(p0: float, p1: float, alpha: float, beta: float, k: float) -> float:
    """Candidate requests for a one-sided two-proportion z-test, ``k`` stable requests per candidate one."""
    za, zb = stats.norm.ppf(1 - alpha), stats.norm.ppf(1 - beta)
    pbar = (p1 + k * p0) / (1 + k)
    num = za * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k)) + zb * math.sqrt(p1 * (1 - p1) + p0 * (1 - p0) / k)
    return float((num / (p1 - p0)) ** 2)


def share_above(p: float, ratio: float) -> float:
    """Share of a log-normal (sigma :data:`SIGMA`) scaled by ``ratio`` above the unscaled ``p``-quantile."""
    return float(stats.norm.sf(stats.norm.ppf(p) - math.log(ratio) / SIGMA))


def fixed_n(cfg: Config, metrics: str) -> int:
    k = (1 - cfg.weight) / cfg.weight
    specs = specs_of(cfg, metrics)
    a = cfg.alpha / len(specs)
    ns = []
    for s in specs:
        if s.kind == canary.MetricKind.PROPORTION:
            p0 = cfg.base if s.status_class == 5 else cfg.base_4xx
            ns.append(n_two_proportions(p0, p0 + s.margin, a, cfg.beta, k))
        elif s.kind == canary.MetricKind.QUANTILE:
            assert s.quantile is not None
            ns.append(n_two_proportions(1 - s.quantile, share_above(s.quantile, s.margin), a, cfg.beta, k))
    return math.ceil(max(ns))


# --------------------------------------------------------------------------------------------
# Streams: per chunk of runs, the same random numbers for every scenario and judge
# --------------------------------------------------------------------------------------------


@dataclass
class Streams:
    """One version's requests for a chunk of runs: outcome (0 ok, 4, 5), latency bin, class."""

    outcome: Arr  # (R, n) int8
    bins: Arr  # (R, n) int16
    classes: Arr  # (R, n) int8
    raw_ms: Arr  # (check, n) float64: the first runs' latencies, for the real Analysis


def make_streams(rng: np.random.Generator, reps: int, n: int, error: float, rejection: float, scale: float,
                 classes: tuple[float, ...], check: int) -> Streams:
    u = rng.random((reps, n))
    outcome = np.where(u < error, ERROR, np.where(u < error + rejection, REJECTED, OK)).astype(np.int8)
    del u
    ms = scale * MEDIAN_MS * np.exp(SIGMA * rng.standard_normal((reps, n)))
    bins = canary.latency_bin_index(ms).astype(np.int16)
    raw = ms[:check].copy()
    del ms
    cls = np.searchsorted(np.cumsum(classes)[:-1], rng.random((reps, n))).astype(np.int8)
    return Streams(outcome, bins, cls, raw)


@dataclass
class Run:
    """Everything a judge sees of one chunk: streams and the batch schedule."""

    cfg: Config
    sc: Scenario
    specs: list[canary.MetricSpec]
    n_fixed: int
    cand: Streams
    stab: Streams
    stops_c: Arr  # candidate requests after each batch
    stops_s: Arr  # stable requests after each batch

    @property
    def reps(self) -> int:
        return int(self.cand.outcome.shape[0])


def schedule(cfg: Config, n_c: int) -> tuple[Arr, Arr]:
    k = (1 - cfg.weight) / cfg.weight
    stops_c = np.minimum(np.arange(cfg.batch, n_c + cfg.batch, cfg.batch), n_c)
    stops_s = np.round(stops_c * k).astype(np.int64)
    return stops_c, stops_s


def make_run(cfg: Config, sc: Scenario, chunk: int, reps: int) -> Run:
    n_fixed = fixed_n(cfg, sc.metrics)
    n_c = math.ceil(cfg.horizon * n_fixed)
    stops_c, stops_s = schedule(cfg, n_c)
    rng = np.random.default_rng([cfg.seed, chunk])
    check = cfg.check if chunk == 0 else 0
    stab = make_streams(rng, reps, int(stops_s[-1]), cfg.base, cfg.base_4xx, 1.0, CLASSES, check)
    cand = make_streams(rng, reps, n_c, sc.error, sc.rejection, sc.scale, sc.classes, check)
    return Run(cfg, sc, specs_of(cfg, sc.metrics), n_fixed, cand, stab, stops_c, stops_s)


@dataclass
class Decisions:
    """Per run: rolled back?, how (fail/pass/timeout/...), candidate requests at the decision."""

    rollback: Arr
    kind: Arr  # str
    requests: Arr
    seconds_per_update: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)


def cum_at(x: Arr, stops: Arr) -> Arr:
    """``x.sum()`` over the first ``stop`` requests, per run and stop: shape (R, len(stops))."""
    c = np.cumsum(x, axis=1, dtype=np.int32)
    return c[:, stops - 1]


# --------------------------------------------------------------------------------------------
# Roost, on arrays of runs
# --------------------------------------------------------------------------------------------


#: ``(spec, k_c, n_c, k_s, n_s, alpha, beta) -> (fail, pass)`` per run: another test of a proportion metric
ProportionTest = Callable[[canary.MetricSpec, Arr, int, Arr, int, float, float], tuple[Arr, Arr]]


def roost(run: Run, proportion_test: ProportionTest | None = None) -> Decisions:
    """Roost's verdicts for every run of the chunk, with the analysis's own functions (with
    ``proportion_test``, the proportion metrics judged by another test instead: an ablation)."""
    cfg, specs = run.cfg, run.specs
    cand, stab = run.cand, run.stab
    sel = slice(None)
    reps = cand.outcome[sel].shape[0]
    m = len(specs)
    a_m, b_m = cfg.alpha / m, cfg.beta  # Analysis.alpha_per_metric, beta_per_metric (beta not split)
    stops_c, stops_s = run.stops_c, run.stops_s
    cum: dict[tuple[str, int], Arr] = {}
    for name, st, stops in (("c", cand, stops_c), ("s", stab, stops_s)):
        for code in (ERROR, REJECTED):
            cum[(name, code)] = cum_at(st.outcome[sel] == code, stops)
    props = [s for s in specs if s.kind == canary.MetricKind.PROPORTION]
    quants = [s for s in specs if s.kind == canary.MetricKind.QUANTILE]
    shift = [s for s in specs if s.kind == canary.MetricKind.DISTRIBUTION]
    evidence = {s.name: (np.zeros((reps, 1 + len(canary.GREATER_OFFSETS))),
                         np.zeros((reps, 1 + len(canary.LESS_OFFSETS)))) for s in props}
    # latency histograms on the window of bins the chunk uses (the rest are empty)
    lo_bin = int(min(cand.bins[sel].min(), stab.bins[sel].min()))
    hi_bin = int(max(cand.bins[sel].max(), stab.bins[sel].max())) + 1
    width = hi_bin - lo_bin
    hist = {"c": np.zeros((reps, width), np.int32), "s": np.zeros((reps, width), np.int32)}
    classes: dict[str, Arr] = {}
    if shift:
        k = len(CLASSES)
        classes = {"c": np.stack([cum_at(cand.classes[sel] == j, stops_c) for j in range(k)], axis=-1),
                   "s": np.stack([cum_at(stab.classes[sel] == j, stops_s) for j in range(k)], axis=-1)}
    live = np.arange(reps)
    rollback = np.ones(reps, bool)
    kind = np.full(reps, "timeout", dtype=object)
    requests = np.full(reps, int(stops_c[-1]))
    prev_c = prev_s = 0
    for b in range(stops_c.size):
        n_c, n_s = int(stops_c[b]), int(stops_s[b])
        if live.size == 0:
            break
        # fold the block into every live run's state (Analysis.update, Analysis._close_block)
        for s in props:
            code = ERROR if s.status_class == 5 else REJECTED
            kc1, ks1 = cum[("c", code)][live, b], cum[("s", code)][live, b]
            kc0 = cum[("c", code)][live, b - 1] if b else np.zeros(live.size, np.int32)
            ks0 = cum[("s", code)][live, b - 1] if b else np.zeros(live.size, np.int32)
            greater, less = canary.proportion_step((kc0, prev_c, ks0, prev_s), (kc1 - kc0, n_c - prev_c, ks1 - ks0,
                                                   n_s - prev_s), s.margin, grid=(0.0, 1.0))
            g, le = evidence[s.name]
            g[live] += greater[:, 0, :]
            le[live] += less[:, 1, :]
        if quants:
            for name, st, lo, hi in (("c", cand, prev_c, n_c), ("s", stab, prev_s, n_s)):
                new = st.bins[live, lo:hi].astype(np.int64) - lo_bin
                np.add.at(hist[name], (np.repeat(live, new.shape[1]), new.ravel()), 1)
        prev_c, prev_s = n_c, n_s
        if n_c < cfg.min_requests or n_s < cfg.min_requests:
            continue
        # judge (Analysis.evaluate and canary.judge)
        fail = np.zeros(live.size, bool)
        passed = np.ones(live.size, bool)
        for s in props:
            if proportion_test is not None:
                code = ERROR if s.status_class == 5 else REJECTED
                f, p = proportion_test(s, cum[("c", code)][live, b], n_c, cum[("s", code)][live, b], n_s, a_m, b_m)
            else:
                g, le = evidence[s.name]
                f, p = canary.proportion_tests(g[live], le[live], a_m, b_m)
            fail |= f
            passed &= p & ~f
        if quants:
            cums = {name: np.cumsum(hist[name][live], axis=1) for name in ("c", "s")}
            for s in quants:
                assert s.quantile is not None
                r = canary.quantile_ranks(n_c, n_s, s.quantile, a_m, b_m, 0.5, 500.0)
                lo_c, hi_c = _edges(cums["c"], r[0], r[1], lo_bin)
                lo_s, hi_s = _edges(cums["s"], r[2], r[3], lo_bin)
                f, p, _, _ = canary.quantile_tests(lo_c, hi_c, lo_s, hi_s, s.margin)
                fail |= f
                passed &= p & ~f
        for s in shift:
            f, p = _shift_tests(classes["c"][live, b], classes["s"][live, b], n_c, n_s, s, a_m, b_m)
            fail |= f
            passed &= p & ~f
        done = fail | passed
        if done.any():
            idx = live[done]
            rollback[idx] = fail[done]
            kind[idx] = np.where(fail[done], "fail", "pass")
            requests[idx] = n_c
            live = live[~done]
    return Decisions(rollback, kind, requests)


def _edges(cum: Arr, r_lo: int, r_hi: int, offset: int) -> tuple[Arr, Arr]:
    lo, hi = canary.rank_edges(cum, np.full(cum.shape[0], r_lo), np.full(cum.shape[0], r_hi))
    return np.where(r_lo > 0, lo + offset, lo), np.where(r_hi > 0, hi + offset, hi)


def _shift_tests(cc: Arr, sc: Arr, n_c: int, n_s: int, spec: canary.MetricSpec, a_m: float,
                 b_m: float) -> tuple[Arr, Arr]:
    """Analysis._distribution on arrays of runs: per-class share bounds (computed once per distinct
    count: they depend on the count, ``n`` and the level only), then the JS distance's bounds."""
    per_level = 4 * spec.max_classes
    bounds = []
    for counts, n in ((cc, n_c), (sc, n_s)):
        per = []
        for level in (a_m / per_level, b_m / per_level):
            lo, hi = _share_bounds(counts, n, level)
            per.append((lo, hi))
        bounds.append(per)
    seen = (cc + sc) > 0  # classes neither version predicted are absent
    (c_fail, c_pass), (s_fail, s_pass) = bounds

    def z(x: Arr) -> Arr:
        return np.where(seen, x, 0.0)

    lower = canary.js_bounds_array(z(c_fail[0]), z(c_fail[1]), z(s_fail[0]), z(s_fail[1]))[0]
    upper = canary.js_bounds_array(z(c_pass[0]), z(c_pass[1]), z(s_pass[0]), z(s_pass[1]))[1]
    return lower > spec.margin, upper < spec.margin


_BOUNDS: dict[tuple[int, float], dict[int, tuple[float, float]]] = {}


def _share_bounds(counts: Arr, n: int, level: float) -> tuple[Arr, Arr]:
    """:func:`sequential.bernoulli_bounds` of every count out of ``n`` at ``level``, each distinct
    ``(count, n, level)`` computed once per process (runs and scenarios share most of them)."""
    known = _BOUNDS.setdefault((n, level), {})
    uniq, inverse = np.unique(counts, return_inverse=True)
    missing = [int(k) for k in uniq if int(k) not in known]
    if missing:
        lo, hi = sequential.bernoulli_bounds(np.asarray(missing, dtype=float), float(n), level, n_opt=500.0)
        known.update({k: (float(a), float(b)) for k, a, b in zip(missing, lo, hi, strict=True)})
    table = np.asarray([known[int(k)] for k in uniq])
    return table[inverse, 0].reshape(counts.shape), table[inverse, 1].reshape(counts.shape)


def roost_real(run: Run, i: int) -> tuple[str, int, float]:
    """Run ``i`` through a real :class:`canary.Analysis`, batch by batch: (kind, requests, s/update)."""
    cfg = run.cfg
    a = canary.Analysis(run.specs, alpha=cfg.alpha, beta=cfg.beta, min_requests=cfg.min_requests)
    codes = {OK: 200, REJECTED: 404, ERROR: 503}
    lookup = np.zeros(6, np.int64)
    for k, v in codes.items():
        lookup[k] = v
    spent = 0.0
    prev_c = prev_s = 0
    for b in range(run.stops_c.size):
        n_c, n_s = int(run.stops_c[b]), int(run.stops_s[b])
        batch = []
        for st, lo, hi in ((run.cand, prev_c, n_c), (run.stab, prev_s, n_s)):
            batch.append((lookup[st.outcome[i, lo:hi]], st.raw_ms[i, lo:hi], st.classes[i, lo:hi]))
        t0 = time.perf_counter()
        a.update("candidate", *batch[0])
        a.update("stable", *batch[1])
        verdict = a.judge()
        spent += time.perf_counter() - t0
        prev_c, prev_s = n_c, n_s
        if verdict.outcome == canary.Outcome.FAIL:
            return "fail", n_c, spent / (b + 1)
        if verdict.outcome == canary.Outcome.PASS:
            return "pass", n_c, spent / (b + 1)
    return "timeout", int(run.stops_c[-1]), spent / run.stops_c.size


# --------------------------------------------------------------------------------------------
# The other judges, on arrays of runs
# --------------------------------------------------------------------------------------------


def _z_prop(k_c: Arr, n_c: int, k_s: Arr, n_s: int) -> Arr:
    x_c, x_s = k_c / n_c, k_s / n_s
    pooled = (k_c + k_s) / (n_c + n_s)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_s))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, (x_c - x_s) / np.where(se > 0, se, 1.0), 0.0)


def _bin_quantile(bins: Arr, p: float) -> Arr:
    """Per run, the bin holding the ``p``-quantile (rank ``ceil(p n)``)."""
    n = bins.shape[1]
    return np.partition(bins, math.ceil(p * n) - 1, axis=1)[:, math.ceil(p * n) - 1]


def fixed(run: Run) -> Decisions:
    cfg, n_c = run.cfg, run.n_fixed
    n_s = round(n_c * (1 - cfg.weight) / cfg.weight)
    za = stats.norm.ppf(1 - cfg.alpha / len(run.specs))
    reject = np.zeros(run.reps, bool)
    c_out, s_out = run.cand.outcome[:, :n_c], run.stab.outcome[:, :n_s]
    for s in run.specs:
        if s.kind == canary.MetricKind.PROPORTION:
            code = ERROR if s.status_class == 5 else REJECTED
            reject |= _z_prop((c_out == code).sum(1), n_c, (s_out == code).sum(1), n_s) > za
        elif s.kind == canary.MetricKind.QUANTILE:
            assert s.quantile is not None
            q = _bin_quantile(run.stab.bins[:, :n_s], s.quantile)[:, None]
            reject |= _z_prop((run.cand.bins[:, :n_c] > q).sum(1), n_c, (run.stab.bins[:, :n_s] > q).sum(1), n_s) > za
        else:
            reject |= _js_wald(run.cand.classes[:, :n_c], run.stab.classes[:, :n_s], s.margin) > za
    return Decisions(reject, np.where(reject, "reject", "accept"), np.full(run.reps, n_c))


def _js_wald(cand: Arr, stab: Arr, margin: float) -> Arr:
    """(JS distance - margin) / SE with the delta method's SE (multinomial shares of each version)."""
    k = len(CLASSES)
    p = np.stack([(cand == j).mean(1) for j in range(k)], -1)
    q = np.stack([(stab == j).mean(1) for j in range(k)], -1)
    mix = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        jsd = np.sum(0.5 * (special.xlogy(p, p / mix) + special.xlogy(q, q / mix)), -1)
        gp, gq = 0.5 * np.log(np.where(p > 0, p / mix, 1.0)), 0.5 * np.log(np.where(q > 0, q / mix, 1.0))
    def var(g: Arr, x: Arr, n: int) -> Arr:
        return np.asarray((np.sum(x * g * g, -1) - np.sum(x * g, -1) ** 2) / n)

    var_jsd = var(gp, p, cand.shape[1]) + var(gq, q, stab.shape[1])
    dist = np.sqrt(np.clip(jsd, 0, math.log(2)) / math.log(2))
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(var_jsd) / (2 * np.maximum(dist, 1e-12) * math.log(2))
        return np.where(se > 0, (dist - margin) / se, 0.0)


def sprt(run: Run) -> Decisions:
    """Wald's SPRT per metric (see the module docstring): simple hypotheses "no difference" against
    "worse by the margin". 5xx, 4xx, and requests above stable's true quantile are events; given the
    events, each is the candidate's with probability ``pi = w r / (w r + 1 - w)`` (``w`` the traffic
    share, ``r`` the candidate's rate over stable's — the Poisson approximation), ``r = 1`` against
    ``r`` at the margin (from stable's true rate): the conditional SPRT, free of stable's rate under
    ``H0``. Prediction shift: the candidate's classes alone, stable's shares known."""
    cfg = run.cfg
    m = len(run.specs)
    stops_c, stops_s = run.stops_c, run.stops_s
    w = float(stops_c[-1] / (stops_c[-1] + stops_s[-1]))
    llrs: list[Arr] = []
    for s in run.specs:
        if s.kind == canary.MetricKind.DISTRIBUTION:
            at_margin = np.asarray(shifted(s.margin))
            ratio = np.log(at_margin / np.asarray(CLASSES))
            llrs.append(np.cumsum(ratio[run.cand.classes], axis=1)[:, stops_c - 1])
            continue
        if s.kind == canary.MetricKind.PROPORTION:
            code = ERROR if s.status_class == 5 else REJECTED
            x_c, x_s = run.cand.outcome == code, run.stab.outcome == code
            p0 = cfg.base if code == ERROR else cfg.base_4xx
            r = (p0 + s.margin) / p0
        else:
            assert s.quantile is not None
            true_q = int(canary.latency_bin_index(MEDIAN_MS * math.exp(SIGMA * stats.norm.ppf(s.quantile))))
            x_c, x_s = run.cand.bins > true_q, run.stab.bins > true_q
            r = share_above(s.quantile, s.margin) / (1 - s.quantile)
        pi1 = w * r / (w * r + 1 - w)
        k_c, k_s = cum_at(x_c, stops_c), cum_at(x_s, stops_s)
        llrs.append(k_c * math.log(pi1 / w) + k_s * math.log((1 - pi1) / (1 - w)))
    stops = stops_c
    up, down = math.log((1 - cfg.beta) / (cfg.alpha / m)), math.log(cfg.beta / (1 - cfg.alpha / m))
    reps = run.reps
    rollback = np.ones(reps, bool)
    kind = np.full(reps, "timeout", dtype=object)
    requests = np.full(reps, int(stops[-1]))
    decided = np.zeros(reps, bool)
    accepted = np.zeros((reps, m), bool)
    ok_n = (stops_c >= cfg.min_requests) & (stops_s >= cfg.min_requests)
    for b in np.flatnonzero(ok_n):
        open_ = ~accepted & ~decided[:, None]
        lv = np.stack([x[:, b] for x in llrs], -1)
        fail: Arr = np.asarray((open_ & (lv >= up)).any(1))
        accepted |= open_ & (lv <= down)
        passed: Arr = np.asarray(accepted.all(1) & ~fail & ~decided)
        new: Arr = np.asarray((fail & ~decided) | passed)
        rollback[new] = fail[new]
        kind[new] = np.where(fail[new], "reject H0", "accept H0")
        requests[new] = stops[b]
        decided |= new
        if decided.all():
            break
    return Decisions(rollback, kind, requests)


def _iqr_keep(x: Arr) -> Arr:
    q1, q3 = np.nanquantile(x, 0.25, axis=1, keepdims=True), np.nanquantile(x, 0.75, axis=1, keepdims=True)
    iqr = q3 - q1
    return np.where((x >= q1 - 3 * iqr) & (x <= q3 + 3 * iqr), x, np.nan)


def _hodges_lehmann_lower(exp: Arr, ctl: Arr, confidence: float) -> Arr:
    """Per run, the lower end of the Mann-Whitney (Hodges-Lehmann) interval for ``exp - ctl``."""
    d = (exp[:, :, None] - ctl[:, None, :]).reshape(exp.shape[0], -1)
    m, n = np.sum(~np.isnan(exp), 1), np.sum(~np.isnan(ctl), 1)
    z = stats.norm.ppf(1 - (1 - confidence) / 2)
    c = np.floor(m * n / 2 - z * np.sqrt(m * n * (m + n + 1) / 12)).astype(np.int64)
    c = np.clip(c, 1, None)
    d.sort(axis=1)  # NaN last
    return np.take_along_axis(d, (c - 1)[:, None], 1)[:, 0]


def kayenta(run: Run) -> Decisions:
    cfg, n_c = run.cfg, run.n_fixed
    n_s = round(n_c * (1 - cfg.weight) / cfg.weight)
    reject = np.zeros(run.reps, bool)
    mids = np.sqrt(canary._ALL_EDGES[:-1] * canary._ALL_EDGES[1:])
    mids[0] = canary._ALL_EDGES[1] / 2
    for s in run.specs:
        points = []
        for st, n in ((run.cand, n_c), (run.stab, n_s)):
            per = n // KAYENTA_POINTS
            if s.kind == canary.MetricKind.PROPORTION:
                code = ERROR if s.status_class == 5 else REJECTED
                x = (st.outcome[:, :per * KAYENTA_POINTS] == code).reshape(run.reps, KAYENTA_POINTS, per).mean(2)
            elif s.kind == canary.MetricKind.QUANTILE:
                b = st.bins[:, :per * KAYENTA_POINTS].reshape(run.reps, KAYENTA_POINTS, per)
                assert s.quantile is not None
                x = np.quantile(mids[b], s.quantile, axis=2)
            else:
                break  # Kayenta has no distribution metric
            points.append(_iqr_keep(x))
        if len(points) == 2:
            reject |= _hodges_lehmann_lower(points[0], points[1], KAYENTA_CONFIDENCE) > 0
    return Decisions(reject, np.where(reject, "high", "pass"), np.full(run.reps, n_c))


def flagger(run: Run) -> Decisions:
    n = run.cand.outcome.shape[1] // FLAGGER_INTERVAL
    out = run.cand.outcome[:, :n * FLAGGER_INTERVAL].reshape(run.reps, n, FLAGGER_INTERVAL)
    success = (out != ERROR).mean(2)
    mids = np.sqrt(canary._ALL_EDGES[:-1] * canary._ALL_EDGES[1:])
    mids[0] = canary._ALL_EDGES[1] / 2
    lat = mids[run.cand.bins[:, :n * FLAGGER_INTERVAL].reshape(run.reps, n, FLAGGER_INTERVAL)]
    p99 = np.quantile(lat, 0.99, axis=2)
    ok = (success >= FLAGGER_SUCCESS) & (p99 <= FLAGGER_P99_MS)
    failed, passed = np.cumsum(~ok, 1), np.cumsum(ok, 1)
    first_fail = np.where((failed >= FLAGGER_THRESHOLD).any(1), np.argmax(failed >= FLAGGER_THRESHOLD, 1), n)
    first_pass = np.where((passed >= FLAGGER_ITERATIONS).any(1), np.argmax(passed >= FLAGGER_ITERATIONS, 1), n)
    rollback = first_fail < first_pass
    at = np.minimum(first_fail, first_pass)
    kind = np.where(at >= n, "timeout", np.where(rollback, "rollback", "promote"))
    rollback |= at >= n
    return Decisions(rollback, kind, np.minimum(at + 1, n) * FLAGGER_INTERVAL)


BASELINES: dict[str, Callable[[Run], Decisions]] = {"fixed": fixed, "sprt": sprt, "kayenta": kayenta,
                                                    "flagger": flagger}


def _one(run: Run, i: int) -> Run:
    """Run ``i`` alone (a view), to time a judge on one stream."""
    pick = slice(i, i + 1)
    st = [Streams(s.outcome[pick], s.bins[pick], s.classes[pick], s.raw_ms[:0]) for s in (run.cand, run.stab)]
    return Run(run.cfg, run.sc, run.specs, run.n_fixed, st[0], st[1], run.stops_c, run.stops_s)


def simulate(task: tuple[Config, Scenario, int, int]) -> dict[str, Decisions]:
    """One chunk of runs of one scenario through every judge."""
    cfg, sc, chunk, reps = task
    run = make_run(cfg, sc, chunk, reps)
    out = {"roost": roost(run)}
    for name, judge in BASELINES.items():
        out[name] = judge(run)
    if chunk == 0:
        # the real Analysis on the first runs: identical verdicts, and its time per update
        kinds, reqs, secs = [], [], []
        for i in range(min(cfg.check, reps)):
            k, n, t = roost_real(run, i)
            kinds.append(k)
            reqs.append(n)
            secs.append(t)
        out["roost"].extra["check"] = (kinds, reqs)
        out["roost"].seconds_per_update = float(np.mean(secs)) if secs else math.nan
        for name, judge in BASELINES.items():
            t0 = time.perf_counter()
            for i in range(5):
                judge(_one(run, i))
            batches = run.stops_c.size if name in ("sprt",) else max(1, math.ceil(run.n_fixed / cfg.batch))
            if name == "flagger":
                batches = run.cand.outcome.shape[1] // FLAGGER_INTERVAL
            out[name].seconds_per_update = (time.perf_counter() - t0) / 5 / batches
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


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
    for _ in range(50):
        a.judge(intervals=False)
    t_fast = (time.perf_counter() - t0) / 50
    t0 = time.perf_counter()
    for _ in range(10):
        a.judge()
    t_full = (time.perf_counter() - t0) / 10
    return {"update": 1e6 * t_update / repeat, "judge": 1e6 * t_fast, "judge_intervals": 1e6 * t_full,
            "state_bytes": float(len(json.dumps(a.to_dict())))}


_OUTPUTS: dict[int, Any] = {}


def start_confseq(cfg: Config, names: list[str]) -> subprocess.Popen[str] | None:
    """Start ``bench/canary_confseq.py`` in the baselines' virtualenv, if it has confseq; else say why not."""
    if not SEQBASE.exists():
        print(f"confseq: skipped — no {SEQBASE} (see bench/canary_confseq.py to create it)")
        return None
    probe = subprocess.run([str(SEQBASE), "-c", "import confseq"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"confseq: skipped — it does not import in {SEQBASE}: {probe.stderr.strip().splitlines()[-1:]}")
        return None
    script = Path(__file__).resolve().parent / "canary_confseq.py"
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115 — closed in collect_confseq; not a pipe: results outgrow its buffer
    proc = subprocess.Popen([str(SEQBASE), str(script), json.dumps(dataclasses.asdict(cfg)), json.dumps(names)],
                            stdout=out, text=True)
    _OUTPUTS[proc.pid] = out
    return proc


def collect_confseq(proc: subprocess.Popen[str] | None, table: dict[tuple[str, str], list[Decisions]]) -> None:
    if proc is None:
        return
    proc.wait()
    stream = _OUTPUTS.pop(proc.pid)
    if proc.returncode != 0:
        print(f"confseq: failed (exit {proc.returncode}); its rows are left out")
        return
    with stream:
        stream.seek(0)
        lines = stream.read().splitlines()
    for line in lines:
        r = json.loads(line)
        d = Decisions(np.asarray(r["rollback"], bool), np.asarray(r["kind"], dtype=object),
                      np.asarray(r["requests"]), float(r["seconds_per_update"]))
        table[(r["scenario"], "confseq")] = [d]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--reps", type=int, default=10_000, help="runs per scenario")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--weight", type=float, default=0.5, help="share of traffic to the candidate")
    ap.add_argument("--batch", type=int, default=10, help="candidate requests per judgement")
    ap.add_argument("--base", type=float, default=0.005, help="stable 5xx share")
    ap.add_argument("--base-4xx", type=float, default=0.01, help="stable 4xx share")
    ap.add_argument("--margin", type=float, default=0.01, help="error-rate and rejection-rate maxIncrease")
    ap.add_argument("--ratio", type=float, default=1.2, help="latency-p95 maxRatio")
    ap.add_argument("--ratio99", type=float, default=1.5, help="latency-p99 maxRatio")
    ap.add_argument("--shift-max", type=float, default=0.1, help="prediction-shift max (JS distance)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--beta", type=float, default=0.2)
    ap.add_argument("--min-requests", type=int, default=200)
    ap.add_argument("--horizon", type=float, default=3.0, help="give up after this many fixed-horizon n")
    ap.add_argument("--check", type=int, default=10, help="runs per scenario also fed to a real Analysis")
    ap.add_argument("--chunk", type=int, default=1000, help="runs simulated at once")
    ap.add_argument("--scenarios", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="skip the six-metric micro-benchmark")
    ap.add_argument("--no-confseq", action="store_true", help="skip the confseq ablation")
    a = ap.parse_args(argv)
    cfg = Config(a.reps, a.seed, a.weight, a.batch, a.base, a.base_4xx, a.margin, a.ratio, a.ratio99, a.shift_max,
                 a.alpha, a.beta, a.min_requests, a.horizon, a.check, a.chunk)
    scs = scenarios(cfg)
    if a.scenarios:
        wanted = {x.strip() for x in a.scenarios.split(",")}
        scs = [s for s in scs if s.name in wanted]
    load = os.getloadavg()
    print(f"reps {cfg.reps} per scenario, weight {cfg.weight}, stable 5xx {cfg.base} / 4xx {cfg.base_4xx}, margins "
          f"+{cfg.margin} / p95 x{cfg.ratio} / p99 x{cfg.ratio99} / JS {cfg.shift_max}, alpha {cfg.alpha}, "
          f"beta {cfg.beta}, minRequests {cfg.min_requests}, batch {cfg.batch}, horizon {cfg.horizon} x n; "
          f"fixed-horizon n = {fixed_n(cfg, 'core')} (core) / {fixed_n(cfg, 'all')} (all) candidate requests; "
          f"load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    t0 = time.perf_counter()
    ablation = None if a.no_confseq else start_confseq(cfg, [s.name for s in scs if s.metrics == "core"])
    if ablation is not None and a.jobs <= 1:
        ablation.wait()
    chunks = [(i, min(cfg.chunk, cfg.reps - i * cfg.chunk)) for i in range(math.ceil(cfg.reps / cfg.chunk))]
    work = [(cfg, sc, i, r) for sc in scs for i, r in chunks]
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as pool:
            results = list(pool.map(simulate, work))
    else:
        results = [simulate(w) for w in work]
    table: dict[tuple[str, str], list[Decisions]] = {}
    for (_, sc, _, _), res in zip(work, results, strict=True):
        for judge, d in res.items():
            table.setdefault((sc.name, judge), []).append(d)
    collect_confseq(ablation, table)
    print(f"({time.perf_counter() - t0:.0f} s)")
    # the cross-check: the real Analysis agrees with the vectorised one on every checked run
    checked = agreed = 0
    for sc in scs:
        first = table[(sc.name, "roost")][0]
        if "check" not in first.extra:
            continue
        kinds, reqs = first.extra["check"]
        for i, (k, n) in enumerate(zip(kinds, reqs, strict=True)):
            checked += 1
            same = k == first.kind[i] and n == first.requests[i]
            agreed += same
            if not same:
                print(f"  MISMATCH {sc.name} run {i}: real Analysis {k} at {n}, simulation {first.kind[i]} at "
                      f"{first.requests[i]}")
    print(f"cross-check: the real Analysis reached the same verdict after the same requests in {agreed} of "
          f"{checked} runs\n")
    if not a.quick:
        mb = micro_benchmark()
        print(f"roost, six metrics: update of 100 requests {mb['update']:.0f} us (mean of 1000); judge "
              f"{mb['judge']:.0f} us, with intervals {mb['judge_intervals']:.0f} us; "
              f"state {mb['state_bytes'] / 1024:.1f} KB of JSON (O(1) in requests)\n")
    head = (f"{'scenario':<20} {'judge':<8} {'reps':>6} {'rollback':>8} {'95% CI':>15} {'how':>22} "
            f"{'median n':>9} {'p90 n':>7} {'x fixed':>7} {'x sprt':>7} {'us/upd':>7}")
    print(head)
    print("-" * len(head))
    summary: dict[tuple[str, str], dict[str, float]] = {}
    for sc in scs:
        n_fixed = fixed_n(cfg, sc.metrics)
        sprt_med = float(np.median(np.concatenate([d.requests for d in table[(sc.name, "sprt")]])))
        for judge in JUDGES:
            if (sc.name, judge) not in table:
                continue
            ds = table[(sc.name, judge)]
            rb = np.concatenate([d.rollback for d in ds])
            reqs = np.concatenate([d.requests for d in ds])
            kinds = np.concatenate([d.kind for d in ds])
            k, n = int(rb.sum()), rb.size
            lo, hi = wilson(k, n)
            labels, counts = np.unique(kinds.astype(str), return_counts=True)
            how = "/".join(f"{c}{lab[0]}" for lab, c in zip(labels, counts, strict=True))
            med, p90 = float(np.median(reqs)), float(np.quantile(reqs, 0.9))
            us = 1e6 * ds[0].seconds_per_update
            summary[(sc.name, judge)] = {"rate": k / n, "lo": lo, "hi": hi, "x": med / n_fixed,
                                         "xs": med / sprt_med, "n": n}
            print(f"{sc.name:<20} {judge:<8} {n:>6} {k / n:>8.4f} [{lo:>6.4f},{hi:>6.4f}] {how:>22} "
                  f"{med:>9.0f} {p90:>7.0f} {med / n_fixed:>7.3f} {med / sprt_med:>7.2f} {us:>7.0f}")
        print()
    print("how: counts by outcome — f fail / p pass / t timeout (roost), r reject / a accept (fixed, sprt: "
          "H0), h high / p pass (kayenta), r rollback / p promote / t timeout (flagger)\n")
    goals(summary, scs)
    return 0


def goals(summary: dict[tuple[str, str], dict[str, float]], scs: list[Scenario]) -> None:
    names = {s.name for s in scs}

    def get(sc: str, judge: str = "roost") -> dict[str, float] | None:
        return summary.get((sc, judge)) if sc in names else None

    rows: list[tuple[str, float, float, bool]] = []
    for sc, what in (("no regression", "2 metrics"), ("all: no regression", "5 metrics")):
        g = get(sc)
        if g:
            rows.append((f"false rollback, no regression, {what} <= 0.05 (upper 95 %)", g["rate"], g["hi"],
                         g["hi"] <= 0.05))
    for sc in ("error 1x margin", "p95 1x margin", "all: 4xx 1x margin"):
        g = get(sc)
        if g:
            rows.append((f"detection, {sc} >= 0.8", g["rate"], g["lo"], g["rate"] >= 0.8))
    for sc, goal in (("error 2x margin", 0.35), ("p95 2x margin", 0.35), ("all: 4xx 2x margin", 0.35),
                     ("error 4x margin", 0.15), ("p95 4x margin", 0.15), ("all: 4xx 4x margin", 0.15),
                     ("no regression", 0.6), ("all: no regression", 0.6)):
        g = get(sc)
        if g:
            verb = "promote" if "no regression" in sc else "roll back"
            rows.append((f"{verb}, {sc}: median n <= {goal} x fixed", g["x"], g["xs"], g["x"] <= goal))
    for sc in ("error 2x margin", "p95 2x margin", "no regression"):
        g = get(sc)
        if g:
            rows.append((f"{sc}: median n <= SPRT's / 0.9", g["xs"], g["x"], g["xs"] <= 1 / 0.9))
    print("Goals for roost (figure; second column: upper/lower 95 % bound, or x SPRT, or x fixed):")
    for text, value, other, ok in rows:
        print(f"  {'met   ' if ok else 'MISSED'} {text:<58} {value:>7.3f} {other:>7.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
