"""``TrainingRun``: train (and optionally tune) a scikit-learn estimator on a Dataset snapshot.

The spec is immutable once created, like a ``batch/v1`` Job: a retrain is a new TrainingRun.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from roost.api import common
from roost.api.common import Digest, Duration, ObjectName, Resources, RoostModel

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})

# Estimators a TrainingRun may name. Never an arbitrary import: the worker resolves only these.
ESTIMATORS = (
    "sklearn.linear_model.LogisticRegression",
    "sklearn.linear_model.LinearRegression",
    "sklearn.linear_model.Ridge",
    "sklearn.linear_model.Lasso",
    "sklearn.linear_model.ElasticNet",
    "sklearn.linear_model.SGDClassifier",
    "sklearn.linear_model.SGDRegressor",
    "sklearn.ensemble.RandomForestClassifier",
    "sklearn.ensemble.RandomForestRegressor",
    "sklearn.ensemble.ExtraTreesClassifier",
    "sklearn.ensemble.ExtraTreesRegressor",
    "sklearn.ensemble.GradientBoostingClassifier",
    "sklearn.ensemble.GradientBoostingRegressor",
    "sklearn.ensemble.HistGradientBoostingClassifier",
    "sklearn.ensemble.HistGradientBoostingRegressor",
    "sklearn.tree.DecisionTreeClassifier",
    "sklearn.tree.DecisionTreeRegressor",
    "sklearn.neighbors.KNeighborsClassifier",
    "sklearn.neighbors.KNeighborsRegressor",
    "sklearn.svm.SVC",
    "sklearn.svm.SVR",
    "sklearn.naive_bayes.GaussianNB",
)


class Task(StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class NumericPreprocessing(StrEnum):
    NONE = "none"
    STANDARD = "standard"
    MINMAX = "minmax"


class CategoricalPreprocessing(StrEnum):
    ONEHOT = "onehot"
    ORDINAL = "ordinal"


class DatasetRef(RoostModel):
    """The Dataset to train on, optionally pinned to one version."""

    name: ObjectName = Field(description="Name of a Dataset in the same namespace.")
    digest: Digest | None = Field(
        default=None, description="Train on exactly this version (sha256:<hex>); default: the current one.",
    )


class Estimator(RoostModel):
    """A scikit-learn estimator from the allowlist, and its hyperparameters."""

    class_: str = Field(
        alias="class", json_schema_extra={"enum": list(ESTIMATORS)},
        description="Dotted path of an allowlisted scikit-learn estimator.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Constructor parameters; unknown names are refused before training starts.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class Preprocessing(RoostModel):
    """Column transforms put in front of the estimator (a ColumnTransformer built from the schema)."""

    numeric: NumericPreprocessing = Field(default=NumericPreprocessing.NONE, description="none, standard or minmax.")
    categorical: CategoricalPreprocessing = Field(
        default=CategoricalPreprocessing.ONEHOT, description="onehot or ordinal.",
    )


class Goal(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class Objective(RoostModel):
    """What tuning optimises, by cross-validation on the training split."""

    metric: str = Field(
        json_schema_extra={"enum": list(CLASSIFICATION_METRICS + REGRESSION_METRICS)},
        description="Metric to optimise.",
    )
    goal: Goal = Field(default=Goal.MAXIMIZE, description="maximize or minimize.")


class IntRange(RoostModel):
    """An integer range, both ends included."""

    min: int = Field(description="Smallest value.")
    max: int = Field(description="Largest value.")


class FloatRange(RoostModel):
    """A float range; log-uniform when ``log`` is true."""

    min: float = Field(description="Smallest value.")
    max: float = Field(description="Largest value.")
    log: bool = Field(default=False, description="Sample uniformly in log space (min must be > 0).")


class Parameter(RoostModel):
    """One searched hyperparameter: exactly one of int, float, choice."""

    name: str = Field(min_length=1, max_length=128, description="Estimator parameter name.")
    int_: IntRange | None = Field(default=None, alias="int", description="Integer range.")
    float_: FloatRange | None = Field(default=None, alias="float", description="Float range.")
    choice: list[Any] | None = Field(
        default=None, min_length=1, max_length=256, description="Categorical choices.",
        json_schema_extra={"x-kubernetes-list-type": "atomic", "items": {"x-kubernetes-preserve-unknown-fields": True}},
    )


class Strategy(StrEnum):
    GRID = "grid"
    RANDOM = "random"


class Tuning(RoostModel):
    """Hyperparameter search (what Katib does), each trial scored by cross-validation."""

    strategy: Strategy = Field(default=Strategy.RANDOM, description="grid or random.")
    trials: int = Field(default=10, ge=1, le=1000, description="Most trials to run.")
    parallelism: int = Field(default=1, ge=1, le=64, description="Trials run at the same time.")
    folds: int = Field(default=3, ge=2, le=20, description="Cross-validation folds per trial.")
    objective: Objective = Field(description="The metric to optimise.")
    space: list[Parameter] = Field(
        min_length=1, max_length=32, description="The search space, one entry per parameter.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class TrainingRunSpec(RoostModel):
    """Desired state of a TrainingRun (immutable once created)."""

    dataset_ref: DatasetRef = Field(description="The Dataset (and optionally its version) to train on.")
    model: common.ObjectName = Field(description="Registry name the resulting model belongs to.")
    task: Task = Field(default=Task.CLASSIFICATION, description="classification or regression.")
    estimator: Estimator = Field(description="The estimator and its hyperparameters.")
    preprocessing: Preprocessing = Field(default_factory=Preprocessing, description="Column transforms.")
    tuning: Tuning | None = Field(default=None, description="Optional hyperparameter search.")
    metrics: list[str] = Field(
        default_factory=lambda: ["accuracy"], min_length=1, max_length=16,
        description="Metrics computed on the holdout split.",
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "items": {"enum": list(CLASSIFICATION_METRICS + REGRESSION_METRICS)},
        },
    )
    seed: int = Field(default=0, ge=0, description="Random seed passed to the estimator and the search.")
    resources: Resources | None = Field(default=None, description="Compute for the training job.")
    timeout: Duration = Field(default="30m", description="Kill an attempt after this long.")
    backoff_limit: int = Field(default=2, ge=0, le=10, description="Retries after a failed attempt.")


class Artifact(RoostModel):
    """A stored model file."""

    uri: str = Field(description="Where the artifact lives.")
    digest: str = Field(description="sha256:<hex> of its bytes.")
    format: str = Field(default="skops", description="Serialisation format (skops).")


class Trial(RoostModel):
    """One hyperparameter trial."""

    index: int = Field(ge=0, description="Trial number.")
    params: dict[str, Any] = Field(
        description="Parameters tried.", json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    value: float | None = Field(default=None, description="Cross-validated objective value.")


class NamedValue(RoostModel):
    """A metric name and its value."""

    name: str = Field(description="Metric name.")
    value: float = Field(description="Metric value.")


class TrainingRunStatus(common.CommonStatus):
    """Observed state of a TrainingRun."""

    start_time: str | None = Field(default=None, description="When the first attempt started.")
    completion_time: str | None = Field(default=None, description="When the run finished.")
    attempts: int = Field(default=0, ge=0, description="Attempts started so far.")
    dataset_digest: str | None = Field(default=None, description="The Dataset version the run trains on.")
    dataset_version: dict[str, Any] | None = Field(
        default=None, description="Snapshot and split of that Dataset version.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    metrics: dict[str, float] | None = Field(default=None, description="Holdout metrics by name.")
    objective: NamedValue | None = Field(
        default=None, description="The headline metric: the tuning objective, else the first metric.",
    )
    duration_seconds: float | None = Field(default=None, ge=0, description="Training wall time in seconds.")
    artifact: Artifact | None = Field(default=None, description="The trained model.")
    signature: dict[str, Any] | None = Field(
        default=None, description="Input features and output of the model.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    lineage: dict[str, Any] | None = Field(
        default=None, description="Dataset, split, estimator, versions and times that produced the model.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    trials: list[Trial] | None = Field(
        default=None, max_length=20, description="Best trials (all of them are in trialsURI).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    trials_uri: str | None = Field(default=None, description="Every trial, as JSON in the artifact store.")
    best_params: dict[str, Any] | None = Field(
        default=None, description="Parameters the final model was refit with.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    job: str | None = Field(default=None, description="Name of the current unit of work.")


KIND = common.KindInfo(
    kind="TrainingRun",
    plural="trainingruns",
    short_names=("tr", "trun"),
    spec=TrainingRunSpec,
    status=TrainingRunStatus,
    printer_columns=(
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Metric", "type": "string", "jsonPath": ".status.objective.name"},
        {"name": "Value", "type": "number", "jsonPath": ".status.objective.value"},
        {"name": "Duration", "type": "number", "jsonPath": ".status.durationSeconds", "description": "seconds"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    description="Training (and tuning) of a scikit-learn model on a Dataset snapshot.",
)
