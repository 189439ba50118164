"""Prometheus metrics of the model server and the router, each in its own registry.

A registry per server object (not the process-global default) keeps several servers in one process
(tests, the local backend) from colliding, and ``/metrics`` shows exactly one model version. Every
series carries ``model`` (the Deployment name), ``version`` (the ModelVersion) and ``digest`` (the
artifact), so dashboards and a Prometheus-backed canary analysis can tell versions apart.

Label children are cached: ``.labels(...)`` takes a lock and builds a tuple each call, which is
measurable on a sub-millisecond predict path. The model server's per-request series (request counts and
the latency histogram) go further: a request appends one tuple to a list, and the list is folded into
the counts with numpy every :data:`FOLD_EVERY` requests and at each scrape (:class:`RequestMetrics`), so
the exposition is the same as prometheus_client's Counter and Histogram but the request path takes no
lock and runs no per-bucket Python loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

#: Request latency buckets, seconds: sub-millisecond predicts to slow batches.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Regression prediction buckets: symmetric and logarithmic, since the target's scale is unknown here.
VALUE_BUCKETS = tuple(sorted({s * 10.0**e for s in (-1, 1) for e in range(-2, 7)} | {0.0}))

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Requests observed between two folds of :class:`RequestMetrics` (a scrape folds too).
FOLD_EVERY = 1024


class BulkHistogram(Collector):
    """A histogram that takes a whole array per observation (``np.searchsorted``, not a Python loop).

    Exposed as ``<name>_bucket{le=...}``. With negative bucket bounds (predicted values may be
    negative) OpenMetrics defines no ``_sum``, so prometheus_client writes neither ``_sum`` nor
    ``_count``; the ``le="+Inf"`` bucket is the count.
    """

    def __init__(
        self, name: str, documentation: str, labels: dict[str, str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self.counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: above every bound (+Inf)
        self.sum = 0.0

    def observe_many(self, values: NDArray[Any]) -> None:
        """Count every finite value of ``values`` (any shape)."""
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        flat = flat[np.isfinite(flat)]
        # "le" buckets are inclusive: value v falls in the first bound b with v <= b
        index = np.searchsorted(self.bounds, flat, side="left")
        self.counts += np.bincount(index, minlength=len(self.counts))
        self.sum += float(flat.sum())

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labels))
        cumulative = np.cumsum(self.counts)
        buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", float(cumulative[-1])))
        has_negative = bool(len(self.bounds)) and float(self.bounds[0]) < 0
        family.add_metric(list(self.labels.values()), buckets, None if has_negative else self.sum)
        yield family


class RequestMetrics(Collector):
    """``<requests>_total{..., endpoint, code}`` and the ``<latency>`` histogram ``{..., endpoint}``, observed in bulk.

    :meth:`observe` appends ``(endpoint, code, seconds)`` to a list; :meth:`fold` counts the list with
    numpy (one ``searchsorted`` per endpoint). Exposed exactly as prometheus_client's ``Counter`` and
    ``Histogram`` with these names would be (with their ``_created`` series). Folding is serialised by a
    lock; :meth:`observe` takes none, so it must be called from one thread (the server's event loop).
    """

    def __init__(self, requests: str, requests_doc: str, latency: str, latency_doc: str,
                 labels: dict[str, str], buckets: Sequence[float]) -> None:
        self.names = (requests, latency)
        self.docs = (requests_doc, latency_doc)
        self.labels = labels
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._pending: list[tuple[str, int, float]] = []
        self._counts: dict[tuple[str, int], list[float]] = {}  # (endpoint, code) -> [count, created]
        self._histograms: dict[str, tuple[NDArray[np.int64], list[float]]] = {}  # endpoint -> (counts, [sum, created])
        self._lock = threading.Lock()

    def observe(self, endpoint: str, code: int, seconds: float) -> None:
        """Count one request and its latency."""
        pending = self._pending
        pending.append((endpoint, code, seconds))
        if len(pending) >= FOLD_EVERY:
            self.fold()

    def fold(self) -> None:
        """Count the pending observations."""
        with self._lock:
            pending, self._pending = self._pending, []
            if not pending:
                return
            now = time.time()
            by_endpoint: dict[str, list[float]] = {}
            for endpoint, code, seconds in pending:
                key = (endpoint, code)
                count = self._counts.get(key)
                if count is None:
                    count = self._counts[key] = [0.0, now]
                count[0] += 1
                by_endpoint.setdefault(endpoint, []).append(seconds)
            for endpoint, values in by_endpoint.items():
                histogram = self._histograms.get(endpoint)
                if histogram is None:
                    histogram = self._histograms[endpoint] = (
                        np.zeros(len(self.bounds) + 1, dtype=np.int64), [0.0, now]
                    )
                latencies = np.asarray(values, dtype=np.float64)
                # "le" buckets are inclusive: value v falls in the first bound b with v <= b
                index = np.searchsorted(self.bounds, latencies, side="left")
                histogram[0][:] += np.bincount(index, minlength=len(self.bounds) + 1)
                histogram[1][0] += float(latencies.sum())

    def collect(self) -> Iterable[Metric]:
        self.fold()
        base = list(self.labels.values())
        requests = CounterMetricFamily(self.names[0], self.docs[0], labels=[*self.labels, "endpoint", "code"])
        latency = HistogramMetricFamily(self.names[1], self.docs[1], labels=[*self.labels, "endpoint"])
        with self._lock:
            for (endpoint, code), (count, created) in self._counts.items():
                requests.add_metric([*base, endpoint, str(code)], count, created=created)
            created_samples = []
            for endpoint, (counts, (total, created)) in self._histograms.items():
                cumulative = np.cumsum(counts)
                buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
                buckets.append(("+Inf", float(cumulative[-1])))
                latency.add_metric([*base, endpoint], buckets, total)
                labels = dict(zip([*self.labels, "endpoint"], [*base, endpoint], strict=True))
                created_samples.append(Sample(f"{self.names[1]}_created", labels, created))
            latency.samples.extend(created_samples)
        yield requests
        yield latency


def _le(bound: float) -> str:
    return repr(float(bound))


class ServerMetrics:
    """The model server's metrics.

    - ``roost_requests_total{model,version,digest,endpoint,code}``: inference requests by HTTP status;
    - ``roost_request_latency_seconds{model,version,digest,endpoint}``: histogram, arrival to response;
    - ``roost_predictions_total{model,version,digest,class}``: predicted rows per class (classifiers), or
      ``roost_prediction_value{model,version,digest}``: histogram of predicted values (regressors);
    - ``roost_requestlog_dropped_total{model,version,digest}``: request-log rows dropped (buffer full);
    - ``roost_requestlog_buffered_rows{model,version,digest}``: request-log rows held in memory.
    """

    def __init__(self, model: str, version: str, digest: str, *, classifier: bool) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._base = {"model": model, "version": version, "digest": digest}
        base = list(self._base)
        self.requests = RequestMetrics(
            "roost_requests", "Inference requests, by endpoint and HTTP status code.",
            "roost_request_latency_seconds", "Inference request latency, arrival to response, seconds.",
            self._base, LATENCY_BUCKETS,
        )
        self.registry.register(self.requests)
        self.observe_request = self.requests.observe  # one call per request: count it and its latency
        self.classifier = classifier
        self.predictions: Counter | None = None
        self.values: BulkHistogram | None = None
        if classifier:
            self.predictions = Counter(
                "roost_predictions", "Predicted rows, by predicted class.", [*base, "class"],
                registry=self.registry,
            )
        else:
            self.values = BulkHistogram(
                "roost_prediction_value", "Predicted values (regression).", self._base, VALUE_BUCKETS
            )
            self.registry.register(self.values)
        self.requestlog_dropped = Counter(
            "roost_requestlog_dropped", "Request-log rows dropped because the buffer was full.", base,
            registry=self.registry,
        ).labels(**self._base)
        self._buffered = Gauge(
            "roost_requestlog_buffered_rows", "Request-log rows held in memory.", base, registry=self.registry
        ).labels(**self._base)
        self._children: dict[tuple[str, ...], Any] = {}

    def track_buffer(self, read: Callable[[], float]) -> None:
        """Report ``read()`` as ``roost_requestlog_buffered_rows`` at each scrape."""
        self._buffered.set_function(read)

    def observe_predictions(self, predictions: NDArray[Any]) -> None:
        """Count predicted classes (one ``np.unique`` per request), or bucket predicted values."""
        if self.values is not None:
            self.values.observe_many(predictions)
            return
        assert self.predictions is not None
        classes, counts = np.unique(predictions, return_counts=True)
        for cls, count in zip(classes.tolist(), counts.tolist(), strict=True):
            key = ("c", str(cls))
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.predictions.labels(**self._base, **{"class": str(cls)})
            child.inc(count)

    def render(self) -> bytes:
        """The text exposition format (``Content-Type``: :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class RouterMetrics:
    """The router's metrics.

    - ``roost_router_requests_total{model,version,code}``: forwarded requests by the version that
      answered (``none`` when no backend did) and status;
    - ``roost_router_retries_total{model}``: requests retried on another backend after a connect failure;
    - ``roost_router_config_reloads_total{model}``: configuration reloads.
    """

    def __init__(self, model: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model = model
        self.requests = Counter(
            "roost_router_requests", "Forwarded requests, by answering version and status code.",
            ["model", "version", "code"], registry=self.registry,
        )
        self.retries = Counter(
            "roost_router_retries", "Requests retried on another backend.", ["model"], registry=self.registry
        ).labels(model=model)
        self.reloads = Counter(
            "roost_router_config_reloads", "Configuration reloads.", ["model"], registry=self.registry
        ).labels(model=model)
        self._children: dict[tuple[str, str], Any] = {}

    def observe(self, version: str, code: int) -> None:
        key = (version, str(code))
        child = self._children.get(key)
        if child is None:
            child = self.requests.labels(model=self.model, version=version, code=str(code))
            self._children[key] = child
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
