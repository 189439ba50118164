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
* :func:`two_proportion_log_e`, :func:`difference_bounds` — a two-sample test for the difference
  of two Bernoulli means ``p_c - p_s``: a mixture likelihood over both arms divided by the likelihood
  maximised over the null (the sequential "universal inference" construction, Wasserman, Ramdas &
  Balakrishnan, PNAS 117(29), 2020, Sec. 7; for 2x2 tables cf. Turner, Ly & Grünwald, "Generic
  E-variables for exact sequential k-sample tests that allow for optional stopping", Stat. Probab.
  Lett. 2024). The null's constrained maximum likelihood has the closed form of Miettinen & Nurminen
  (Stat. Med. 4, 1985) / Farrington & Manning (Stat. Med. 9, 1990): :func:`restricted_mle`.
* :func:`quantile_bounds` — a confidence sequence for a fixed quantile from a histogram, after
  Howard & Ramdas, "Sequential estimation of quantiles with applications to A/B-testing and best-arm
  identification", Bernoulli 28(3), 2022 (their Thm. 1 idea: ``1{X < q_p}`` is Bernoulli(``<= p``)),
  evaluated at histogram edges so the bounds are conservative by at most one bin.

Assumptions, shared by everything here: observations are independent; within one stream they have
one fixed distribution (a Bernoulli mean, a latency distribution) for the whole sequence. Bernoulli
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
from scipy import optimize, special

FloatArray = npt.NDArray[np.float64]
Side = Literal["greater", "less", "two-sided"]

