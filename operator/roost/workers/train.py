"""The ``train`` worker: fit (and optionally tune) a scikit-learn pipeline on a Dataset version.

It runs inside a unit of work (a subprocess or a Kubernetes Job) for one TrainingRun attempt and
returns what the operator records in the run's status: holdout metrics, the model artifact (skops,
content-addressed), its signature, its lineage and the tuning trials. The estimator is resolved only
from ``roost.api.trainingrun.ESTIMATORS`` (never an arbitrary import), so a manifest cannot make the
worker import code.

The model is one ``sklearn.pipeline.Pipeline``: a ``ColumnTransformer`` built from the Dataset schema
(impute, then scale numeric columns or encode categorical ones) in front of the estimator, fitted on
a DataFrame whose columns are the features in schema order. Serving and drift checks therefore feed
it rows by feature name, exactly as the signature lists them.

Tuning follows scikit-learn's model selection (https://scikit-learn.org/stable/modules/grid_search.html):
candidates from ``ParameterGrid`` or ``ParameterSampler``, each scored by ``cross_validate`` on the
training split only (the holdout is never seen while choosing), trials in parallel processes
(joblib), then a refit with the best parameters on the whole training split.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import pydantic
from scipy import stats
from sklearn import base as sk_base
from sklearn import compose, impute, model_selection, pipeline, preprocessing
from sklearn.utils import _param_validation, parallel

from roost import errors
from roost.api import trainingrun
from roost.storage import models
from roost.storage import store as store_mod
from roost.workers import _data

log = logging.getLogger("roost.worker.train")

TOP_TRIALS = 20  # trials kept in the run's status; all of them are in trialsURI
ESTIMATOR_STEP = "estimator"
PREPROCESS_STEP = "preprocess"
MISSING_CATEGORY = "missing"  # what a missing categorical value is encoded as
# How each branch treats missing values, as recorded in the lineage.
MISSING_VALUES = {"numeric": "median", "categorical": f"constant:{MISSING_CATEGORY}", "boolean": "encoded:-1"}


def run(job: dict[str, Any], store: store_mod.Store, output: str) -> dict[str, Any]:
    """Train one TrainingRun attempt.

    Args:
        job: ``{"run": {"namespace", "name"}, "spec": <TrainingRunSpec, camelCase>, "dataset":
            {"name", "digest", "snapshotURI", "snapshotDigest", "splitURI", "splitDigest",
            "schema": [{"name", "type", "missing"}], "target"}, "attempt": int}``.
        store: the artifact store holding the snapshot and split; the model and trials go there.
        output: the attempt's result prefix (unused: every artifact is content-addressed, and the
            runner writes ``result.json``).

    Returns:
        ``{"ok": True, "metrics": {name: float}, "objective": {"name", "value"}, "artifact": {"uri",
        "digest", "format": "skops"}, "signature": {...}, "lineage": {...}, "trials": [{"index",
        "params", "value"}] (best 20, best first; [] untuned), "trialsURI": str | None, "bestParams":
        dict | None, "trainRows": int, "testRows": int}``. Metric values are on the holdout split;
        the objective is the tuning objective's cross-validated value when tuned, else the first
        metric on the holdout.

    Raises:
        roost.errors.PermanentError: ``InvalidSpec`` (estimator not allowlisted, unknown or invalid
            parameter, metric or target that does not fit the task, bad search space, every trial
            failed), ``InvalidInput``/``SchemaMismatch`` (the dataset), ``DigestMismatch`` (the
            snapshot or split bytes changed), ``TrainingFailed`` (the final fit failed on the data).
        roost.errors.ExternalError: the store could not be read or written (retried).
    """
    del output
    start_time = _now()
    spec = parse_spec(job.get("spec"))
    task = spec.task.value
    _data.check_metrics(task, spec.metrics)
    estimator = resolve_estimator(spec.estimator.class_, task)
    params = initial_params(estimator, spec.estimator.params, spec.seed)
    search = plan_search(spec.tuning, estimator, task, spec.seed) if spec.tuning else None

    data = _data.load(store, job.get("dataset") or {})
    features = data.ref.model_features
    if not features:
        raise errors.PermanentError("InvalidInput", "no numeric, categorical or boolean feature to train on")
    x_train, y_train = data.x(data.split.train), data.y(data.split.train)
    x_test, y_test = data.x(data.split.test), data.y(data.split.test)
    _data.check_target(task, y_train)
    template = build_pipeline(features, spec.preprocessing, sk_base.clone(estimator).set_params(**params))

    trials: list[dict[str, Any]] = []
    best: dict[str, Any] = {"params": None, "value": None}
    if search is not None:
        started = time.monotonic()
        trials = run_trials(template, search, x_train, y_train, seed=spec.seed)
        best = best_trial(trials, search.goal)
        log.info("Tuned %s: %d trials in %.1fs, best %s=%.4g with %s", spec.estimator.class_, len(trials),
                 time.monotonic() - started, search.metric, best["value"], best["params"])

    final = sk_base.clone(template).set_params(**_step_params(best["params"] or {}))
    started = time.monotonic()
    fit(final, x_train, y_train)
    log.info("Fitted %s on %d rows in %.2fs", spec.estimator.class_, len(y_train), time.monotonic() - started)

    metrics = _data.score(final, x_test, y_test, spec.metrics)
    stored = store.put_bytes(models.dump(final))
    artifact = {"uri": stored.uri, "digest": stored.digest, "format": models.FORMAT}
    trials_uri: str | None = None
    if search is not None:
        trials_uri = store.put_bytes(_trials_document(search, trials)).uri
        objective = {"name": search.metric, "value": best["value"]}
    else:
        objective = {"name": spec.metrics[0], "value": metrics[spec.metrics[0]]}

    fitted_estimator = final.named_steps[ESTIMATOR_STEP]
    lineage = {
        "dataset": {"name": data.ref.name, "digest": data.ref.digest},
        "split": {
            "seed": data.split.seed, "testFraction": data.split.test_fraction,
            "stratified": data.split.stratified, "digest": data.split.digest,
        },
        "estimator": {
            "class": spec.estimator.class_, "params": json_native(fitted_estimator.get_params(deep=False)),
        },
        "preprocessing": {
            "numeric": spec.preprocessing.numeric.value,
            "categorical": spec.preprocessing.categorical.value,
            "boolean": "ordinal",
            "missingValues": dict(MISSING_VALUES),
            "droppedFeatures": [f.name for f in data.ref.features if f.type not in _data.MODEL_FEATURE_TYPES],
        },
        "seed": spec.seed,
        "versions": versions(),
        "startTime": start_time,
        "endTime": _now(),
    }
    if search is not None:
        lineage["tuning"] = {
            "strategy": search.strategy, "trials": len(trials), "spaceSize": search.space_size,
            "folds": search.folds, "objective": {"metric": search.metric, "goal": search.goal},
        }
    return {
        "ok": True,
        "metrics": metrics,
        "objective": objective,
        "artifact": artifact,
        "signature": models.signature_of(final, x_train, data.ref.target),
        "lineage": lineage,
        "trials": [_public_trial(t) for t in _ranked(trials, search.goal)[:TOP_TRIALS]] if search else [],
        "trialsURI": trials_uri,
        "bestParams": best["params"],
        "trainRows": len(y_train),
        "testRows": len(y_test),
    }


# ----- the spec ---------------------------------------------------------------------------------------
def parse_spec(wire: Any) -> trainingrun.TrainingRunSpec:
    """Validate the TrainingRun spec (camelCase wire form).

    Raises:
        roost.errors.PermanentError: reason ``InvalidSpec`` with pydantic's description of each error.
    """
    try:
        return trainingrun.TrainingRunSpec.model_validate(wire)
    except pydantic.ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise errors.PermanentError("InvalidSpec", f"invalid TrainingRun spec: {problems}") from e


def resolve_estimator(dotted: str, task: str) -> Any:
    """An unfitted instance (default parameters) of an allowlisted estimator that fits ``task``.

    Only the exact dotted paths in ``trainingrun.ESTIMATORS`` are imported.

    Raises:
        roost.errors.PermanentError: reason ``InvalidSpec`` when the class is not allowlisted, or is a
            regressor for a classification task (or the reverse).
    """
    if dotted not in trainingrun.ESTIMATORS:
        raise errors.PermanentError(
            "InvalidSpec",
            f"estimator {dotted!r} is not allowed; allowed: {', '.join(trainingrun.ESTIMATORS)}",
        )
    module, _, name = dotted.rpartition(".")
    estimator = getattr(importlib.import_module(module), name)()
    fits = sk_base.is_classifier(estimator) if task == "classification" else sk_base.is_regressor(estimator)
    if not fits:
        role = "classifier" if task == "classification" else "regressor"
        raise errors.PermanentError("InvalidSpec", f"{dotted} is not a {role}; the task is {task}")
    return estimator


def initial_params(estimator: Any, params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The spec's parameters, checked against ``estimator.get_params()``, plus ``random_state=seed``
    when the estimator has one and the spec does not set it.

    Raises:
        roost.errors.PermanentError: reason ``InvalidSpec`` naming each unknown parameter.
    """
    _check_param_names(estimator, params, "estimator.params")
    merged = dict(params)
    if "random_state" in estimator.get_params(deep=False) and "random_state" not in merged:
        merged["random_state"] = seed
    return merged


