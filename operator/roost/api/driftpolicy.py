"""``DriftPolicy``: compare live inputs/outputs of a Deployment with the training reference."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from roost.api import common, trainingrun
from roost.api.common import Duration, RoostModel


class NumericMethod(StrEnum):
    PSI = "psi"
    KS = "ks"
    WASSERSTEIN = "wasserstein"
    JENSENSHANNON = "jensenshannon"


class CategoricalMethod(StrEnum):
    CHI2 = "chi2"
    PSI = "psi"
    JENSENSHANNON = "jensenshannon"


class Correction(StrEnum):
    BONFERRONI = "bonferroni"
    BENJAMINI_HOCHBERG = "benjamini-hochberg"
    NONE = "none"


_BOUND_RULE: dict[str, Any] = {
    "rule": "(self.method in ['ks', 'chi2']) ? has(self.pValue) : has(self.threshold)",
    "message": "ks and chi2 take pValue; psi, wasserstein and jensenshannon take threshold",
}


class NumericTest(RoostModel):
    """The test for numeric features and its bound."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_BOUND_RULE]})

    method: NumericMethod = Field(default=NumericMethod.PSI, description="psi, ks, wasserstein or jensenshannon.")
    threshold: float | None = Field(default=0.2, ge=0, description="Drift when the distance exceeds this.")
    p_value: float | None = Field(default=None, gt=0, lt=1, description="Drift when the p-value is below this.")


class CategoricalTest(RoostModel):
    """The test for categorical features and its bound."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [_BOUND_RULE]})

    method: CategoricalMethod = Field(default=CategoricalMethod.CHI2, description="chi2, psi or jensenshannon.")
    threshold: float | None = Field(default=None, ge=0, description="Drift when the distance exceeds this.")
    p_value: float | None = Field(default=0.05, gt=0, lt=1, description="Drift when the p-value is below this.")


class Features(RoostModel):
    """Which features are tested, and how."""

    include: list[str] = Field(
        default_factory=list, max_length=4096, description="Features to test; empty means all.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    numeric: NumericTest = Field(default_factory=NumericTest, description="Test for numeric features.")
    categorical: CategoricalTest = Field(default_factory=CategoricalTest, description="Test for categorical features.")
    correction: Correction = Field(
        default=Correction.BONFERRONI, description="Family-wise correction for p-value tests.",
    )
    drifted_share: float = Field(
        default=0.0, ge=0, le=1, description="Dataset drift when more than this share of features drifted.",
    )


class PredictionDrift(RoostModel):
    """A test on the model's outputs."""

    method: CategoricalMethod = Field(default=CategoricalMethod.JENSENSHANNON, description="Method.")
    threshold: float = Field(default=0.1, ge=0, description="Drift when the distance exceeds this.")


class Reference(RoostModel):
    """Where the reference distribution comes from."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "self.fromLineage != has(self.datasetRef)",
        "message": "set either fromLineage: true or a datasetRef",
    }]})

    from_lineage: bool = Field(default=True, description="Use the Dataset version behind the served model.")
    dataset_ref: trainingrun.DatasetRef | None = Field(default=None, description="An explicit Dataset version.")


class Window(RoostModel):
    """Which logged requests form the current sample."""

    size: int = Field(default=1000, ge=1, le=10_000_000, description="Most recent rows.")
    max_age: Duration | None = Field(default=None, description="Ignore requests older than this.")


class Schedule(RoostModel):
    """When checks run."""

    interval: Duration = Field(default="5m", description="Time between checks.")


class ActionType(StrEnum):
    NONE = "none"
    RETRAIN = "retrain"


class Action(RoostModel):
    """What to do on drift."""

    type: ActionType = Field(default=ActionType.NONE, description="none or retrain.")
    cooldown: Duration = Field(default="24h", description="Least time between two retrains.")
    propose: bool = Field(default=False, description="After a retrain, propose the new model (never deploy it).")
    template: dict[str, Any] | None = Field(
        default=None, description="TrainingRun spec for the retrain (datasetRef is set to the new version).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class DriftPolicySpec(RoostModel):
    """Desired state of a DriftPolicy."""

    deployment_ref: common.LocalObjectReference = Field(description="The roost.dev Deployment to watch.")
    reference: Reference = Field(default_factory=Reference, description="The reference distribution.")
    features: Features = Field(default_factory=Features, description="Feature tests.")
    prediction_drift: PredictionDrift | None = Field(default=None, description="Test on outputs.")
    window: Window = Field(default_factory=Window, description="Current sample.")
    min_samples: int = Field(default=200, ge=1, description="Fewer samples than this: no verdict.")
    schedule: Schedule = Field(default_factory=Schedule, description="When checks run.")
    action: Action = Field(default_factory=Action, description="What to do on drift.")


class FeatureDrift(RoostModel):
    """One feature's drift score."""

    name: str = Field(description="Feature.")
    method: str = Field(description="Test used.")
    score: float = Field(description="Statistic or p-value.")
    threshold: float = Field(description="Bound it was compared with.")
    drifted: bool = Field(description="Whether it drifted.")


class DriftPolicyStatus(common.CommonStatus):
    """Observed state of a DriftPolicy."""

    last_check_time: str | None = Field(default=None, description="When the last check ran.")
    samples: int | None = Field(default=None, ge=0, description="Rows in the last window.")
    drift_detected: bool | None = Field(default=None, description="The last verdict.")
    drifted_share: float | None = Field(default=None, ge=0, le=1, description="Share of drifted features.")
    features: list[FeatureDrift] | None = Field(
        default=None, max_length=20, description="Top drifted features (all in the report).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    report_uri: str | None = Field(default=None, description="HTML report of the last check.")
    job: str | None = Field(default=None, description="Name of the running check, if any.")
    attempts: int = Field(default=0, ge=0, description="Attempts of the running check.")
    reference: dict[str, Any] | None = Field(
        default=None, description="The Dataset version the checks compare with (name, digest, profile).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    retrain: dict[str, Any] | None = Field(
        default=None,
        description="The last retrain: TrainingRun name, Dataset digest, time, state (Running, Evaluating, "
                    "Proposed, Rejected, Failed, Succeeded) and the evaluate unit of its proposal.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    proposal: dict[str, Any] | None = Field(
        default=None, description="A proposed ModelVersion and Deployment change, with evidence.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


KIND = common.KindInfo(
    kind="DriftPolicy",
    plural="driftpolicies",
    short_names=("dp", "drift"),
    spec=DriftPolicySpec,
    status=DriftPolicyStatus,
    printer_columns=(
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Drifted", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Drifted\")].status"},
        {"name": "Share", "type": "number", "jsonPath": ".status.driftedShare"},
        {"name": "Last Check", "type": "date", "jsonPath": ".status.lastCheckTime"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    description="Scheduled drift checks of a Deployment's live data against its training reference.",
)
