"""``ModelVersion``: a registry version of a model, its verified artifact, lineage and shift-left gates.

The spec is immutable once created; the source is resolved to an artifact digest once and kept, so
a registry version never changes under its name.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from roost.api import common, trainingrun
from roost.api.common import Digest, ObjectName, RoostModel

METRIC_ENUM: list[Any] = list(trainingrun.CLASSIFICATION_METRICS + trainingrun.REGRESSION_METRICS)


class ArtifactSource(RoostModel):
    """An artifact produced elsewhere, pinned by digest."""

    uri: str = Field(min_length=1, max_length=2048, description="Where the skops file lives.")
    digest: Digest = Field(description="sha256:<hex> the bytes must have.")
    dataset_ref: trainingrun.DatasetRef = Field(
        description="Dataset (and version) whose holdout split the artifact is evaluated on.",
    )


class VersionSource(RoostModel):
    """Where the model comes from: exactly one of trainingRunRef and artifact."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.trainingRunRef) != has(self.artifact)",
        "message": "exactly one of source.trainingRunRef and source.artifact must be set",
    }]})

    training_run_ref: common.LocalObjectReference | None = Field(
        default=None, description="A TrainingRun in the same namespace whose artifact this version registers.",
    )
    artifact: ArtifactSource | None = Field(default=None, description="An external artifact, pinned by digest.")


class Threshold(RoostModel):
    """A bound a holdout metric must meet."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.min) || has(self.max)", "message": "a threshold needs min or max",
    }]})

    metric: str = Field(json_schema_extra={"enum": METRIC_ENUM}, description="Metric name.")
    min: float | None = Field(default=None, description="The metric must be at least this.")
    max: float | None = Field(default=None, description="The metric must be at most this.")


class Regression(RoostModel):
    """How much worse than the baseline a metric may be."""

    metric: str = Field(json_schema_extra={"enum": METRIC_ENUM}, description="Metric name.")
    by: float = Field(ge=0, description="Largest allowed regression, in the metric's units.")


class Baseline(RoostModel):
    """Another version this one must not regress against (TFX's blessing)."""

    model_version_ref: common.LocalObjectReference = Field(description="The baseline ModelVersion.")
    max_regression: list[Regression] = Field(
        min_length=1, max_length=16, description="Per-metric allowed regression.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["metric"]},
    )


class Gates(RoostModel):
    """Shift-left checks the version must pass on the holdout to become Ready."""

    thresholds: list[Threshold] = Field(
        default_factory=list, max_length=16, description="Metric bounds.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["metric"]},
    )
    baseline: Baseline | None = Field(default=None, description="No regression against another version.")


class ModelVersionSpec(RoostModel):
    """Desired state of a ModelVersion (immutable once created)."""

    model: ObjectName = Field(description="Registry name of the model.")
    version: int = Field(ge=0, le=2**31 - 1, description="Version number, unique per model in the namespace.")
    source: VersionSource = Field(description="Where the artifact comes from.")
    gates: Gates = Field(default_factory=Gates, description="Checks it must pass to become Ready.")


class VerifiedArtifact(RoostModel):
    """The resolved artifact and whether its bytes matched."""

    uri: str = Field(description="Where the artifact lives.")
    digest: str = Field(description="sha256:<hex>, resolved once and kept.")
    format: str = Field(default="skops", description="Serialisation format.")
    verified: bool = Field(default=False, description="The bytes matched the digest and loaded with trusted types.")


class GateResult(RoostModel):
    """The outcome of one gate."""

    name: str = Field(description="The gate, e.g. threshold:roc_auc or baseline:roc_auc.")
    passed: bool = Field(description="Whether it passed.")
    message: str = Field(default="", description="The values compared.")


class ModelVersionStatus(common.CommonStatus):
    """Observed state of a ModelVersion."""

    job: str | None = Field(default=None, description="Name of the current unit of work, if any.")
    attempts: int = Field(default=0, ge=0, description="Attempts of the current unit of work.")
    artifact: VerifiedArtifact | None = Field(default=None, description="The resolved, verified artifact.")
    dataset_version: dict[str, Any] | None = Field(
        default=None, description="The Dataset version whose holdout the version was evaluated on.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    evaluation_metrics: list[str] | None = Field(
        default=None, max_length=16, description="Metrics re-evaluated.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    metrics: dict[str, float] | None = Field(default=None, description="Metrics re-evaluated on the holdout.")
    headline: trainingrun.NamedValue | None = Field(default=None, description="The first gated metric.")
    gates: list[GateResult] | None = Field(
        default=None, max_length=64, description="Each gate's outcome.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    signature: dict[str, Any] | None = Field(
        default=None, description="Model inputs and outputs.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    lineage: dict[str, Any] | None = Field(
        default=None, description="Where the model came from (copied from its run).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    runtime: dict[str, Any] | None = Field(
        default=None, description="Serving runtime chosen (onnx with parity figures, or sklearn and why).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


KIND = common.KindInfo(
    kind="ModelVersion",
    plural="modelversions",
    short_names=("mv", "mver"),
    spec=ModelVersionSpec,
    status=ModelVersionStatus,
    printer_columns=(
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        {"name": "Version", "type": "integer", "jsonPath": ".spec.version"},
        {"name": "Metric", "type": "string", "jsonPath": ".status.headline.name"},
        {"name": "Value", "type": "number", "jsonPath": ".status.headline.value"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    description="A registered, verified and gated version of a model.",
)