def _check_param_names(estimator: Any, names: Any, where: str) -> None:
    known = estimator.get_params(deep=False)
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        raise errors.PermanentError(
            "InvalidSpec",
            f"{where}: unknown parameter(s) {', '.join(unknown)} for {type(estimator).__name__}; "
            f"known: {', '.join(sorted(known))}",
        )


# ----- the pipeline -----------------------------------------------------------------------------------
def build_pipeline(
    features: Sequence[_data.Feature], spec: trainingrun.Preprocessing, estimator: Any,
) -> pipeline.Pipeline:
    """``Pipeline([("preprocess", ColumnTransformer), ("estimator", estimator)])`` for ``features``.

    Branches (named after the feature type, which :func:`roost.storage.models.signature_of` reads):
    ``numeric`` = median ``SimpleImputer`` then ``StandardScaler``/``MinMaxScaler``/nothing;
    ``categorical`` = ``SimpleImputer`` filling ``"missing"`` then ``OneHotEncoder(handle_unknown=
    "ignore")`` or ``OrdinalEncoder`` with unknown values as -1; ``boolean`` = ``OrdinalEncoder``
    (False 0, True 1, missing -1), which takes both ``bool`` columns and ``object`` columns with
    missing values (``SimpleImputer`` refuses ``bool``). Output is dense (some estimators refuse
    sparse input).
    """
    by_type: dict[str, list[str]] = {"numeric": [], "boolean": [], "categorical": []}
    for feature in features:
        by_type[feature.type].append(feature.name)
    numeric_steps: list[tuple[str, Any]] = [("impute", impute.SimpleImputer(strategy="median"))]
    if spec.numeric == trainingrun.NumericPreprocessing.STANDARD:
        numeric_steps.append(("scale", preprocessing.StandardScaler()))
    elif spec.numeric == trainingrun.NumericPreprocessing.MINMAX:
        numeric_steps.append(("scale", preprocessing.MinMaxScaler()))
    encoder: Any = (
        preprocessing.OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        if spec.categorical == trainingrun.CategoricalPreprocessing.ONEHOT
        else preprocessing.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
    )
    branches: dict[str, Any] = {
        "numeric": pipeline.Pipeline(numeric_steps),
        "boolean": preprocessing.OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1,
        ),
        "categorical": pipeline.Pipeline([
            ("impute", impute.SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            ("encode", encoder),
        ]),
    }
    transformers = [(kind, branches[kind], columns) for kind, columns in by_type.items() if columns]
    columns = compose.ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return pipeline.Pipeline([(PREPROCESS_STEP, columns), (ESTIMATOR_STEP, estimator)])


