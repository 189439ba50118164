"""Compiled loops (numba) for the passes of the drift tests that cannot be one numpy call.

A numpy pipeline over a million values spends most of its time in memory traffic between its
vectorised steps (each step writes an array the next one reads) and in ``np.bincount``'s own
range check. The loops here read each window value once and keep all they touch in cache:

- :func:`locate` places values among a sorted sample's distinct values through the equal-width
  lookup grid of :class:`roost.stats.reference.SortedSample` and counts them per slot, optionally
  summing each slot's distances to its gap's end (Wasserstein) and writing each value's slot;
- :func:`ks_sweep` and :func:`wasserstein_sweep` turn those counts into the statistics;
- :func:`count_codes` counts a categorical column of small integer codes.

They are compiled once per machine (numba's on-disk cache, ``cache=True``; the first call of a
fresh install compiles for about a second) and run without the GIL. Inputs are trusted: the
callers in :mod:`roost.stats.reference` and :mod:`roost.stats.drift` pass finite float64 values and
tables they built; an index is clamped where a value could fall outside its table, never read past.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

F = TypeVar("F", bound=Callable[..., Any])

_SIGN_MASK = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def _jit(fn: F) -> F:
    return cast(F, numba.njit(cache=True, nogil=True, boundscheck=False)(fn))


@_jit
def _cell_linear(v: float, scale: float, offset: float, top: float, last: int) -> int:
    c = int(min(max(v * scale + offset, 0.0), top))
    return min(max(c, 0), last)  # only a NaN could leave the table; it lands in an end cell


@_jit
def _cell_bits(v: float, bits: int, base: int, key_top: int, shift: int, last: int) -> int:
    key = 0 if v == 0.0 else int(bits ^ ((bits >> 63) & _SIGN_MASK))  # roost.stats.reference.ordered_bits
    key = min(max(key, base), key_top)
    c = (np.uint64(key) - np.uint64(base)) >> np.uint64(shift)  # unsigned: the widest ranges pass 2**63
    return int(np.int64(min(c, np.uint64(last))))


@_jit
def _cell(v: float, bits: int, linear: bool, scale: float, offset: float, top: float, base: int, key_top: int,
          shift: int, last: int) -> int:
    return _cell_linear(v, scale, offset, top, last) if linear else _cell_bits(v, bits, base, key_top, shift, last)


@_jit
def cells(
    x: npt.NDArray[np.float64], xbits: npt.NDArray[np.int64], linear: bool, scale: float, offset: float,
    top: float, base: int, key_top: int, shift: int, last: int, out: npt.NDArray[np.intp],
) -> None:
    """Write the grid cell of each value of ``x`` into ``out`` (shape ``(n,)``): the cell function of
    :func:`locate` (arguments as there; ``last`` the last cell), so that the table built from the
    sample's own cells is read with exactly the function that built it."""
    for i in range(x.shape[0]):
        out[i] = _cell(x[i], xbits[i], linear, scale, offset, top, base, key_top, shift, last)


@_jit
def locate(
    x: npt.NDArray[np.float64], xbits: npt.NDArray[np.int64], linear: bool, scale: float, offset: float,
    top: float, base: int, key_top: int, shift: int, first: npt.NDArray[np.integer[Any]], u: npt.NDArray[np.float64],
    counts: npt.NDArray[np.integer[Any]], ends: npt.NDArray[np.float64], dist: npt.NDArray[np.float64],
    slots: npt.NDArray[np.int32], want_dist: bool, want_slots: bool,
) -> None:
    """Place each value of ``x`` among the distinct sample values and count it in its slot.

    Slot ``2k`` is the open gap below ``u[k]``, slot ``2k + 1`` the value ``u[k]`` itself (see
    :class:`roost.stats.reference.SortedSample`); the result equals ``2 * searchsorted(u, x, "left")
    + (x == u[k])``.

    Args:
        x: finite values, shape ``(n,)``; ``xbits``: the same memory read as int64 (``x.view``),
            used by the ``bits`` grid only.
        linear, scale, offset, top, base, key_top, shift: the grid's cell function (``linear``: cell
            ``clip(x * scale + offset, 0, top)``; else ``(clip(key, base, key_top) - base) >> shift``
            on :func:`roost.stats.reference.ordered_bits` keys).
        first: per cell (one more entry than cells, the last ``K``), the index of the first distinct
            value at or after the cell's start when the cell holds at most one distinct value, else
            ``-(index + 1)`` (a crowded cell: its values are found by binary search within it).
        u: the ``K`` distinct values followed by ``+inf`` (shape ``(K + 1,)``).
        counts: integers ``(2K + 1,)``, added to.
        ends: ``(K + 1,)``, the end of each gap ``k`` (``u[k]``; the last gap's start ``u[K-1]``);
            ``dist``: float64 ``(2K + 1,)``, added ``|ends[k] - v|`` per value when ``want_dist``.
        slots: int32 ``(n,)``, each value's slot when ``want_slots``.
    """
    last = first.shape[0] - 2
    for i in range(x.shape[0]):
        v = x[i]
        c = _cell(v, xbits[i], linear, scale, offset, top, base, key_top, shift, last)
        k = first[c]
        if k >= 0:
            k += u[k] < v  # the cell's one value, if any, is u[k]; u[k + 1] lies in a later cell
        else:
            lo = -k - 1
            f = first[c + 1]
            hi = f if f >= 0 else -f - 1
            while lo < hi:
                mid = (lo + hi) >> 1
                if u[mid] < v:
                    lo = mid + 1
                else:
                    hi = mid
            k = lo
        s = 2 * k + (u[k] == v)
        counts[s] += 1
        if want_dist:
            dist[s] += abs(ends[k] - v)
        if want_slots:
            slots[i] = s


