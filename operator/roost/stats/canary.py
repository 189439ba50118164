"""Canary analysis: is the candidate version worse than the stable one on live traffic?

The decision engine behind shift-right rollouts. Each version's request outcomes (status code,
latency, predicted class; in shadow mode, agreement with stable) are folded batch by batch into O(1)
state — counts, a fixed latency histogram, a few running log e-values — by :meth:`Analysis.update`;
the state is a small JSON dict (:meth:`Analysis.to_dict`, a few KB) that survives reconciles and
restarts. :meth:`Analysis.evaluate` judges every metric; :func:`judge` makes one verdict of them.

Per metric, a time-uniform confidence sequence (:mod:`roost.stats.sequential`) compares the
candidate with stable; it is valid under continuous monitoring — judge after every batch, stop any
time — so looking often costs nothing:

================ ============================ ====================================================
metric           compared, margin             sequence
================ ============================ ====================================================
error-rate       ``p_c - p_s`` of 5xx shares, two-sample e-processes, block by block: plug-in and
rejection-rate   4xx shares; ``maxIncrease``  fixed alternatives against the null's reverse
counted          shares of counted events     information projection (exact for 0/1 outcomes)
                 (e.g. Prometheus counters)
latency-p95/99   ``q_c / q_s``; ``maxRatio``  per-version quantile sequences (beta-binomial at the
                                              histogram's edges), combined by a union bound
prediction-shift base-2 Jensen-Shannon        per-class share sequences (Bonferroni over
                 distance; ``max``            ``4 * max_classes`` bounds), JS over the boxes
agreement        ``1 - agreement``; ``max``   one-sample beta-binomial mixture
================ ============================ ====================================================

Verdict per metric (``m`` metrics, budgets ``alpha`` and ``beta``):

* **Fail** as soon as the sequence's lower bound, at level ``alpha / m`` (Bonferroni: any one of the
  metrics may fail, so the false-rollback budget is split), shows the candidate worse than stable:
  difference ``> 0``, ratio ``> 1``; for ``max`` margins — a distance or a disagreement share, where
  a retrained model is *expected* to differ somewhat, so "worse than zero" would roll back every
  change — worse than the margin itself. ``P(Fail ever | candidate no worse) <= alpha / m``.
* **Pass** when the upper bound, at level ``beta`` per metric, is below the margin:
  ``P(Pass ever | metric at or beyond its margin) <= beta``. Passing needs *every* metric to pass,
  so a regression in metric j is missed only if j's own sequence misses it: the missed-regression
  budget needs no split (``split_beta=True`` splits it anyway, ``beta / m``, at a cost in speed).
  The margin is the minimum detectable effect.
* **Inconclusive** otherwise — in particular with fewer than ``min_requests`` requests per version
  (or observations of the metric's own kind), or a metric that cannot be computed (no latencies,
  no predictions, NaN, too many classes): never Pass without evidence.

A metric with a true value between "no worse" and the margin may end either way (indifference zone).
:func:`judge` gives Fail if any metric fails (naming it, with both versions' values and the
interval), Pass if all pass, Inconclusive otherwise.

Assumptions: requests are independent; warm-up requests are excluded by the caller; the routing
split may change over time, never in response to outcomes. Error and rejection outcomes are 0/1 —
bounded, no variance assumption. Their tests stay valid when the rates drift from one block to the
next (both versions sharing the drift), since each block is bet on separately; the quantile,
share and agreement sequences assume one distribution per version over the analysis window.
Latency quantiles need no distributional assumption: the histogram (400 log-spaced bins per decade,
0.58 % wide) costs at most one bin per bound, always on the conservative side. Prediction shift
treats a class that neither version ever predicted as absent.

Error-rate tests in detail: per null boundary ``d``, each side keeps one e-process per alternative —
the predictable plug-in, and fixed offsets from stable's estimated rate (:data:`GREATER_OFFSETS`,
:data:`LESS_OFFSETS`) — and decides on their weighted mean (:data:`GREATER_WEIGHTS`,
:data:`LESS_WEIGHTS`, fixed in advance: a convex combination of e-processes is one). A mixture pays
``log(1/w)`` of evidence for holding the right alternative at weight ``w``, so the weights follow the
design: Fail is aimed at regressions of 1-4 margins, Pass at a candidate as good as stable (its
"equal" alternative weighs 0.7). In the simulation study (``bench/canary_simulation.py``, 10 %
canary) equal weights needed ~9 % more requests to promote a candidate as good as stable (median
0.85 against 0.78 of the fixed-horizon n), for a detection rate at the margin of 0.92 against 0.90.

Cost: :meth:`Analysis.update` is O(batch); a judgement is O(1) in requests — a few vectorised numpy
calls per metric: the quantile sequences' count thresholds depend on the sample size only (cached,
and searched from the last answer), class-share bounds are found by bisection (the dominant cost
of prediction-shift). The functions :func:`proportion_step`, :func:`proportion_tests`,
:func:`quantile_ranks`, :func:`rank_edges`, :func:`quantile_tests` and :func:`js_bounds_array` are
what :class:`Analysis` runs; they broadcast over leading axes, so the simulation study runs the very
same code on thousands of simulated rollouts at once (and checks it against :class:`Analysis`).

Sources: Howard, Ramdas, McAuliffe & Sekhon, Ann. Statist. 49(2), 2021 (confidence sequences,
beta-binomial mixtures); Howard & Ramdas, Bernoulli 28(3), 2022 (quantiles); Turner, Ly & Grünwald,
Stat. Probab. Lett. 2024, and Grünwald, de Heide & Koolen, JRSS B 2024 (growth-optimal e-values for
two proportions); Waudby-Smith & Ramdas, JRSS B 2024 (predictable plug-ins) — details and formulas
in :mod:`roost.stats.sequential` and below.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from roost.stats import sequential

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Serialisation format of :meth:`Analysis.to_dict`.
FORMAT = 1

# Latency histogram: fixed log-spaced bins, 400 per decade (each bin spans a factor 10**0.0025, i.e.
# 0.58 %), from 0.01 ms to 1000 s. Bin 0 is [0, 0.01 ms), bin j in 1..3200 is [e_(j-1), e_j) with
# e_j = 10**(-2 + j/400) ms, bin 3201 is [1000 s, inf). 3202 integers per version, O(1) in requests;
# serialised as the slice between the first and last non-empty bins (about 700 numbers for a
# log-normal latency with sigma 0.5). Resolution costs speed: each bound is conservative by up to a
# bin, so a ratio is judged up to ~1.2 % pessimistically; 100 bins per decade made promotion ~20 %
# slower in simulation, 200 ~10 %.
LATENCY_LOG10_MIN = -2.0
LATENCY_DECADES = 8
BINS_PER_DECADE = 400
N_EDGES = LATENCY_DECADES * BINS_PER_DECADE + 1
N_BINS = N_EDGES + 1
EDGES_MS: FloatArray = 10.0 ** (LATENCY_LOG10_MIN + np.arange(N_EDGES) / BINS_PER_DECADE)
#: Edges as :func:`sequential.quantile_bounds` wants them: 0, the bin edges, +inf.
_ALL_EDGES: FloatArray = np.concatenate(([0.0], EDGES_MS, [np.inf]))

#: Default number of distinct predicted classes a distribution metric accounts for.
DEFAULT_MAX_CLASSES = 10
#: Distinct labels tracked at most, whatever the metrics (more set the overflow flag).
MAX_LABELS = 64


class Version(StrEnum):
    STABLE = "stable"
    CANDIDATE = "candidate"


class MetricKind(StrEnum):
    PROPORTION = "proportion"
    QUANTILE = "quantile"
    DISTRIBUTION = "distribution"
    AGREEMENT = "agreement"


class MarginType(StrEnum):
    INCREASE = "increase"
    RATIO = "ratio"
    MAX = "max"


class Outcome(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


_MARGIN_OF_KIND = {
    MetricKind.PROPORTION: MarginType.INCREASE,
    MetricKind.QUANTILE: MarginType.RATIO,
    MetricKind.DISTRIBUTION: MarginType.MAX,
    MetricKind.AGREEMENT: MarginType.MAX,
}


@dataclass(frozen=True)
class MetricSpec:
    """One judged metric and its margin.

    Attributes:
        name: e.g. ``error-rate``; reported as is.
        kind: what is compared (see the module table).
        margin_type: ``increase`` for proportions, ``ratio`` for quantiles, ``max`` for the others.
        margin: the largest acceptable difference / ratio / value; the minimum detectable effect.
        status_class: proportions only: 5 counts 5xx responses, 4 counts 4xx, None: the events are
            counted elsewhere (say, Prometheus counters) and given by :meth:`Analysis.update_counts`.
        quantile: quantiles only, e.g. 0.95.
        max_classes: distributions only: predicted classes accounted for (more: Inconclusive).
    """

    name: str
    kind: MetricKind
    margin_type: MarginType
    margin: float
    status_class: int | None = None
    quantile: float | None = None
    max_classes: int = DEFAULT_MAX_CLASSES

    def __post_init__(self) -> None:
        if _MARGIN_OF_KIND[self.kind] != self.margin_type:
            raise ValueError(f"{self.name}: a {self.kind} metric takes a {_MARGIN_OF_KIND[self.kind]} margin")
        if not math.isfinite(self.margin) or self.margin < 0:
            raise ValueError(f"{self.name}: margin must be finite and >= 0")
        if self.kind == MetricKind.PROPORTION and self.status_class not in (4, 5, None):
            raise ValueError(f"{self.name}: status_class must be 4, 5 or None (counted elsewhere)")
        if self.kind == MetricKind.QUANTILE and not (self.quantile is not None and 0 < self.quantile < 1):
            raise ValueError(f"{self.name}: quantile must be in (0, 1)")
        if self.kind == MetricKind.QUANTILE and self.margin < 1:
            raise ValueError(f"{self.name}: a ratio margin must be >= 1")
        if not 1 <= self.max_classes <= MAX_LABELS:
            raise ValueError(f"{self.name}: max_classes must be in 1..{MAX_LABELS}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": str(self.kind), "marginType": str(self.margin_type),
                               "margin": self.margin}
        if self.status_class is not None:
            out["statusClass"] = self.status_class
        if self.quantile is not None:
            out["quantile"] = self.quantile
        if self.kind == MetricKind.DISTRIBUTION:
            out["maxClasses"] = self.max_classes
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricSpec:
        return cls(name=str(d["name"]), kind=MetricKind(d["kind"]), margin_type=MarginType(d["marginType"]),
                   margin=float(d["margin"]), status_class=d.get("statusClass"), quantile=d.get("quantile"),
                   max_classes=int(d.get("maxClasses", DEFAULT_MAX_CLASSES)))


_STANDARD: dict[str, tuple[MetricKind, dict[str, Any]]] = {
    "error-rate": (MetricKind.PROPORTION, {"status_class": 5}),
    "rejection-rate": (MetricKind.PROPORTION, {"status_class": 4}),
    "latency-p95": (MetricKind.QUANTILE, {"quantile": 0.95}),
    "latency-p99": (MetricKind.QUANTILE, {"quantile": 0.99}),
    "prediction-shift": (MetricKind.DISTRIBUTION, {}),
    "agreement": (MetricKind.AGREEMENT, {}),
}


def counted_spec(name: str, max_increase: float) -> MetricSpec:
    """A user-defined proportion — bad events over all events, counted elsewhere (e.g. two Prometheus
    counters per version) — judged like error-rate on the increments :meth:`Analysis.update_counts` gives.

    Raises:
        ValueError: a standard metric's name, or a margin that is not finite and >= 0.
    """
    if name in _STANDARD:
        raise ValueError(f"{name!r} is a standard metric; a counted metric needs a name of its own")
    return MetricSpec(name=name, kind=MetricKind.PROPORTION, margin_type=MarginType.INCREASE,
                      margin=float(max_increase))


def metric_spec(
    name: str, *, max_increase: float | None = None, max_ratio: float | None = None, max: float | None = None,
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> MetricSpec:
    """The spec of a standard metric as a Deployment names it (``analysis.metrics[]``).

    Raises:
        ValueError: unknown name, or a margin that does not fit the metric.
    """
    if name not in _STANDARD:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(_STANDARD)}")
    kind, extra = _STANDARD[name]
    given = {MarginType.INCREASE: max_increase, MarginType.RATIO: max_ratio, MarginType.MAX: max}
    set_ = [(t, v) for t, v in given.items() if v is not None]
    if len(set_) != 1:
        raise ValueError(f"{name}: give exactly one of max_increase, max_ratio, max")
    margin_type, margin = set_[0]
    if kind == MetricKind.DISTRIBUTION:
        extra = {"max_classes": max_classes}
    return MetricSpec(name=name, kind=kind, margin_type=margin_type, margin=float(margin), **extra)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's judgement.

    Attributes:
        name: the metric.
        outcome: Pass, Fail or Inconclusive.
        reason: one CamelCase word: ``WorseThanStable``, ``BeyondMargin``, ``WithinMargin``,
            ``NotEnoughData``, ``NotComputable``, ``NoVerdictYet``.
        message: for people.
        candidate, stable: each version's value (a rate, a quantile in ms, ...); ``None`` if
            meaningless (a distance has no per-version value).
        estimate: the compared quantity's point estimate (difference, ratio, distance, share).
        lower, upper: its confidence-sequence bounds; ``lower`` at the false-rollback level,
            ``upper`` at the missed-regression level. ``None`` when not computed.
        margin: the metric's margin.
        n_candidate, n_stable: observations the metric used.
    """

    name: str
    outcome: Outcome
    reason: str
    message: str
    candidate: float | None = None
    stable: float | None = None
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    margin: float = 0.0
    n_candidate: int = 0
    n_stable: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for ``status.analysis`` (non-finite numbers as ``None``)."""
        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else round(x, 6)
        return {"name": self.name, "outcome": str(self.outcome), "reason": self.reason, "message": self.message,
                "candidate": num(self.candidate), "stable": num(self.stable), "estimate": num(self.estimate),
                "lower": num(self.lower), "upper": num(self.upper), "margin": self.margin,
                "observations": {"candidate": self.n_candidate, "stable": self.n_stable}}


@dataclass(frozen=True)
class Verdict:
    """The analysis's judgement: ``metric`` is the failing one for Fail, else ``None``."""

    outcome: Outcome
    metric: MetricVerdict | None
    metrics: tuple[MetricVerdict, ...]
    message: str