def fit(model: pipeline.Pipeline, x: pd.DataFrame, y: np.ndarray[Any, Any]) -> None:
    """Fit ``model`` in place, turning scikit-learn's refusals into permanent errors.

    Raises:
        roost.errors.PermanentError: ``InvalidSpec`` when a parameter value is invalid
            (``InvalidParameterError``), ``TrainingFailed`` for any other refusal of the data.
    """
    try:
        model.fit(x, y)
    except _param_validation.InvalidParameterError as e:
        raise errors.PermanentError("InvalidSpec", f"invalid estimator parameter: {e}") from e
    except (ValueError, TypeError) as e:
        raise errors.PermanentError("TrainingFailed", f"fitting failed: {e}") from e


def _step_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{ESTIMATOR_STEP}__{name}": value for name, value in params.items()}


# ----- tuning -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Search:
    """A planned hyperparameter search: the candidates, in trial order, and how to score them."""

    strategy: str
    metric: str
    goal: str  # "maximize" | "minimize"
    folds: int
    parallelism: int
    candidates: tuple[dict[str, Any], ...]
    space_size: int | None  # number of grid points (grid, or random over choices and ints only)


def plan_search(tuning: trainingrun.Tuning, estimator: Any, task: str, seed: int) -> Search:
    """Check the search space and draw the candidates.

    grid: every combination (``sklearn.model_selection.ParameterGrid``, in its order) of choices and
    int ranges, the first ``trials`` of them; float ranges are refused (list the values as a choice).
    random: ``trials`` draws (``ParameterSampler`` seeded with ``seed``): choices uniformly, int
    ranges uniformly (``scipy.stats.randint``), float ranges uniformly or log-uniformly
    (``scipy.stats.uniform``/``loguniform``). The goal defaults to the metric's direction; an
    explicit goal against it (maximising ``rmse``) is refused.

    Raises:
        roost.errors.PermanentError: reason ``InvalidSpec``.
    """
    metric = tuning.objective.metric
    _data.check_metrics(task, [metric])
    natural = "maximize" if _data.higher_is_better(metric) else "minimize"
    goal = tuning.objective.goal.value if "goal" in tuning.objective.model_fields_set else natural
    if goal != natural:
        raise errors.PermanentError(
            "InvalidSpec", f"tuning.objective: {metric} is {'higher' if natural == 'maximize' else 'lower'}"
            f"-is-better; goal {goal} would choose the worst trial",
        )
    names = [p.name for p in tuning.space]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise errors.PermanentError(
            "InvalidSpec", f"tuning.space: parameters listed twice: {', '.join(duplicates)}",
        )
    _check_param_names(estimator, names, "tuning.space")
    grid = tuning.strategy == trainingrun.Strategy.GRID
    space = {p.name: _distribution(p, grid) for p in tuning.space}
    discrete = all(isinstance(v, list) for v in space.values())
    size = len(model_selection.ParameterGrid(space)) if discrete else None
    if grid:
        points = model_selection.ParameterGrid(space)
        candidates = [points[i] for i in range(min(tuning.trials, len(points)))]
    else:
        candidates = list(model_selection.ParameterSampler(
            space, n_iter=tuning.trials if size is None else min(tuning.trials, size), random_state=seed,
        ))
    return Search(
        strategy=tuning.strategy.value, metric=metric, goal=goal, folds=tuning.folds,
        parallelism=tuning.parallelism, candidates=tuple(json_native(c) for c in candidates), space_size=size,
    )


