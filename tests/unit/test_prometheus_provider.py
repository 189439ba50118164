"""The Prometheus provider's pure parts (templates, counter increments) and its refusal of an address that
does not answer; queries against a real Prometheus are in tests/integration/test_canary_prometheus.py."""

from __future__ import annotations

import socket

import pytest

from roost.controllers import prometheus


def test_version_placeholder_is_replaced_everywhere() -> None:
    query = 'sum(a{version="{{version}}"}) + sum(b{v="{{version}}"})'
    assert prometheus.render(query, "bc-v2") == 'sum(a{version="bc-v2"}) + sum(b{v="bc-v2"})'


def test_first_reading_is_a_baseline_then_increments() -> None:
    first = {"stable": (10.0, 100.0), "candidate": (0.0, 0.0)}
    assert prometheus.increments(None, first) is None
    later = {"stable": (12.0, 150.0), "candidate": (3.0, 20.0)}
    readings = {role: list(v) for role, v in first.items()}
    assert prometheus.increments(readings, later) == {"stable": (2, 50), "candidate": (3, 20)}


def test_counter_reset_counts_from_zero_and_bad_is_capped_at_total() -> None:
    before = {"stable": [50.0, 400.0], "candidate": [5.0, 40.0]}
    # stable's process restarted (its counters fell); the candidate's bad counter was scraped after its total
    now = {"stable": (1.0, 30.0), "candidate": (9.0, 42.0)}
    assert prometheus.increments(before, now) == {"stable": (1, 30), "candidate": (2, 2)}


def test_unreachable_address_raises_a_clear_error() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with prometheus.client(timeout=2.0) as http, pytest.raises(prometheus.PrometheusError) as info:
        prometheus.instant_value(http, f"http://127.0.0.1:{port}", "up")
    assert info.value.reason == "PrometheusQueryFailed"
    assert f"http://127.0.0.1:{port}/api/v1/query: ConnectError" in info.value.message
