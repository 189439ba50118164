"""Prepared references: a Dataset profile turned, once, into the arrays the drift tests read.

A DriftPolicy compares live traffic with the profile the Dataset worker wrote
(:func:`roost.workers.profile.build_profile`); reference rows are never read again. This module
turns that JSON document into per-feature arrays, so that a check only streams the current window:

- numeric features: the profile's decile histogram (the 9 interior edges -- bins open to -inf and
  +inf at the ends -- and the reference count in each of the 10 bins), and its capped, sorted
  uniform sample as a :class:`SortedSample` (distinct values, cumulative counts and a lookup grid
  that places a million values among them in one compiled pass);
- categorical and boolean features: the listed top-k values and counts, then ``__other__`` for the
  rest of the reference;
- datetime features are not tested; they are listed in :attr:`Reference.skipped`.

The profile format (``kind: DatasetProfile``, ``version: 1``) is documented in
:func:`roost.workers.profile.build_profile`. A document of another kind or version, or a feature
whose arrays are inconsistent, is refused with :class:`roost.errors.PermanentError`
(reason ``ReferenceInvalid``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from roost import errors
from roost.stats import kernels

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

PROFILE_KIND = "DatasetProfile"
PROFILE_VERSIONS = (1,)
OTHER = "__other__"
"""The profile's bucket for reference values outside its listed top-k."""
UNSEEN = "__unseen__"
"""The drift tests' bucket for window values that the reference certainly never saw."""
REFERENCE_INVALID = "ReferenceInvalid"

# The lookup grid of a SortedSample: about GRID_CELLS_PER_VALUE cells per distinct sample value, at
# most GRID_MAX_CELLS (2 bytes a cell below 32,767 distinct values, else 4), over the sample's
# [0.5%, 99.5%] range; values beyond it fall into the two end cells.
GRID_CELLS_PER_VALUE = 8
GRID_MIN_CELLS = 64
GRID_MAX_CELLS = 1 << 17
GRID_TRIM = 0.005
_SIGN_MASK = np.int64(0x7FFF_FFFF_FFFF_FFFF)
_INT64 = np.iinfo(np.int64)


