"""Live analysis of a canary or shadow candidate: read both versions' request logs, feed the
confidence sequences (:mod:`roost.stats.canary`), and return the verdict the rollout acts on.

The analysis state is O(1) per metric and lives in ``status.analysis`` between reconciles, with a
cursor per version (the newest request time already counted), so a restarted operator continues
where it stopped and no request is counted twice. Candidate requests in the ``warmup`` span, and
stable requests from before the candidate started, are not judged. Where the rollout runs a baseline (a
fresh copy of stable taking the candidate's share, :mod:`roost.reconcile.deployment`), the latency
metrics compare the candidate with the baseline alone. Metrics of the user's own come from
Prometheus (:mod:`roost.controllers.prometheus`): their counters' last readings are kept in the cursor.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from roost.api import common, deployment
from roost.controllers import prometheus
from roost.reconcile import rollout
from roost.serving import requestlog
from roost.stats import canary
from roost.storage import store as store_mod

log = logging.getLogger(__name__)

AGREEMENT_LOOKBACK = 30.0  # seconds of stable rows kept in view to pair with mirrored candidate rows


@dataclass(frozen=True)
class Result:
    status: dict[str, Any]          # the new status.analysis
    verdict: rollout.Verdict
    candidate_requests: int         # candidate requests since the current step started
    evidence: dict[str, Any]


def _parse(t: str) -> float:
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def log_uri(store: store_mod.Store, namespace: str, name: str, version: str, *, baseline: bool = False) -> str:
    """Where a version's server logs: ``requestlogs/<namespace>/<name>/<version>``; a canary's baseline copy
    of stable logs in ``baseline/`` under it (which stable's own log does not read: only files directly
    under a prefix are its batches)."""
    parts = ("requestlogs", namespace, name, version) + (("baseline",) if baseline else ())
    return store.uri(*parts)


def specs_of(analysis: deployment.Analysis) -> list[canary.MetricSpec]:
    """The spec's metrics as the statistics module's metric specs."""
    return [canary.counted_spec(m.name, m.max_increase or 0.0) if m.prometheus is not None else
            canary.metric_spec(m.name, max_increase=m.max_increase, max_ratio=m.max_ratio, max=m.max)
            for m in analysis.metrics]


def _predictions(outputs: pd.Series) -> np.ndarray[Any, Any]:
    flat: list[Any] = []
    for text in outputs.dropna():
        value = json.loads(text)
        flat.extend(value if isinstance(value, list) else [value])
    return np.asarray([str(v) for v in flat], dtype=object)


def analyse(store: store_mod.Store, namespace: str, name: str, spec: deployment.DeploymentSpec,
            status: dict[str, Any]) -> Result:
    """Update the analysis of the running rollout from the request log; see the module docstring."""
    cand = status.get("canary") or {}
    stable = status.get("stable") or {}
    settings = spec.strategy.analysis or deployment.Analysis()
    if not cand or not stable:
        return Result({}, rollout.NO_ANALYSIS, 0, {})
    previous = status.get("analysis") or {}
    same = previous.get("candidate") == {"modelVersion": cand["modelVersion"], "digest": cand["digest"],
                                         "startTime": cand["startTime"]}
    start = _parse(cand["startTime"])
    judged_from = start + common.parse_duration(settings.warmup).total_seconds()
    cursor = dict(previous.get("cursor") or {}) if same else {}
    state = previous.get("state") if same else None
    analysis = (canary.Analysis.from_dict(state) if state else
                canary.Analysis(specs_of(settings), alpha=settings.alpha, beta=settings.beta,
                                min_requests=settings.min_requests))
    # With a baseline (a fresh copy of stable taking the candidate's share), stable's side of the latency
    # metrics is the baseline's requests alone; its side of every other metric is stable's and the baseline's.
    baseline = cand.get("baselineWeight") is not None
    logs = {"stable": log_uri(store, namespace, name, stable["modelVersion"]),
            "candidate": log_uri(store, namespace, name, cand["modelVersion"])}
    if baseline:
        logs["baseline"] = log_uri(store, namespace, name, stable["modelVersion"], baseline=True)
    frames: dict[str, pd.DataFrame] = {}
    for role, prefix in logs.items():
        since = max(start, float(cursor.get(role, 0.0)) - AGREEMENT_LOOKBACK)
        frames[role] = requestlog.read_log(store, prefix, since, _ANALYSED_COLUMNS)
    candidate_requests = _count_step_requests(store, logs["candidate"], frames["candidate"], cand, cursor)
    shadow = spec.strategy.type == deployment.StrategyType.SHADOW
    for role, frame in frames.items():
        fresh = frame[(frame["time"] > float(cursor.get(role, 0.0))) & (frame["time"] >= judged_from)]
        if fresh.empty:
            continue
        agreement = None
        if shadow and role == "candidate":
            agreement = _agreement(frames["stable"], fresh)
        latencies = None if baseline and role == "stable" else fresh["latency_ms"].to_numpy()
        analysis.update("stable" if role == "baseline" else role, status_codes=fresh["status"].to_numpy(),
                        latencies_ms=latencies, predictions=_predictions(fresh["outputs"]), agreement=agreement)
        cursor[role] = float(fresh["time"].max())
    query_errors: dict[str, str] = {}
    if time.time() >= judged_from and analysis.pending_counts:  # the rollout's counted metrics (see below)
        versions = {"stable": stable["modelVersion"], "candidate": cand["modelVersion"]}
        cursor["prometheus"] = _read_prometheus(settings, analysis, versions, dict(cursor.get("prometheus") or {}),
                                                query_errors)
    verdict = analysis.judge()
    evidence = {"verdict": str(verdict.outcome), "message": verdict.message,
                "metrics": [m.to_dict() for m in verdict.metrics],
                "latencyComparedWith": "baseline" if baseline else "stable"}
    new_status = {
        "candidate": {"modelVersion": cand["modelVersion"], "digest": cand["digest"], "startTime": cand["startTime"]},
        "cursor": cursor, "state": analysis.to_dict(), "dryRun": settings.dry_run, **evidence,
    }
    if query_errors:
        new_status["queryErrors"] = query_errors
    metric = verdict.metric.name if verdict.metric is not None else None
    message = f"{metric}: {verdict.message}" if metric else verdict.message
    return Result(new_status, rollout.Verdict(rollout.Decision(str(verdict.outcome)), metric, message),
                  candidate_requests, evidence)


_ANALYSED_COLUMNS = ("time", "status", "latency_ms", "request_id", "outputs")  # not the inputs: the bulk of a log


def _count_step_requests(store: store_mod.Store, prefix: str, frame: pd.DataFrame, cand: dict[str, Any],
                         cursor: dict[str, Any]) -> int:
    """Candidate requests since the current step started (a ``pause: {requests: N}`` waits for N of them).

    The rounds read only the recent log (``frame``), so the count is carried in ``cursor["stepRequests"]``
    (``{"step": stepStartTime, "count", "through": the last counted time}``) and grows by the rows after
    ``through``; a new step counts its rows from the log once.
    """
    step = str(cand.get("stepStartTime") or cand["startTime"])
    step_start = _parse(step)
    times = frame["time"].to_numpy()
    counted = cursor.get("stepRequests") or {}
    if counted.get("step") == step:
        count, through = int(counted["count"]), float(counted["through"])
        count += int(np.count_nonzero((times > through) & (times >= step_start)))
    else:  # the frame may start after the step did
        times = requestlog.read_log(store, prefix, step_start, ("time",))["time"].to_numpy()
        count = int(np.count_nonzero(times >= step_start))
        through = 0.0
    through = max(through, float(times.max())) if times.size else through
    cursor["stepRequests"] = {"step": step, "count": count, "through": through}
    return count


def _agreement(stable: pd.DataFrame, candidate: pd.DataFrame) -> np.ndarray[Any, Any]:
    """1.0 where the mirrored request got the same answer from both versions, per paired request id."""
    paired = candidate.merge(stable[["request_id", "outputs"]], on="request_id", suffixes=("", "_stable"))
    paired = paired[paired["outputs"].notna() & paired["outputs_stable"].notna()]
    agreed: np.ndarray[Any, Any] = (paired["outputs"] == paired["outputs_stable"]).to_numpy(dtype=float)
    return agreed


def _read_prometheus(settings: deployment.Analysis, analysis: canary.Analysis, versions: dict[str, str],
                     readings: dict[str, Any], query_errors: dict[str, str]) -> dict[str, Any]:
    """Feed each Prometheus metric's counter increments since the last round; the new readings per metric.

    The metrics and their queries are the rollout's own, fixed when it started (as the analysis state
    is): a metric added to the spec later joins the next rollout; one removed or edited keeps its
    recorded queries. A metric whose queries fail this round, or whose ``total`` has no series yet for
    a version, keeps its last readings (its next increments cover both rounds); a failure goes to
    ``query_errors``. Queries stop once the round has taken ``ROUND_BUDGET_SECONDS``.
    """
    sources = {m.name: m.prometheus.model_dump() for m in settings.metrics if m.prometheus is not None}
    started = time.monotonic()
    with prometheus.client() as http:
        for name in analysis.pending_counts:
            recorded = readings.get(name) or {}
            source = recorded.get("source") or sources.get(name)
            if source is None:
                continue
            if time.monotonic() - started > prometheus.ROUND_BUDGET_SECONDS:
                query_errors[name] = f"not queried this round: the round took over {prometheus.ROUND_BUDGET_SECONDS:g}s"
                continue
            try:
                read = {role: prometheus.read_counts(http, source["address"], source["bad"], source["total"], version)
                        for role, version in versions.items()}
            except prometheus.PrometheusError as e:
                log.warning("Canary metric %s: %s", name, e.message)
                query_errors[name] = e.message
                continue
            now = {role: counts for role, counts in read.items() if counts is not None}
            if len(now) < len(read):
                continue
            previous = {role: recorded[role] for role in versions if role in recorded} if recorded else None
            steps = prometheus.increments(previous, now)
            if steps is not None:
                analysis.update_counts(name, candidate=steps["candidate"], stable=steps["stable"])
            readings[name] = {"source": source, **now}
    return readings
