"""Counted metrics from Prometheus for the canary analysis: instant queries, and counters turned into
increments per analysis round.

A ``prometheus`` metric names two PromQL expressions (``bad``, ``total``) with ``{{version}}`` in place
of the ModelVersion's name. Each round, the analysis reads both for both versions through the HTTP API
(``GET <address>/api/v1/query``, https://prometheus.io/docs/prometheus/latest/querying/api/) and hands
the increments since the previous round to :meth:`roost.stats.canary.Analysis.update_counts`.

Counters and their increments, series by series (keyed by their labels), as PromQL's ``increase()``
treats counters:

* a value lower than the series' previous one is a reset (a restarted process): its increment is the
  new value;
* a series seen for the first time starts at its current value (a new process, or one Prometheus has
  just discovered: what it counted before is not attributed to this round); a series that disappeared
  (a pod scaled away) adds nothing -- so a query should keep one series per process (e.g.
  ``sum by (instance) (...)``, or no aggregation): a ``sum`` over processes drops when one goes away,
  which would read as a reset of the whole sum;
* the baseline is the first reading after the candidate's warm-up in which both versions' ``total``
  has a series (a new server that Prometheus has not scraped yet is not counted from its start);
* an empty ``bad`` result is 0 (no such event yet: a counter of errors may never have been created);
* a value that is not a finite number >= 0 is an error.

Errors (address unreachable, a refused query, an unusable answer) raise :class:`PrometheusError`; the
analysis then skips the metric for the round (no evidence, so never a Pass) and says why in status.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import httpx

from roost import errors

VERSION_PLACEHOLDER = "{{version}}"
TIMEOUT_SECONDS = 2.0
#: Queries stop for the round once it has taken this long (the remaining metrics wait for the next one).
ROUND_BUDGET_SECONDS = 6.0


class PrometheusError(errors.RoostError):
    """A Prometheus query failed or gave no usable number."""

    def __init__(self, message: str) -> None:
        super().__init__("PrometheusQueryFailed", message)


def render(query: str, version: str) -> str:
    """``query`` with every ``{{version}}`` replaced by ``version`` (a ModelVersion name: DNS-1123, no quoting
    needed inside a PromQL string)."""
    return query.replace(VERSION_PLACEHOLDER, version)


def instant_vector(client: httpx.Client, address: str, query: str) -> dict[str, float] | None:
    """The samples of an instant query now, by series (a short hash of its labels); None for an empty vector.

    Args:
        client: an HTTP client (its timeout applies).
        address: Prometheus's base URL.
        query: PromQL giving a vector or a scalar (a scalar is one series).

    Raises:
        PrometheusError: unreachable, an HTTP or PromQL error (Prometheus's own message), an answer of
            another shape (a matrix, a native histogram sample), or a value that is not finite and >= 0.
    """
    url = f"{address.rstrip('/')}/api/v1/query"
    try:
        response = client.get(url, params={"query": query})
    except httpx.HTTPError as e:
        raise PrometheusError(f"{url}: {type(e).__name__}: {e}") from e
    try:
        body = response.json()
    except ValueError:
        raise PrometheusError(f"{url}: HTTP {response.status_code}, not JSON: {response.text[:200]}") from None
    if not isinstance(body, dict):
        raise PrometheusError(f"{url}: HTTP {response.status_code}, not a Prometheus answer: {response.text[:200]}")
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"{query!r}: {body.get('errorType', response.status_code)}: {body.get('error', '')}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "scalar" and isinstance(result, list):
            samples = {"": result[1]}
        elif kind == "vector":
            samples = {_series_key(sample.get("metric") or {}): sample["value"][1] for sample in result or []}
        else:
            raise PrometheusError(f"{query!r}: a {kind} result; the query must give a vector or a scalar")
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise PrometheusError(f"{query!r}: an answer without plain sample values ({type(e).__name__}: {e}); "
                              "count with counters, not native histograms") from None
    if not samples:
        return None
    values: dict[str, float] = {}
    for key, text in samples.items():
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise PrometheusError(f"{query!r}: value {text}; a count must be finite and >= 0")
        values[key] = value
    return values


def _series_key(labels: Mapping[str, Any]) -> str:
    """A short stable key for a series: 16 hex digits of the SHA-256 of its sorted labels."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


Reading = dict[str, dict[str, float]]  # {"bad": {series: value}, "total": {series: value}}


def read_counts(client: httpx.Client, address: str, bad: str, total: str, version: str) -> Reading | None:
    """Both counters of ``version`` now, by series; None while its ``total`` has no series.

    Raises:
        PrometheusError: see :func:`instant_vector`.
    """
    n = instant_vector(client, address, render(total, version))
    if n is None:
        return None
    return {"bad": instant_vector(client, address, render(bad, version)) or {}, "total": n}


def _increase(previous: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Events since ``previous`` over the series of ``current`` (see the module docstring)."""
    total = 0.0
    for key, now in current.items():
        before = previous.get(key)
        if before is not None:
            total += now - before if now >= before else now
    return total


def increments(previous: Mapping[str, Reading] | None, current: Mapping[str, Reading]
               ) -> dict[str, tuple[int, int]] | None:
    """Per version, ``(bad, total)`` events since ``previous`` (None: this reading is the baseline).

    ``bad`` is capped at ``total`` (two queries are two instants: a scrape may land between them).
    """
    if previous is None:
        return None
    out: dict[str, tuple[int, int]] = {}
    for version, now in current.items():
        before = previous.get(version) or {}
        d_total = round(_increase(before.get("total") or {}, now["total"]))
        d_bad = round(_increase(before.get("bad") or {}, now["bad"]))
        out[version] = (min(d_bad, d_total), d_total)
    return out


def client(timeout: float = TIMEOUT_SECONDS) -> httpx.Client:
    """An HTTP client for the queries of one analysis round."""
    return httpx.Client(timeout=timeout)