#: Points per posterior in the quadrature bounds of :func:`_region_probability` (they cost at most
#: about 0.05 in log-evidence, always in the conservative direction).
QUADRATURE_POINTS = 48
#: Bisection steps for bounds found by inverting tests (precision 2**-24 of the bracket).
BISECTION_STEPS = 24


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

    # lower: rejected (side greater) below the root, accepted at p_hat; keep the rejected end
    lo, hi = np.zeros_like(p_hat), p_hat.copy()
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        r = rejects(mid, "greater")
        lo, hi = np.where(r, mid, lo), np.where(r, hi, mid)
    lower = np.where((n > 0) & (k > 0), lo, 0.0)
    lo, hi = p_hat.copy(), np.ones_like(p_hat)
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
    k1: float, n1: float, k2: float, n2: float, d: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Maximum-likelihood ``(p1, p2)`` of two binomials under ``p1 - p2 = d`` (closed form).

    The root of the likelihood equation is the cubic of Miettinen & Nurminen (1985) / Farrington &
    Manning (1990): with ``theta = n2/n1``, ``a = 1 + theta``,
    ``b = -(1 + theta + x1 + theta x2 + d (theta + 2))``,
    ``c = d^2 + d (2 x1 + theta + 1) + x1 + theta x2``, ``e = -x1 d (1 + d)`` (``x = k/n``)::

        v = b^3/(3a)^3 - b c/(6 a^2) + e/(2a);  u = sign(v) sqrt(b^2/(3a)^2 - c/(3a))
        w = (pi + arccos(v / u^3)) / 3;         p1 = 2 u cos(w) - b/(3a);  p2 = p1 - d

    Both ``n`` must be positive. ``d`` may be an array.
    """
    d_ = _arr(d)
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
    p1 = 2 * u * np.cos(w) - b / (3 * a)
    p1 = np.clip(p1, np.maximum(0.0, d_), np.minimum(1.0, 1.0 + d_))
    return _arr(p1), _arr(p1 - d_)


def _beta_sd(a: float, b: float) -> float:
    return math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def _grid(a: float, b: float, shift: float) -> FloatArray:
    mean, sd = a / (a + b), _beta_sd(a, b)
    return _arr(np.linspace(mean - 10 * sd, mean + 10 * sd, QUADRATURE_POINTS) - shift)


def _region_probability(
    c: tuple[float, float], s: tuple[float, float], d: float, *, greater: bool, bound: Literal["lower", "upper"],
) -> float:
    """A rigorous lower or upper bound on ``P(q_c - q_s > d)`` (``greater``) or ``P(q_c - q_s < d)``
    for independent ``q_c ~ Beta(*c)``, ``q_s ~ Beta(*s)``.

    ``P = int f_s(x) G(x + d) dx`` with ``G = P(q_c > .)`` (decreasing) or ``P(q_c < .)``
    (increasing). On cells ``[x_j, x_j+1]`` of a grid covering both posteriors, replacing ``G`` by its
    value at the cell end where it is smallest (largest) gives a lower (upper) Riemann bound. Bounds,
    not approximations, keep the resulting e-values valid.
    """
    x = np.concatenate(([0.0, 1.0], _grid(*s, 0.0), _grid(*c, d)))
    x = np.unique(np.clip(x, 0.0, 1.0))
    mass = np.diff(special.betainc(s[0], s[1], x))
    y = np.clip(x + d, 0.0, 1.0)
    g = special.betaincc(c[0], c[1], y) if greater else special.betainc(c[0], c[1], y)
    # G decreasing (greater): min on a cell at its right end; increasing: at its left end.
    take_right = greater == (bound == "lower")
    edge = g[1:] if take_right else g[:-1]
    return float(np.clip(np.sum(mass * edge), 0.0, 1.0))


BetaMixture = tuple[tuple[float, float, float], ...]
"""A prior as a finite mixture of Beta distributions: ``((weight, a, b), ...)``, weights summing to 1."""


@functools.lru_cache(maxsize=512)
def _prior_region_probability(prior_c: BetaMixture, prior_s: BetaMixture, d: float, greater: bool) -> float:
    total = 0.0
    for w_c, a_c, b_c in prior_c:
        for w_s, a_s, b_s in prior_s:
            total += w_c * w_s * _region_probability((a_c, b_c), (a_s, b_s), d, greater=greater, bound="upper")
    return min(total, 1.0)


def two_proportion_log_e(
    k_c: float, n_c: float, k_s: float, n_s: float, d: float, *,
    side: Literal["greater", "less"], prior_c: BetaMixture, prior_s: BetaMixture, threshold: float | None = None,
) -> float:
    """Log e-value against ``H0: p_c - p_s <= d`` (``side="greater"``) or ``p_c - p_s >= d`` (``"less"``).

    ::

        log E = log int int L_c(q_c) L_s(q_s) dpi(q_c, q_s | A)  -  sup_{H0} log L_c(p_c) L_s(p_s)

    ``L`` are the Bernoulli likelihoods of each version's ``k`` of ``n``; ``pi`` independent priors
    (finite Beta mixtures) restricted to the alternative ``A`` (``q_c - q_s > d`` or ``< d``).
    Because the mixing distribution is fixed in advance, the numerator over the likelihood at the
    *true* null parameter is a test martingale; the maximum over the null is at least that
    likelihood, so ``E`` is dominated by a test martingale and Ville's inequality applies for every
    null parameter at once (Wasserman, Ramdas & Balakrishnan 2020). Valid whatever the traffic split,
    and under a split that changes over time independently of the outcomes. The numerator is
    ``sum_ij w_i w_j marginal_ci marginal_sj P_post,ij(A) / P_prior(A)``, with ``P_post`` bounded from
    below and ``P_prior`` from above (:func:`_region_probability`), so rounding never inflates ``E``.
    The null maximum sits on the line ``p_c - p_s = d`` (:func:`restricted_mle`) unless the
    unrestricted estimate is already null.

    Args:
        k_c, n_c: candidate outcomes (e.g. 5xx responses) and requests; ``n_c >= 1``.
        k_s, n_s: the same for the stable version; ``n_s >= 1``.
        d: the null's boundary, e.g. ``0`` (fail: worse than stable) or the margin (pass).
        prior_c, prior_s: the mixing priors, see :data:`BetaMixture`.
        threshold: when given, and a cheap upper bound on ``log E`` (``P_post(A) <= 1``) is below
            it, that bound is returned instead: the comparison with ``threshold`` is unchanged.
    """
    greater = side == "greater"
    p_prior = _prior_region_probability(prior_c, prior_s, float(d), greater)
    x_c, x_s = k_c / n_c, k_s / n_s
    null_holds = (x_c - x_s <= d) if greater else (x_c - x_s >= d)
    if null_holds:
        p_c, p_s = x_c, x_s
    else:
        r1, r2 = restricted_mle(k_c, n_c, k_s, n_s, d)
        p_c, p_s = float(r1), float(r2)
    log_null = float(bernoulli_log_likelihood(k_c, n_c, p_c) + bernoulli_log_likelihood(k_s, n_s, p_s))
    if p_prior <= 0.0:
        return -math.inf
    pairs = []
    for w_c, a_c, b_c in prior_c:
        post_c = (a_c + k_c, b_c + n_c - k_c)
        m_c = float(special.betaln(*post_c) - special.betaln(a_c, b_c))
        for w_s, a_s, b_s in prior_s:
            post_s = (a_s + k_s, b_s + n_s - k_s)
            m_s = float(special.betaln(*post_s) - special.betaln(a_s, b_s))
            if w_c > 0.0 and w_s > 0.0:
                pairs.append((math.log(w_c) + math.log(w_s) + m_c + m_s, post_c, post_s))
    if not pairs:
        return -math.inf
    log_mixture = float(special.logsumexp([p[0] for p in pairs]))
    head = log_mixture - math.log(p_prior) - log_null
    if threshold is not None and head < threshold:
        return head
    terms = []
    for log_weight, post_c, post_s in pairs:
        if log_weight < log_mixture - 40:  # under e**-40 of the total: dropping it only lowers E
            continue
        p_post = _region_probability(post_c, post_s, d, greater=greater, bound="lower")
        if p_post > 0.0:
            terms.append(log_weight + math.log(p_post))
    if not terms:
        return -math.inf
    return float(special.logsumexp(terms)) - math.log(p_prior) - log_null


def difference_bounds(
    k_c: float, n_c: float, k_s: float, n_s: float, *, alpha_lower: float, alpha_upper: float,
    prior_c: BetaMixture, prior_s: BetaMixture,
) -> tuple[float, float]:
    """Confidence-sequence bounds for ``p_c - p_s``: the lower one fails with probability
    ``<= alpha_lower``, the upper one with ``<= alpha_upper``, over all times.

    ``lower = sup{d : two_proportion_log_e(d, "greater") >= log(1/alpha_lower)}``, ``upper`` the
    mirror image; found by Brent's method on ``d`` (the statistic is monotone in ``d``), widened by
    the solver's tolerance.
    """
    x = k_c / n_c - k_s / n_s

    def excess(d: float, side: Literal["greater", "less"], level: float) -> float:
        threshold = math.log(1 / level)
        log_e = two_proportion_log_e(k_c, n_c, k_s, n_s, d, side=side, prior_c=prior_c, prior_s=prior_s,
                                     threshold=threshold)
        return max(log_e - threshold, -1e6)

    def root(f: Callable[[float], float], a: float, b: float) -> float:
        return float(optimize.brentq(f, a, b, xtol=1e-7))

    # lower: rejected below the root ("greater"), not at x; report the rejected side's end
    far = -1.0 + 1e-9
    if excess(x, "greater", alpha_lower) >= 0:
        lower = x
    elif excess(far, "greater", alpha_lower) < 0:
        lower = -1.0
    else:
        lower = root(lambda d: excess(d, "greater", alpha_lower), far, x) - 1e-7
    far = 1.0 - 1e-9
    if excess(x, "less", alpha_upper) >= 0:
        upper = x
    elif excess(far, "less", alpha_upper) < 0:
        upper = 1.0
    else:
        upper = root(lambda d: excess(d, "less", alpha_upper), x, far) + 1e-7
    return max(lower, -1.0), min(upper, 1.0)


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
    lo_a, lo_b = beta_binomial_prior(p, p * (1 - p) * n_opt, alpha_lower)
    hi_a, hi_b = beta_binomial_prior(p, p * (1 - p) * n_opt, alpha_upper)

    # each distinct count once (edges share counts wherever a bin is empty)
    distinct, where = np.unique(counts, return_inverse=True)
    low = (beta_binomial_log_e(distinct, n, p, lo_a, lo_b, side="less") >= math.log(1 / alpha_lower))[where]
    high = (beta_binomial_log_e(distinct, n, p, hi_a, hi_b, side="greater") >= math.log(1 / alpha_upper))[where]
    lower = int(np.flatnonzero(low)[-1]) if low.any() else None
    upper = int(np.flatnonzero(high)[0]) if high.any() else None
    return lower, upper
