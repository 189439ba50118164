"""Canary analysis: verdicts on seeded request streams, evidence rules, and state that survives JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from roost.stats import canary

ERROR = canary.metric_spec("error-rate", max_increase=0.01)
REJECTION = canary.metric_spec("rejection-rate", max_increase=0.01)
P95 = canary.metric_spec("latency-p95", max_ratio=1.2)
SHIFT = canary.metric_spec("prediction-shift", max=0.1)
AGREEMENT = canary.metric_spec("agreement", max=0.1)


def requests(rng: np.random.Generator, n: int, *, error: float = 0.005, rejection: float = 0.0,
             scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    u = rng.random(n)
    codes = np.where(u < error, 503, np.where(u < error + rejection, 400, 200))
    return codes, scale * 100.0 * np.exp(0.5 * rng.standard_normal(n))


def stream(
    analysis: canary.Analysis, rng: np.random.Generator, *, batches: int, size: int = 50,
    candidate: dict[str, float] | None = None, stable: dict[str, float] | None = None,
    classes: tuple[list[float], list[float]] | None = None, disagree: float | None = None,
    stop: Callable[[canary.Verdict], bool] = lambda v: v.outcome != canary.Outcome.INCONCLUSIVE,
) -> tuple[canary.Verdict, int]:
    """Feed alternating batches; judge after each pair; return the first verdict ``stop`` accepts and
    the candidate requests seen by then."""
    verdict = canary.judge([])
    for i in range(batches):
        for version, kw in (("candidate", candidate or {}), ("stable", stable or {})):
            codes, lat = requests(rng, size, **kw)
            pred = None
            if classes is not None:
                probs = classes[0] if version == "candidate" else classes[1]
                pred = rng.choice(len(probs), size, p=probs)
            agree = (rng.random(size) >= disagree) if disagree is not None and version == "candidate" else None
            analysis.update(version, codes, lat, pred, agree)
        verdict = analysis.judge(intervals=False)
        if stop(verdict):
            return verdict, (i + 1) * size
    return verdict, batches * size


# -- the rules of evidence -------------------------------------------------------------------------


def test_no_verdict_before_min_requests_per_version() -> None:
    a = canary.Analysis([ERROR, P95], min_requests=200)
    rng = np.random.default_rng(0)
    a.update("candidate", *requests(rng, 5000))  # a flood of candidate requests alone
    a.update("stable", *requests(rng, 199))
    verdicts = a.evaluate()
    assert [v.outcome for v in verdicts] == [canary.Outcome.INCONCLUSIVE] * 2
    assert {v.reason for v in verdicts} == {"NotEnoughData"}


def test_a_metric_that_cannot_be_computed_is_inconclusive_never_pass() -> None:
    a = canary.Analysis([ERROR, P95, SHIFT, AGREEMENT], min_requests=50)
    codes = np.full(2000, 200)
    nan = np.full(2000, np.nan)
    a.update("candidate", codes, nan, np.array([None] * 2000, dtype=object), nan)
    a.update("stable", codes, nan, np.array([], dtype=float))
    by_name = {v.name: v for v in a.evaluate()}
    assert by_name["latency-p95"].outcome == canary.Outcome.INCONCLUSIVE
    assert by_name["latency-p95"].reason == "NotEnoughData"
    assert by_name["prediction-shift"].outcome == canary.Outcome.INCONCLUSIVE
    assert by_name["agreement"].outcome == canary.Outcome.INCONCLUSIVE
    assert a.judge().outcome == canary.Outcome.INCONCLUSIVE


def test_invalid_status_codes_and_latencies_are_not_counted() -> None:
    a = canary.Analysis([ERROR, P95], min_requests=1)
    a.update("stable", np.array([200, 503, np.nan, 42, 404, 700]), np.array([1.0, np.nan, -3.0, np.inf, 2.0]))
    s = a.versions[canary.Version.STABLE]
    assert (s.requests, s.errors, s.rejections, s.latencies) == (3, 1, 1, 2)


def test_too_many_predicted_classes_is_inconclusive() -> None:
    spec = canary.metric_spec("prediction-shift", max=0.1, max_classes=3)
    a = canary.Analysis([spec], min_requests=10)
    rng = np.random.default_rng(1)
    for version in ("candidate", "stable"):
        a.update(version, np.full(100, 200), None, rng.integers(0, 5, 100))
    (v,) = a.evaluate()
    assert (v.outcome, v.reason) == (canary.Outcome.INCONCLUSIVE, "NotComputable")


def test_evidence_waits_for_both_versions_in_a_block() -> None:
    a = canary.Analysis([ERROR], min_requests=1)
    rng = np.random.default_rng(2)
    a.update("candidate", *requests(rng, 100, error=0.5))
    assert a.pending[canary.Version.CANDIDATE][0] == 100
    assert np.all(np.asarray(a.evidence["error-rate"]["greater"]) == 0)
    a.update("stable", *requests(rng, 100))
    assert a.pending[canary.Version.CANDIDATE][0] == 0
    assert np.any(np.asarray(a.evidence["error-rate"]["greater"]) != 0)


def test_budgets_split_alpha_over_metrics_and_not_beta_unless_asked() -> None:
    a = canary.Analysis([ERROR, P95, SHIFT, AGREEMENT], alpha=0.05, beta=0.2)
    assert a.alpha_per_metric == pytest.approx(0.0125)
    assert a.beta_per_metric == pytest.approx(0.2)
    b = canary.Analysis([ERROR, P95, SHIFT, AGREEMENT], alpha=0.05, beta=0.2, split_beta=True)
    assert b.beta_per_metric == pytest.approx(0.05)


# -- verdicts on simulated traffic -----------------------------------------------------------------


def test_a_candidate_without_regression_rarely_fails_on_error_rate() -> None:
    rng = np.random.default_rng(3)
    runs, fails, passes = 200, 0, 0
    for _ in range(runs):
        a = canary.Analysis([ERROR], alpha=0.05, min_requests=200)
        verdict, _ = stream(a, rng, batches=60)
        fails += verdict.outcome == canary.Outcome.FAIL
        passes += verdict.outcome == canary.Outcome.PASS
    assert fails / runs <= 0.05
    assert passes / runs >= 0.9  # 3000 requests each are plenty to show "within +1 %"


def test_a_candidate_without_regression_rarely_fails_on_latency() -> None:
    rng = np.random.default_rng(4)
    runs, fails = 60, 0
    for _ in range(runs):
        a = canary.Analysis([P95], alpha=0.05, min_requests=200)
        verdict, _ = stream(a, rng, batches=40)
        fails += verdict.outcome == canary.Outcome.FAIL
    assert fails / runs <= 0.05


def test_error_rate_regression_of_four_margins_is_caught_quickly() -> None:
    rng = np.random.default_rng(5)
    seen = []
    for _ in range(40):
        a = canary.Analysis([ERROR, P95], alpha=0.05, min_requests=200)
        verdict, n = stream(a, rng, batches=40, candidate={"error": 0.045})
        assert verdict.outcome == canary.Outcome.FAIL
        assert verdict.metric is not None and verdict.metric.name == "error-rate"
        seen.append(n)
    assert float(np.median(seen)) <= 400  # the fixed-horizon test for +1 % needs ~1550 per version


def test_latency_ratio_regression_is_caught() -> None:
    rng = np.random.default_rng(6)
    a = canary.Analysis([ERROR, P95], alpha=0.05, min_requests=200)
    verdict, n = stream(a, rng, batches=40, candidate={"scale": 1.6})
    assert verdict.outcome == canary.Outcome.FAIL
    assert verdict.metric is not None and verdict.metric.name == "latency-p95"
    assert verdict.metric.candidate is not None and verdict.metric.stable is not None
    assert verdict.metric.candidate / verdict.metric.stable == pytest.approx(1.6, rel=0.1)
    assert verdict.metric.lower is not None and verdict.metric.lower > 1
    assert n <= 600


def test_prediction_shift_beyond_the_margin_is_caught_and_a_small_one_passes() -> None:
    rng = np.random.default_rng(7)
    a = canary.Analysis([SHIFT], alpha=0.05, min_requests=200)
    verdict, n = stream(a, rng, batches=100, classes=([0.8, 0.2], [0.5, 0.5]))  # JS distance ~0.24
    assert verdict.outcome == canary.Outcome.FAIL
    assert verdict.metric is not None and verdict.metric.reason == "BeyondMargin"
    assert verdict.metric.estimate == pytest.approx(0.24, abs=0.04)
    assert n <= 3000
    b = canary.Analysis([SHIFT], alpha=0.05, min_requests=200)
    verdict, _ = stream(b, rng, batches=200, classes=([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]))
    assert verdict.outcome == canary.Outcome.PASS


@pytest.mark.parametrize(("disagree", "expected"), [(0.25, canary.Outcome.FAIL), (0.02, canary.Outcome.PASS)])
def test_agreement_is_judged_against_its_max(disagree: float, expected: canary.Outcome) -> None:
    rng = np.random.default_rng(8)
    a = canary.Analysis([AGREEMENT], alpha=0.05, min_requests=200)
    verdict, _ = stream(a, rng, batches=60, disagree=disagree)
    assert verdict.outcome == expected


def test_rejection_rate_counts_4xx() -> None:
    rng = np.random.default_rng(9)
    a = canary.Analysis([REJECTION, ERROR], alpha=0.05, min_requests=200)
    verdict, _ = stream(a, rng, batches=60, candidate={"rejection": 0.06})
    assert verdict.outcome == canary.Outcome.FAIL
    assert verdict.metric is not None and verdict.metric.name == "rejection-rate"


def test_a_good_candidate_passes_every_metric_and_judge_says_pass() -> None:
    rng = np.random.default_rng(10)
    a = canary.Analysis([ERROR, P95, SHIFT, AGREEMENT], alpha=0.05, min_requests=200)
    verdict, n = stream(a, rng, batches=120, classes=([0.6, 0.4], [0.6, 0.4]), disagree=0.01)
    assert verdict.outcome == canary.Outcome.PASS
    assert all(m.outcome == canary.Outcome.PASS for m in verdict.metrics)
    assert n <= 6000


# -- judge and reporting ----------------------------------------------------------------------------


def _mv(name: str, outcome: canary.Outcome) -> canary.MetricVerdict:
    return canary.MetricVerdict(name, outcome, "X", f"{name} {outcome}")


@pytest.mark.parametrize(("outcomes", "expected", "metric"), [
    ((canary.Outcome.PASS, canary.Outcome.FAIL, canary.Outcome.INCONCLUSIVE), canary.Outcome.FAIL, "b"),
    ((canary.Outcome.PASS, canary.Outcome.PASS, canary.Outcome.PASS), canary.Outcome.PASS, None),
    ((canary.Outcome.PASS, canary.Outcome.INCONCLUSIVE, canary.Outcome.PASS), canary.Outcome.INCONCLUSIVE, None),
    ((), canary.Outcome.INCONCLUSIVE, None),
], ids=["any-fail-fails", "all-pass-passes", "otherwise-inconclusive", "nothing-inconclusive"])
def test_judge_combines_metric_verdicts(
    outcomes: tuple[canary.Outcome, ...], expected: canary.Outcome, metric: str | None,
) -> None:
    v = canary.judge([_mv(n, o) for n, o in zip("abc", outcomes, strict=False)])
    assert v.outcome == expected
    assert (v.metric.name if v.metric else None) == metric


def test_a_fail_verdict_carries_both_values_and_the_interval() -> None:
    rng = np.random.default_rng(11)
    a = canary.Analysis([ERROR], min_requests=200)
    stream(a, rng, batches=40, candidate={"error": 0.06})
    (v,) = a.evaluate()
    assert v.outcome == canary.Outcome.FAIL
    assert v.candidate is not None and v.stable is not None and v.candidate > v.stable
    assert v.lower is not None and v.upper is not None and 0 <= v.lower < v.upper
    d = v.to_dict()
    assert d["outcome"] == "Fail" and d["observations"]["candidate"] >= 200
    json.dumps(d)


def test_metric_specs_are_validated() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        canary.metric_spec("error-rate")
    with pytest.raises(ValueError, match="increase"):
        canary.metric_spec("error-rate", max_ratio=1.2)
    with pytest.raises(ValueError, match="unknown"):
        canary.metric_spec("throughput", max=1.0)
    with pytest.raises(ValueError, match=">= 1"):
        canary.metric_spec("latency-p99", max_ratio=0.9)
    assert canary.metric_spec("latency-p99", max_ratio=1.5).quantile == 0.99


# -- state ------------------------------------------------------------------------------------------


def test_state_round_trips_through_json_with_identical_verdicts() -> None:
    rng = np.random.default_rng(12)
    a = canary.Analysis([ERROR, REJECTION, P95, SHIFT, AGREEMENT], min_requests=100)
    stream(a, rng, batches=30, candidate={"error": 0.02}, classes=([0.7, 0.3], [0.6, 0.4]), disagree=0.05,
           stop=lambda v: False)
    a.update("candidate", *requests(rng, 7))  # an open block survives too
    saved = json.dumps(a.to_dict())
    assert len(saved) < 16_000
    b = canary.Analysis.from_dict(json.loads(saved))
    assert b.evaluate() == a.evaluate()
    # and both continue identically
    for version in ("stable", "candidate", "stable"):
        codes, lat = requests(rng, 40, error=0.02)
        pred = rng.choice(2, 40)
        for x in (a, b):
            x.update(version, codes, lat, pred, np.ones(40) if version == "candidate" else None)
    assert b.evaluate() == a.evaluate()
    assert b.to_dict() == a.to_dict()


def test_state_of_another_format_is_refused() -> None:
    d = canary.Analysis([ERROR]).to_dict()
    d["binsPerDecade"] = 10
    with pytest.raises(ValueError, match="format"):
        canary.Analysis.from_dict(d)


def test_latency_histogram_bins_are_log_spaced_and_conservative() -> None:
    counts = canary.latency_bins(np.array([0.0, 0.005, 1.0, 1.0116, 999_999.0, 2e6]))
    assert counts.sum() == 6
    assert counts[0] == 2  # [0, 0.01 ms)
    assert counts[-1] == 1  # [1000 s, inf)
    one = int(np.flatnonzero(counts)[1])
    assert canary.EDGES_MS[one - 1] <= 1.0 < canary.EDGES_MS[one]
    assert canary.EDGES_MS[1] / canary.EDGES_MS[0] == pytest.approx(10 ** (1 / canary.BINS_PER_DECADE))
    assert math.isnan(canary.histogram_quantile(np.zeros(canary.N_BINS, dtype=np.int64), 0.95))


# -- the vectorised kernels the analysis runs (and the simulation study calls on many runs at once) --


def test_proportion_step_over_many_runs_equals_one_run_at_a_time() -> None:
    rng = np.random.default_rng(13)
    def counts(events: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        k_c, n_c, k_s, n_s = (np.asarray(x, dtype=float) for x in (rng.integers(0, events, 6), rng.integers(lo, hi, 6),
                                                                  rng.integers(0, events, 6), rng.integers(lo, hi, 6)))
        return k_c, n_c, k_s, n_s

    before, block = counts(20, 100, 900), counts(3, 5, 50)
    greater, less = canary.proportion_step(before, block, 0.01)
    assert greater.shape == (6, len(canary.DIFFERENCE_GRID), 1 + len(canary.GREATER_OFFSETS))
    assert less.shape == (6, len(canary.DIFFERENCE_GRID), 1 + len(canary.LESS_OFFSETS))
    for i in range(6):
        g, le = canary.proportion_step(tuple(x[i] for x in before), tuple(x[i] for x in block), 0.01)
        np.testing.assert_allclose(greater[i], g, rtol=1e-12)
        np.testing.assert_allclose(less[i], le, rtol=1e-12)
    # the decision columns alone are the full grid's columns
    g01, l01 = canary.proportion_step(before, block, 0.01, grid=(0.0, 1.0))
    np.testing.assert_allclose(g01[:, 0], greater[:, canary.DIFFERENCE_GRID.index(0.0)], rtol=1e-12)
    np.testing.assert_allclose(l01[:, 1], less[:, canary.DIFFERENCE_GRID.index(1.0)], rtol=1e-12)


def test_mixture_weights_are_a_fixed_convex_combination() -> None:
    # a weighted mean of e-processes with weights fixed in advance is an e-process: weights >= 0, sum 1
    for weights, offsets in ((canary.GREATER_WEIGHTS, canary.GREATER_OFFSETS),
                             (canary.LESS_WEIGHTS, canary.LESS_OFFSETS)):
        assert len(weights) == 1 + len(offsets)
        assert min(weights) >= 0 and sum(weights) == pytest.approx(1.0)
    x = np.log(np.array([[2.0, 4.0, 8.0, 16.0]]))
    expected = math.log(float(np.dot(canary.GREATER_WEIGHTS, [2.0, 4.0, 8.0, 16.0])))
    up, _ = canary.proportion_tests(x, np.zeros((1, 3)), alpha=1 / (math.exp(expected) - 1e-9), beta=0.5)
    assert bool(up[0])
    up, _ = canary.proportion_tests(x, np.zeros((1, 3)), alpha=1 / (math.exp(expected) + 1e-6), beta=0.5)
    assert not bool(up[0])


def test_rank_edges_are_the_quantile_bounds_of_the_histogram() -> None:
    from roost.stats import sequential

    rng = np.random.default_rng(14)
    for n in (200, 1000, 5000):
        hist = canary.latency_bins(100 * np.exp(0.5 * rng.standard_normal(n)))
        below = np.concatenate(([0], np.cumsum(hist)[:canary.N_EDGES], [n]))
        lo, hi = sequential.quantile_bounds(below, n, 0.95, alpha_lower=0.0125, alpha_upper=0.1, n_opt=500)
        r_lo, r_hi, _, _ = canary.quantile_ranks(n, n, 0.95, 0.025, 0.2, 0.5, 500.0)
        e_lo, e_hi = canary.rank_edges(np.cumsum(hist), r_lo, r_hi)
        assert (int(e_lo), int(e_hi)) == (lo if lo is not None else 0, hi if hi is not None else canary.N_EDGES + 1)


def test_js_bounds_array_equals_js_bounds_row_by_row() -> None:
    rng = np.random.default_rng(15)
    boxes = np.sort(rng.dirichlet([2, 3, 4], size=(5, 4)), axis=1)  # (runs, lo/hi x 2 versions, classes)
    lower, upper = canary.js_bounds_array(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    for i in range(5):
        assert (lower[i], upper[i]) == pytest.approx(canary.js_bounds(*boxes[i]))


# -- counted metrics (e.g. from Prometheus counters) -------------------------------------------------

def test_counted_metric_judges_exactly_as_the_request_log_metric_on_the_same_counts() -> None:
    """The same 5xx counts, once from status codes and once as counted increments, give the same evidence."""
    rng = np.random.default_rng(7)
    analysis = canary.Analysis([ERROR, canary.counted_spec("errors-from-prometheus", 0.01)], min_requests=100)
    for _ in range(60):
        c_codes, _ = requests(rng, 40, error=0.03)
        s_codes, _ = requests(rng, 120, error=0.005)
        analysis.update("candidate", c_codes)
        analysis.update("stable", s_codes)
        analysis.update_counts("errors-from-prometheus", candidate=(int((c_codes >= 500).sum()), 40),
                               stable=(int((s_codes >= 500).sum()), 120))
    by_log, by_counts = analysis.evaluate()
    assert by_log.outcome == by_counts.outcome == canary.Outcome.FAIL
    assert (by_counts.lower, by_counts.upper) == (by_log.lower, by_log.upper)
    assert by_counts.candidate == pytest.approx(by_log.candidate) and by_counts.stable == pytest.approx(by_log.stable)
    assert (by_counts.n_candidate, by_counts.n_stable) == (2400, 7200)


def test_counted_metric_needs_min_events_and_survives_json() -> None:
    spec = canary.counted_spec("referrals", 0.05)
    analysis = canary.Analysis([spec], min_requests=50)
    analysis.update("candidate", [200] * 60)
    analysis.update("stable", [200] * 60)
    analysis.update_counts("referrals", candidate=(3, 30), stable=(0, 0))  # stable has no events yet: block open
    verdict = analysis.evaluate()[0]
    assert verdict.outcome == canary.Outcome.INCONCLUSIVE and verdict.reason == "NotEnoughData"
    assert "30 candidate and 0 stable counted events" in verdict.message
    restored = canary.Analysis.from_dict(json.loads(json.dumps(analysis.to_dict())))
    assert restored.pending_counts["referrals"] == [3, 30, 0, 0]
    for a in (analysis, restored):
        a.update_counts("referrals", candidate=(2, 30), stable=(4, 80))
    assert restored.to_dict() == analysis.to_dict()
    assert restored.versions[canary.Version.CANDIDATE].counted["referrals"] == [5, 60]


def test_counted_metric_refuses_impossible_counts_and_standard_names() -> None:
    analysis = canary.Analysis([canary.counted_spec("referrals", 0.05)])
    with pytest.raises(ValueError, match="0 <= bad <= total"):
        analysis.update_counts("referrals", candidate=(5, 3), stable=(0, 1))
    before = json.dumps(analysis.to_dict())
    with pytest.raises(ValueError, match="0 <= bad <= total"):
        analysis.update_counts("referrals", candidate=(0, 3), stable=(-1, 1))
    assert json.dumps(analysis.to_dict()) == before  # refused whole: nothing half-counted
    with pytest.raises(KeyError):
        analysis.update_counts("error-rate", candidate=(0, 3), stable=(0, 1))
    with pytest.raises(ValueError, match="standard metric"):
        canary.counted_spec("error-rate", 0.01)