class Kind(StrEnum):
    """How a feature is tested: numeric (histogram + sample) or categorical (frequencies)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


def ordered_bits(x: FloatArray) -> npt.NDArray[np.int64]:
    """Map finite float64 values to int64 keys with the same order (``-0.0`` is taken as ``+0.0``).

    The IEEE 754 bit pattern of a non-negative double, read as an integer, grows with the value;
    for negative doubles the magnitude bits are flipped. The key space is roughly logarithmic in the
    value, which spreads heavy-tailed samples evenly over an equal-width grid of keys.
    """
    bits = (x + 0.0).view(np.int64)  # x + 0.0 turns -0.0 into +0.0
    return bits ^ ((bits >> 63) & _SIGN_MASK)


@dataclasses.dataclass(frozen=True, eq=False)
class SortedSample:
    """A sorted reference sample, prepared for locating many values at once.

    The arrays are read-only. :meth:`slots` answers, for every value of ``x``, where it falls among
    the sample's distinct values ``u_0 < ... < u_{K-1}``: slot ``2k`` is the open gap
    ``(u_{k-1}, u_k)`` (``k = 0``: below ``u_0``; ``k = K``: above ``u_{K-1}``) and slot ``2k + 1``
    is the value ``u_k`` itself -- exactly ``2 * searchsorted(u, x, "left") + (x == u[k])``;
    :meth:`counts` and :meth:`counts_and_distances` count the values per slot without keeping the
    slots.

    ``np.searchsorted`` of a million unsorted values into 10,000 costs ~100-150 ns a value (a
    cache-unfriendly binary search each), more than sorting the window. The slots are found instead
    through an equal-width grid of cells (built on first use; in value space, or in
    :func:`ordered_bits` key space for heavy tails, whichever leaves less of the sample in crowded
    cells) by one compiled pass (:func:`roost.stats.kernels.locate`): a value in a cell holding at
    most one distinct sample value is settled by one comparison; only values in cells holding
    several go through a binary search, within the cell (about 0.5 % of them for a normal sample).
    The cell of a value is a monotone function of it, so the result equals ``searchsorted``'s
    exactly. The grid holds ~8 cells per distinct value, at most 2**17 cells of 2 bytes (4 bytes
    from 32,767 distinct values).

    Attributes:
        values: the sample, sorted, finite (shape ``(m,)``).
        distinct: its distinct values ``u`` (shape ``(K,)``).
        cumulative: ``cumulative[k]`` = number of sample values ``<= u_k`` (shape ``(K,)``, int64).
        fractions: ``F_ref(u_k) = cumulative[k] / m`` (shape ``(K,)``).
    """

    values: FloatArray
    distinct: FloatArray
    cumulative: npt.NDArray[np.int64]
    fractions: FloatArray
    _grid: list[_Grid] = dataclasses.field(default_factory=list, repr=False)  # built on first use

    @property
    def size(self) -> int:
        """Number of sample values ``m``."""
        return int(self.values.shape[0])

    @classmethod
    def build(cls, values: npt.ArrayLike) -> SortedSample:
        """Prepare a sample: keep its finite values, sort them and count ties."""
        v = np.asarray(values, dtype=np.float64).ravel()
        v = np.sort(v[np.isfinite(v)])
        distinct, counts = np.unique(v, return_counts=True)
        cumulative = np.cumsum(counts, dtype=np.int64)
        return cls(values=_readonly(v), distinct=_readonly(distinct), cumulative=_readonly(cumulative),
                   fractions=_readonly(cumulative / max(v.shape[0], 1)))

    @property
    def grid(self) -> _Grid:
        """The lookup grid (built on first use, then kept: the sample is read-only)."""
        if not self._grid:
            self._grid.append(_Grid.build(self.values, self.distinct))
        return self._grid[0]

    def slots(self, x: FloatArray) -> npt.NDArray[np.int32]:
        """Where each value of ``x`` falls among the distinct sample values (see the class docstring).

        Args:
            x: finite float64 values, shape ``(n,)``, in any order.

        Returns:
            int32 array of shape ``(n,)`` with values in ``[0, 2K]``.
        """
        slots = np.empty(x.shape[0], dtype=np.int32)
        self.grid.locate(x, slots=slots)
        return slots

    def counts(self, x: FloatArray) -> npt.NDArray[np.integer[Any]]:
        """Number of values of ``x`` (finite float64, shape ``(n,)``) in each slot, shape ``(2K + 1,)``:
        ``np.bincount(self.slots(x), minlength=2K + 1)`` (int32; int64 from 2**31 values)."""
        return self.grid.locate(x)[0]

    def counts_and_distances(self, x: FloatArray, slots: npt.NDArray[np.int32] | None = None
                             ) -> tuple[npt.NDArray[np.integer[Any]], FloatArray]:
        """:meth:`counts`, and per slot the sum of ``|end - v|`` over its values, ``end`` being the
        end of the value's gap (``u_k`` for slots ``2k`` and ``2k + 1``; ``u_{K-1}`` above the
        sample): float64 ``(2K + 1,)``. Writes each value's slot into ``slots`` when given."""
        return self.grid.locate(x, distances=True, slots=slots)


