"""Confidence sequences: boundaries against published values and hand computations, and coverage
under continuous monitoring (every observation looked at) on seeded simulations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from roost.stats import sequential as sq

# -- boundaries against known values ---------------------------------------------------------------
# Reference values: Howard et al.'s own implementation (confseq, "all target values are from a
# reference implementation in R"): v_opt = 100, alpha_opt = 0.05, evaluated at s = 10, v = 100.


def test_normal_mixture_rho_matches_the_published_tuning() -> None:
    assert sq.normal_mixture_rho(100, 0.05, one_sided=False) == pytest.approx(12.60056, abs=1e-5)
    # by hand: v / (2 log(1/a) + log(1 + 2 log(1/a)))
    a = 0.05
    assert sq.normal_mixture_rho(100, a, one_sided=False) == pytest.approx(
        100 / (2 * math.log(20) + math.log(1 + 2 * math.log(20))))


def test_two_sided_normal_mixture_matches_published_values_and_robbins_closed_form() -> None:
    rho = sq.normal_mixture_rho(100, 0.05, one_sided=False)
    assert float(sq.normal_mixture_log_e(10, 100, rho, one_sided=False)) == pytest.approx(-0.6510052, abs=1e-6)
    bound = float(sq.normal_mixture_bound(100, 0.05, rho, one_sided=False))
    assert bound == pytest.approx(30.35209, abs=1e-5)
    # Robbins (1970): sqrt((v + rho) log((v + rho) / (rho alpha^2)))
    assert bound == pytest.approx(math.sqrt((100 + rho) * math.log((100 + rho) / (rho * 0.05**2))), rel=1e-12)
    # and the mixture martingale sits exactly at 1/alpha on the boundary
    assert float(sq.normal_mixture_log_e(bound, 100, rho, one_sided=False)) == pytest.approx(math.log(20))


def test_one_sided_normal_mixture_matches_published_values_and_eq_14_bounds_it() -> None:
    rho = sq.normal_mixture_rho(100, 0.05, one_sided=True)
    assert float(sq.normal_mixture_log_e(10, 100, rho)) == pytest.approx(-0.06502391, abs=1e-6)
    exact = float(sq.normal_mixture_bound(100, 0.05, rho))
    assert exact == pytest.approx(27.66071, abs=1e-4)
    closed = float(sq.normal_mixture_bound_closed(100, 0.05, rho))
    # by hand: sqrt(2 (v + rho) log(sqrt((v + rho)/rho) / (2 alpha) + 1))
    assert closed == pytest.approx(math.sqrt(2 * (100 + rho) * math.log(math.sqrt((100 + rho) / rho) / 0.1 + 1)))
    assert exact <= closed <= 1.01 * exact


@pytest.mark.parametrize(("one_sided", "log_e", "bound"), [(True, -0.07134019, 28.41238),
                                                             (False, -0.6941012, 31.4308)])
def test_beta_binomial_matches_published_sub_bernoulli_values(one_sided: bool, log_e: float, bound: float) -> None:
    # sub-Bernoulli range g = 0.2, h = 0.8, i.e. a Bernoulli(0.2) mean; v = g h n, s = k - n p
    p, v = 0.2, 100.0
    n = v / (p * (1 - p))
    a, b = sq.beta_binomial_prior(p, 100, 0.05, one_sided=one_sided)
    side = "greater" if one_sided else "two-sided"
    assert float(sq.beta_binomial_log_e(p * n + 10, n, p, a, b, side=side)) == pytest.approx(log_e, abs=1e-6)
    s = optimize.brentq(lambda s: float(sq.beta_binomial_log_e(p * n + s, n, p, a, b, side=side)) - math.log(20),
                        0.0, 100.0, xtol=1e-10)
    assert s == pytest.approx(bound, abs=1e-4)


@pytest.mark.parametrize("side", ["greater", "less", "two-sided"])
def test_beta_binomial_log_e_equals_the_mixture_integral(side: str) -> None:
    k, n, p, a, b = 7, 20, 0.2, 2.0, 5.0

    def lr(q: float) -> float:
        return float((q / p) ** k * ((1 - q) / (1 - p)) ** (n - k) * stats.beta.pdf(q, a, b))

    lo, hi = {"greater": (p, 1.0), "less": (0.0, p), "two-sided": (0.0, 1.0)}[side]
    mass = stats.beta.cdf(hi, a, b) - stats.beta.cdf(lo, a, b)
    direct = integrate.quad(lr, lo, hi, epsabs=0, epsrel=1e-12)[0] / mass
    assert float(sq.beta_binomial_log_e(k, n, p, a, b, side=side)) == pytest.approx(math.log(direct), rel=1e-9)


def test_one_sided_beta_binomial_is_monotone_in_successes() -> None:
    k = np.arange(0, 101, dtype=float)
    a, b = sq.beta_binomial_prior(0.3, 0.21 * 200, 0.05)
    up = sq.beta_binomial_log_e(k, 100, 0.3, a, b, side="greater")
    down = sq.beta_binomial_log_e(k, 100, 0.3, a, b, side="less")
    assert np.all(np.diff(up) > 0)
    assert np.all(np.diff(down) < 0)


# -- coverage under continuous monitoring ----------------------------------------------------------


def _threshold_counts(n: np.ndarray, p: float, a: float, b: float, alpha: float, greater: bool) -> np.ndarray:
    """Per trial count n: the first count at which the one-sided e-process reaches 1/alpha (it is
    monotone in the count), by vectorised bisection; n + 1 (never) where none does."""
    def crosses(k: np.ndarray) -> np.ndarray:
        side = "greater" if greater else "less"
        return np.asarray(sq.beta_binomial_log_e(k, n, p, a, b, side=side) >= math.log(1 / alpha))
    if greater:  # smallest k that crosses, in [0, n + 1]
        lo, hi = np.full(n.shape, -1.0), n + 1
        while np.any(hi - lo > 1):
            mid = np.floor((lo + hi) / 2)
            c = crosses(mid) & (mid <= n)
            hi, lo = np.where(c, mid, hi), np.where(c, lo, mid)
        return hi
    lo, hi = np.full(n.shape, -1.0), n + 1  # largest k that crosses, in [-1, n]
    while np.any(hi - lo > 1):
        mid = np.floor((lo + hi) / 2)
        c = crosses(mid)
        lo, hi = np.where(c, mid, lo), np.where(c, hi, mid)
    return lo


def test_bernoulli_sequence_covers_the_true_mean_at_every_step_in_at_least_1_minus_alpha_of_runs() -> None:
    # the confidence sequence is the set of means not rejected; it misses p exactly when the
    # e-process at p ever crosses 1/alpha — checked after every one of 1000 observations, 2000 runs
    # (crossing <=> the count passes a threshold, the e-process being monotone in the count)
    rng = np.random.default_rng(20240601)
    runs, steps, p, alpha = 2000, 1000, 0.1, 0.05
    k = np.cumsum(rng.random((runs, steps)) < p, axis=1)
    n = np.arange(1, steps + 1, dtype=float)
    a, b = (float(x) for x in sq.beta_binomial_prior(p, p * (1 - p) * 500, alpha))
    up = _threshold_counts(n, p, a, b, alpha, greater=True)
    down = _threshold_counts(n, p, a, b, alpha, greater=False)
    tolerance = alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert (k >= up).any(axis=1).mean() <= tolerance
    assert (k <= down).any(axis=1).mean() <= tolerance
    # the thresholds are the e-process's: spot-check against direct evaluation
    t = np.array([99, 499, 999])
    assert np.all(sq.beta_binomial_log_e(up[t], n[t], p, a, b, side="greater") >= math.log(20))
    assert np.all(sq.beta_binomial_log_e(up[t] - 1, n[t], p, a, b, side="greater") < math.log(20))


def test_bernoulli_bounds_sit_where_the_e_process_crosses() -> None:
    lower, upper = sq.bernoulli_bounds([3.0, 40.0], [100.0, 100.0], 0.05)
    assert np.all((lower < [0.03, 0.40]) & (upper > [0.03, 0.40]))
    for i, (k, n) in enumerate([(3, 100), (40, 100)]):
        for bound, side in ((lower[i], "greater"), (upper[i], "less")):
            a, b = sq.beta_binomial_prior(bound, bound * (1 - bound) * 1000, 0.05)
            assert float(sq.beta_binomial_log_e(k, n, bound, a, b, side=side)) == pytest.approx(math.log(20), abs=1e-3)
    assert sq.bernoulli_bounds(0.0, 0.0, 0.05) == (0.0, 1.0)


def test_restricted_mle_is_the_constrained_maximum() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        n1, n2 = rng.integers(1, 3000, 2).astype(float)
        k1, k2 = rng.uniform(0, n1), rng.uniform(0, n2)
        d = float(rng.uniform(-0.3, 0.3))
        p1, p2 = (float(x) for x in sq.restricted_mle(k1, n1, k2, n2, d))

        def neg(r: float, k1: float = k1, n1: float = n1, k2: float = k2, n2: float = n2, d: float = d) -> float:
            return -float(sq.bernoulli_log_likelihood(k1, n1, r + d) + sq.bernoulli_log_likelihood(k2, n2, r))

        best = optimize.minimize_scalar(neg, bounds=(max(0.0, -d) + 1e-12, min(1.0, 1 - d) - 1e-12),
                                        method="bounded", options={"xatol": 1e-12})
        assert p1 - p2 == pytest.approx(d)
        assert neg(p2) <= best.fun + 1e-7


@pytest.mark.parametrize("greater", [True, False])
def test_plug_in_block_factor_has_expectation_at_most_one_under_every_null(greater: bool) -> None:
    # exact expectation over all outcomes of a block, for nulls on the boundary and inside
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(300):
        n_c, n_s = (int(x) for x in rng.integers(1, 25, 2))
        q_c, q_s, d = rng.uniform(0.01, 0.5), rng.uniform(0.01, 0.5), rng.uniform(-0.2, 0.2)
        if (q_c - q_s > d) != greater:
            continue
        for shift in (0.0, 0.05, 0.2):
            p_s = rng.uniform(max(0.0, -d) + 0.01, min(1.0, 1 - d) - 0.01)
            p_c = p_s + d - shift if greater else p_s + d + shift  # inside the null
            if not 0 <= p_c <= 1:
                continue
            kc, ks = np.meshgrid(np.arange(n_c + 1), np.arange(n_s + 1), indexing="ij")
            weight = stats.binom.pmf(kc, n_c, p_c) * stats.binom.pmf(ks, n_s, p_s)
            factor = np.exp(sq.plug_in_block_log_e(kc, n_c, ks, n_s, q_c, q_s, d, greater=greater))
            assert float(np.sum(weight * factor)) <= 1 + 1e-9
            checked += 1
    assert checked > 100


def test_two_sample_sequence_covers_the_true_difference_under_continuous_monitoring() -> None:
    # 2000 runs, one candidate and one stable request per block, the e-processes at the true
    # difference checked after every block: each side crosses in at most alpha of the runs
    rng = np.random.default_rng(3)
    runs, blocks, p_c, p_s, alpha = 2000, 500, 0.03, 0.01, 0.05
    delta = p_c - p_s
    x_c = (rng.random((blocks, runs)) < p_c).astype(float)
    x_s = (rng.random((blocks, runs)) < p_s).astype(float)
    k_c = np.zeros(runs)
    k_s = np.zeros(runs)
    log_e = {True: np.zeros(runs), False: np.zeros(runs)}
    crossed = {True: np.zeros(runs, bool), False: np.zeros(runs, bool)}
    for t in range(blocks):
        q_c, q_s = (k_c + 1) / (t + 101), (k_s + 1) / (t + 101)  # predictable: earlier blocks only
        for greater in (True, False):
            log_e[greater] += sq.plug_in_block_log_e(x_c[t], 1, x_s[t], 1, q_c, q_s, delta, greater=greater)
            crossed[greater] |= log_e[greater] >= math.log(1 / alpha)
        k_c += x_c[t]
        k_s += x_s[t]
    for greater in (True, False):
        assert crossed[greater].mean() <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_two_sample_e_process_grows_against_a_false_null() -> None:
    rng = np.random.default_rng(4)
    k_c = k_s = 0.0
    log_e = 0.0
    for t in range(200):
        xc, xs = float(rng.binomial(10, 0.05)), float(rng.binomial(10, 0.005))
        q_c, q_s = (k_c + 1) / (10 * t + 101), (k_s + 1) / (10 * t + 101)
        log_e += float(sq.plug_in_block_log_e(xc, 10, xs, 10, q_c, q_s, 0.0, greater=True))
        k_c, k_s = k_c + xc, k_s + xs
    assert log_e > math.log(1 / 0.001)


# -- quantiles --------------------------------------------------------------------------------------


def _below(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(x), edges, side="left").astype(float)


def test_quantile_bounds_equal_checking_every_edge() -> None:
    rng = np.random.default_rng(5)
    edges = np.concatenate(([0.0], np.geomspace(0.01, 100, 400), [np.inf]))
    for n in (50, 300, 2000):
        x = rng.lognormal(0, 1, n)
        below = _below(x, edges)
        lo, hi = sq.quantile_bounds(below, n, 0.95, alpha_lower=0.02, alpha_upper=0.1, n_opt=500)
        a, b = sq.beta_binomial_prior(0.95, 0.0475 * 500, 0.02)
        low = sq.beta_binomial_log_e(below, n, 0.95, a, b, side="less") >= math.log(50)
        a, b = sq.beta_binomial_prior(0.95, 0.0475 * 500, 0.1)
        high = sq.beta_binomial_log_e(below, n, 0.95, a, b, side="greater") >= math.log(10)
        assert lo == (int(np.flatnonzero(low)[-1]) if low.any() else None)
        assert hi == (int(np.flatnonzero(high)[0]) if high.any() else None)


def test_quantile_sequence_covers_the_true_quantile_under_monitoring() -> None:
    rng = np.random.default_rng(6)
    edges = np.concatenate(([0.0], np.geomspace(1e-3, 1e3, 1201), [np.inf]))
    q95 = -math.log(0.05)  # exponential(1)
    misses = 0
    runs = 100
    for _ in range(runs):
        x = rng.exponential(1.0, 1000)
        for n in range(100, 1001, 100):
            lo, hi = sq.quantile_bounds(_below(x[:n], edges), n, 0.95, alpha_lower=0.05, alpha_upper=0.05)
            if (lo is not None and edges[lo] > q95) or (hi is not None and edges[hi] <= q95):
                misses += 1
                break
    assert misses / runs <= 0.10 + 3 * math.sqrt(0.1 * 0.9 / runs)


def test_quantile_thresholds_are_exact_whatever_the_hint() -> None:
    # the thresholds are searched first around the last answer (speed); the answer must not depend on it
    rng = np.random.default_rng(7)
    for p, lower, upper in ((0.95, 0.0125, 0.1), (0.99, 0.005, 0.1), (0.5, 0.05, 0.05)):
        n = 1
        for _ in range(150):
            n += int(rng.choice([1, 10, 90, 400]))
            hinted = sq.quantile_thresholds.__wrapped__(n, p, lower, upper, 500.0)
            saved = dict(sq._HINTS)
            sq._HINTS.clear()
            assert sq.quantile_thresholds.__wrapped__(n, p, lower, upper, 500.0) == hinted
            sq._HINTS.update(saved)
