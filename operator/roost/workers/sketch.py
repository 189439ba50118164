"""Streaming summaries for the profile worker: moments, quantiles and frequencies in bounded memory.

A Dataset's profile is the reference that drift checks compare live traffic with, so it must be
computable on files of any size. Each summary here is fed one record batch at a time and keeps a
state whose size does not grow with the number of rows:

- :class:`Moments`: count, mean, sum of squared deviations, min, max (Welford's online update, merged
  across batches with the pairwise formula of Chan, Golub & LeVeque) -- O(1) per column.
- :class:`QuantileSketch`: the KLL sketch of Karnin, Lang & Liberty ("Optimal Quantile Approximation
  in Streams", FOCS 2016), from Apache DataSketches -- O(k log(n/k)) retained values per column.
- :class:`Frequencies`: exact counts of distinct values up to a cap, then the DataSketches frequent
  items sketch (Misra-Gries / Space-Saving family) -- bounded by the cap.

The profile worker uses these for what it cannot hold; below its exact threshold it computes
quantiles exactly from one column at a time.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Iterable, Sequence

import datasketches  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_KLL_K = 1000
"""KLL accuracy parameter. k=1000 gives a normalized rank error of about 0.28% for a single quantile
at 99% confidence (:meth:`QuantileSketch.rank_error`) and keeps about 3,000 doubles (~24 KiB) however
many values are fed."""

DEFAULT_MAX_EXACT_DISTINCT = 100_000
"""Distinct values counted exactly per column before :class:`Frequencies` switches to a sketch."""

DEFAULT_FREQUENT_LG_MAX_K = 12
"""log2 of the frequent items sketch's map size (4,096 counters): its maximum error is
``epsilon * total`` with epsilon = 3.5 / 4096 ~= 0.085% of the counted values."""

OTHER = "__other__"
"""Key of the count of every value outside the top k in :meth:`Frequencies.top`."""


@dataclasses.dataclass
class Moments:
    """Count, mean, M2 (sum of squared deviations from the mean), min and max of a stream of floats.

    Batches are summarised with numpy (two-pass within the batch) and merged with the parallel
    formula of Chan, Golub & LeVeque (1979, "Updating formulae and a pairwise algorithm for computing
    sample variances"), which generalises Welford's (1962) one-value update::

        n = na + nb;  d = mean_b - mean_a
        mean = mean_a + d * nb / n
        M2 = M2_a + M2_b + d**2 * na * nb / n

    The result matches a two-pass computation over all values to a relative error near machine
    precision for data that is not pathologically ill-conditioned.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def update(self, values: FloatArray) -> None:
        """Add a batch of finite-or-infinite, non-NaN values (shape ``(m,)``, float64)."""
        nb = int(values.shape[0])
        if nb == 0:
            return
        mean_b = float(values.mean())
        m2_b = float(np.square(values - mean_b).sum())
        self.merge(Moments(nb, mean_b, m2_b, float(values.min()), float(values.max())))

    def merge(self, other: Moments) -> None:
        """Combine ``other`` into this summary (Chan et al.'s pairwise update)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            self.min, self.max = other.min, other.max
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / n
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.count = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def std(self, ddof: int = 1) -> float | None:
        """Standard deviation with ``ddof`` delta degrees of freedom (1: sample, as pandas' default)."""
        if self.count - ddof <= 0:
            return None
        return math.sqrt(self.m2 / (self.count - ddof))


class QuantileSketch:
    """A KLL quantile sketch over float64 values (Karnin, Lang & Liberty 2016; Apache DataSketches).

    Guarantee: for any single rank query, the returned value's true normalized rank differs from the
    requested one by at most :meth:`rank_error` with probability >= 99%. Memory is
    O(k log(n/k)) doubles. The sketch's compaction is randomized (unseeded in the library), so two
    runs over the same data can return slightly different values within the bound.
    """

    def __init__(self, k: int = DEFAULT_KLL_K) -> None:
        self._sketch = datasketches.kll_doubles_sketch(k)
        self.k = k

    def update(self, values: FloatArray) -> None:
        """Add a batch of non-NaN values (shape ``(m,)``, float64)."""
        if values.shape[0]:
            self._sketch.update(np.ascontiguousarray(values, dtype=np.float64))

    @property
    def count(self) -> int:
        return int(self._sketch.n)

    def rank_error(self) -> float:
        """The normalized rank error bound for a single quantile at 99% confidence (e.g. 0.0028)."""
        return float(datasketches.kll_doubles_sketch.get_normalized_rank_error(self.k, False))

    def quantiles(self, levels: Sequence[float]) -> list[float]:
        """Approximate quantiles at ``levels`` (each in [0, 1]); level 0 and 1 are the exact min/max."""
        if self.count == 0:
            raise ValueError("no values in the sketch")
        out: list[float] = []
        for q in levels:
            if q <= 0.0:
                out.append(float(self._sketch.get_min_value()))
            elif q >= 1.0:
                out.append(float(self._sketch.get_max_value()))
            else:
                out.append(float(self._sketch.get_quantile(q)))
        return out


class Frequencies:
    """Counts of string values: exact up to ``max_exact_distinct`` distinct values, then a sketch.

    While exact, :meth:`top` returns true counts. Past the cap, every count so far is fed into a
    DataSketches ``frequent_strings_sketch`` (Misra-Gries / Space-Saving family, Agarwal et al.,
    "Mergeable Summaries", 2012), whose estimates are within :attr:`max_error` of the truth; memory
    stays at ``max_exact_distinct`` entries before and ``2**lg_max_k`` counters after.
    """

    def __init__(
        self, max_exact_distinct: int = DEFAULT_MAX_EXACT_DISTINCT, lg_max_k: int = DEFAULT_FREQUENT_LG_MAX_K
    ) -> None:
        self.max_exact_distinct = max_exact_distinct
        self.lg_max_k = lg_max_k
        self.total = 0
        self._exact: dict[str, int] | None = {}
        self._sketch: datasketches.frequent_strings_sketch | None = None

    @property
    def exact(self) -> bool:
        """Whether the counts are exact (the distinct values never exceeded the cap)."""
        return self._exact is not None

    @property
    def max_error(self) -> int:
        """Largest possible difference between a reported and a true count (0 while exact)."""
        if self._sketch is None:
            return 0
        return math.ceil(float(self._sketch.epsilon) * self.total)

    def update(self, values: Iterable[str], counts: Iterable[int]) -> None:
        """Add ``counts[i]`` occurrences of ``values[i]`` (e.g. one batch's ``value_counts``)."""
        if self._exact is not None:
            exact = self._exact
            for value, count in zip(values, counts, strict=True):
                exact[value] = exact.get(value, 0) + count
                self.total += count
            if len(exact) > self.max_exact_distinct:
                self._to_sketch()
            return
        assert self._sketch is not None
        for value, count in zip(values, counts, strict=True):
            self._sketch.update(value, count)
            self.total += count

    def _to_sketch(self) -> None:
        assert self._exact is not None
        self._sketch = datasketches.frequent_strings_sketch(self.lg_max_k)
        for value, count in self._exact.items():
            self._sketch.update(value, count)
        self._exact = None

    def distinct(self) -> int | None:
        """Number of distinct values, or None once past the exact cap."""
        return None if self._exact is None else len(self._exact)

    def counts(self) -> dict[str, int]:
        """Every value's count while exact; after, the sketch's estimates for the values that are
        certainly frequent (count above :attr:`max_error`; no false positives)."""
        if self._exact is not None:
            return dict(self._exact)
        assert self._sketch is not None
        items = self._sketch.get_frequent_items(datasketches.frequent_items_error_type.NO_FALSE_POSITIVES)
        return {str(item): int(estimate) for item, estimate, _lower, _upper in items}

    def top(self, k: int) -> dict[str, int]:
        """The ``k`` most frequent values with their counts, then :data:`OTHER` with the rest.

        Ties are broken by value (ascending) so the output is deterministic; :data:`OTHER` is
        ``total - sum(top k)`` and is always present (0 when nothing else occurred).
        """
        counts = self.counts()
        best = heapq.nsmallest(k, counts.items(), key=lambda kv: (-kv[1], kv[0]))
        out = dict(best)
        out[OTHER] = max(0, self.total - sum(out.values()))
        return out
