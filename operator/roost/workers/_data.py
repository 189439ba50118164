"""What the train and evaluate workers share: reading a Dataset version, and scoring a model on it.

A Dataset version is three things the profile worker wrote: a Parquet snapshot (feature columns and
the target, under their original names), a split (``{"train": [row], "test": [row], "seed",
"testFraction", "stratified"}``, positions in the snapshot) and a schema (``[{"name", "type",
"missing"}]``, features only). Both are read with their sha256 checked, so a model is only ever
trained or judged on the exact bytes the Dataset recorded.

Metrics are computed in one place so that a training run's holdout numbers, its cross-validation
scores and a ModelVersion's re-evaluation use the same definitions (scikit-learn's
``sklearn.metrics``, https://scikit-learn.org/stable/modules/model_evaluation.html).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as sk_metrics
from sklearn.utils import multiclass

from roost import errors
from roost.api import trainingrun
from roost.storage import store as store_mod

FEATURE_TYPES = ("numeric", "categorical", "boolean", "datetime")
# Feature types a model can take as input; datetime columns are left out of the model.
MODEL_FEATURE_TYPES = ("numeric", "categorical", "boolean")


@dataclass(frozen=True)
class Feature:
    """One feature column of the snapshot: ``type`` is numeric, categorical, boolean or datetime."""

    name: str
    type: str


@dataclass(frozen=True)
class DatasetRef:
    """The Dataset version a job names (the ``dataset`` object of a train or evaluate job)."""

    name: str
    digest: str
    snapshot_uri: str
    snapshot_digest: str
    split_uri: str
    split_digest: str
    features: tuple[Feature, ...]
    target: str

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> DatasetRef:
        """Parse the job's ``dataset`` object.

        Raises:
            roost.errors.PermanentError: reason ``InvalidInput`` when a field is missing or malformed.
        """
        try:
            features = tuple(Feature(str(f["name"]), str(f["type"])) for f in wire["schema"])
            ref = cls(
                name=str(wire["name"]), digest=str(wire["digest"]),
                snapshot_uri=str(wire["snapshotURI"]), snapshot_digest=str(wire["snapshotDigest"]),
                split_uri=str(wire["splitURI"]), split_digest=str(wire["splitDigest"]),
                features=features, target=str(wire["target"]),
            )
        except (KeyError, TypeError) as e:
            raise errors.PermanentError("InvalidInput", f"the job's dataset is malformed: missing {e}") from e
        unknown = sorted({f.type for f in features} - set(FEATURE_TYPES))
        if unknown:
            raise errors.PermanentError("InvalidInput", f"unknown feature types in the schema: {unknown}")
        return ref

    @property
    def model_features(self) -> tuple[Feature, ...]:
        """The features a model takes, in schema order (datetime features are left out)."""
        return tuple(f for f in self.features if f.type in MODEL_FEATURE_TYPES)


@dataclass(frozen=True)
class Split:
    """Row positions of the training and holdout sets, and how they were drawn."""

    train: np.ndarray[Any, np.dtype[np.intp]]
    test: np.ndarray[Any, np.dtype[np.intp]]
    seed: int
    test_fraction: float
    stratified: bool
    digest: str


@dataclass(frozen=True)
class Data:
    """A Dataset version in memory: features typed by the schema, the target, the split."""

    ref: DatasetRef
    features: pd.DataFrame  # every schema feature that a model can take, in schema order
    target: pd.Series
    split: Split

    def x(self, rows: np.ndarray[Any, Any], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Feature rows at ``rows`` (positions), ``columns`` in the given order (default: schema order)."""
        frame = self.features if columns is None else self.features.loc[:, list(columns)]
        return frame.iloc[rows].reset_index(drop=True)

    def y(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Target values at ``rows`` as a numpy array."""
        return np.asarray(self.target.iloc[rows].to_numpy())


def load(store: store_mod.Store, wire: Mapping[str, Any]) -> Data:
    """Read the snapshot and split a job names, verifying both digests while reading.

    Raises:
        roost.storage.store.DigestMismatch: reason ``DigestMismatch``.
        roost.errors.PermanentError: ``InvalidInput`` (malformed job, split or target),
            ``SchemaMismatch`` (a schema feature or the target is not in the snapshot, or a numeric
            feature holds non-numbers).
        roost.errors.ExternalError: the store could not be read.
    """
    ref = DatasetRef.from_wire(wire)
    snapshot = pd.read_parquet(io.BytesIO(store.read_bytes(ref.snapshot_uri, ref.snapshot_digest)))
    split = _read_split(store, ref, rows=len(snapshot))
    missing = [f.name for f in ref.features if f.name not in snapshot.columns]
    if ref.target not in snapshot.columns:
        missing.append(ref.target)
    if missing:
        raise errors.PermanentError(
            "SchemaMismatch", f"columns missing from the snapshot: {', '.join(missing)}",
        )
    target = snapshot[ref.target]
    used = np.concatenate([split.train, split.test])
    unlabeled = int(target.iloc[used].isna().sum())
    if unlabeled:
        raise errors.PermanentError(
            "InvalidInput", f"the target {ref.target!r} is missing in {unlabeled} rows of the split",
        )
    return Data(ref=ref, features=feature_frame(snapshot, ref.model_features), target=target, split=split)


def feature_frame(frame: pd.DataFrame, features: Iterable[Feature]) -> pd.DataFrame:
    """The model input: ``features`` of ``frame`` in order, typed for scikit-learn.

    numeric stays numeric (int64 or float64); boolean becomes ``object`` Python bools (``"true"``,
    ``"yes"``, ``1``... read as True) and categorical ``object`` strings, both with NaN for missing,
    so the encoders see one kind of value whatever the file stored.

    Raises:
        roost.errors.PermanentError: reason ``SchemaMismatch`` when a numeric column holds non-numbers.
    """
    columns: dict[str, pd.Series] = {}
    for feature in features:
        column = frame[feature.name]
        if feature.type == "numeric":
            try:
                columns[feature.name] = pd.to_numeric(column)
            except (ValueError, TypeError) as e:
                raise errors.PermanentError(
                    "SchemaMismatch", f"feature {feature.name!r} is declared numeric but holds {e}",
                ) from e
        else:
            convert = _as_bool if feature.type == "boolean" else str
            columns[feature.name] = pd.Series(
                [np.nan if _missing(v) else convert(v) for v in column], index=frame.index, dtype=object,
            )
    return pd.DataFrame(columns, index=frame.index)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float) and math.isnan(value)
    )


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "t", "y")
    return bool(value)


def _read_split(store: store_mod.Store, ref: DatasetRef, rows: int) -> Split:
    raw = json.loads(store.read_bytes(ref.split_uri, ref.split_digest))
    try:
        train = np.asarray(raw["train"], dtype=np.intp)
        test = np.asarray(raw["test"], dtype=np.intp)
        split = Split(
            train=train, test=test, seed=int(raw["seed"]), test_fraction=float(raw["testFraction"]),
            stratified=bool(raw["stratified"]), digest=ref.split_digest,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise errors.PermanentError("InvalidInput", f"{ref.split_uri}: malformed split: {e}") from e
    for name, part in (("train", train), ("test", test)):
        if part.size == 0:
            raise errors.PermanentError("InvalidInput", f"{ref.split_uri}: the {name} set is empty")
        if part.min() < 0 or part.max() >= rows:
            raise errors.PermanentError(
                "InvalidInput", f"{ref.split_uri}: {name} rows out of range for a snapshot of {rows} rows",
            )
    return split


# ----- metrics ----------------------------------------------------------------------------------------
METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "classification": trainingrun.CLASSIFICATION_METRICS,
    "regression": trainingrun.REGRESSION_METRICS,
}


def check_metrics(task: str, names: Iterable[str]) -> None:
    """Refuse metrics that do not fit ``task``.

    Raises:
        roost.errors.PermanentError: reason ``InvalidSpec``, naming each misfit and the metrics allowed.
    """
    allowed = METRICS_BY_TASK.get(task)
    if allowed is None:
        raise errors.PermanentError(
            "InvalidSpec", f"unknown task {task!r}: expected classification or regression",
        )
    misfits = [n for n in names if n not in allowed]
    if misfits:
        raise errors.PermanentError(
            "InvalidSpec",
            f"metrics {', '.join(misfits)} do not fit a {task} task; allowed: {', '.join(allowed)}",
        )


def check_target(task: str, y: np.ndarray[Any, Any]) -> None:
    """Refuse a target that does not fit ``task`` (``sklearn.utils.multiclass.type_of_target``).

    Raises:
        roost.errors.PermanentError: reason ``InvalidSpec``.
    """
    kind = multiclass.type_of_target(y)
    if task == "classification" and kind not in ("binary", "multiclass"):
        raise errors.PermanentError(
            "InvalidSpec", f"the target is {kind}, not class labels: use task regression",
        )
    if task == "regression" and not np.issubdtype(np.asarray(y).dtype, np.number):
        raise errors.PermanentError("InvalidSpec", "the target is not numeric: use task classification")


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better (False for ``trainingrun.LOWER_IS_BETTER``)."""
    return metric not in trainingrun.LOWER_IS_BETTER


def score(model: Any, x: pd.DataFrame, y: np.ndarray[Any, Any], names: Sequence[str]) -> dict[str, float]:
    """Compute ``names`` for a fitted ``model`` on ``(x, y)``; predictions are made once.

    Classification: ``accuracy``; ``precision``/``recall``/``f1`` with ``average='binary'`` and the
    larger class (``model.classes_[-1]``) as positive when there are two classes, else
    ``average='weighted'``; ``roc_auc`` from ``predict_proba[:, 1]`` (binary, or the decision function
    when the model has no probabilities) or one-vs-rest weighted (multiclass); ``log_loss`` from
    ``predict_proba`` with the model's classes. Regression: ``rmse``, ``mae`` (target units), ``r2``.

    Returns:
        ``{name: value}`` as Python floats, in the order of ``names``.

    Raises:
        roost.errors.PermanentError: ``InvalidSpec`` when the model cannot give what a metric needs
            (probabilities for ``log_loss``); ``InvalidInput`` when a metric is undefined on this data
            (e.g. ``roc_auc`` with one class in the holdout).
    """
    scorers = _scorers(model, x)
    values: dict[str, float] = {}
    for name in names:
        if name not in scorers:
            raise errors.PermanentError("InvalidSpec", f"unknown metric {name!r}")
        try:
            values[name] = float(scorers[name](y))
        except ValueError as e:
            raise errors.PermanentError("InvalidInput", f"{name} is undefined on this data: {e}") from e
    return values


def cv_scorer(metric: str) -> Callable[[Any, pd.DataFrame, Any], float]:
    """A ``scoring`` callable for ``sklearn.model_selection.cross_validate`` that returns ``metric``
    exactly as :func:`score` defines it (not negated: the caller minimises lower-is-better metrics)."""
    return _CVScorer(metric)


@dataclass(frozen=True)
class _CVScorer:
    metric: str

    def __call__(self, model: Any, x: pd.DataFrame, y: Any) -> float:
        return score(model, x, np.asarray(y), [self.metric])[self.metric]


def _scorers(model: Any, x: pd.DataFrame) -> dict[str, Callable[[np.ndarray[Any, Any]], float]]:
    """Lazy metric functions of ``y_true`` sharing one ``predict`` and one ``predict_proba``."""
    cache: dict[str, Any] = {}

    def predicted() -> Any:
        if "predict" not in cache:
            cache["predict"] = model.predict(x)
        return cache["predict"]

    def proba(metric: str) -> Any:
        if "proba" not in cache:
            if not hasattr(model, "predict_proba"):
                raise errors.PermanentError(
                    "InvalidSpec", f"{metric} needs predicted probabilities; the model has no predict_proba",
                )
            cache["proba"] = model.predict_proba(x)
        return cache["proba"]

    classes = np.asarray(getattr(model, "classes_", []))
    binary = len(classes) == 2
    averaged: dict[str, Any] = {"zero_division": 0.0} | (
        {"average": "binary", "pos_label": classes[-1]} if binary else {"average": "weighted"}
    )

    def roc_auc(y: np.ndarray[Any, Any]) -> float:
        if binary:
            has_proba = hasattr(model, "predict_proba")
            scores = proba("roc_auc")[:, 1] if has_proba else model.decision_function(x)
            return float(sk_metrics.roc_auc_score(y, scores))
        return float(sk_metrics.roc_auc_score(
            y, proba("roc_auc"), multi_class="ovr", average="weighted", labels=classes,
        ))

    return {
        "accuracy": lambda y: sk_metrics.accuracy_score(y, predicted()),
        "precision": lambda y: sk_metrics.precision_score(y, predicted(), **averaged),
        "recall": lambda y: sk_metrics.recall_score(y, predicted(), **averaged),
        "f1": lambda y: sk_metrics.f1_score(y, predicted(), **averaged),
        "roc_auc": roc_auc,
        "log_loss": lambda y: sk_metrics.log_loss(y, proba("log_loss"), labels=classes),
        "rmse": lambda y: sk_metrics.root_mean_squared_error(y, predicted()),
        "mae": lambda y: sk_metrics.mean_absolute_error(y, predicted()),
        "r2": lambda y: sk_metrics.r2_score(y, predicted()),
    }
