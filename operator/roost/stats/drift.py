"""Per-feature drift tests: one window of live values against one prepared reference feature.

Each test reads the window once, with vectorised or compiled passes only (no Python loop over rows),
and keeps memory bounded by the window: numeric bins are counted with one comparison pass per decile
edge; the Kolmogorov-Smirnov and Wasserstein tests count every value in its
slot among the reference sample's distinct values with
:meth:`roost.stats.reference.SortedSample.counts` (one compiled pass); categorical values are
counted by ``pandas.Series.value_counts`` (hashing), then only the distinct values are looked at.

The tests and their bounds (formula, range, edge cases and source in each function's docstring):

=========== ============= ============================================= =====================
feature     method        statistic                                     drift when
=========== ============= ============================================= =====================
numeric     psi           PSI on the reference decile bins              statistic > threshold
numeric     ks            two-sample KS ``D`` and p-value vs the sample p-value < pValue
numeric     wasserstein   W1(sample, window) / reference std            statistic > threshold
numeric     jensenshannon JS distance (base 2) on the decile bins       statistic > threshold
categorical chi2          Pearson chi-squared vs reference frequencies  p-value < pValue
categorical psi           PSI on the categories                         statistic > threshold
categorical jensenshannon JS distance (base 2) on the categories        statistic > threshold
=========== ============= ============================================= =====================

A window with no rows, only missing values, or fewer values than ``min_samples`` gives a result
that is *insufficient*: ``statistic``, ``p_value`` and ``drifted`` are None and ``detail`` says why
(``detail["insufficient"]`` is one of the reason constants below). No NaN ever reaches a result:
a statistic that is not finite is reported as insufficient (``NotComputable``).

Window values: NaN/None/NA are *missing*; for numeric features ``±inf`` and text that is not a
number are *invalid* (counted in ``detail["invalid"]``, left out of the test like missing values).
Categorical values are compared as the profile wrote them: strings as they are, booleans as
``"true"``/``"false"``, integral numbers without a decimal point (``1.0`` -> ``"1"``, as Arrow casts).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import warnings
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special, stats
from scipy.stats import _ksstats

from roost import errors
from roost.api import driftpolicy
from roost.stats import kernels, reference

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Values: TypeAlias = pd.Series | npt.NDArray[Any] | Sequence[Any]

EPSILON = 1e-4
"""Share given to an empty bin or category (PSI) and added to every reference share (chi-squared)."""
WASSERSTEIN_MIN_SCALE = 1e-3
"""Floor of the Wasserstein normaliser, for a constant reference column (as Evidently does)."""
KS_EXACT_BELOW = 400.0
"""``method="auto"``: exact KS p-value when the effective size ``n1 n2 / (n1 + n2)`` is below this."""
KS_TAIL = 1e-10
"""Asymptotic KS p-values below this come from Kolmogorov's limiting distribution (see ks_asymptotic_pvalue)."""
KS_PELZ_GOOD_FROM = 400.0
"""Effective size from which asymptotic KS p-values come from Pelz and Good's series (see ks_asymptotic_pvalue)."""
_pelz_good_cdf = getattr(_ksstats, "_kolmogn_PelzGood", None)  # scipy's own, private: kstwo.sf without it
UNSEEN_REPORTED = 20
"""Most window values listed in ``unseen`` / ``detail["unlisted"]`` (by count, then value)."""

# Reasons for an insufficient result (CamelCase, like condition reasons).
WINDOW_EMPTY = "WindowEmpty"
ALL_MISSING = "AllMissing"
TOO_FEW_SAMPLES = "TooFewSamples"
REFERENCE_EMPTY = "ReferenceEmpty"
NOT_IN_WINDOW = "NotInWindow"
NOT_IN_REFERENCE = "NotInReference"
NOT_COMPUTABLE = "NotComputable"
INVALID_SPEC = "InvalidSpec"


class Method(StrEnum):
    PSI = "psi"
    KS = "ks"
    WASSERSTEIN = "wasserstein"
    JENSENSHANNON = "jensenshannon"
    CHI2 = "chi2"


P_VALUE_METHODS = frozenset({Method.KS, Method.CHI2})


