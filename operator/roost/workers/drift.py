"""``roost worker drift``: one drift check of a Deployment's live inputs against the training reference.

Reads the window from the Deployment's request log (successful requests' inputs, newest ``size``
rows within ``maxAge``), the reference from the Dataset profile (never the reference rows), runs
:func:`roost.stats.verdict.check`, and writes the full report as JSON and as an HTML page of
reference-vs-current histograms (:mod:`roost.workers.report`).
"""

from __future__ import annotations

import datetime
import itertools
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from roost import errors
from roost.api import common, driftpolicy
from roost.serving import requestlog
from roost.stats import drift, reference, verdict
from roost.storage import store as store_mod
from roost.workers import report


def window_frame(store: store_mod.Store, prefix: str, size: int, max_age: str | None,
                 now: float | None = None) -> pd.DataFrame:
    """The newest ``size`` input rows logged under ``prefix`` (every version, and a canary's baseline copy of
    stable), one column per feature.

    Args:
        prefix: ``<store>/requestlogs/<namespace>/<deployment>``.
        max_age: a duration string; older requests are left out.

    Returns:
        A DataFrame of input rows plus a ``__prediction__`` column (the served answer), oldest first.
    """
    since = None
    if max_age:
        since = (now or time.time()) - common.parse_duration(max_age).total_seconds()
    # every version's log, and a canary baseline's (a copy of stable that answered clients too)
    tables = [requestlog.read_table(store, log, since, _WINDOW_COLUMNS)
              for p in store.list(prefix) for log in (p, f"{p}/baseline")]
    if not tables:
        return pd.DataFrame()
    log = pa.concat_tables(tables)
    answered = pc.and_(pc.equal(log["status"], 200),
                       pc.or_(pc.is_valid(log["inputs"]), pc.is_valid(log["input_values"])))
    kept = np.flatnonzero(answered.to_numpy())
    order = kept[np.argsort(log["time"].to_numpy()[kept], kind="stable")]
    # the newest requests that hold ``size`` rows, found from the logged row counts before decoding anything
    newest_first = log["rows"].to_numpy()[order[::-1]]
    enough = int(np.searchsorted(np.cumsum(newest_first), size))  # index (newest first) of the one that fills it
    window = order[max(0, len(order) - enough - 1):]
    contiguous = len(window) > 0 and bool(np.all(np.diff(window) == 1))
    frame = requestlog.input_rows(log.slice(window[0], len(window)) if contiguous else log.take(window))
    return frame.iloc[-size:].reset_index(drop=True) if len(frame) > size else frame


_WINDOW_COLUMNS = ("time", "status", "rows", "inputs", "input_columns", "input_values", "outputs")


def run(job: dict[str, Any], store: store_mod.Store, output: str) -> dict[str, Any]:
    """Run one check; see the module docstring.

    Args:
        job: ``{"policy": {"namespace", "name"}, "deployment", "modelVersion", "reference": {"name",
            "digest", "profileURI", ...}, "features": <spec.features wire>, "predictionDrift": {...} | None,
            "window": {"size", "maxAge"?}, "minSamples", "checkTime"}``.

    Returns:
        ``{"samples", "insufficient", "driftDetected", "driftedShare", "correction", "features":
        [{"name", "method", "score", "threshold", "drifted"}], "reportURI", "reportJSONURI"}``.

    Raises:
        roost.errors.PermanentError: ``ReferenceNotFound`` when the profile cannot be read.
    """
    ns = job["policy"]["namespace"]
    try:
        profile = store.read_json(job["reference"]["profileURI"])
    except errors.ExternalError as e:
        raise errors.PermanentError("ReferenceNotFound", f"the reference profile is unreadable: {e.message}") from e
    ref = reference.prepare(profile)
    window_spec = job.get("window") or {}
    frame = window_frame(store, store.uri("requestlogs", ns, job["deployment"]), int(window_spec.get("size", 1000)),
                         window_spec.get("maxAge"))
    result = verdict.check(ref, frame, job.get("features"), min_samples=int(job.get("minSamples", 1)))
    prediction = None
    if job.get("predictionDrift") and ref.target is not None and "__prediction__" in frame:
        config = driftpolicy.Features.model_validate({"categorical": {
            "method": job["predictionDrift"].get("method", "jensenshannon"),
            "threshold": job["predictionDrift"].get("threshold", 0.1), "pValue": None}})
        prediction = drift.check_feature(ref.target, frame["__prediction__"], config, name="prediction",
                                         min_samples=int(job.get("minSamples", 1)))
    doc = {"checkTime": job.get("checkTime"), "deployment": job["deployment"], "modelVersion": job.get("modelVersion"),
           "reference": job["reference"], **result.to_dict(),
           "prediction": prediction.to_dict() if prediction is not None else None}
    json_obj = store.put_bytes(json.dumps(doc, indent=1, default=_jsonable).encode())
    html = report.render(doc, _plots(ref, frame, result))
    html_obj = store.put_bytes(html.encode())
    features = [{"name": f.name, "method": f.method, "threshold": f.threshold, "drifted": bool(f.drifted),
                 "score": float(f.p_value if f.p_value is not None else f.statistic or 0.0)}
                for f in result.features if f.sufficient]
    drifted_prediction = bool(prediction is not None and prediction.drifted)
    detected = result.drift_detected
    if detected is not None and drifted_prediction:
        detected = True
    return {"samples": len(frame), "insufficient": result.drift_detected is None, "driftDetected": detected,
            "driftedShare": result.drifted_share, "correction": result.correction, "features": features,
            "predictionDrifted": drifted_prediction if prediction is not None else None,
            "reportURI": html_obj.uri, "reportJSONURI": json_obj.uri}


def _plots(ref: reference.Reference, frame: pd.DataFrame, result: verdict.DriftReport) -> dict[str, dict[str, Any]]:
    """Reference and current shares per bin (numeric: the reference deciles) or category, per feature."""
    plots: dict[str, dict[str, Any]] = {}
    for f in result.features:
        feature = ref.features.get(f.name)
        if feature is None or f.name not in frame:
            continue
        if isinstance(feature, reference.NumericReference):
            shown = drift.numeric_psi(feature, frame[f.name], 1.0)
            edges = [float(e) for e in feature.edges]
            labels = [f"< {edges[0]:.3g}"] + [f"{a:.3g} to {b:.3g}" for a, b in itertools.pairwise(edges)]
            labels.append(f">= {edges[-1]:.3g}")
        else:
            shown = drift.categorical_psi(feature, frame[f.name], 1.0)
            labels = [str(x) for x in shown.detail.get("buckets", [])]
        if shown.sufficient:
            plots[f.name] = {"labels": labels, "reference": shown.detail.get("reference"),
                             "current": shown.detail.get("current")}
    return plots


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)
