"""The Prometheus provider's pure parts (templates, counter increments) and its refusal of an address that
does not answer; queries against a real Prometheus are in tests/integration/test_canary_prometheus.py."""

from __future__ import annotations

import pytest

from roost.controllers import prometheus
from roost.devcluster import cluster


def test_version_placeholder_is_replaced_everywhere() -> None:
    query = 'sum(a{version="{{version}}"}) + sum(b{v="{{version}}"})'
    assert prometheus.render(query, "bc-v2") == 'sum(a{version="bc-v2"}) + sum(b{v="bc-v2"})'


def _reading(bad: dict[str, float], total: dict[str, float]) -> dict[str, dict[str, float]]:
    return {"bad": bad, "total": total}


def test_first_reading_is_a_baseline_then_increments() -> None:
    first = {"stable": _reading({"a": 10.0}, {"a": 100.0}), "candidate": _reading({}, {"c": 0.0})}
    assert prometheus.increments(None, first) is None
    later = {"stable": _reading({"a": 12.0}, {"a": 150.0}), "candidate": _reading({"c": 3.0}, {"c": 20.0})}
    # the candidate's bad series appeared after the baseline: it starts there (its 3 events are not counted)
    assert prometheus.increments(first, later) == {"stable": (2, 50), "candidate": (0, 20)}


def test_pods_going_away_add_nothing_and_a_restarted_one_counts_from_zero() -> None:
    """Series by series: stable scaled from 4 pods to 2 (as a canary step does on Kubernetes), and one of
    the two left restarted -- only the 200 events of this round count, not the pods' whole history."""
    pods = {p: 10_000.0 for p in "abcd"}
    before = {"stable": _reading({p: 100.0 for p in "abcd"}, pods), "candidate": _reading({}, {"x": 50.0})}
    now = {"stable": _reading({"a": 101.0, "b": 1.0}, {"a": 10_100.0, "b": 100.0}),
           "candidate": _reading({"x": 5.0}, {"x": 90.0})}
    assert prometheus.increments(before, now) == {"stable": (2, 200), "candidate": (0, 40)}


def test_bad_is_capped_at_total() -> None:
    before = {"stable": _reading({"a": 5.0}, {"a": 40.0}), "candidate": _reading({"x": 1.0}, {"x": 10.0})}
    now = {"stable": _reading({"a": 9.0}, {"a": 42.0}), "candidate": _reading({"x": 1.0}, {"x": 10.0})}
    assert prometheus.increments(before, now) == {"stable": (2, 2), "candidate": (0, 0)}


def test_a_metric_added_to_the_spec_mid_rollout_is_left_for_the_next_one() -> None:
    """The analysis state fixes the rollout's metrics: a metric the spec gained later is not queried (and
    does not fail the reconcile); the recorded one is, and its failure is reported."""
    from roost.api import deployment
    from roost.controllers import analysis as analysis_mod
    from roost.stats import canary

    port = cluster.free_port()  # a loopback port nobody listens on
    address = f"http://127.0.0.1:{port}"
    source = {"address": address, "bad": "a", "total": "b"}
    state = canary.Analysis([canary.counted_spec("referrals", 0.05)])
    settings = deployment.Analysis.model_validate({"metrics": [
        {"name": "referrals", "maxIncrease": 0.05, "prometheus": source},
        {"name": "added-later", "maxIncrease": 0.05, "prometheus": {**source, "bad": "c"}}]})
    errors: dict[str, str] = {}
    readings = analysis_mod._read_prometheus(settings, state, {"stable": "v1", "candidate": "v2"}, {}, errors)
    assert list(errors) == ["referrals"] and "ConnectError" in errors["referrals"]
    assert readings == {}


def test_unreachable_address_raises_a_clear_error() -> None:
    port = cluster.free_port()  # a loopback port nobody listens on
    with prometheus.client(timeout=2.0) as http, pytest.raises(prometheus.PrometheusError) as info:
        prometheus.instant_vector(http, f"http://127.0.0.1:{port}", "up")
    assert info.value.reason == "PrometheusQueryFailed"
    assert f"http://127.0.0.1:{port}/api/v1/query: ConnectError" in info.value.message