def _distribution(p: trainingrun.Parameter, grid: bool) -> Any:
    given = [k for k, v in (("int", p.int_), ("float", p.float_), ("choice", p.choice)) if v is not None]
    if len(given) != 1:
        raise errors.PermanentError(
            "InvalidSpec",
            f"tuning.space[{p.name}]: set exactly one of int, float, choice (got {given or 'none'})",
        )
    if p.choice is not None:
        return list(p.choice)
    if p.int_ is not None:
        low, high = p.int_.min, p.int_.max
        if low > high:
            raise errors.PermanentError(
                "InvalidSpec", f"tuning.space[{p.name}]: int.min {low} > int.max {high}",
            )
        return list(range(low, high + 1)) if grid else stats.randint(low, high + 1)
    assert p.float_ is not None
    low_f, high_f, log_scale = p.float_.min, p.float_.max, p.float_.log
    if grid:
        raise errors.PermanentError(
            "InvalidSpec", f"tuning.space[{p.name}]: a grid cannot enumerate a float range; list the values "
            "as a choice or use strategy random",
        )
    if not low_f < high_f:
        raise errors.PermanentError("InvalidSpec", f"tuning.space[{p.name}]: float.min must be < float.max")
    if log_scale:
        if low_f <= 0:
            raise errors.PermanentError("InvalidSpec", f"tuning.space[{p.name}]: a log range needs min > 0")
        return stats.loguniform(low_f, high_f)
    return stats.uniform(low_f, high_f - low_f)


