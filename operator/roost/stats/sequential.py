"""Confidence sequences: bounds that hold at every sample size at once, so a canary may be judged
after every batch of requests without inflating its error rates.

A *confidence sequence* ``(L_t, U_t)`` for a parameter ``theta`` satisfies
``P(for all t: L_t <= theta <= U_t) >= 1 - alpha``: unlike a confidence interval, it stays valid
under continuous monitoring and optional stopping. Everything here is built from nonnegative
(super)martingales ``M_t`` with ``M_0 = 1`` ("e-processes") and Ville's inequality
``P(exists t: M_t >= 1/alpha) <= alpha`` (Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), 2021 — "Howard et al."
below). A test of ``H0`` rejects the first time ``log M_t >= log(1/alpha)``; a confidence sequence
is the set of parameter values not (yet) rejected.

What is here, all vectorised over numpy arrays, all in log space:

* :func:`normal_mixture_rho`, :func:`normal_mixture_log_e`, :func:`normal_mixture_bound`,
  :func:`normal_mixture_bound_closed` — Robbins' normal-mixture boundary for a sub-Gaussian sum
  ``S_t`` with variance process ``V_t`` (Robbins 1970; Howard et al. Sec. 3 and eq. (14)). Reference
  boundaries; the canary uses the exact Bernoulli mixtures below.
* :func:`beta_binomial_log_e`, :func:`beta_binomial_prior`, :func:`bernoulli_bounds` — the
  beta-binomial (conjugate) mixture for a Bernoulli mean: the sub-Bernoulli mixture of Howard et al.
  (Sec. 3, "beta-binomial") with range ``g = p``, ``h = 1 - p``, exact for 0/1 outcomes. One-sided
  versions mix only over alternatives on one side of ``p`` (a truncated, renormalised prior).
* :func:`plug_in_block_log_e` — two-sample e-processes for the difference of two Bernoulli means
  ``p_c - p_s`` against ``<= d`` or ``>= d``: a predictable plug-in alternative against the null's
  reverse information projection, block by block (growth-optimal e-variables for 2x2 tables,
  Turner, Ly & Grünwald 2024, extended to shifted nulls). The projection is a constrained maximum
  likelihood with the closed form of Miettinen & Nurminen (Stat. Med. 4, 1985) / Farrington &
  Manning (Stat. Med. 9, 1990): :func:`restricted_mle`.
* :func:`quantile_bounds` — a confidence sequence for a fixed quantile from a histogram, after
  Howard & Ramdas, "Sequential estimation of quantiles with applications to A/B-testing and best-arm
  identification", Bernoulli 28(3), 2022 (their Thm. 1 idea: ``1{X < q_p}`` is Bernoulli(``<= p``)),
  evaluated at histogram edges so the bounds are conservative by at most one bin. Its count
  thresholds depend on the sample size only: :func:`quantile_thresholds` caches them and searches
  from the last answer (exactly: the e-process is monotone in the count).

Assumptions: observations are independent; for the one-sample sequences, one stream has one fixed
distribution (a Bernoulli mean, a latency distribution) for the whole sequence; the two-sample
e-processes only need each block to satisfy the null (rates may move between blocks). Bernoulli
outcomes are bounded by construction, so no variance assumption is needed. Observations may arrive
in batches of any size: a batch boundary is just a time at which the (super)martingale is looked at.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]
Side = Literal["greater", "less", "two-sided"]

#: Bisection steps for bounds found by inverting tests (precision 2**-14 of the bracket: about 1e-5
#: or better for a share; the bound returned is always the rejected, conservative end).
BISECTION_STEPS = 14


def _arr(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Normal mixture (Robbins 1970; Howard et al. 2021)
# --------------------------------------------------------------------------------------------


def normal_mixture_rho(v_opt: float, alpha_opt: float, *, one_sided: bool = True) -> float:
    """The mixture variance ``rho`` that makes the normal-mixture boundary tightest near ``v_opt``.

    ``rho = v_opt / (2 log(1/a) + log(1 + 2 log(1/a)))`` with ``a = alpha_opt`` (two-sided) or
    ``a = 2 alpha_opt`` (one-sided) — Howard et al. (2021), Sec. 3.5 / their ``confseq`` package.

    Args:
        v_opt: intrinsic time (variance process value) at which to optimise, ``> 0``.
        alpha_opt: crossing probability for which to optimise, in ``(0, 1)``.
        one_sided: optimise the one-sided boundary.
    """
    a = 2 * alpha_opt if one_sided else alpha_opt
    log_inv = math.log(1 / a)
    return v_opt / (2 * log_inv + math.log(1 + 2 * log_inv))


def normal_mixture_log_e(s: npt.ArrayLike, v: npt.ArrayLike, rho: float, *, one_sided: bool = True) -> FloatArray:
    """Log of Robbins' normal-mixture supermartingale for a sub-Gaussian sum ``S_t`` with variance ``V_t``.

    Two-sided (mixing ``exp(lambda S - lambda^2 V / 2)`` over ``lambda ~ N(0, 1/rho)``)::

        log M = 1/2 log(rho / (V + rho)) + S^2 / (2 (V + rho))

    One-sided (``lambda`` half-normal, so only ``S > 0`` is evidence)::

        log M = 1/2 log(4 rho / (V + rho)) + S^2 / (2 (V + rho)) + log Phi(S / sqrt(V + rho))
    """
    s_, v_ = _arr(s), _arr(v)
    total = v_ + rho
    out = s_ * s_ / (2 * total)
    if one_sided:
        return _arr(0.5 * np.log(4 * rho / total) + out + special.log_ndtr(s_ / np.sqrt(total)))
    return _arr(0.5 * np.log(rho / total) + out)


def normal_mixture_bound(v: npt.ArrayLike, alpha: float, rho: float, *, one_sided: bool = True) -> FloatArray:
    """The boundary ``u(v)`` with ``P(exists t: S_t >= u(V_t)) <= alpha`` (``|S_t|`` when two-sided).

    Two-sided, closed form (Robbins 1970; Howard et al. 2021, Sec. 3)::

        u(v) = sqrt((v + rho) * log((v + rho) / (rho * alpha^2)))

    One-sided: the exact root of ``normal_mixture_log_e(u, v) = log(1/alpha)`` (bisection), which is
    below :func:`normal_mixture_bound_closed`.
    """
    v_ = _arr(v)
    two = np.sqrt((v_ + rho) * (np.log1p(v_ / rho) + 2 * math.log(1 / alpha)))
    if not one_sided:
        return _arr(two)
    lo, hi = np.zeros_like(two), two  # the one-sided e-value dominates the two-sided one for s >= 0
    threshold = math.log(1 / alpha)
    for _ in range(60):
        mid = (lo + hi) / 2
        above = normal_mixture_log_e(mid, v_, rho, one_sided=True) >= threshold
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return _arr(hi)


def normal_mixture_bound_closed(v: npt.ArrayLike, alpha: float, rho: float) -> FloatArray:
    """Closed-form one-sided normal-mixture boundary (Howard et al. 2021, eq. (14))::

        u(v) = sqrt(2 (v + rho) * log(sqrt((v + rho) / rho) / (2 alpha) + 1))

    A slightly conservative upper bound on the exact one-sided boundary.
    """
    v_ = _arr(v)
    return _arr(np.sqrt(2 * (v_ + rho) * np.log(np.sqrt((v_ + rho) / rho) / (2 * alpha) + 1)))


# --------------------------------------------------------------------------------------------
# Beta-binomial mixture for one Bernoulli mean
# --------------------------------------------------------------------------------------------


def bernoulli_log_likelihood(successes: npt.ArrayLike, trials: npt.ArrayLike, p: npt.ArrayLike) -> FloatArray:
    """``k log p + (n - k) log(1 - p)``, with ``0 log 0 = 0``."""
    k, n, p_ = _arr(successes), _arr(trials), _arr(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _arr(special.xlogy(k, p_) + special.xlog1py(n - k, -p_))


def _log_beta_tail(a: FloatArray, b: FloatArray, x: FloatArray, upper: bool) -> FloatArray:
    """``log`` of the Beta(a, b) mass above (``upper``) or below ``x``; ``-inf`` when it underflows."""
    with np.errstate(divide="ignore"):
        tail = special.betaincc(a, b, x) if upper else special.betainc(a, b, x)
        return _arr(np.log(tail))


def beta_binomial_log_e(
    successes: npt.ArrayLike, trials: npt.ArrayLike, p: npt.ArrayLike, a: npt.ArrayLike, b: npt.ArrayLike,
    *, side: Side = "greater",
) -> FloatArray:
    """Log e-value against "the Bernoulli mean is ``p``" from ``k`` successes in ``n`` trials.

    The mixture likelihood ratio with a Beta(a, b) prior ``pi`` on the alternative mean ``q``::

        M_n(p) = int (q/p)^k ((1-q)/(1-p))^(n-k) dpi(q | q in A) ,
        log M  = log B(a+k, b+n-k) - log B(a, b) + log pi_post(A) - log pi(A) - k log p - (n-k) log(1-p)

    where ``A = (p, 1]`` for ``side="greater"`` (evidence that the mean exceeds ``p``), ``[0, p)`` for
    ``"less"`` and ``[0, 1]`` for ``"two-sided"``; ``pi_post(A)`` is the Beta(a+k, b+n-k) mass of
    ``A``. Under mean ``p`` it is a martingale; one-sided, it is also a supermartingale under every
    mean on the null side (``<= p`` for ``"greater"``), so it tests the composite one-sided null.
    It is increasing in ``k`` for ``"greater"`` and decreasing for ``"less"``. With
    ``a, b = beta_binomial_prior(p, ...)`` it is exactly Howard et al.'s beta-binomial mixture for the
    sub-Bernoulli sum ``S = k - n p`` with ``g = p``, ``h = 1 - p`` (``V = n p (1 - p)``).

    All arguments broadcast; ``k`` and ``n`` may be non-integer (Howard et al. evaluate the boundary
    at real ``S``).
    """
    k, n, p_, a_, b_ = (_arr(x) for x in (successes, trials, p, a, b))
    post_a, post_b = a_ + k, b_ + n - k
    log_e = special.betaln(post_a, post_b) - special.betaln(a_, b_) - bernoulli_log_likelihood(k, n, p_)
    if side == "greater":
        log_e = log_e + _log_beta_tail(post_a, post_b, p_, True) - _log_beta_tail(a_, b_, p_, True)
    elif side == "less":
        log_e = log_e + _log_beta_tail(post_a, post_b, p_, False) - _log_beta_tail(a_, b_, p_, False)
    with np.errstate(invalid="ignore"):
        return _arr(np.where(np.isnan(log_e), -np.inf, log_e))


def beta_binomial_prior(
    p: npt.ArrayLike, v_opt: npt.ArrayLike, alpha_opt: npt.ArrayLike, *, one_sided: bool = True,
) -> tuple[FloatArray, FloatArray]:
    """Howard et al.'s tuned Beta prior on the mean ``q`` for a test of mean ``p``.

    ``r = max(rho - p(1-p), 1e-3 p(1-p))`` with ``rho = normal_mixture_rho(v_opt, alpha_opt)``, and
    ``q ~ Beta(r / (1-p), r / p)``: centred at ``p`` with ``a + b = r / (p (1-p))`` — the boundary is
    tightest when the variance process ``n p (1-p)`` is near ``v_opt``.

    Returns:
        ``(a, b)``, broadcast over ``p``, ``v_opt`` and ``alpha_opt``.
    """
    p_ = np.clip(_arr(p), 1e-12, 1 - 1e-12)
    v_ = _arr(v_opt)
    log_inv = -np.log(2 * _arr(alpha_opt) if one_sided else _arr(alpha_opt))
    rho = v_ / (2 * log_inv + np.log1p(2 * log_inv))
    gh = p_ * (1 - p_)
    r = np.maximum(rho - gh, 1e-3 * gh)
    return _arr(r / (1 - p_)), _arr(r / p_)


def bernoulli_bounds(
    successes: npt.ArrayLike, trials: npt.ArrayLike, alpha: npt.ArrayLike, *, n_opt: float = 1000.0,
) -> tuple[FloatArray, FloatArray]:
    """One-sided confidence-sequence bounds for Bernoulli means: each bound fails with probability
    ``<= alpha`` over all times (so ``[lower, upper]`` is a ``1 - 2 alpha`` sequence).

    ``lower = inf{p : beta_binomial_log_e(k, n, p, side="greater") < log(1/alpha)}`` and
    ``upper = sup{p : beta_binomial_log_e(k, n, p, side="less") < log(1/alpha)}``, with the prior
    tuned per ``p`` by :func:`beta_binomial_prior` at ``n_opt`` trials; found by bisection (the
    rejected set is an interval at each end in practice), returning the conservative end.

    Returns:
        ``(lower, upper)`` arrays broadcast over ``successes``, ``trials`` and ``alpha``; ``(0, 1)``
        where ``trials == 0``.
    """
    k, n, level = np.broadcast_arrays(_arr(successes), _arr(trials), _arr(alpha))
    threshold: FloatArray = -np.log(level)
    p_hat = np.divide(k, n, out=np.zeros_like(k), where=n > 0)

    def rejects(p: FloatArray, side: Side) -> npt.NDArray[np.bool_]:
        a, b = beta_binomial_prior(p, p * (1 - p) * n_opt, level)
        return np.asarray(beta_binomial_log_e(k, n, p, a, b, side=side) >= threshold, dtype=np.bool_)

    # Brackets: a generous normal-approximation width around p_hat, used where its far end is
    # rejected (one evaluation), else the whole side; then bisection, keeping the rejected end.
    with np.errstate(divide="ignore", invalid="ignore"):
        width = 4 * np.sqrt(2 * threshold * np.maximum(p_hat * (1 - p_hat), 1 / np.maximum(n, 1)) /
                            np.maximum(n, 1)) + 4 / np.maximum(n, 1)
    far = np.clip(p_hat - width, 0.0, 1.0)
    lo = np.where((far > 0) & rejects(np.maximum(far, 1e-300), "greater"), far, 0.0)
    hi = p_hat.copy()
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        r = rejects(mid, "greater")
        lo, hi = np.where(r, mid, lo), np.where(r, hi, mid)
    lower = np.where((n > 0) & (k > 0), lo, 0.0)
    far = np.clip(p_hat + width, 0.0, 1.0)
    hi = np.where((far < 1) & rejects(np.minimum(far, 1 - 1e-16), "less"), far, 1.0)
    lo = p_hat.copy()
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        r = rejects(mid, "less")
        lo, hi = np.where(r, lo, mid), np.where(r, mid, hi)
    upper = np.where((n > 0) & (k < n), hi, 1.0)
    return _arr(lower), _arr(upper)


# --------------------------------------------------------------------------------------------
# Two proportions: p_c - p_s
# --------------------------------------------------------------------------------------------


def restricted_mle(
    k1: npt.ArrayLike, n1: npt.ArrayLike, k2: npt.ArrayLike, n2: npt.ArrayLike, d: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Maximum-likelihood ``(p1, p2)`` of two binomials under ``p1 - p2 = d`` (closed form).

    The root of the likelihood equation is the cubic of Miettinen & Nurminen (1985) / Farrington &
    Manning (1990): with ``theta = n2/n1``, ``a = 1 + theta``,
    ``b = -(1 + theta + x1 + theta x2 + d (theta + 2))``,
    ``c = d^2 + d (2 x1 + theta + 1) + x1 + theta x2``, ``e = -x1 d (1 + d)`` (``x = k/n``)::

        v = b^3/(3a)^3 - b c/(6 a^2) + e/(2a);  u = sign(v) sqrt(b^2/(3a)^2 - c/(3a))
        w = (pi + arccos(v / u^3)) / 3;         p1 = 2 u cos(w) - b/(3a);  p2 = p1 - d

    Both ``n`` must be positive. All arguments broadcast.
    """
    d_ = _arr(d)
    k1, n1, k2, n2 = _arr(k1), _arr(n1), _arr(k2), _arr(n2)
    x1, x2 = k1 / n1, k2 / n2
    theta = n2 / n1
    a = 1 + theta
    b = -(1 + theta + x1 + theta * x2 + d_ * (theta + 2))
    c = d_ * d_ + d_ * (2 * x1 + theta + 1) + x1 + theta * x2
    e = -x1 * d_ * (1 + d_)
    v = b**3 / (3 * a) ** 3 - b * c / (6 * a * a) + e / (2 * a)
    u = np.sign(v) * np.sqrt(np.maximum(b * b / (3 * a) ** 2 - c / (3 * a), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(u != 0, v / u**3, 0.0)
    w = (math.pi + np.arccos(np.clip(ratio, -1.0, 1.0))) / 3
    lo, hi = np.maximum(0.0, d_), np.minimum(1.0, 1.0 + d_)
    p1 = np.clip(2 * u * np.cos(w) - b / (3 * a), lo, hi)
    # a Newton step on the score polishes the closed form's rounding (the optimality condition is
    # what :func:`plug_in_block_log_e` relies on)
    with np.errstate(divide="ignore", invalid="ignore"):
        p2 = p1 - d_
        score = n1 * (x1 - p1) / (p1 * (1 - p1)) + n2 * (x2 - p2) / (p2 * (1 - p2))
        curve = -(n1 * (x1 / p1**2 + (1 - x1) / (1 - p1) ** 2) + n2 * (x2 / p2**2 + (1 - x2) / (1 - p2) ** 2))
        step = np.where(np.isfinite(score / curve), score / curve, 0.0)
        p1 = np.clip(p1 - step, lo, hi)
    return _arr(p1), _arr(p1 - d_)


def plug_in_block_log_e(
    k_c: npt.ArrayLike, n_c: npt.ArrayLike, k_s: npt.ArrayLike, n_s: npt.ArrayLike,
    q_c: npt.ArrayLike, q_s: npt.ArrayLike, d: npt.ArrayLike, *, greater: npt.ArrayLike,
) -> FloatArray:
    """Log factor, for one block of new observations, of the e-processes against
    ``H0: p_c - p_s <= d`` (where ``greater``) or ``p_c - p_s >= d`` (elsewhere), one per ``d``.

    A block holds ``n_c >= 1`` new candidate observations (``k_c`` of them events, e.g. 5xx) and
    ``n_s >= 1`` new stable ones. ``(q_c, q_s)``, both in ``(0, 1)``, is the alternative the block
    bets on: it must be *predictable* — fixed before the block's outcomes are seen (an estimate from
    earlier blocks). When ``q_c - q_s`` is on the null's side of ``d`` the block bets nothing
    (factor 1). Otherwise the factor is the likelihood ratio of the alternative to the null's *reverse
    information projection* ``(r + d, r)``::

        r = argmax_r  n_c KL-fit(q_c -> r + d) + n_s KL-fit(q_s -> r)      (:func:`restricted_mle`)
        log F = k_c log(q_c/(r+d)) + (n_c-k_c) log((1-q_c)/(1-r-d)) + k_s log(q_s/r) + (n_s-k_s) log((1-q_s)/(1-r))

    Why ``E[F] <= 1`` under every null point: for Bernoulli(p) and any q, r,
    ``E[(q/r)^X ((1-q)/(1-r))^(1-X)] = 1 + (p - r) A`` with ``A = (q - r)/(r (1-r))``. The optimality
    condition of ``r`` is ``n_c A_c + n_s A_s = 0``. On the null line (``p_c - p_s = d``) both
    versions share ``u = p_s - r``, so by Jensen ``log E[F] = n_c log(1 + u A_c) + n_s log(1 + u A_s)
    <= (n_c + n_s) log(1 + u (n_c A_c + n_s A_s)/(n_c + n_s)) = 0``. Off the line, inside the null,
    the candidate's term only shrinks (``A_c > 0`` and ``p_c - r - d <= u`` when betting on
    ``greater``; both signs flip otherwise). So the running product of factors is a test
    supermartingale, and Ville's inequality bounds the chance it ever reaches ``1/alpha`` by ``alpha`` — at every ``d``,
    under any block sizes fixed independently of the outcomes, and even when the true rates change
    from block to block (as long as each block satisfies the null).

    This is the growth-optimal (GRO) e-variable for two Bernoulli samples — the null's reverse
    information projection is the product at the pooled rate (Turner, Ly & Grünwald, "Generic
    E-variables for exact sequential k-sample tests that allow for optional stopping", Stat. Probab.
    Lett. 2024; Grünwald, de Heide & Koolen, "Safe testing", JRSS B 2024) — extended here to the
    shifted null ``p_c - p_s = d`` by the argument above, with a predictable plug-in alternative
    (as in Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS B
    2024). Unlike a mixture over both rates divided by the null's maximum likelihood, it pays no
    ``1/2 log n`` price for the unknown stable rate: the common rate cancels.

    All arguments broadcast (e.g. ``d`` over a grid, or everything over simulated runs).

    Returns:
        ``log F`` per ``d`` (0 where the block does not bet).
    """
    d_ = _arr(d)
    k_c, n_c, k_s, n_s, q_c, q_s = (_arr(x) for x in (k_c, n_c, k_s, n_s, q_c, q_s))
    up = np.asarray(greater, dtype=bool)
    bet = np.where(up, q_c - q_s > d_, q_c - q_s < d_)
    r_c, r_s = restricted_mle(n_c * q_c, n_c, n_s * q_s, n_s, d_)
    inside = (r_c > 0) & (r_c < 1) & (r_s > 0) & (r_s < 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_c, a_s = (q_c - r_c) / (r_c * (1 - r_c)), (q_s - r_s) / (r_s * (1 - r_s))
        # the optimality condition the validity argument needs; never bet where it fails numerically
        optimal = np.abs(n_c * a_c + n_s * a_s) <= 1e-9 * (np.abs(n_c * a_c) + np.abs(n_s * a_s)) + 1e-12
        log_f = (k_c * np.log(q_c / r_c) + (n_c - k_c) * np.log((1 - q_c) / (1 - r_c))
                 + k_s * np.log(q_s / r_s) + (n_s - k_s) * np.log((1 - q_s) / (1 - r_s)))
    return _arr(np.where(bet & inside & optimal & np.isfinite(log_f), log_f, 0.0))


# --------------------------------------------------------------------------------------------
# Quantiles from a histogram
# --------------------------------------------------------------------------------------------


def quantile_bounds(
    below: npt.ArrayLike, n: int, p: float, *, alpha_lower: float, alpha_upper: float, n_opt: float = 1000.0,
) -> tuple[int | None, int | None]:
    """Confidence-sequence bounds on the ``p``-quantile ``q_p`` of one stream, as edge indices.

    ``below[i]`` is ``#{X < x_i}`` for increasing edges ``x_0 < x_1 < ...`` (include ``x = 0`` with
    count 0 and ``x = +inf`` with count ``n`` to cover everything). For the true quantile
    ``q_p = inf{x: F(x) >= p}``, ``B = #{X <= q_p}`` is a sum of Bernoulli variables with mean
    ``F(q_p) >= p`` and ``B' = #{X < q_p}`` one with mean ``F(q_p-) <= p`` — whatever the
    distribution. One e-process each (:func:`beta_binomial_log_e` at the known ``p``) gives:

    * lower: edges with ``log E_less(below[i]) >= log(1/alpha_lower)`` lie at or below ``q_p``
      (if ``x_i > q_p`` then ``below[i] >= B``, and ``E_less`` decreases in the count), so
      ``q_p >= x_lower`` with ``lower`` the largest such index;
    * upper: edges with ``log E_greater(below[i]) >= log(1/alpha_upper)`` lie above ``q_p``,
      so ``q_p < x_upper`` with ``upper`` the smallest such index.

    Both hold at all times with probability ``>= 1 - alpha`` each (Howard & Ramdas 2022, Thm. 1's
    argument, applied at the histogram's edges: the bounds are conservative by at most one bin).
    Priors are tuned at ``n_opt`` observations (:func:`beta_binomial_prior`).

    Returns:
        ``(lower, upper)`` indices into the edges; ``None`` when no edge qualifies.
    """
    counts = _arr(below)
    k_lo, k_hi = quantile_thresholds(n, p, alpha_lower, alpha_upper, n_opt)
    lower = upper = None
    if k_lo is not None:  # edges whose count is <= k_lo are rejected: the last of them
        i = int(np.searchsorted(counts, k_lo, side="right")) - 1
        lower = i if i >= 0 else None
    if k_hi is not None:  # edges whose count is >= n - k_hi are rejected: the first of them
        i = int(np.searchsorted(counts, n - k_hi, side="left"))
        upper = i if i < counts.shape[0] else None
    return lower, upper


@functools.lru_cache(maxsize=4096)
def quantile_thresholds(
    n: int, p: float, alpha_lower: float, alpha_upper: float, n_opt: float = 1000.0,
) -> tuple[int | None, int | None]:
    """The count thresholds behind :func:`quantile_bounds`, which depend on ``n`` only (cached).

    ``k_lo``: the largest count ``k`` with ``log E_less(k) >= log(1/alpha_lower)`` — an edge with at
    most ``k_lo`` observations below it lies at or below ``q_p``; ``k_hi``: the largest ``k`` with
    ``log E_greater(n - k) >= log(1/alpha_upper)`` — an edge with at least ``n - k_hi`` observations
    below it lies above ``q_p``. ``None`` when no count qualifies. In order statistics: the lower
    bound is the edge at or below the ``(k_lo + 1)``-th smallest observation, the upper bound the edge
    above the ``(n - k_hi)``-th.
    """
    lo_a, lo_b = beta_binomial_prior(p, p * (1 - p) * n_opt, alpha_lower)
    hi_a, hi_b = beta_binomial_prior(p, p * (1 - p) * n_opt, alpha_upper)
    t_lo, t_hi = math.log(1 / alpha_lower), math.log(1 / alpha_upper)
    # With k/n >= p, E_less <= 1 (every alternative q < p fits worse than p), so only counts below
    # n p can reject "F >= p"; mirror for the upper bound.
    k_lo = _last_true(lambda k: beta_binomial_log_e(k, n, p, lo_a, lo_b, side="less") >= t_lo,
                      0, math.floor(n * p), _hint(("lo", p, alpha_lower, n_opt), n, p))
    k_hi = _last_true(lambda k: beta_binomial_log_e(n - k, n, p, hi_a, hi_b, side="greater") >= t_hi,
                      0, n - math.ceil(n * p), _hint(("hi", p, alpha_upper, n_opt), n, 1 - p))
    _HINTS[("lo", p, alpha_lower, n_opt)] = (n, k_lo)
    _HINTS[("hi", p, alpha_upper, n_opt)] = (n, k_hi)
    return k_lo, k_hi


#: The last threshold found per (side, p, level, n_opt): a guess for the next ``n`` (speed only —
#: the search is exact whatever the guess).
_HINTS: dict[tuple[str, float, float, float], tuple[int, int | None]] = {}


def _hint(key: tuple[str, float, float, float], n: int, slope: float) -> int | None:
    last = _HINTS.get(key)
    if last is None or last[1] is None:
        return None
    return round(last[1] + (n - last[0]) * slope)


def _last_true(
    holds: Callable[[FloatArray], npt.NDArray[np.bool_]], lo: int, hi: int, hint: int | None = None,
) -> int | None:
    """The largest integer ``k`` in ``[lo, hi]`` where ``holds`` (true up to some point, then false), or
    ``None``; first on a window around ``hint`` (one vectorised call, exact when the change from true
    to false lies inside it), else on a coarse grid, then on every integer of the bracket."""
    if hi < lo:
        return None
    if hint is not None:
        a, b = max(lo, hint - 8), min(hi, hint + 8)
        if a <= b:
            ks = np.arange(a, b + 1)
            ok = np.asarray(holds(ks.astype(np.float64)), dtype=bool)
            if ok[0] and (not ok[-1] or b == hi):
                return int(ks[np.flatnonzero(ok)[-1]])
            if not ok[0] and a == lo:
                return None
    if not bool(holds(np.array([float(lo)]))[0]):
        return None
    while hi - lo > 64:
        grid = np.unique(np.linspace(lo, hi, 33).round().astype(np.int64))
        ok = np.asarray(holds(grid.astype(np.float64)), dtype=bool)
        j = int(np.flatnonzero(ok)[-1]) if ok.any() else 0
        if j == grid.size - 1:
            return int(grid[j])
        lo, hi = int(grid[j]), int(grid[j + 1]) - 1
    ks = np.arange(lo, hi + 1)
    ok = np.asarray(holds(ks.astype(np.float64)), dtype=bool)
    return int(ks[np.flatnonzero(ok)[-1]])
