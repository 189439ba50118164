"""The ``evaluate`` worker: verify a registered model artifact and judge it against its gates.

A ModelVersion does not trust the numbers its TrainingRun reported, nor the bytes it finds in the
store: this worker checks the artifact's sha256, loads it with the type allowlist
(:mod:`roost.storage.models`), recomputes the metrics on the Dataset's holdout split and evaluates
the shift-left gates (thresholds, and no regression against a baseline version, as TFX's Evaluator
"blesses" a model). A failed gate is a result, not a crash: the worker returns ``ok: false`` with
reason ``Rejected`` together with the metrics and every gate's outcome, so the operator can show why.

A model that passes its gates is also converted to ONNX where it can be, and the conversion is
checked against scikit-learn on the same holdout (:func:`roost.serving.runtime.validate`); the result's
``runtime`` tells the model server which runtime to use. A conversion that fails or disagrees only
means ``runtime.name: sklearn`` with the reason; it never fails the evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from sklearn import base as sk_base

from roost import errors
from roost.api import modelversion
from roost.serving import runtime
from roost.storage import models
from roost.storage import store as store_mod
from roost.workers import _data

log = logging.getLogger("roost.worker.evaluate")

# Slack for float round-off when a value meets its bound exactly (e.g. baseline - 0.01).
TOLERANCE = 1e-12


def run(job: dict[str, Any], store: store_mod.Store, output: str) -> dict[str, Any]:
    """Verify, re-evaluate and gate one model artifact.

    Args:
        job: ``{"modelVersion": {"namespace", "name"}, "artifact": {"uri", "digest"}, "dataset":
            <as for train>, "task": "classification" | "regression" | None (then the model's own), "metrics":
            [name] (default: the task's first metric), "gates":
            <Gates, camelCase: {"thresholds": [{"metric", "min"?, "max"?}], "baseline"?}>,
            "baselineMetrics": {name: float} | None, "maxRegression": [{"metric", "by"}] | None,
            "compareWith": {"uri", "digest"} | None, "convert": bool (default True)}``.
            ``maxRegression`` defaults to ``gates.baseline.maxRegression``. ``compareWith`` names a second
            artifact (the served model, for a drift proposal) scored on the same holdout rows; its
            metrics are the baseline when ``baselineMetrics`` is not given. ``convert: false`` skips
            the ONNX conversion (nothing will serve this artifact yet).
        store: the artifact store.
        output: the result prefix (unused; the runner writes ``result.json``).

    Returns:
        ``{"ok": bool, "verified": True, "metrics": {name: float}, "gates": [{"name", "passed",
        "message"}], "signature": {...}, "testRows": int, "runtime": {...}, "comparedMetrics": {name: float}}``
        (the last only with ``compareWith``), plus ``"reason": "Rejected"`` and a
        ``"message"`` naming every failed gate with its values when ``ok`` is False. Metrics are the
        requested ones and every gated one, on the holdout split. Gate names are
        ``threshold:<metric>`` and ``baseline:<metric>``. ``runtime`` (only when every gate passed) is
        ``{"name": "onnx", "artifact": {"uri", "digest"}, "parity": {"rows", "labelMismatches",
        "maxProbabilityDiff" | "maxValueDiff", "tolerance"}, "versions"}`` or ``{"name": "sklearn",
        "reason"}``.

    Raises:
        roost.errors.PermanentError: ``DigestMismatch`` (artifact, snapshot or split bytes changed),
            ``UntrustedType`` (the file names a type outside the allowlist), ``InvalidArtifact``,
            ``InvalidSpec`` (malformed gates, metric or model that does not fit the task),
            ``SchemaMismatch`` (a model feature is not in the dataset), ``InvalidInput``.
        roost.errors.ExternalError: the store could not be read (retried).
    """
    del output
    gates = _parse_gates(job.get("gates"))
    regressions = _regressions(job.get("maxRegression"), gates)
    try:
        artifact = job["artifact"]
        uri, digest = str(artifact["uri"]), str(artifact["digest"])
    except (KeyError, TypeError) as e:
        raise errors.PermanentError("InvalidInput", f"the job names no artifact uri and digest: {e}") from e

    model = models.load_verified(store, uri, digest)
    log.info("Verified artifact %s", digest)
    # An artifact registered from outside (source.artifact) has no run to say its task: the model does.
    task = str(job.get("task") or task_of(model))
    needed = _unique([
        *job.get("metrics", []), *(t.metric for t in gates.thresholds), *(r.metric for r in regressions),
    ]) or [_data.METRICS_BY_TASK.get(task, ("accuracy",))[0]]
    _data.check_metrics(task, needed)
    fits = sk_base.is_classifier(model) if task == "classification" else sk_base.is_regressor(model)
    if not fits:
        raise errors.PermanentError(
            "InvalidSpec", f"the artifact is a {type(model).__name__}, not a {task} model",
        )

    data = _data.load(store, job.get("dataset") or {})
    columns = _model_columns(model, data)
    x_test, y_test = data.x(data.split.test, columns), data.y(data.split.test)
    metrics = _data.score(model, x_test, y_test, needed)

    compared = None
    if job.get("compareWith"):
        other = job["compareWith"]
        served = models.load_verified(store, str(other["uri"]), str(other["digest"]))
        compared = _data.score(served, data.x(data.split.test, _model_columns(served, data)), y_test, needed)
    results = [threshold_gate(t, metrics[t.metric]) for t in gates.thresholds]
    baseline = job.get("baselineMetrics") or compared
    results += [baseline_gate(r, metrics[r.metric], baseline) for r in regressions]
    failed = [g for g in results if not g["passed"]]
    signature = models.signature_of(model, x_test, data.ref.target)
    result: dict[str, Any] = {
        "ok": not failed,
        "verified": True,
        "metrics": metrics,
        "gates": results,
        "signature": signature,
        "testRows": len(y_test),
    }
    if compared is not None:
        result["comparedMetrics"] = compared
    if not failed and job.get("convert", True):  # a rejected model is never served: no conversion
        result["runtime"] = runtime.validate(model, x_test, signature, store)
    if failed:
        result["reason"] = "Rejected"
        result["message"] = "failed gates: " + "; ".join(f"{g['name']} ({g['message']})" for g in failed)
        log.info("Rejected model %s: %s", digest, result["message"])
    return result


def task_of(model: Any) -> str:
    """``classification`` for a classifier, else ``regression`` (a non-regressor is refused later)."""
    return "classification" if sk_base.is_classifier(model) else "regression"


def threshold_gate(threshold: modelversion.Threshold, value: float) -> dict[str, Any]:
    """Check ``min <= value`` and ``value <= max`` (whichever are set).

    Returns:
        ``{"name": "threshold:<metric>", "passed", "message"}``, e.g. ``"roc_auc 0.9912 >= 0.97"``
        or ``"accuracy 0.85 < 0.9"``.
    """
    parts: list[str] = []
    passed = True
    if threshold.min is not None:
        ok = value >= threshold.min - TOLERANCE
        passed &= ok
        parts.append(f"{threshold.metric} {value:.4g} {'>=' if ok else '<'} {threshold.min:g}")
    if threshold.max is not None:
        ok = value <= threshold.max + TOLERANCE
        passed &= ok
        parts.append(f"{threshold.metric} {value:.4g} {'<=' if ok else '>'} {threshold.max:g}")
    return {"name": f"threshold:{threshold.metric}", "passed": passed, "message": ", ".join(parts)}


def baseline_gate(
    regression: modelversion.Regression, value: float, baseline: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Check that ``value`` regresses by at most ``regression.by`` from the baseline's value.

    Higher-is-better metrics need ``value >= baseline - by``; ``trainingrun.LOWER_IS_BETTER`` ones
    (log_loss, rmse, mae) need ``value <= baseline + by``. A baseline without the metric fails the
    gate (there is nothing to show it did not regress).

    Returns:
        ``{"name": "baseline:<metric>", "passed", "message"}``, e.g.
        ``"roc_auc 0.985 >= 0.99 - 0.01 (baseline)"``.
    """
    metric, by = regression.metric, regression.by
    name = f"baseline:{metric}"
    reference = (baseline or {}).get(metric)
    if not isinstance(reference, int | float):
        return {"name": name, "passed": False, "message": f"the baseline has no {metric} value"}
    if _data.higher_is_better(metric):
        passed = value >= reference - by - TOLERANCE
        message = f"{metric} {value:.4g} {'>=' if passed else '<'} {reference:.4g} - {by:g} (baseline)"
    else:
        passed = value <= reference + by + TOLERANCE
        message = f"{metric} {value:.4g} {'<=' if passed else '>'} {reference:.4g} + {by:g} (baseline)"
    return {"name": name, "passed": passed, "message": message}


def _parse_gates(wire: Any) -> modelversion.Gates:
    try:
        return modelversion.Gates.model_validate(wire or {})
    except pydantic.ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise errors.PermanentError("InvalidSpec", f"invalid gates: {problems}") from e


def _regressions(wire: Any, gates: modelversion.Gates) -> list[modelversion.Regression]:
    if wire is None:
        return list(gates.baseline.max_regression) if gates.baseline else []
    try:
        return [modelversion.Regression.model_validate(r) for r in wire]
    except (pydantic.ValidationError, TypeError) as e:
        raise errors.PermanentError("InvalidSpec", f"invalid maxRegression: {e}") from e


def _model_columns(model: Any, data: _data.Data) -> list[str] | None:
    """The columns the model was fitted on, checked against the dataset (None: schema order)."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return None
    columns = [str(n) for n in names]
    missing = [c for c in columns if c not in data.features.columns]
    if missing:
        raise errors.PermanentError(
            "SchemaMismatch", f"the model needs features the dataset does not have: {', '.join(missing)}",
        )
    return columns


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))