@dataclasses.dataclass(frozen=True, eq=False)
class _Grid:
    """Equal-width cells over a monotone transform of the values (see :class:`SortedSample`).

    ``first[c]`` is the index of the first distinct value at or after cell ``c``'s start when the
    cell holds at most one distinct value, else ``-(index + 1)``; one more entry closes the table
    (``K``). ``u`` is the distinct values followed by ``+inf``; ``ends`` each gap's end.
    """

    mode: str  # "linear": cell = clip(x * scale + offset); "bits": cell = (clip(key) - base) >> shift
    scale: float = 0.0
    offset: float = 0.0
    cells: int = 0
    base: int = 0
    top: int = 0
    shift: int = 0
    first: npt.NDArray[np.integer[Any]] = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    u: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0))
    ends: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0))
    crowded_mass: int = 0

    @classmethod
    def build(cls, values: FloatArray, u: FloatArray) -> _Grid:
        if u.shape[0] == 0:  # an empty sample: every value is in slot 0
            return cls(mode="linear", first=_readonly(np.zeros(2, np.int16)), u=_readonly(np.array([np.inf])),
                       ends=_readonly(np.zeros(1)))
        last = values.shape[0] - 1
        lo, hi = float(values[int(GRID_TRIM * last)]), float(values[math.ceil((1 - GRID_TRIM) * last)])
        if not hi > lo:
            lo, hi = float(u[0]), float(u[-1])
        cells = min(GRID_MAX_CELLS, max(GRID_MIN_CELLS, 1 << (GRID_CELLS_PER_VALUE * u.shape[0] - 1).bit_length()))
        counts = np.diff(np.searchsorted(values, u, side="right"), prepend=0)
        candidates = [g.with_tables(u, counts) for g in (_linear_grid(lo, hi, cells), _bits_grid(lo, hi, cells))
                      if g is not None]
        return min(candidates, key=lambda g: g.crowded_mass)

    @property
    def ncells(self) -> int:
        """Number of cells (the table holds one more entry)."""
        return self.cells + 3 if self.mode == "linear" else ((self.top - self.base) >> self.shift) + 1

    def with_tables(self, u: FloatArray, counts: npt.NDArray[np.int64]) -> _Grid:
        """This grid with its cell table, built from the distinct values' own cells."""
        gu = self.cell_of(u)
        first = np.searchsorted(gu, np.arange(self.ncells + 1), side="left")
        crowded = np.diff(first) > 1
        table = first.astype(np.int16 if u.shape[0] < np.iinfo(np.int16).max else np.int32)
        table[:-1][crowded] = -first[:-1][crowded] - 1
        return dataclasses.replace(self, first=_readonly(table), u=_readonly(np.append(u, np.inf)),
                                   ends=_readonly(np.append(u, u[-1])), crowded_mass=int(counts[crowded[gu]].sum()))

    def _cell_function(self) -> tuple[bool, float, float, float, int, int, int]:
        """The arguments of the compiled cell function (:func:`roost.stats.kernels.locate`)."""
        return self.mode == "linear", self.scale, self.offset, float(self.cells + 2), self.base, self.top, self.shift

    def cell_of(self, x: FloatArray) -> IntArray:
        """The cell of each (finite) value: a monotone non-decreasing function of the value, computed by
        the same compiled function that :meth:`locate` reads the table with."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        cells = np.empty(x.shape[0], dtype=np.intp)
        kernels.cells(x, x.view(np.int64), *self._cell_function(), self.ncells - 1, cells)
        return cells

    def locate(self, x: FloatArray, distances: bool = False, slots: npt.NDArray[np.int32] | None = None
               ) -> tuple[npt.NDArray[np.integer[Any]], FloatArray]:
        """Counts per slot (and distance sums when asked; slots written when given) of ``x``."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        size = 2 * self.u.shape[0] - 1
        counts = np.zeros(size, dtype=np.int32 if x.shape[0] < np.iinfo(np.int32).max else np.int64)
        dist = np.zeros(size if distances else 0)
        kernels.locate(x, x.view(np.int64), *self._cell_function(), self.first, self.u, counts, self.ends, dist,
                       np.empty(0, np.int32) if slots is None else slots, distances, slots is not None)
        return counts, dist


