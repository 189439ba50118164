"""The API models: parsing, defaults, validation, durations."""

from __future__ import annotations

import datetime

import pydantic
import pytest

from roost.api import common, dataset, deployment, driftpolicy, modelversion, trainingrun


def test_dataset_spec_applies_defaults_and_camel_case() -> None:
    spec = dataset.DatasetSpec.model_validate({"source": {"uri": "file:///d.csv"}, "target": "y"})
    assert spec.source.format == dataset.DataFormat.CSV
    assert spec.split.test_fraction == 0.2 and spec.split.seed == 42 and spec.split.stratify
    assert spec.to_wire()["split"]["testFraction"] == 0.2
    assert "refreshInterval" not in spec.to_wire()


@pytest.mark.parametrize(("field", "value"), [
    ("target", ""),
    ("source", {"uri": "ftp://x"}),
    ("source", {"uri": "file:///d.csv", "digest": "sha256:xyz"}),
    ("refreshInterval", "soon"),
    ("split", {"testFraction": 0}),
    ("unknown", 1),
])
def test_dataset_spec_refuses_bad_values(field: str, value: object) -> None:
    raw = {"source": {"uri": "file:///d.csv"}, "target": "y", field: value}
    with pytest.raises(pydantic.ValidationError):
        dataset.DatasetSpec.model_validate(raw)


def test_trainingrun_estimator_must_be_allowlisted_by_the_schema() -> None:
    schema = trainingrun.TrainingRunSpec.model_json_schema(by_alias=True)
    estimator = schema["$defs"]["Estimator"]["properties"]["class"]
    assert "sklearn.ensemble.RandomForestClassifier" in estimator["enum"]
    assert all(name.startswith("sklearn.") for name in estimator["enum"])


def test_modelversion_spec_reads_either_source() -> None:
    spec = modelversion.ModelVersionSpec.model_validate(
        {"model": "m", "version": 2, "source": {"trainingRunRef": {"name": "r"}},
         "gates": {"thresholds": [{"metric": "roc_auc", "min": 0.97}]}})
    assert spec.source.training_run_ref is not None and spec.source.training_run_ref.name == "r"
    assert spec.gates.thresholds[0].min == 0.97


def test_deployment_defaults_to_replace_with_default_analysis_metrics() -> None:
    spec = deployment.DeploymentSpec.model_validate({"modelVersion": "v1"})
    assert spec.strategy.type == deployment.StrategyType.REPLACE
    analysis = deployment.Analysis()
    assert [m.name for m in analysis.metrics] == ["error-rate", "latency-p95"]


def test_driftpolicy_defaults() -> None:
    spec = driftpolicy.DriftPolicySpec.model_validate({"deploymentRef": {"name": "d"}})
    assert spec.features.numeric.method == driftpolicy.NumericMethod.PSI
    assert spec.features.categorical.p_value == 0.05
    assert spec.schedule.interval == "5m"


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert common.parse_duration(text) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 minutes", "-1s"])
def test_parse_duration_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        common.parse_duration(text)
