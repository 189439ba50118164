"""Counted metrics from Prometheus for the canary analysis: instant queries, and counters turned into
increments per analysis round.

A ``prometheus`` metric names two PromQL expressions (``bad``, ``total``) with ``{{version}}`` in place
of the ModelVersion's name. Each round, the analysis reads both for both versions through the HTTP API
(``GET <address>/api/v1/query``, https://prometheus.io/docs/prometheus/latest/querying/api/) and hands
the increments since the previous round to :meth:`roost.stats.canary.Analysis.update_counts`.

Counters and their increments:

* the baseline is the first reading after the candidate's warm-up in which both versions' ``total``
  exists (an empty result means the series is not there yet: a new server that Prometheus has not
  scraped); nothing before it is judged, so a late-discovered candidate's warm-up is not either;
* an empty ``bad`` result is 0 (no such event yet: a counter of errors may never have been created);
* a value lower than the previous one is a counter reset (a restarted process): the increment is the
  new value, as PromQL's ``increase()`` takes it;
* a result of several series is summed; a value that is not a finite number >= 0 is an error.

Errors (address unreachable, a refused query, an unusable answer) raise :class:`PrometheusError`; the
analysis then skips the metric for the round (no evidence, so never a Pass) and says why in status.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import httpx

from roost import errors

VERSION_PLACEHOLDER = "{{version}}"
TIMEOUT_SECONDS = 5.0


class PrometheusError(errors.RoostError):
    """A Prometheus query failed or gave no usable number."""

    def __init__(self, message: str) -> None:
        super().__init__("PrometheusQueryFailed", message)


def render(query: str, version: str) -> str:
    """``query`` with every ``{{version}}`` replaced by ``version`` (a ModelVersion name: DNS-1123, no quoting
    needed inside a PromQL string)."""
    return query.replace(VERSION_PLACEHOLDER, version)


def instant_value(client: httpx.Client, address: str, query: str) -> float | None:
    """The value of an instant query now: the sum of its samples; None for an empty vector.

    Args:
        client: an HTTP client (its timeout applies).
        address: Prometheus's base URL.
        query: PromQL giving a vector or a scalar.

    Raises:
        PrometheusError: unreachable, an HTTP or PromQL error (Prometheus's own message), a result type
            other than vector/scalar, or a value that is not finite and >= 0.
    """
    url = f"{address.rstrip('/')}/api/v1/query"
    try:
        response = client.get(url, params={"query": query})
    except httpx.HTTPError as e:
        raise PrometheusError(f"{url}: {type(e).__name__}: {e}") from e
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        raise PrometheusError(f"{url}: HTTP {response.status_code}, not JSON: {response.text[:200]}") from None
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"{query!r}: {body.get('errorType', response.status_code)}: {body.get('error', '')}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list):
        values = [result[1]]
    elif kind == "vector":
        values = [sample["value"][1] for sample in result or []]
    else:
        raise PrometheusError(f"{query!r}: a {kind} result; the query must give a vector or a scalar")
    if not values:
        return None
    total = 0.0
    for text in values:
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise PrometheusError(f"{query!r}: value {text}; a count must be finite and >= 0")
        total += value
    return total


def read_counts(client: httpx.Client, address: str, bad: str, total: str, version: str
                ) -> tuple[float, float] | None:
    """``(bad, total)`` counter values of ``version`` now; None while its ``total`` has no series.

    Raises:
        PrometheusError: see :func:`instant_value`.
    """
    n = instant_value(client, address, render(total, version))
    if n is None:
        return None
    return instant_value(client, address, render(bad, version)) or 0.0, n


def increments(previous: Mapping[str, list[float]] | None, current: Mapping[str, tuple[float, float]]
               ) -> dict[str, tuple[int, int]] | None:
    """Per version, ``(bad, total)`` events since ``previous`` (None: this reading is the baseline).

    Each counter's increment is ``current - previous``, or ``current`` after a reset; ``bad`` is capped
    at ``total`` (two queries are two instants: a scrape may land between them).
    """
    if previous is None:
        return None
    out: dict[str, tuple[int, int]] = {}
    for version, (bad_now, total_now) in current.items():
        bad_before, total_before = previous.get(version, (0.0, 0.0))
        d_bad = bad_now - bad_before if bad_now >= bad_before else bad_now
        d_total = total_now - total_before if total_now >= total_before else total_now
        d_total_i = round(d_total)
        out[version] = (min(round(d_bad), d_total_i), d_total_i)
    return out


def client(timeout: float = TIMEOUT_SECONDS) -> httpx.Client:
    """An HTTP client for the queries of one analysis round."""
    return httpx.Client(timeout=timeout)