@_jit
def ks_sweep(counts: npt.NDArray[np.integer[Any]], fractions: npt.NDArray[np.float64], n: int) -> float:
    """Two-sample KS statistic ``D`` from a window's slot counts (:func:`locate`, ``n`` values) and the
    sample's ``F_ref(u_k)`` (``fractions``, shape ``(K,)``).

    ``F_ref - F_win`` is evaluated at each sample value (slot ``2k + 1``) and just below it (the
    largest window value of gap ``2k``), with the fractions scipy's ``ks_2samp`` subtracts, in the
    same float operations, so ``D`` is equal bit for bit (see :func:`roost.stats.drift.ks_statistic`).
    Where the window count does not change, ``F_win`` is constant and ``F_ref`` does not decrease, so
    a run of slots without window values reaches its least difference at its first slot and its
    greatest at its last: only those are evaluated (a 1,000-row window touches at most ~2,000 of a
    10,000-value sample's 20,001 slots).
    """
    slots = counts.shape[0]
    c = counts[0]
    low = -c / n  # slot 0: below u_0, F_ref = 0
    high = -np.inf
    for t in range(1, slots):
        if counts[t] != 0:
            high = max(high, (fractions[t // 2 - 1] if t > 1 else 0.0) - c / n)  # the run before t ends at t - 1
            c += counts[t]
            low = min(low, fractions[(t + 1) // 2 - 1] - c / n)  # a run starts at t
    high = max(high, fractions[fractions.shape[0] - 1] - c / n)  # the last run ends above u_{K-1}
    return float(max(high, min(1.0, max(0.0, -low))))


@_jit
def wasserstein_sweep(
    counts: npt.NDArray[np.integer[Any]], dist: npt.NDArray[np.float64], u: npt.NDArray[np.float64],
    fractions: npt.NDArray[np.float64], n: int, gaps: npt.NDArray[np.int64], starts: npt.NDArray[np.float64],
) -> tuple[float, int]:
    """``integral |F_ref - F_win|`` over the gaps between sample values where ``F_win`` stays on one
    side of ``F_ref`` (see :func:`roost.stats.drift.wasserstein`), from the window's slot counts and
    distance sums (:func:`locate`) and the sample's ``F_ref(u_k)`` (``fractions``). The gaps where it
    crosses are listed instead: their numbers ``k`` in ``gaps[:j]`` and ``F_win`` at their starts in
    ``starts[:j]`` (both shape ``(K,)``).

    Returns:
        (the sum over the gaps that do not cross and the two open ends, ``j``).
    """
    k_count = u.shape[0]
    total = (dist[0] + dist[2 * k_count]) / n  # below u_0 (F_ref = 0) and above u_{K-1} (F_ref = 1)
    j = 0
    c = counts[0] + counts[1]
    lo = c / n  # F_win at the start of gap k (after the atom u_{k-1})
    for k in range(1, k_count):
        level = fractions[k - 1]  # F_ref in gap k, between u_{k-1} and u_k
        width = u[k] - u[k - 1]
        inside = counts[2 * k]
        if inside == 0:
            total += abs(lo - level) * width
        else:
            c += inside
            hi = c / n  # F_win at the gap's end
            if lo >= level:
                total += (lo - level) * width + dist[2 * k] / n  # dist: the gap's values' sum of (u_k - v)
            elif hi <= level:
                total += (level - lo) * width - dist[2 * k] / n
            else:
                gaps[j] = k
                starts[j] = lo
                j += 1
        if counts[2 * k + 1] != 0 or inside != 0:
            c += counts[2 * k + 1]
            lo = c / n
    return total, j


@_jit
def count_codes(a: npt.NDArray[np.integer[Any]], counts: npt.NDArray[np.int64]) -> bool:
    """Add to ``counts`` (shape ``(C,)``) how often each integer ``0 <= v < C`` occurs in ``a``, in one
    pass; False, with ``counts`` partly filled, as soon as a value falls outside ``[0, C)``."""
    size = counts.shape[0]
    for v in a:
        if v < 0 or v >= size:
            return False
        counts[v] += 1
    return True