def run_trials(
    template: pipeline.Pipeline, search: Search, x: pd.DataFrame, y: np.ndarray[Any, Any], seed: int,
) -> list[dict[str, Any]]:
    """Score every candidate by ``search.folds``-fold cross-validation on ``(x, y)``.

    Folds are the same for every trial (``StratifiedKFold`` for classification, ``KFold`` for
    regression, shuffled with ``seed``). Up to ``search.parallelism`` trials run at once in separate
    processes (joblib's loky backend). A trial that fails (e.g. an incompatible parameter pair) is
    recorded with ``value`` None and its ``error`` instead of failing the search.

    Returns:
        ``[{"index", "params", "value": float | None, "error"?: str}]`` in trial order; ``value`` is
        the mean of the objective metric over the folds (not negated).
    """
    kfold = model_selection.StratifiedKFold if sk_base.is_classifier(template) else model_selection.KFold
    cv = kfold(n_splits=search.folds, shuffle=True, random_state=seed)
    workers = min(search.parallelism, len(search.candidates))
    return list(parallel.Parallel(n_jobs=workers)(
        parallel.delayed(_trial)(i, params, template, x, y, cv, search.metric)
        for i, params in enumerate(search.candidates)
    ))


def _trial(
    index: int, params: dict[str, Any], template: pipeline.Pipeline, x: pd.DataFrame,
    y: np.ndarray[Any, Any], cv: Any, metric: str,
) -> dict[str, Any]:
    model = sk_base.clone(template).set_params(**_step_params(params))
    try:
        scores = model_selection.cross_validate(
            model, x, y, cv=cv, scoring=_data.cv_scorer(metric), error_score="raise",
        )["test_score"]
    except (ValueError, TypeError, errors.RoostError) as e:
        return {"index": index, "params": params, "value": None, "error": str(e)}
    value = float(np.mean(scores))
    return {"index": index, "params": params, "value": value if math.isfinite(value) else None}


def best_trial(trials: Sequence[dict[str, Any]], goal: str) -> dict[str, Any]:
    """The trial with the best value (the lowest index among ties).

    Raises:
        roost.errors.PermanentError: reason ``InvalidSpec`` when every trial failed, with the first error.
    """
    ranked = _ranked(trials, goal)
    if not ranked or ranked[0]["value"] is None:
        first = next((t.get("error") for t in trials if t.get("error")), "no trial ran")
        raise errors.PermanentError("InvalidSpec", f"all {len(trials)} trials failed; first error: {first}")
    return ranked[0]


def _ranked(trials: Sequence[dict[str, Any]], goal: str) -> list[dict[str, Any]]:
    sign = -1.0 if goal == "maximize" else 1.0

    def key(t: dict[str, Any]) -> tuple[int, float, int]:
        value = t["value"]
        return (1, 0.0, t["index"]) if value is None else (0, sign * value, t["index"])

    return sorted(trials, key=key)


def _public_trial(trial: Mapping[str, Any]) -> dict[str, Any]:
    return {"index": trial["index"], "params": trial["params"], "value": trial["value"]}


def _trials_document(search: Search, trials: Sequence[dict[str, Any]]) -> bytes:
    document = {
        "strategy": search.strategy, "folds": search.folds, "spaceSize": search.space_size,
        "objective": {"metric": search.metric, "goal": search.goal}, "trials": list(trials),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# ----- lineage helpers --------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    """Versions of what shaped the model: roost, scikit-learn, numpy, pandas, skops, python."""
    found = {name: _version(name) for name in ("roost", "scikit-learn", "numpy", "pandas", "skops")}
    found["python"] = platform.python_version()
    return found


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def json_native(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, tuples as lists, and anything else JSON cannot
    hold (objects, NaN, infinities) as its ``repr``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_native(v) for v in value]
    return repr(value)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
