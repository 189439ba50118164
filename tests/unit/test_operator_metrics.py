"""The operator's drift gauges follow each check's status."""

from __future__ import annotations

from roost.controllers import metrics


def test_record_drift_sets_policy_and_feature_gauges() -> None:
    status = {"driftDetected": True, "driftedShare": 0.1,
              "features": [{"name": "mean_radius", "method": "ks", "score": 1e-9, "drifted": True},
                           {"name": "mean_area", "method": "ks", "score": 0.8, "drifted": False}]}
    metrics.record_drift("ns", "p", status)
    value = metrics.REGISTRY.get_sample_value
    assert value("roost_drift_detected", {"namespace": "ns", "policy": "p"}) == 1
    assert value("roost_drift_drifted_share", {"namespace": "ns", "policy": "p"}) == 0.1
    assert value("roost_drift_feature_drifted", {"namespace": "ns", "policy": "p", "feature": "mean_radius"}) == 1
    assert value("roost_drift_feature_score",
                 {"namespace": "ns", "policy": "p", "feature": "mean_area", "method": "ks"}) == 0.8
    metrics.record_drift("ns", "p", {"driftDetected": None})
    assert value("roost_drift_detected", {"namespace": "ns", "policy": "p"}) == -1