@dataclasses.dataclass(frozen=True)
class FeatureResult:
    """The outcome of one feature's test.

    Attributes:
        name: the feature.
        kind: ``"numeric"`` or ``"categorical"``.
        method: the test (:class:`Method` value).
        statistic: PSI, KS ``D``, normalised Wasserstein, JS distance or chi-squared; None when
            insufficient.
        p_value: for ``ks`` and ``chi2`` (after a multiple-testing correction when the result comes
            from :func:`roost.stats.verdict.check`; the raw one is then ``detail["rawPValue"]``);
            None for distances and when insufficient.
        threshold: the bound: the distance threshold, or the significance level for p-value tests.
        drifted: ``statistic > threshold`` for distances, ``p_value < threshold`` for p-value
            tests; None when insufficient.
        samples: window values the test used (non-missing, valid).
        missing: window values that were missing.
        unseen: categorical only: window values the reference certainly never saw (top
            :data:`UNSEEN_REPORTED` by count), ``{}`` when none; None for numeric features.
        detail: method-specific evidence, JSON-ready (bins and shares, sample size, ...).
    """

    name: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool | None
    samples: int
    missing: int
    unseen: Mapping[str, int] | None
    detail: Mapping[str, Any]

    @property
    def sufficient(self) -> bool:
        """Whether the test gave a verdict."""
        return self.drifted is not None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready camelCase data (for the drift report)."""
        return {
            "name": self.name, "kind": self.kind, "method": self.method, "statistic": self.statistic,
            "pValue": self.p_value, "threshold": self.threshold, "drifted": self.drifted,
            "samples": self.samples, "missing": self.missing,
            "unseen": dict(self.unseen) if self.unseen is not None else None, "detail": dict(self.detail),
        }


# ----- statistics on arrays ----------------------------------------------------------------------


def psi(expected: npt.ArrayLike, actual: npt.ArrayLike, epsilon: float = EPSILON) -> float:
    """Population Stability Index of ``actual`` against ``expected`` (counts or shares per bin).

    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` with ``e_i``, ``a_i`` the shares of bin ``i``
    (Yurdakul, "Statistical Properties of Population Stability Index", 2018). It is the symmetrised
    Kullback-Leibler divergence ``KL(a||e) + KL(e||a)``: unitless, in ``[0, inf)``, 0 for
    identical shares. Rule of thumb: < 0.1 no shift, 0.1-0.25 moderate, > 0.25 major.

    Edge cases: an empty bin would make the index infinite, so a share of exactly 0 (on either
    side) is replaced by ``epsilon`` (1e-4, the common convention, e.g. Evidently), without
    renormalising; a bin empty on both sides then adds 0. The result is finite.

    Args:
        expected: reference counts (or shares), shape ``(B,)``, sum > 0.
        actual: window counts (or shares), shape ``(B,)``, sum > 0.
        epsilon: the share an empty bin is given.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e = e / e.sum()
    a = a / a.sum()
    e = np.where(e == 0, epsilon, e)
    a = np.where(a == 0, epsilon, a)
    return float(np.sum((a - e) * np.log(a / e)))


def jensenshannon(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (base 2) between two histograms (counts or shares per bin).

    ``JS = sqrt((KL(p||m) + KL(q||m)) / 2)`` with ``m = (p + q) / 2``, logarithms in base 2 (Lin,
    "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37(1), 1991;
    equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``). Unitless, in ``[0, 1]``:
    0 for identical shares, 1 for disjoint supports. Empty bins need no smoothing
    (``0 * log 0 = 0``); the result is clipped to ``[0, 1]`` against rounding.

    Args:
        p, q: counts (or shares), shape ``(B,)``, each with sum > 0.
    """
    pp = np.asarray(p, dtype=np.float64)
    qq = np.asarray(q, dtype=np.float64)
    pp = pp / pp.sum()
    qq = qq / qq.sum()
    m = (pp + qq) / 2.0
    js = (np.sum(special.rel_entr(pp, m)) + np.sum(special.rel_entr(qq, m))) / (2.0 * math.log(2.0))
    return float(min(1.0, math.sqrt(max(0.0, float(js)))))


def chi2_homogeneity(reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike) -> tuple[float, float, int]:
    """Pearson's chi-squared test of homogeneity on the 2 x B table of two samples' bucket counts.

    With row totals ``R`` (reference) and ``W`` (window), ``N = R + W`` and column totals
    ``c_j = r_j + w_j``, expected counts are ``R c_j / N`` and ``W c_j / N``;
    ``X2 = sum over both rows and all columns of (count - expected)^2 / expected``, with
    ``B' - 1`` degrees of freedom over the ``B'`` buckets either sample has (Pearson 1900; Fisher
    1922; as ``scipy.stats.chi2_contingency(table, correction=False)``, the two-sample test
    alibi-detect and NannyML use). Unlike a goodness-of-fit test it does not take the reference
    shares as exact, so its size holds whatever the two sample sizes are (a 1M-row window against
    a 100k-row reference, or a reference about the window's size). A bucket only the window has
    (an unseen category) is a column like any other. Fewer than two non-empty buckets, or an
    empty sample: nothing to test, ``(0.0, 1.0, 0)``.

    Returns:
        ``(statistic, p_value, degrees_of_freedom)``.
    """
    r = np.asarray(reference_counts, dtype=np.float64)
    w = np.asarray(window_counts, dtype=np.float64)
    keep = (r + w) > 0
    r, w = r[keep], w[keep]
    total_r, total_w = float(r.sum()), float(w.sum())
    if r.shape[0] <= 1 or total_r <= 0 or total_w <= 0:
        return 0.0, 1.0, 0
    share = (r + w) / (total_r + total_w)
    expected_r, expected_w = total_r * share, total_w * share
    statistic = float(np.sum((r - expected_r) ** 2 / expected_r) + np.sum((w - expected_w) ** 2 / expected_w))
    df = int(r.shape[0] - 1)
    return statistic, float(special.chdtrc(df, statistic)), df


def bin_counts(edges: npt.NDArray[np.float64], x: FloatArray) -> IntArray:
    """Counts of ``x`` in the bins ``edges[i-1] <= v < edges[i]``, the first open to -inf and the
    last to +inf (the profile's rule), shape ``(len(edges) + 1,)``.

    One comparison pass per edge (SIMD in numpy; cheaper than ``np.searchsorted`` or a compiled loop
    over the edges for the 9 decile edges), a binary search each beyond 32 edges.
    """
    n = x.shape[0]
    if edges.shape[0] > 32:
        return np.bincount(np.searchsorted(edges, x, side="right"), minlength=edges.shape[0] + 1).astype(np.int64)
    below = [np.count_nonzero(x < e) for e in edges]
    return np.asarray(np.diff(np.asarray([0, *below, n], dtype=np.int64)), dtype=np.int64)


def ks_statistic(sample: reference.SortedSample, x: FloatArray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``D = sup_x |F_ref(x) - F_win(x)|``.

    Equal to ``scipy.stats.ks_2samp(sample.values, x).statistic`` (bit for bit: the same
    fractions are subtracted). ``x`` is never sorted: its values are counted per slot of the
    sample (:meth:`SortedSample.slots`); ``D`` is reached either at a sample value ``u_k`` (both
    CDFs there) or just below one, at the largest window value of a gap, where the window CDF is
    the count up to the gap's end.

    Args:
        sample: the prepared reference sample (``m`` values).
        x: finite window values, shape ``(n,)``, n > 0.
    """
    return float(kernels.ks_sweep(sample.counts(x), sample.fractions, x.shape[0]))


def ks_asymptotic_pvalue(d: float, n1: int, n2: int) -> float:
    """Asymptotic two-sided p-value of the two-sample KS statistic ``d`` for sample sizes ``n1``, ``n2``.

    The one-sample KS distribution's survival function at the effective size ``en = round(n1 n2 /
    (n1 + n2))`` (Hodges 1958), as ``scipy.stats.ks_2samp(method="asymp")`` computes it with
    ``scipy.stats.kstwo.sf(d, en)``, within 2e-7 (absolute) of it:

    - in the far tail, when Kolmogorov's limiting distribution ``Q(sqrt(en) d)`` (Kolmogorov 1933;
      ``scipy.special.kolmogorov``) is below :data:`KS_TAIL`, that is the p-value (far below any
      decision threshold; the limiting value was the larger of the two in every case measured);
    - from ``en >=`` :data:`KS_PELZ_GOOD_FROM`, Pelz and Good's (1976) asymptotic series for the
      two-sided distribution, the one scipy itself takes for large ``en`` (``1 - scipy.stats._ksstats
      ._kolmogn_PelzGood``; Simard and L'Ecuyer 2011, section 4): ``kstwo.sf`` instead sums exact
      series whose cost grows with ``en`` -- 0.3-10 ms at effective sizes of 900-10,000 for p-values
      between 1e-10 and 0.02 or above 0.9999, against ~30 us for the series. Measured over the whole
      range of ``d``, its largest distance from ``kstwo.sf`` is 1.9e-7 at ``en = 400`` (where p is
      0.998) and 4e-8 from ``en = 909``; relative to p (p > 1e-9) at most 0.5 % at 400, 0.09 % at
      909 and 7e-6 at 9,901;
    - otherwise ``kstwo.sf`` itself (also when the private series is missing from scipy).
    """
    big, small = sorted((float(n1), float(n2)), reverse=True)
    en = float(np.round(big * small / (big + small)))
    limit = float(special.kolmogorov(math.sqrt(en) * d))
    if limit < KS_TAIL:
        return limit
    if en >= KS_PELZ_GOOD_FROM and _pelz_good_cdf is not None and 0.0 < d < 1.0:
        return float(np.clip(1.0 - _pelz_good_cdf(en, d, cdf=True), 0.0, 1.0))
    return float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))


def ks_2samp(sample: reference.SortedSample, x: FloatArray, method: str = "auto") -> tuple[float, float, str]:
    """Two-sample KS test of window ``x`` against the reference sample: ``(D, p_value, mode)``.

    ``D`` from :func:`ks_statistic`. The p-value is ``scipy.stats.ks_2samp(sample.values, x,
    method=mode)``'s (the asymptotic one within 2e-7), ``mode`` (returned) being ``"exact"`` or ``"asymp"``
    (:func:`ks_asymptotic_pvalue`):
    ``method="exact"``/``"asymp"`` ask for one; ``"auto"`` is exact below an effective size
    ``n1 n2 / (n1 + n2)`` of :data:`KS_EXACT_BELOW` (small samples: the exact computation costs at most
    a few ms there, and the asymptotic form is least accurate -- 10-20 % off at effective sizes of
    100-300 with samples of equal size), asymptotic above it. That is not scipy's ``"auto"`` (exact
    while both samples have at most 10,000 values): against a 10,000-value reference sample, scipy's
    exact null distribution costs 2-50 ms per column for windows of 500-10,000 rows, the asymptotic
    one ~50 us, and above the threshold they differ little where drift is decided -- measured relative
    difference at most 10 % for exact p-values >= 1e-6, samples of 800-10,000 values, equal sizes
    (the worst case) included (``tests/unit/test_stats_drift.py``), as alibi-detect (always
    asymptotic) accepts. scipy
    falls back to the asymptotic form if the exact computation fails; ``mode`` says so.
    """
    n1, n2 = sample.size, x.shape[0]
    d = ks_statistic(sample, x)
    exact = method == "exact" or (method == "auto" and n1 * n2 / max(n1 + n2, 1) < KS_EXACT_BELOW)
    if exact and d > 0:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            result = stats.ks_2samp(sample.values, x, method="exact")
        fell_back = any("asymp" in str(w.message) for w in caught)
        return d, float(result.pvalue), "asymp" if fell_back else "exact"
    if exact:
        return d, 1.0, "exact"
    return d, ks_asymptotic_pvalue(d, n1, n2), "asymp"


def wasserstein(sample: reference.SortedSample, x: FloatArray) -> float:
    """First Wasserstein (earth mover's) distance between the reference sample and ``x``.

    ``W1 = integral |F_ref(t) - F_win(t)| dt``, in the feature's units, in ``[0, inf)``; equal to
    ``scipy.stats.wasserstein_distance(sample.values, x)`` (Vaserstein 1969; Ramdas et al. 2017).
    Computed without sorting the window: between two consecutive sample values ``F_ref`` is
    constant, so a gap where ``F_win`` stays on one side of it contributes ``|F_win - F_ref|``
    integrated from the window's count before the gap and the sum of its values' distances to the
    gap's end (summed in the same pass as the counts). Only the gaps where ``F_win`` crosses ``F_ref``
    need their window values in order; those values alone are sorted (for identical distributions,
    about ``sqrt(m)`` gaps).

    Args:
        sample: the prepared reference sample (``m`` values, m > 0).
        x: finite window values, shape ``(n,)``, n > 0.
    """
    u = sample.distinct
    k_count = u.shape[0]
    n = x.shape[0]
    s = np.empty(n, dtype=np.int32)
    counts, dist = sample.counts_and_distances(x, slots=s)  # dist: sum of |u_k - v| per slot (gap k's end)
    gaps = np.empty(k_count, dtype=np.int64)
    starts = np.empty(k_count)
    total, crossing = kernels.wasserstein_sweep(counts, dist, u, sample.fractions, n, gaps, starts)
    if crossing:
        gaps, starts = gaps[:crossing], starts[:crossing]
        total += _crossing_gaps(u, x, s, counts, gaps, sample.fractions[gaps - 1], starts, n)
    return float(total)


def _crossing_gaps(
    u: FloatArray, x: FloatArray, s: npt.NDArray[np.int32], counts: npt.NDArray[np.integer[Any]], gaps: IntArray,
    level: FloatArray, lo: FloatArray, n: int,
) -> float:
    """``sum over gaps k of integral_{u_{k-1}}^{u_k} |F_win(t) - level_k| dt`` from the gaps' sorted values."""
    marked = np.zeros(counts.shape[0], dtype=bool)
    marked[2 * gaps] = True
    y = np.sort(x[marked.take(s)])  # gaps are ordered intervals: sorting the values groups them by gap
    size = counts[2 * gaps]
    starts = np.cumsum(size) - size
    rank = np.arange(y.shape[0]) - np.repeat(starts, size) + 1  # 1-based rank within the gap
    nxt = np.empty_like(y)
    nxt[:-1] = y[1:]
    nxt[starts + size - 1] = u[gaps]  # the last value of a gap runs to the gap's end
    height = np.repeat(lo, size) + rank / n
    within = float(np.sum(np.abs(height - np.repeat(level, size)) * (nxt - y)))
    first = float(np.sum(np.abs(lo - level) * (y[starts] - u[gaps - 1])))
    return within + first


# ----- windows -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class NumericWindow:
    """A window's numeric column: its finite values, and how many were missing or invalid."""

    values: FloatArray
    missing: int
    invalid: int


def numeric_window(values: Values) -> NumericWindow:
    """Read a numeric column of the window as float64 (no copy when it already is float64).

    Missing: NaN, None, ``pd.NA``. Invalid: ``±inf`` and text that is not a number.
    """
    if isinstance(values, pd.Series):
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype | pd.CategoricalDtype):
            nulls = int(values.isna().sum())
            x = pd.to_numeric(values.astype(object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            return _split_numeric(x, nulls)
        x = values.to_numpy() if values.dtype == np.float64 else values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            x = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            return numeric_window(pd.Series(np.asarray(values, dtype=object)))
    return _split_numeric(x.ravel(), None)


def _split_numeric(x: FloatArray, nulls: int | None) -> NumericWindow:
    finite = np.isfinite(x)
    kept = int(np.count_nonzero(finite))
    if kept == x.shape[0]:
        return NumericWindow(x, 0, 0)
    nan = int(np.count_nonzero(np.isnan(x)))
    missing = nan if nulls is None else nulls
    return NumericWindow(x[finite], missing, x.shape[0] - kept - missing)


@dataclasses.dataclass(frozen=True, eq=False)
class CategoricalWindow:
    """A window's categorical column: distinct values (as profile strings) and their counts."""

    values: tuple[str, ...]
    counts: IntArray
    missing: int

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def category_key(value: Any) -> str:
    """The profile's string for a window value: booleans ``"true"``/``"false"``, integral numbers
    without a decimal point, anything else ``str(value)``."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def categorical_window(values: Values) -> CategoricalWindow:
    """Count a categorical column of the window by value, in one pass over the rows: a compiled count for
    a numpy integer column of codes in ``[0, CODES)`` (:func:`roost.stats.kernels.count_codes`),
    ``np.bincount`` for other integer or boolean columns whose values span at most ``max(rows, 65536)``
    integers, else pandas hashing (``value_counts``). Values are in no particular order."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "biu":
        counted = _count_small_integers(series.to_numpy())
        if counted is not None:
            return counted
    vc = series.value_counts(dropna=True, sort=False)
    merged: dict[str, int] = {}
    for value, count in zip(vc.index, vc.to_numpy(), strict=True):
        if count > 0:
            key = category_key(value)
            merged[key] = merged.get(key, 0) + int(count)
    total = sum(merged.values())
    return CategoricalWindow(tuple(merged), np.asarray(list(merged.values()), dtype=np.int64), len(series) - total)


BINCOUNT_MIN_SPAN = 1 << 16
"""Integer windows spanning at most ``max(rows, BINCOUNT_MIN_SPAN)`` values are counted by ``np.bincount``."""
CODES = 1024
"""Integer windows whose values all lie in ``[0, CODES)`` are counted in one compiled pass."""


def _count_small_integers(a: npt.NDArray[Any]) -> CategoricalWindow | None:
    """Counts of a numpy integer or boolean array by ``np.bincount`` (no missing values are possible);
    None when the values span too many integers for a count array bounded by the window."""
    if a.dtype.kind == "b":
        counts = np.bincount(a.view(np.uint8), minlength=2)
        seen = [i for i in (0, 1) if counts[i] > 0]
        return CategoricalWindow(tuple(("false", "true")[i] for i in seen), counts[seen].astype(np.int64), 0)
    if a.shape[0] == 0:
        return CategoricalWindow((), np.zeros(0, dtype=np.int64), 0)
    counts = np.zeros(CODES, dtype=np.int64)
    if kernels.count_codes(a, counts):  # the usual case, codes 0..CODES-1: one pass, no min/max first
        present = np.flatnonzero(counts)
        return CategoricalWindow(tuple(str(int(i)) for i in present), counts[present], 0)
    low, high = int(a.min()), int(a.max())
    if high - low > max(a.shape[0], BINCOUNT_MIN_SPAN) or high > np.iinfo(np.int64).max:
        return None
    values = a.astype(np.int64, copy=False)  # holds every value (uint64 beyond int64 went above)
    counts = np.bincount(values - low if low != 0 else values)  # the true differences, in [0, high - low]
    present = np.flatnonzero(counts)
    return CategoricalWindow(tuple(str(low + int(i)) for i in present), counts[present].astype(np.int64), 0)


# ----- feature tests -----------------------------------------------------------------------------


def _insufficient(
    ref_name: str, kind: str, method: str, threshold: float, reason: str, message: str, *,
    samples: int = 0, missing: int = 0, unseen: Mapping[str, int] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> FeatureResult:
    return FeatureResult(
        name=ref_name, kind=kind, method=str(method), statistic=None, p_value=None, threshold=threshold,
        drifted=None, samples=samples, missing=missing, unseen=unseen,
        detail={"insufficient": reason, "message": message, **(detail or {})},
    )


def _sufficiency(ref_usable: bool, rows: int, samples: int, min_samples: int) -> tuple[str, str] | None:
    if not ref_usable:
        return REFERENCE_EMPTY, "the reference has no values for this feature"
    if rows == 0:
        return WINDOW_EMPTY, "the window has no rows"
    if samples == 0:
        return ALL_MISSING, f"all {rows} window values are missing or invalid"
    if samples < max(1, min_samples):
        return TOO_FEW_SAMPLES, f"{samples} usable window values, fewer than minSamples {min_samples}"
    return None


def _decide(
    name: str, kind: str, method: Method, statistic: float, p_value: float | None, threshold: float,
    samples: int, missing: int, unseen: Mapping[str, int] | None, detail: dict[str, Any],
) -> FeatureResult:
    if not math.isfinite(statistic) or (p_value is not None and not math.isfinite(p_value)):
        return _insufficient(name, kind, method, threshold, NOT_COMPUTABLE, "the statistic is not finite",
                             samples=samples, missing=missing, unseen=unseen)
    drifted = p_value < threshold if p_value is not None else statistic > threshold
    return FeatureResult(
        name=name, kind=kind, method=method.value, statistic=statistic, p_value=p_value, threshold=threshold,
        drifted=bool(drifted), samples=samples, missing=missing, unseen=unseen, detail=detail,
    )


def _numeric_test(
    ref: reference.NumericReference, values: Values | NumericWindow, method: Method, threshold: float,
    min_samples: int, ks_method: str = "auto",
) -> FeatureResult:
    window = values if isinstance(values, NumericWindow) else numeric_window(values)
    x = window.values
    n = x.shape[0]
    kind = reference.Kind.NUMERIC.value
    extra = {"invalid": window.invalid} if window.invalid else {}
    why = _sufficiency(ref.usable, n + window.missing + window.invalid, n, min_samples)
    if why is not None:
        return _insufficient(ref.name, kind, method, threshold, *why, samples=n, missing=window.missing, detail=extra)
    p_value: float | None = None
    detail: dict[str, Any]
    if method in (Method.PSI, Method.JENSENSHANNON):
        current = bin_counts(ref.edges, x)
        detail = {"edges": ref.edges.tolist(), "reference": _shares(ref.bin_counts), "current": _shares(current)}
        if method is Method.PSI:
            statistic = psi(ref.bin_counts, current)
            detail["epsilon"] = EPSILON
        else:
            statistic = jensenshannon(ref.bin_counts, current)
            detail["base"] = 2
    elif method is Method.KS:
        statistic, p_value, mode = ks_2samp(ref.sample, x, ks_method)
        detail = {"mode": mode, "referenceSample": ref.sample.size}
    elif method is Method.WASSERSTEIN:
        distance = wasserstein(ref.sample, x)
        std = ref.std if ref.std is not None and math.isfinite(ref.std) else 0.0
        scale = max(std, WASSERSTEIN_MIN_SCALE)
        statistic = distance / scale
        detail = {"distance": distance, "scale": scale, "referenceStd": ref.std, "referenceSample": ref.sample.size}
    else:
        raise errors.PermanentError(INVALID_SPEC, f"{method} is not a test for numeric features")
    return _decide(ref.name, kind, method, statistic, p_value, threshold, n, window.missing, None, {**detail, **extra})


def _shares(counts: npt.NDArray[Any]) -> list[float]:
    total = float(counts.sum())
    return (counts / total).tolist() if total > 0 else [0.0] * counts.shape[0]


def numeric_psi(
    ref: reference.NumericReference, values: Values, threshold: float, *, min_samples: int = 1,
) -> FeatureResult:
    """PSI of a numeric window on the reference's decile bins (:func:`psi`); drift when > ``threshold``.

    The bins are the profile's: interior edges at the reference deciles p10..p90, the first bin
    open to -inf and the last to +inf, so window values outside the reference range are counted
    in the end bins. Tied deciles (discrete columns) give bins empty on both sides, which add 0.
    The bins are only as fine as the reference deciles: for a constant reference column every edge
    is the constant ``c``, so all reference values sit in the last bin ``[c, +inf)``. A window
    below ``c`` gives a large PSI (``~ln(1/epsilon)`` per moved share); a window *above* ``c``
    lands in the same bin and gives 0 -- use ``ks`` or ``wasserstein`` for such columns.
    ``detail``: ``edges``, ``reference`` and ``current`` shares per bin, ``epsilon``.
    Empty, all-missing or below-``min_samples`` windows: an insufficient result (no verdict).
    """
    return _numeric_test(ref, values, Method.PSI, threshold, min_samples)


def numeric_jensenshannon(
    ref: reference.NumericReference, values: Values, threshold: float, *, min_samples: int = 1,
) -> FeatureResult:
    """Jensen-Shannon distance (base 2, in [0, 1]) of a numeric window on the reference's decile
    bins (:func:`jensenshannon`; bins as :func:`numeric_psi`); drift when > ``threshold``.

    A constant reference and a window of the same constant give 0; a window entirely in other
    bins gives 1 (a constant column moving *up* stays in the last bin: see :func:`numeric_psi`).
    ``detail``: ``edges``, ``reference`` and ``current`` shares, ``base``.
    Empty, all-missing or below-``min_samples`` windows: an insufficient result (no verdict).
    """
    return _numeric_test(ref, values, Method.JENSENSHANNON, threshold, min_samples)


def numeric_ks(
    ref: reference.NumericReference, values: Values, p_value: float, *, min_samples: int = 1, method: str = "auto",
) -> FeatureResult:
    """Two-sample Kolmogorov-Smirnov test of a numeric window against the reference's sorted
    sample (:func:`ks_2samp`; Massey, "The Kolmogorov-Smirnov test for goodness of fit", JASA
    1951; scipy.stats.ks_2samp); drift when the p-value < ``p_value``.

    ``statistic`` is ``D`` in [0, 1] (largest gap between the two empirical CDFs). The reference
    side is the profile's uniform sample (10,000 values by default), not the whole reference: the
    p-value accounts for its size. With a large window the test detects tiny shifts; pair it with
    a multiple-testing correction. A constant reference and the same constant in the window give
    ``D = 0``, p = 1. ``detail``: ``mode`` (``exact``/``asymp``), ``referenceSample``.
    Empty, all-missing or below-``min_samples`` windows: an insufficient result (no verdict).
    """
    return _numeric_test(ref, values, Method.KS, p_value, min_samples, method)


def numeric_wasserstein(
    ref: reference.NumericReference, values: Values, threshold: float, *, min_samples: int = 1,
) -> FeatureResult:
    """Wasserstein-1 distance between the reference sample and the window (:func:`wasserstein`),
    divided by the reference standard deviation; drift when > ``threshold``.

    Unitless, in ``[0, inf)``: 0.1 means the mass moves by a tenth of a reference standard deviation
    on average (a mean shift of ``d`` standard deviations gives ``d``). The divisor is the
    profile's ``std`` (ddof=1, whole reference), floored at :data:`WASSERSTEIN_MIN_SCALE` so a
    constant reference column gives a finite (and large, when the window moves) value -- the
    normalisation Evidently uses. ``detail``: ``distance`` (in the feature's units), ``scale``,
    ``referenceStd``, ``referenceSample``.
    Empty, all-missing or below-``min_samples`` windows: an insufficient result (no verdict).
    """
    return _numeric_test(ref, values, Method.WASSERSTEIN, threshold, min_samples)


def _categorical_buckets(
    ref: reference.CategoricalReference, window: CategoricalWindow,
) -> tuple[list[str], IntArray, IntArray, dict[str, int], dict[str, Any]]:
    """Buckets ``(labels, reference counts, window counts, unseen, detail)``.

    Buckets: the listed reference categories; :data:`reference.OTHER` when the reference has values
    beyond its top-k; :data:`reference.UNSEEN` when it has none and the window has unlisted values.
    Unlisted window values go to ``__other__`` when it exists (they may be among the reference's
    rarer values) and are then listed in ``detail["unlisted"]``; otherwise the reference certainly
    never saw them: they go to ``__unseen__`` and are returned as ``unseen``.
    """
    k = len(ref.categories)
    observed = np.zeros(k + 2, dtype=np.int64)
    unlisted: dict[str, int] = {}
    for value, count in zip(window.values, window.counts.tolist(), strict=True):
        i = ref.index.get(value)
        if i is None:
            unlisted[value] = count
        else:
            observed[i] = count
    unlisted_total = sum(unlisted.values())
    top = dict(heapq.nsmallest(UNSEEN_REPORTED, unlisted.items(), key=lambda kv: (-kv[1], kv[0])))
    labels = list(ref.categories)
    ref_counts = [*ref.counts[:k].tolist()]
    detail: dict[str, Any] = {}
    unseen: dict[str, int] = {}
    if ref.other > 0:
        labels.append(reference.OTHER)
        ref_counts.append(ref.other)
        observed[k] = unlisted_total
        size = k + 1
        if unlisted:
            detail.update(unlisted=top, unlistedTotal=unlisted_total, unlistedDistinct=len(unlisted))
    elif unlisted:
        labels.append(reference.UNSEEN)
        ref_counts.append(0)
        observed[k] = unlisted_total
        size = k + 1
        unseen = top
        detail.update(unseenTotal=unlisted_total, unseenDistinct=len(unlisted))
    else:
        size = k
    return labels, np.asarray(ref_counts, dtype=np.int64), observed[:size], unseen, detail


def _categorical_test(
    ref: reference.CategoricalReference, values: Values | CategoricalWindow, method: Method, threshold: float,
    min_samples: int,
) -> FeatureResult:
    window = values if isinstance(values, CategoricalWindow) else categorical_window(values)
    n = window.total
    kind = reference.Kind.CATEGORICAL.value
    why = _sufficiency(ref.usable, n + window.missing, n, min_samples)
    if why is not None:
        return _insufficient(ref.name, kind, method, threshold, *why, samples=n, missing=window.missing, unseen={})
    labels, expected, observed, unseen, detail = _categorical_buckets(ref, window)
    detail["buckets"] = labels
    p_value: float | None = None
    if method is Method.CHI2:
        statistic, p_value, df = chi2_homogeneity(expected, observed)
        column = (expected + observed) / max(1, int(expected.sum() + observed.sum()))
        want = n * column  # the window's expected counts under homogeneity
        detail.update(observed=observed.tolist(), reference=expected.tolist(), expected=want.tolist(), df=df,
                      smallExpected=int(np.count_nonzero((want < 5) & (column > 0))))
    elif method in (Method.PSI, Method.JENSENSHANNON):
        detail.update(reference=_shares(expected), current=_shares(observed))
        if method is Method.PSI:
            statistic = psi(expected, observed)
            detail["epsilon"] = EPSILON
        else:
            statistic = jensenshannon(expected, observed)
            detail["base"] = 2
    else:
        raise errors.PermanentError(INVALID_SPEC, f"{method} is not a test for categorical features")
    if not ref.exact:
        detail["referenceMaxError"] = ref.max_error
    return _decide(ref.name, kind, method, statistic, p_value, threshold, n, window.missing, unseen, detail)


def categorical_chi2(
    ref: reference.CategoricalReference, values: Values, p_value: float, *, min_samples: int = 1,
) -> FeatureResult:
    """Pearson chi-squared test of homogeneity of the window's category counts and the reference's
    (:func:`chi2_homogeneity`, the 2 x B table); drift when the p-value < ``p_value``.

    Buckets as :func:`_categorical_buckets` (listed categories, ``__other__``, ``__unseen__``). The
    reference side is the profile's counts (its rows, not shares taken as exact), so the test keeps
    its size whether the window is far smaller or far larger than the reference: a goodness-of-fit
    test against reference shares (what Evidently does) flags most unchanged columns of a 1M-row
    window against a 100k-row reference. An ``__unseen__`` bucket (reference count 0) is a column of
    its own: a few new values in a large window hardly move the statistic, a real share of them
    does. A reference with a single category and no unseen window values has one bucket:
    ``statistic = 0``, ``p = 1``, ``df = 0`` (no NaN). Reference counts from a sketch
    (``frequenciesExact: false``) are estimates (``detail["referenceMaxError"]``); listed categories
    are the reference's most frequent ones, so with many categories of similar counts the rest
    share ``__other__``.

    ``detail``: ``buckets``, ``observed`` (window counts), ``reference`` (reference counts),
    ``expected`` (the window's expected counts under homogeneity), ``df``, ``smallExpected``
    (buckets expecting fewer than 5 window values, where the chi-squared approximation is rough).
    Empty, all-missing or below-``min_samples`` windows: an insufficient result (no verdict).
    """
    return _categorical_test(ref, values, Method.CHI2, p_value, min_samples)


def categorical_psi(
    ref: reference.CategoricalReference, values: Values, threshold: float, *, min_samples: int = 1,
) -> FeatureResult:
    """PSI (:func:`psi`) of the window's category shares against the reference frequencies, over
    the buckets of :func:`categorical_chi2`; drift when > ``threshold``. An ``__unseen__`` bucket
    has reference share 0, taken as ``epsilon``. ``detail``: ``buckets``, ``reference`` and
    ``current`` shares, ``epsilon``.

    Empty, all-missing or below-``min_samples`` windows: an insufficient result (no verdict).
    """
    return _categorical_test(ref, values, Method.PSI, threshold, min_samples)


def categorical_jensenshannon(
    ref: reference.CategoricalReference, values: Values, threshold: float, *, min_samples: int = 1,
) -> FeatureResult:
    """Jensen-Shannon distance (:func:`jensenshannon`, base 2, in [0, 1]) of the window's category
    shares against the reference frequencies, over the buckets of :func:`categorical_chi2`; drift
    when > ``threshold``. ``detail``: ``buckets``, ``reference`` and ``current`` shares, ``base``.

    Empty, all-missing or below-``min_samples`` windows: an insufficient result (no verdict).
    """
    return _categorical_test(ref, values, Method.JENSENSHANNON, threshold, min_samples)


# ----- configuration -----------------------------------------------------------------------------


def features_config(config: driftpolicy.Features | Mapping[str, Any] | None) -> driftpolicy.Features:
    """The ``spec.features`` of a DriftPolicy: the model itself, or its wire (camelCase) dict.

    Raises:
        roost.errors.PermanentError: ``InvalidSpec`` when the dict does not validate.
    """
    if isinstance(config, driftpolicy.Features):
        return config
    try:
        return driftpolicy.Features.model_validate(dict(config or {}))
    except ValueError as e:  # pydantic.ValidationError is a ValueError
        raise errors.PermanentError(INVALID_SPEC, f"spec.features is invalid: {e}") from e


def _bound(method: str, threshold: float | None, p_value: float | None, where: str) -> float:
    if method in P_VALUE_METHODS:
        if p_value is None:
            raise errors.PermanentError(INVALID_SPEC, f"spec.features.{where}: {method} takes pValue")
        return float(p_value)
    if threshold is None:
        raise errors.PermanentError(INVALID_SPEC, f"spec.features.{where}: {method} takes threshold")
    return float(threshold)


def check_feature(
    ref: reference.FeatureReference | None, values: Values | None, config: driftpolicy.Features, *,
    name: str | None = None, min_samples: int = 1, why_absent: str | None = None,
) -> FeatureResult:
    """Test one feature with the method ``config`` sets for its kind (no multiple-testing correction).

    Args:
        ref: the prepared reference feature; None when the reference has no such feature.
        values: the window's column; None when the window has no such column.
        config: ``spec.features`` of the DriftPolicy.
        name: the feature's name (defaults to ``ref.name``).
        min_samples: fewer usable values than this give an insufficient result.
        why_absent: the message when ``ref`` is None (e.g. why the reference skipped the feature).
    """
    feature = name if name is not None else (ref.name if ref is not None else "?")
    if ref is None:
        method = config.numeric.method.value
        bound = _bound(method, config.numeric.threshold, config.numeric.p_value, "numeric")
        return _insufficient(feature, "unknown", method, bound, NOT_IN_REFERENCE,
                             why_absent or "the reference profile has no such feature")
    if isinstance(ref, reference.NumericReference):
        test: Any = config.numeric
        where = "numeric"
    else:
        test = config.categorical
        where = "categorical"
    method = Method(test.method.value)
    bound = _bound(method, test.threshold, test.p_value, where)
    if values is None:
        return _insufficient(feature, ref.kind.value, method, bound, NOT_IN_WINDOW, "the window has no such column",
                             unseen={} if ref.kind is reference.Kind.CATEGORICAL else None)
    if isinstance(ref, reference.NumericReference):
        return _numeric_test(ref, values, method, bound, min_samples)
    return _categorical_test(ref, values, method, bound, min_samples)