def _linear_grid(lo: float, hi: float, cells: int) -> _Grid | None:
    if not hi > lo:  # a single distinct value: the bits grid holds it
        return None
    scale = cells / (hi - lo)
    if not (math.isfinite(scale) and scale > 0):
        return None
    return _Grid(mode="linear", scale=scale, offset=1.0 - lo * scale, cells=cells)


def _bits_grid(lo: float, hi: float, cells: int) -> _Grid | None:
    klo, khi = (int(k) for k in ordered_bits(np.array([lo, hi])))
    shift = max(0, ((khi - klo) // cells).bit_length())
    base, top = klo - (1 << shift), khi + (1 << shift)
    if base < _INT64.min or top > _INT64.max:  # pragma: no cover - finite doubles leave room
        return None
    return _Grid(mode="bits", base=base, top=top, shift=shift)


@dataclasses.dataclass(frozen=True, eq=False)
class NumericReference:
    """A numeric feature of the reference, prepared.

    Attributes:
        name: the feature.
        count: non-missing reference values; ``missing``: missing ones.
        mean, std: the reference moments (``std`` with ddof=1; None below 2 values).
        minimum, maximum: the reference range (None when the column was empty).
        edges: the 9 interior decile edges, ascending (ties possible); bin ``i`` holds
            ``edges[i-1] <= v < edges[i]``, bin 0 is open to -inf and bin 9 to +inf.
        bin_counts: reference values per bin (shape ``(len(edges) + 1,)``, int64).
        sample: the profile's sorted uniform sample, prepared.
    """

    name: str
    count: int
    missing: int
    mean: float | None
    std: float | None
    minimum: float | None
    maximum: float | None
    edges: FloatArray
    bin_counts: npt.NDArray[np.int64]
    sample: SortedSample

    @property
    def kind(self) -> Kind:
        return Kind.NUMERIC

    @property
    def usable(self) -> bool:
        """Whether the reference has values to compare with (a histogram and a sample)."""
        return self.count > 0 and int(self.bin_counts.sum()) > 0 and self.sample.size > 0


@dataclasses.dataclass(frozen=True, eq=False)
class CategoricalReference:
    """A categorical (or boolean) feature of the reference, prepared.

    Attributes:
        name: the feature.
        count: non-missing reference values (the sum of ``counts``); ``missing``: missing ones.
        categories: the listed values, most frequent first (booleans are ``"true"``/``"false"``).
        counts: reference count of each listed value, then of :data:`OTHER` (int64,
            shape ``(len(categories) + 1,)``).
        exact: whether the counts are exact (else sketch estimates within ``max_error``).
        max_error: largest possible error of a listed count.
        index: position of each listed value in ``categories``.
    """

    name: str
    count: int
    missing: int
    categories: tuple[str, ...]
    counts: npt.NDArray[np.int64]
    exact: bool
    max_error: int
    index: Mapping[str, int]

    @property
    def kind(self) -> Kind:
        return Kind.CATEGORICAL

    @property
    def other(self) -> int:
        """Reference values outside the listed categories (the profile's :data:`OTHER`)."""
        return int(self.counts[-1])

    @property
    def usable(self) -> bool:
        return self.count > 0


FeatureReference = NumericReference | CategoricalReference


@dataclasses.dataclass(frozen=True, eq=False)
class Reference:
    """The prepared reference of a Dataset version.

    Attributes:
        digest: the source digest the profile describes.
        rows: reference rows.
        features: prepared features by name, in the profile's order.
        target: the prepared target (for prediction drift), or None when its type is not tested.
        skipped: features that are not tested, with why (e.g. ``"datetime features are not tested"``).
    """

    digest: str | None
    rows: int
    features: Mapping[str, FeatureReference]
    target: FeatureReference | None
    skipped: Mapping[str, str]


def prepare(profile: Mapping[str, Any]) -> Reference:
    """Turn a Dataset profile document into a prepared :class:`Reference`.

    Args:
        profile: the JSON document written by the profile worker (``kind: DatasetProfile``).

    Returns:
        The prepared reference; preparing costs a sort and a few passes over each sample (10,000
        values by default), so a check prepares once and tests many windows.

    Raises:
        roost.errors.PermanentError: ``ReferenceInvalid`` for another kind or version of document,
            or a feature whose fields are missing or inconsistent.
    """
    if profile.get("kind") != PROFILE_KIND or profile.get("version") not in PROFILE_VERSIONS:
        raise errors.PermanentError(
            REFERENCE_INVALID,
            f"expected a {PROFILE_KIND} document of version {PROFILE_VERSIONS}, "
            f"got kind {profile.get('kind')!r} version {profile.get('version')!r}",
        )
    features: dict[str, FeatureReference] = {}
    skipped: dict[str, str] = {}
    for doc in profile.get("features") or []:
        prepared = prepare_feature(doc)
        if prepared is None:
            skipped[str(doc.get("name"))] = f"{doc.get('type')} features are not tested"
        else:
            features[prepared.name] = prepared
    target_doc = profile.get("target")
    return Reference(
        digest=profile.get("digest"),
        rows=int(profile.get("rows") or 0),
        features=features,
        target=prepare_feature(target_doc) if target_doc else None,
        skipped=skipped,
    )


def prepare_feature(doc: Mapping[str, Any]) -> FeatureReference | None:
    """Prepare one feature document of a profile; None for a type that is not tested (datetime).

    Raises:
        roost.errors.PermanentError: ``ReferenceInvalid`` when the document is malformed.
    """
    name = doc.get("name")
    try:
        kind = doc["type"]
        if kind == "numeric":
            return _prepare_numeric(doc)
        if kind in ("categorical", "boolean"):
            return _prepare_categorical(doc)
        return None
    except (KeyError, TypeError, ValueError) as e:
        raise errors.PermanentError(REFERENCE_INVALID, f"profile feature {name!r} is malformed: {e!r}") from e


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _prepare_numeric(doc: Mapping[str, Any]) -> NumericReference:
    name = str(doc["name"])
    histogram = doc.get("histogram")
    if histogram:
        edges = np.asarray(histogram["edges"], dtype=np.float64)[1:-1]
        counts = np.asarray(histogram["counts"], dtype=np.int64)
        if counts.shape[0] != edges.shape[0] + 1 or np.any(np.diff(edges) < 0) or np.any(counts < 0):
            raise ValueError(f"histogram has {counts.shape[0]} counts for {edges.shape[0]} interior edges")
    else:
        edges, counts = np.zeros(0), np.zeros(1, dtype=np.int64)
    sample = np.asarray([np.nan if v is None else v for v in doc.get("sample") or []], dtype=np.float64)
    return NumericReference(
        name=name,
        count=int(doc["count"]),
        missing=int(doc.get("missing") or 0),
        mean=_optional_float(doc.get("mean")),
        std=_optional_float(doc.get("std")),
        minimum=_optional_float(doc.get("min")),
        maximum=_optional_float(doc.get("max")),
        edges=_readonly(edges),
        bin_counts=_readonly(counts),
        sample=SortedSample.build(sample),
    )


def _prepare_categorical(doc: Mapping[str, Any]) -> CategoricalReference:
    name = str(doc["name"])
    frequencies: Mapping[str, Any] = doc.get("frequencies") or {}
    categories = tuple(str(k) for k in frequencies if k != OTHER)
    counts = np.asarray([*(frequencies[k] for k in categories), frequencies.get(OTHER, 0)], dtype=np.int64)
    if np.any(counts < 0):
        raise ValueError("negative frequency")
    return CategoricalReference(
        name=name,
        count=int(counts.sum()),
        missing=int(doc.get("missing") or 0),
        categories=categories,
        counts=_readonly(counts),
        exact=bool(doc.get("frequenciesExact", True)),
        max_error=int(doc.get("frequencyMaxError") or 0),
        index={c: i for i, c in enumerate(categories)},
    )