def judge(verdicts: Sequence[MetricVerdict]) -> Verdict:
    """Fail if any metric fails (the first, in spec order), Pass if all pass, else Inconclusive."""
    items = tuple(verdicts)
    for v in items:
        if v.outcome == Outcome.FAIL:
            return Verdict(Outcome.FAIL, v, items, v.message)
    if items and all(v.outcome == Outcome.PASS for v in items):
        return Verdict(Outcome.PASS, None, items, "every metric is within its margin")
    if not items:
        return Verdict(Outcome.INCONCLUSIVE, None, items, "no metrics to judge")
    pending = [v for v in items if v.outcome != Outcome.PASS]
    return Verdict(Outcome.INCONCLUSIVE, None, items, "; ".join(f"{v.name}: {v.message}" for v in pending))


@dataclass
class VersionState:
    """What one version's requests left behind: counts, and a latency histogram of fixed size."""

    requests: int = 0
    errors: int = 0
    rejections: int = 0
    latency: IntArray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))
    classes: IntArray = field(default_factory=lambda: np.zeros(MAX_LABELS, dtype=np.int64))
    unlabelled: int = 0  # predictions beyond MAX_LABELS distinct labels
    agreements: int = 0
    disagreements: int = 0
    counted: dict[str, list[int]] = field(default_factory=dict)  # counted metric -> [bad, total]

    @property
    def latencies(self) -> int:
        return int(self.latency.sum())

    @property
    def predictions(self) -> int:
        return int(self.classes.sum()) + self.unlabelled

    def to_dict(self) -> dict[str, Any]:
        nz = np.flatnonzero(self.latency)
        first = int(nz[0]) if nz.size else 0
        last = int(nz[-1]) + 1 if nz.size else 0
        n_classes = int(np.flatnonzero(self.classes)[-1]) + 1 if self.classes.any() else 0
        return {"requests": self.requests, "errors": self.errors, "rejections": self.rejections,
                "latency": {"first": first, "counts": self.latency[first:last].tolist()},
                "classes": self.classes[:n_classes].tolist(), "unlabelled": self.unlabelled,
                "agreements": self.agreements, "disagreements": self.disagreements,
                "counted": {name: list(x) for name, x in self.counted.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VersionState:
        state = cls(requests=int(d["requests"]), errors=int(d["errors"]), rejections=int(d["rejections"]),
                    unlabelled=int(d.get("unlabelled", 0)), agreements=int(d.get("agreements", 0)),
                    disagreements=int(d.get("disagreements", 0)))
        lat = d.get("latency") or {}
        counts = np.asarray(lat.get("counts", []), dtype=np.int64)
        first = int(lat.get("first", 0))
        state.latency[first:first + counts.size] = counts
        classes = np.asarray(d.get("classes", []), dtype=np.int64)
        state.classes[:classes.size] = classes
        state.counted = {str(name): [int(x) for x in xs] for name, xs in (d.get("counted") or {}).items()}
        return state


def latency_bins(latencies_ms: npt.ArrayLike) -> IntArray:
    """Histogram counts (``N_BINS``) of latencies in ms; NaN, infinite and negative values are dropped."""
    x = np.asarray(latencies_ms, dtype=np.float64).ravel()
    x = x[np.isfinite(x) & (x >= 0)]
    return np.bincount(latency_bin_index(x), minlength=N_BINS).astype(np.int64)


def latency_bin_index(latencies_ms: npt.ArrayLike) -> IntArray:
    """The histogram bin of each (finite, non-negative) latency in ms: bin ``j`` spans
    ``[_ALL_EDGES[j], _ALL_EDGES[j + 1])``."""
    x = np.asarray(latencies_ms, dtype=np.float64)
    with np.errstate(divide="ignore"):
        idx = np.floor((np.log10(x) - LATENCY_LOG10_MIN) * BINS_PER_DECADE) + 1
    return np.asarray(np.clip(idx, 0, N_BINS - 1), dtype=np.int64)


def histogram_quantile(counts: IntArray, p: float) -> float:
    """The ``p``-quantile of a latency histogram, as its bin's geometric midpoint (ms); NaN if empty."""
    n = int(counts.sum())
    if n == 0:
        return math.nan
    j = int(np.searchsorted(np.cumsum(counts), math.ceil(p * n)))
    lo, hi = _ALL_EDGES[j], _ALL_EDGES[j + 1]
    if lo == 0.0:
        return float(hi)
    if not math.isfinite(hi):
        return float(lo)
    return float(math.sqrt(lo * hi))


def _label(value: Any) -> str | None:
    """A prediction's class key: integral floats as integers, strings as is; None/NaN: no label."""
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value.item() if isinstance(value, np.generic) else value)


def _js_term(p: FloatArray, q: FloatArray) -> FloatArray:
    """Per-class Jensen-Shannon divergence term (nats): ``1/2 [p log(p/m) + q log(q/m)]``, ``m = (p+q)/2``."""
    m = (p + q) / 2
    return np.asarray(
        0.5 * (special.xlogy(p, p) - special.xlogy(p, m) + special.xlogy(q, q) - special.xlogy(q, m)),
        dtype=np.float64)


def js_distance(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon distance in base 2 (in [0, 1]) between two count or share vectors."""
    p_ = np.asarray(p, dtype=np.float64)
    q_ = np.asarray(q, dtype=np.float64)
    if p_.sum() <= 0 or q_.sum() <= 0:
        return math.nan
    jsd = float(_js_term(p_ / p_.sum(), q_ / q_.sum()).sum())
    return math.sqrt(min(max(jsd, 0.0), math.log(2)) / math.log(2))


def js_bounds(
    c_lo: FloatArray, c_hi: FloatArray, s_lo: FloatArray, s_hi: FloatArray,
) -> tuple[float, float]:
    """Bounds on the base-2 JS distance between P and Q with each ``P_k in [c_lo, c_hi]``,
    ``Q_k in [s_lo, s_hi]`` (one distribution: :func:`js_bounds_array` for many at once)."""
    lower, upper = js_bounds_array(c_lo, c_hi, s_lo, s_hi)
    return float(lower), float(upper)


def js_bounds_array(
    c_lo: npt.ArrayLike, c_hi: npt.ArrayLike, s_lo: npt.ArrayLike, s_hi: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """:func:`js_bounds` over leading axes: classes on the last axis, ``(lower, upper)`` per leading index.

    The divergence is ``sum_k phi(P_k, Q_k)`` with ``phi`` jointly convex, 0 on the diagonal,
    increasing away from it. Dropping the constraint that shares sum to 1 only widens the set, so:
    the maximum of each term over its box is at one of the four corners; the minimum is 0 when the
    two intervals overlap, else at the two nearest ends.
    """
    c_lo_, c_hi_, s_lo_, s_hi_ = (np.asarray(x, dtype=np.float64) for x in (c_lo, c_hi, s_lo, s_hi))
    corners = [_js_term(a, b) for a in (c_lo_, c_hi_) for b in (s_lo_, s_hi_)]
    upper = np.max(np.stack(corners), axis=0).sum(axis=-1)
    below = c_hi_ < s_lo_
    above = c_lo_ > s_hi_
    lower = np.where(below, _js_term(c_hi_, s_lo_), np.where(above, _js_term(c_lo_, s_hi_), 0.0)).sum(axis=-1)
    ln2 = math.log(2)
    return (np.asarray(np.sqrt(np.clip(lower, 0.0, ln2) / ln2), dtype=np.float64),
            np.asarray(np.sqrt(np.clip(upper, 0.0, ln2) / ln2), dtype=np.float64))


#: Null boundaries ``d`` (in margins) at which each proportion metric keeps e-processes, both sides:
#: 0 decides Fail, 1 decides Pass, the others give the reported interval (at this resolution).
DIFFERENCE_GRID = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
_ZERO, _ONE = DIFFERENCE_GRID.index(0.0), DIFFERENCE_GRID.index(1.0)
#: Alternatives each e-process averages over, besides the plug-in estimate: the candidate's rate at
#: stable's estimated rate + d + offset (in margins) — "worse by 1, 2, 4 margins" against ``<= d``,
#: "equal, or better by half a margin" against ``>= margin``.
GREATER_OFFSETS = (1.0, 2.0, 4.0)
LESS_OFFSETS = (-1.0, -1.5)
#: Weights of the alternatives (plug-in first) in each side's mixture of e-processes — fixed in advance,
#: so the weighted mean is an e-process too. A mixture pays ``log(1/w)`` of evidence for betting on
#: the right alternative with weight ``w``: Fail is designed for regressions of 1-4 margins, Pass for
#: a candidate as good as stable (its "equal" alternative carries most weight; the plug-in and "better
#: by half a margin" cover better candidates).
GREATER_WEIGHTS = (0.1, 0.3, 0.35, 0.25)
LESS_WEIGHTS = (0.15, 0.7, 0.15)


def _difference_grid(margin: float) -> FloatArray:
    scale = margin if margin > 0 else 0.01
    return np.asarray(DIFFERENCE_GRID, dtype=np.float64) * scale


def _log_mean_exp(x: FloatArray, weights: Sequence[float] | None = None) -> FloatArray:
    """``log sum_i w_i exp(x_i)`` over the last axis (``w_i = 1/n`` by default), in plain numpy."""
    w = np.full(x.shape[-1], 1.0 / x.shape[-1]) if weights is None else np.asarray(weights, dtype=np.float64)
    top = np.max(x, axis=-1, keepdims=True)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(w * np.exp(x - safe), axis=-1)) + safe[..., 0]
    return np.asarray(out, dtype=np.float64)


def _plug_in(k: npt.ArrayLike, n: npt.ArrayLike, margin: float) -> FloatArray:
    """The rate a block bets on: ``(k + 1) / (n + 1 + 1/margin)`` — shrunk towards rates of the order of
    the margin while data are few, never 0 or 1. Power depends on it; validity does not."""
    return np.asarray((_f(k) + 1.0) / (_f(n) + 1.0 + 1.0 / max(margin, 1e-3)), dtype=np.float64)


def _f(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def proportion_step(
    before: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike],
    block: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike],
    margin: float, grid: Sequence[float] = DIFFERENCE_GRID,
) -> tuple[FloatArray, FloatArray]:
    """The log factors one block adds to a proportion metric's e-processes.

    Args:
        before: ``(k_c, n_c, k_s, n_s)``, events and requests of each version before the block: the
            predictable plug-in rates come from them (:func:`_plug_in`).
        block: the same counts for the block's new requests.
        margin: the metric's ``maxIncrease``.
        grid: null boundaries ``d`` in margins (:data:`DIFFERENCE_GRID`; the decisions need only 0
            and 1).

    Returns:
        ``(greater, less)``, shapes ``(..., len(grid), 1 + len(GREATER_OFFSETS))`` and
        ``(..., len(grid), 1 + len(LESS_OFFSETS))``: per null ``d``, per alternative (the plug-in, then
        the fixed offsets), the log factor against ``p_c - p_s <= d`` (greater) and ``>= d`` (less).
        Leading axes are those of the counts — one analysis, or many simulated runs at once.
    """
    k_c0, n_c0, k_s0, n_s0 = (_f(x)[..., None, None] for x in before)
    k_c, n_c, k_s, n_s = (_f(x)[..., None, None] for x in block)
    scale = margin if margin > 0 else 0.01
    d = np.asarray(grid, dtype=np.float64)[:, None] * scale
    q_c = np.clip(_plug_in(k_c0, n_c0, margin), 1e-9, 1 - 1e-9)
    q_s = _plug_in(k_s0, n_s0, margin)
    alts = []
    for offsets in (GREATER_OFFSETS, LESS_OFFSETS):
        fixed = np.clip(q_s + d + np.asarray(offsets, dtype=np.float64) * scale, 1e-9, 1 - 1e-9)
        alts.append(np.concatenate([np.broadcast_to(q_c, (*fixed.shape[:-1], 1)), fixed], axis=-1))
    split = alts[0].shape[-1]
    greater = np.arange(split + alts[1].shape[-1]) < split  # one call for both sides
    both = sequential.plug_in_block_log_e(k_c, n_c, k_s, n_s, np.concatenate(alts, axis=-1), q_s, d, greater=greater)
    out = [both[..., :split], both[..., split:]]
    return out[0], out[1]


def proportion_tests(
    greater: npt.ArrayLike, less: npt.ArrayLike, alpha: float, beta: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which nulls the log e-processes (alternatives on the last axis) reject: ``p_c - p_s <= d`` where
    the weighted mean of ``greater`` (:data:`GREATER_WEIGHTS`) reaches ``1/alpha``, ``p_c - p_s >= d``
    where that of ``less`` (:data:`LESS_WEIGHTS`) reaches ``1/beta``. At ``d = 0`` the first is Fail,
    at ``d = margin`` the second is Pass."""
    rejected_up = _log_mean_exp(_f(greater), GREATER_WEIGHTS) >= math.log(1 / alpha)
    rejected_down = _log_mean_exp(_f(less), LESS_WEIGHTS) >= math.log(1 / beta)
    return np.asarray(rejected_up, dtype=np.bool_), np.asarray(rejected_down, dtype=np.bool_)


def quantile_ranks(
    n_c: int, n_s: int, p: float, alpha: float, beta: float, candidate_share: float, n_opt: float,
) -> tuple[int, int, int, int]:
    """The order statistics a quantile metric's verdict needs, as ranks (1-based; 0: none):
    candidate lower (level ``alpha * share``) and upper (``beta * share``), stable lower
    (``beta * (1 - share)``) and upper (``alpha * (1 - share)``). A lower bound is the edge at or below
    its order statistic, an upper bound the edge above (:func:`rank_edges`); see
    :func:`sequential.quantile_thresholds`."""
    out: list[int] = []
    for n, a_lower, a_upper in ((n_c, alpha * candidate_share, beta * candidate_share),
                                (n_s, beta * (1 - candidate_share), alpha * (1 - candidate_share))):
        k_lo, k_hi = sequential.quantile_thresholds(n, p, a_lower, a_upper, n_opt)
        out += [0 if k_lo is None else k_lo + 1, 0 if k_hi is None else n - k_hi]
    return out[0], out[1], out[2], out[3]


def rank_edges(cum: npt.ArrayLike, rank_lower: npt.ArrayLike, rank_upper: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    """Indices into the edges (``0, EDGES_MS, inf``) of the bounds whose order statistics have the given
    ranks: the bin of the ``r``-th smallest latency is the first whose cumulative count reaches ``r``;
    a lower bound is that bin's lower edge, an upper bound its upper edge. Rank 0: no bound (edge
    ``0`` for a lower bound, ``inf`` for an upper one). ``cum`` is a histogram's cumulative counts on
    the last axis; ranks broadcast over the leading axes."""
    cum_ = np.asarray(cum, dtype=np.int64)
    r_lo, r_hi = np.broadcast_arrays(np.asarray(rank_lower), np.asarray(rank_upper), cum_[..., 0])[:2]
    # every row is non-decreasing: shifted by row * (its maximum + 1), the rows form one sorted array,
    # so one searchsorted counts, per row, the bins whose cumulative count is below the rank
    rows = cum_.reshape(-1, cum_.shape[-1])
    step = int(rows[:, -1].max(initial=0)) + 1
    shift = np.arange(rows.shape[0], dtype=np.int64) * step
    flat = (rows + shift[:, None]).ravel()

    def below(rank: npt.NDArray[Any]) -> IntArray:
        r = np.asarray(rank, dtype=np.int64).reshape(-1)
        found = np.searchsorted(flat, np.minimum(r, step) + shift, side="left") - shift // step * rows.shape[1]
        return np.asarray(found.reshape(rank.shape), dtype=np.int64)

    lo = np.where(r_lo > 0, below(r_lo), 0)
    hi = np.where(r_hi > 0, below(r_hi) + 1, _ALL_EDGES.size - 1)
    return np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)


def quantile_tests(
    lo_c: npt.ArrayLike, hi_c: npt.ArrayLike, lo_s: npt.ArrayLike, hi_s: npt.ArrayLike, margin: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], FloatArray, FloatArray]:
    """``(fail, pass, lower, upper)`` of a quantile ratio from the versions' bound indices (:func:`rank_edges`).

    ``q_c >= x_lo_c`` and ``q_s < x_hi_s`` give ``q_c / q_s > lower = x_lo_c / x_hi_s`` (Fail when
    ``x_lo_c >= x_hi_s``: slower than stable); ``q_c < x_hi_c`` and ``q_s >= x_lo_s`` give
    ``q_c / q_s < upper = x_hi_c / x_lo_s`` (Pass when ``upper <= margin``).
    """
    x_lo_c, x_hi_c = _ALL_EDGES[np.asarray(lo_c)], _ALL_EDGES[np.asarray(hi_c)]
    x_lo_s, x_hi_s = _ALL_EDGES[np.asarray(lo_s)], _ALL_EDGES[np.asarray(hi_s)]
    finite = np.isfinite(x_hi_s) & (x_hi_s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = np.where(finite, x_lo_c / np.where(finite, x_hi_s, 1.0), 0.0)
        upper = np.where(x_lo_s > 0, x_hi_c / np.where(x_lo_s > 0, x_lo_s, 1.0), np.inf)
    fail = finite & (x_lo_c >= x_hi_s) & (x_lo_c > 0)
    return (np.asarray(fail, dtype=np.bool_), np.asarray(upper <= margin, dtype=np.bool_),
            np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64))


def _counted(spec: MetricSpec) -> bool:
    """A proportion whose events :meth:`Analysis.update_counts` gives (not the request log's status codes)."""
    return spec.kind == MetricKind.PROPORTION and spec.status_class is None


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


class Analysis:
    """The live analysis of one rollout: per-version state, updated in batches, judged any time.

    Args:
        specs: the metrics, in the order they are reported.
        alpha: false-rollback budget, split over the metrics (Bonferroni).
        beta: missed-regression budget at the margins, per metric (see the module docstring).
        min_requests: per version (and per metric's own observations) before any verdict.
        split_beta: split ``beta`` over the metrics too (more conservative, slower to pass).
        tune_requests: sample size per version at which the one-sample mixtures (quantiles,
            agreement, class shares) are tuned to be tightest (Howard et al.'s ``v_opt``); power only.
        candidate_share: share of a quantile metric's budget spent on the candidate's sequence (the
            rest on stable's).
    """

    def __init__(
        self, specs: Sequence[MetricSpec], *, alpha: float = 0.05, beta: float = 0.2, min_requests: int = 200,
        split_beta: bool = False, tune_requests: float = 500.0, candidate_share: float = 0.5,
    ) -> None:
        if not specs:
            raise ValueError("an analysis needs at least one metric")
        if len({s.name for s in specs}) != len(specs):
            raise ValueError("metric names must be unique")
        if not (0 < alpha < 1 and 0 < beta < 1):
            raise ValueError("alpha and beta must be in (0, 1)")
        if min_requests < 1:
            raise ValueError("min_requests must be >= 1")
        if not 0 < candidate_share < 1:
            raise ValueError("candidate_share must be in (0, 1)")
        self.specs = tuple(specs)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.min_requests = int(min_requests)
        self.split_beta = bool(split_beta)
        self.tune_requests = float(tune_requests)
        self.candidate_share = float(candidate_share)
        self.labels: dict[str, int] = {}
        self.versions = {Version.STABLE: VersionState(), Version.CANDIDATE: VersionState()}
        # the open block: requests, errors, rejections per version since the last closed block
        self.pending = {Version.STABLE: [0, 0, 0], Version.CANDIDATE: [0, 0, 0]}
        # per counted metric, the open block: bad and total events of the candidate, then of stable
        self.pending_counts = {spec.name: [0, 0, 0, 0] for spec in self.specs if _counted(spec)}
        for spec in self.specs:
            if _counted(spec):
                for v in self.versions.values():
                    v.counted[spec.name] = [0, 0]
        # per proportion metric: log e-processes at each d of its grid, both sides
        self.evidence = {
            spec.name: {"greater": [[0.0] * (1 + len(GREATER_OFFSETS)) for _ in DIFFERENCE_GRID],
                        "less": [[0.0] * (1 + len(LESS_OFFSETS)) for _ in DIFFERENCE_GRID]}
            for spec in self.specs if spec.kind == MetricKind.PROPORTION}

    # -- levels ---------------------------------------------------------------------------------

    @property
    def alpha_per_metric(self) -> float:
        return self.alpha / len(self.specs)

    @property
    def beta_per_metric(self) -> float:
        return self.beta / len(self.specs) if self.split_beta else self.beta

    # -- state ----------------------------------------------------------------------------------

    def update(
        self, version: Version | str, status_codes: npt.ArrayLike, latencies_ms: npt.ArrayLike | None = None,
        predictions: npt.ArrayLike | None = None, agreement: npt.ArrayLike | None = None,
    ) -> None:
        """Fold a batch of one version's (post-warm-up) requests into the state. O(batch), O(1) memory.

        Args:
            version: ``stable`` or ``candidate``.
            status_codes: HTTP status per request; values outside 100..599 (or NaN) are not counted.
            latencies_ms: latency per request in ms (any length; NaN/negative dropped).
            predictions: predicted class per logged prediction (any length; None/NaN dropped).
            agreement: shadow mode, candidate only: 1/True where the candidate's prediction equals
                stable's for the same request, 0/False where not (NaN dropped).
        """
        state = self.versions[Version(version)]
        codes = np.asarray(status_codes, dtype=np.float64).ravel()
        valid = np.isfinite(codes) & (codes >= 100) & (codes < 600)
        batch = (int(valid.sum()), int((valid & (codes >= 500)).sum()),
                 int((valid & (codes >= 400) & (codes < 500)).sum()))
        state.requests += batch[0]
        state.errors += batch[1]
        state.rejections += batch[2]
        pending = self.pending[Version(version)]
        for i, x in enumerate(batch):
            pending[i] += x
        if latencies_ms is not None:
            state.latency += latency_bins(latencies_ms)
        if predictions is not None:
            self._count_predictions(state, predictions)
        if agreement is not None:
            a = np.asarray(agreement, dtype=np.float64).ravel()
            a = a[np.isfinite(a)]
            state.agreements += int((a != 0).sum())
            state.disagreements += int((a == 0).sum())
        if self.pending[Version.STABLE][0] and self.pending[Version.CANDIDATE][0]:
            self._close_block()

    def update_counts(self, name: str, candidate: tuple[int, int], stable: tuple[int, int]) -> None:
        """Fold new events of a counted metric — ``(bad, total)`` per version over the same span of time,
        e.g. the increments of two Prometheus counters between two queries — into its e-processes.

        Each call's increments form a block (closed once both versions have events), bet on exactly as
        :meth:`update` bets the request log's 5xx counts for error-rate.

        Raises:
            KeyError: ``name`` is not a counted metric of this analysis.
            ValueError: a count that is negative, or ``bad > total``.
        """
        pending = self.pending_counts[name]
        for bad, total in (candidate, stable):  # all checked before anything changes
            if not (0 <= int(bad) <= int(total)):
                raise ValueError(f"{name}: counts must satisfy 0 <= bad <= total, got {bad}/{total}")
        for i, (bad, total) in enumerate((candidate, stable)):
            pending[2 * i] += int(bad)
            pending[2 * i + 1] += int(total)
        for version, (bad, total) in ((Version.CANDIDATE, candidate), (Version.STABLE, stable)):
            counted = self.versions[version].counted[name]
            counted[0] += int(bad)
            counted[1] += int(total)
        if pending[1] and pending[3]:
            spec = next(s for s in self.specs if s.name == name)
            (k_c, n_c), (k_s, n_s) = (self.versions[v].counted[name] for v in (Version.CANDIDATE, Version.STABLE))
            greater, less = proportion_step((k_c - pending[0], n_c - pending[1], k_s - pending[2], n_s - pending[3]),
                                            (pending[0], pending[1], pending[2], pending[3]), spec.margin)
            self._bet(name, greater, less)
            self.pending_counts[name] = [0, 0, 0, 0]

    def _bet(self, name: str, greater: FloatArray, less: FloatArray) -> None:
        ev = self.evidence[name]
        ev["greater"] = (np.asarray(ev["greater"]) + greater).tolist()
        ev["less"] = (np.asarray(ev["less"]) + less).tolist()

    def _close_block(self) -> None:
        """Bet the open block — new requests of both versions — on each proportion metric's e-processes.

        The alternative comes from the requests before the block (predictable); the block closes as
        soon as both versions have new requests, so its extent depends on the order of
        :meth:`update` calls, never on outcomes (see :func:`sequential.plug_in_block_log_e`).
        """
        pc, ps = self.pending[Version.CANDIDATE], self.pending[Version.STABLE]
        c, s = self.versions[Version.CANDIDATE], self.versions[Version.STABLE]
        for spec in self.specs:
            if spec.kind != MetricKind.PROPORTION or _counted(spec):
                continue
            col = 1 if spec.status_class == 5 else 2
            k_c, k_s = (c.errors, s.errors) if col == 1 else (c.rejections, s.rejections)
            greater, less = proportion_step((k_c - pc[col], c.requests - pc[0], k_s - ps[col], s.requests - ps[0]),
                                            (pc[col], pc[0], ps[col], ps[0]), spec.margin)
            self._bet(spec.name, greater, less)
        self.pending = {Version.STABLE: [0, 0, 0], Version.CANDIDATE: [0, 0, 0]}

    def _count_predictions(self, state: VersionState, predictions: npt.ArrayLike) -> None:
        arr = np.asarray(predictions).ravel()
        if arr.size == 0:
            return
        counts: Counter[str] = Counter()
        try:
            values, n = np.unique(arr, return_counts=True)
            pairs: list[tuple[Any, int]] = list(zip(values.tolist(), n.tolist(), strict=True))
        except TypeError:  # mixed object types do not sort
            pairs = list(Counter(arr.tolist()).items())
        for value, k in pairs:
            key = _label(value)
            if key is not None:
                counts[key] += int(k)
        for key, k in counts.items():
            idx = self.labels.get(key)
            if idx is None and len(self.labels) < MAX_LABELS:
                idx = self.labels[key] = len(self.labels)
            if idx is None:
                state.unlabelled += k
            else:
                state.classes[idx] += k

    def observations(self, version: Version | str) -> int:
        """Requests counted so far for ``version``."""
        return self.versions[Version(version)].requests

    def to_dict(self) -> dict[str, Any]:
        """The whole analysis — settings, metrics and state — as a small JSON-ready dict."""
        return {"format": FORMAT, "binsPerDecade": BINS_PER_DECADE, "alpha": self.alpha, "beta": self.beta,
                "minRequests": self.min_requests,
                "splitBeta": self.split_beta, "tuneRequests": self.tune_requests,
                "candidateShare": self.candidate_share, "metrics": [s.to_dict() for s in self.specs],
                "labels": list(self.labels), "stable": self.versions[Version.STABLE].to_dict(),
                "candidate": self.versions[Version.CANDIDATE].to_dict(),
                "pending": {str(v): list(x) for v, x in self.pending.items()},
                "pendingCounts": {name: list(x) for name, x in self.pending_counts.items()},
                "evidence": {name: {side: [list(row) for row in rows] for side, rows in ev.items()}
                             for name, ev in self.evidence.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Analysis:
        """The analysis :meth:`to_dict` saved; it judges exactly as the original did.

        Raises:
            ValueError: an unknown format.
        """
        if d.get("format") != FORMAT or d.get("binsPerDecade") != BINS_PER_DECADE:
            raise ValueError(f"unknown analysis state format {d.get('format')!r}/{d.get('binsPerDecade')!r}")
        a = cls([MetricSpec.from_dict(m) for m in d["metrics"]], alpha=float(d["alpha"]), beta=float(d["beta"]),
                min_requests=int(d["minRequests"]), split_beta=bool(d["splitBeta"]),
                tune_requests=float(d["tuneRequests"]), candidate_share=float(d["candidateShare"]))
        a.labels = {str(k): i for i, k in enumerate(d.get("labels", []))}
        a.versions = {Version.STABLE: VersionState.from_dict(d["stable"]),
                      Version.CANDIDATE: VersionState.from_dict(d["candidate"])}
        for name in a.pending_counts:
            for v in a.versions.values():
                v.counted.setdefault(name, [0, 0])
        a.pending = {Version(v): [int(x) for x in xs] for v, xs in d["pending"].items()}
        for name, xs in (d.get("pendingCounts") or {}).items():
            if name in a.pending_counts:
                a.pending_counts[name] = [int(x) for x in xs]
        for name, ev in d["evidence"].items():
            if name in a.evidence:
                a.evidence[name] = {side: [[float(x) for x in row] for row in rows] for side, rows in ev.items()}
        return a

    # -- judgement ------------------------------------------------------------------------------

    def evaluate(self, *, intervals: bool = True) -> list[MetricVerdict]:
        """Judge every metric now. ``intervals=False`` skips the (slower) inversion of the tests into
        bounds where a verdict does not need them: the outcomes are identical."""
        return [self._evaluate(spec, intervals) for spec in self.specs]

    def judge(self, *, intervals: bool = True) -> Verdict:
        """:func:`judge` of :meth:`evaluate`."""
        return judge(self.evaluate(intervals=intervals))

    def _evaluate(self, spec: MetricSpec, intervals: bool) -> MetricVerdict:
        c, s = self.versions[Version.CANDIDATE], self.versions[Version.STABLE]
        if c.requests < self.min_requests or s.requests < self.min_requests:
            return MetricVerdict(spec.name, Outcome.INCONCLUSIVE, "NotEnoughData",
                                 f"{c.requests} candidate and {s.requests} stable requests; "
                                 f"{self.min_requests} each needed", margin=spec.margin,
                                 n_candidate=c.requests, n_stable=s.requests)
        if spec.kind == MetricKind.PROPORTION:
            return self._proportion(spec, c, s)
        if spec.kind == MetricKind.QUANTILE:
            return self._quantile(spec, c, s)
        if spec.kind == MetricKind.DISTRIBUTION:
            return self._distribution(spec, c, s)
        return self._agreement(spec, c, s, intervals)

    def _not_enough(self, spec: MetricSpec, what: str, n_c: int, n_s: int | None) -> MetricVerdict:
        have = f"{n_c} candidate" + ("" if n_s is None else f" and {n_s} stable")
        return MetricVerdict(spec.name, Outcome.INCONCLUSIVE, "NotEnoughData",
                             f"{have} {what}; {self.min_requests} needed", margin=spec.margin,
                             n_candidate=n_c, n_stable=n_s or 0)

    def _proportion(self, spec: MetricSpec, c: VersionState, s: VersionState) -> MetricVerdict:
        if _counted(spec):
            (k_c, n_c), (k_s, n_s) = c.counted[spec.name], s.counted[spec.name]
            if n_c < self.min_requests or n_s < self.min_requests:
                return self._not_enough(spec, "counted events", n_c, n_s)
        else:
            k_c, k_s = (c.errors, s.errors) if spec.status_class == 5 else (c.rejections, s.rejections)
            n_c, n_s = c.requests, s.requests
        x_c, x_s = k_c / n_c, k_s / n_s
        grid = _difference_grid(spec.margin)
        ev = self.evidence[spec.name]
        # per d of the grid: p_c - p_s > d shown at level alpha/m, p_c - p_s < d at level beta
        greater, less = proportion_tests(ev["greater"], ev["less"], self.alpha_per_metric, self.beta_per_metric)
        lower = float(grid[np.flatnonzero(greater)[-1]]) if greater.any() else -1.0
        upper = float(grid[np.flatnonzero(less)[0]]) if less.any() else 1.0
        fail, passed = bool(greater[_ZERO]), bool(less[_ONE])
        what = (f"candidate {_pct(x_c)} vs stable {_pct(x_s)}, difference > {_pct(lower)}"
                f" (at {self.alpha_per_metric:.3g}) and < {_pct(upper)} (at {self.beta_per_metric:.3g})")
        if fail:
            outcome, reason, msg = Outcome.FAIL, "WorseThanStable", f"{what}: worse than stable"
        elif passed:
            outcome, reason, msg = Outcome.PASS, "WithinMargin", f"{what}: within +{_pct(spec.margin)}"
        else:
            outcome, reason, msg = (Outcome.INCONCLUSIVE, "NoVerdictYet",
                                    f"{what}: not yet distinguishable from +{_pct(spec.margin)}")
        return MetricVerdict(spec.name, outcome, reason, msg, candidate=x_c, stable=x_s, estimate=x_c - x_s,
                             lower=lower, upper=upper, margin=spec.margin, n_candidate=n_c, n_stable=n_s)

    def _quantile(self, spec: MetricSpec, c: VersionState, s: VersionState) -> MetricVerdict:
        assert spec.quantile is not None
        p = spec.quantile
        n_c, n_s = c.latencies, s.latencies
        if n_c < self.min_requests or n_s < self.min_requests:
            return self._not_enough(spec, "latencies", n_c, n_s)
        ranks = quantile_ranks(n_c, n_s, p, self.alpha_per_metric, self.beta_per_metric, self.candidate_share,
                               self.tune_requests)
        cum_c, cum_s = np.cumsum(c.latency), np.cumsum(s.latency)
        lo_c, hi_c = rank_edges(cum_c, ranks[0], ranks[1])
        lo_s, hi_s = rank_edges(cum_s, ranks[2], ranks[3])
        fail_, pass_, lower_, upper_ = quantile_tests(lo_c, hi_c, lo_s, hi_s, spec.margin)
        lower, upper = float(lower_), float(upper_)
        q_c, q_s = histogram_quantile(c.latency, p), histogram_quantile(s.latency, p)
        what = f"p{100 * p:g} candidate {q_c:.4g} ms vs stable {q_s:.4g} ms, ratio in [{lower:.3g}, {upper:.3g}]"
        if fail_:
            outcome, reason, msg = Outcome.FAIL, "WorseThanStable", f"{what}: slower than stable"
        elif pass_:
            outcome, reason, msg = Outcome.PASS, "WithinMargin", f"{what}: below x{spec.margin:g}"
        else:
            outcome, reason, msg = (Outcome.INCONCLUSIVE, "NoVerdictYet",
                                    f"{what}: not yet distinguishable from x{spec.margin:g}")
        return MetricVerdict(spec.name, outcome, reason, msg, candidate=q_c, stable=q_s,
                             estimate=q_c / q_s if q_s > 0 else math.nan, lower=lower, upper=upper,
                             margin=spec.margin, n_candidate=n_c, n_stable=n_s)

    @staticmethod
    def _below(v: VersionState) -> IntArray:
        """``#{X < x_i}`` at every edge of :data:`_ALL_EDGES`."""
        cum = np.cumsum(v.latency)
        return np.concatenate(([0], cum[:N_EDGES], [cum[-1]])).astype(np.int64)

    def _distribution(self, spec: MetricSpec, c: VersionState, s: VersionState) -> MetricVerdict:
        n_c, n_s = c.predictions, s.predictions
        if n_c < self.min_requests or n_s < self.min_requests:
            return self._not_enough(spec, "predictions", n_c, n_s)
        k = len(self.labels)
        if c.unlabelled or s.unlabelled or k > spec.max_classes:
            return MetricVerdict(spec.name, Outcome.INCONCLUSIVE, "NotComputable",
                                 f"more than {spec.max_classes} distinct predicted classes", margin=spec.margin,
                                 n_candidate=n_c, n_stable=n_s)
        cc = c.classes[:k].astype(np.float64)
        sc = s.classes[:k].astype(np.float64)
        bounds_per_level = 4 * spec.max_classes  # 2 versions x 2 sides x classes, fixed in advance
        # one vectorised call: [candidate, stable] x [fail level, pass level] x classes
        counts = np.stack([cc, sc])[:, None, :].repeat(2, axis=1)
        trials = np.array([n_c, n_s], dtype=np.float64)[:, None, None]
        levels = np.array([self.alpha_per_metric, self.beta_per_metric])[None, :, None] / bounds_per_level
        lo, hi = sequential.bernoulli_bounds(counts, trials, levels, n_opt=self.tune_requests)
        lower = js_bounds(lo[0, 0], hi[0, 0], lo[1, 0], hi[1, 0])[0]
        upper = js_bounds(lo[0, 1], hi[0, 1], lo[1, 1], hi[1, 1])[1]
        value = js_distance(cc, sc)
        what = f"JS distance {value:.3g} in [{lower:.3g}, {upper:.3g}] over {k} classes"
        if lower > spec.margin:
            outcome, reason, msg = Outcome.FAIL, "BeyondMargin", f"{what}: above {spec.margin:g}"
        elif upper < spec.margin:
            outcome, reason, msg = Outcome.PASS, "WithinMargin", f"{what}: below {spec.margin:g}"
        else:
            outcome, reason, msg = (Outcome.INCONCLUSIVE, "NoVerdictYet",
                                    f"{what}: not yet distinguishable from {spec.margin:g}")
        return MetricVerdict(spec.name, outcome, reason, msg, estimate=value, lower=lower, upper=upper,
                             margin=spec.margin, n_candidate=n_c, n_stable=n_s)

    def _agreement(self, spec: MetricSpec, c: VersionState, s: VersionState, intervals: bool) -> MetricVerdict:
        k, n = c.disagreements, c.agreements + c.disagreements
        if n < self.min_requests:
            return self._not_enough(spec, "compared predictions", n, None)
        p = spec.margin
        x = k / n
        a, b = self.alpha_per_metric, self.beta_per_metric
        fail = p < 1 and self._one_sample(k, n, p, a, "greater")
        passed = not fail and p > 0 and self._one_sample(k, n, p, b, "less")
        lower = upper = None
        if intervals:
            lower = float(sequential.bernoulli_bounds(k, n, a, n_opt=self.tune_requests)[0])
            upper = float(sequential.bernoulli_bounds(k, n, b, n_opt=self.tune_requests)[1])
        span = "" if lower is None or upper is None else f" in [{_pct(lower)}, {_pct(upper)}]"
        what = f"disagreement {_pct(x)}{span}"
        if fail:
            outcome, reason, msg = Outcome.FAIL, "BeyondMargin", f"{what}: above {_pct(p)}"
        elif passed:
            outcome, reason, msg = Outcome.PASS, "WithinMargin", f"{what}: below {_pct(p)}"
        else:
            outcome, reason, msg = (Outcome.INCONCLUSIVE, "NoVerdictYet",
                                    f"{what}: not yet distinguishable from {_pct(p)}")
        return MetricVerdict(spec.name, outcome, reason, msg, candidate=1 - x, estimate=x, lower=lower,
                             upper=upper, margin=p, n_candidate=n, n_stable=s.requests)

    def _one_sample(self, k: int, n: int, p: float, level: float, side: sequential.Side) -> bool:
        a, b = sequential.beta_binomial_prior(p, p * (1 - p) * self.tune_requests, level)
        return bool(sequential.beta_binomial_log_e(k, n, p, a, b, side=side) >= math.log(1 / level))
