"""The operator's own Prometheus metrics (``roost run --metrics-port``): drift scores per feature and
verdicts per policy, set after every check."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, start_http_server

REGISTRY = CollectorRegistry()
FEATURE_SCORE = Gauge("roost_drift_feature_score", "Latest drift statistic or p-value per feature",
                      ["namespace", "policy", "feature", "method"], registry=REGISTRY)
FEATURE_DRIFTED = Gauge("roost_drift_feature_drifted", "1 when the feature drifted in the latest check",
                        ["namespace", "policy", "feature"], registry=REGISTRY)
POLICY_DRIFTED = Gauge("roost_drift_detected", "1 drift, 0 no drift, -1 not enough data",
                       ["namespace", "policy"], registry=REGISTRY)
POLICY_SHARE = Gauge("roost_drift_drifted_share", "Share of drifted features in the latest check",
                     ["namespace", "policy"], registry=REGISTRY)


def serve(port: int) -> None:
    """Expose the registry on ``0.0.0.0:<port>/metrics``."""
    start_http_server(port, registry=REGISTRY)


def record_drift(namespace: str, policy: str, status: dict[str, Any]) -> None:
    """Set the gauges from a DriftPolicy's status after a check."""
    detected = status.get("driftDetected")
    POLICY_DRIFTED.labels(namespace, policy).set(-1 if detected is None else int(bool(detected)))
    POLICY_SHARE.labels(namespace, policy).set(float(status.get("driftedShare") or 0.0))
    for f in status.get("features") or []:
        FEATURE_SCORE.labels(namespace, policy, f["name"], f["method"]).set(float(f["score"]))
        FEATURE_DRIFTED.labels(namespace, policy, f["name"]).set(int(bool(f["drifted"])))
