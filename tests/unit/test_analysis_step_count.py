"""The canary analysis counts the candidate's requests of the current step across rounds (a ``pause:
{requests: N}`` waits for them), although each round reads only the recent request log."""

from __future__ import annotations

import datetime
import time
from typing import Any

import numpy as np
import yaml

from roost.api import deployment
from roost.controllers import analysis
from roost.serving import requestlog
from roost.storage import store as store_mod

SPEC = yaml.safe_load("""
modelVersion: m-v2
strategy:
  type: Canary
  steps: [{setWeight: 10}, {pause: {requests: 100}}, {setWeight: 50}]
  analysis: {warmup: 0s, minRequests: 1000, baseline: false}
""")


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat().replace("+00:00", "Z")


def _write(store: store_mod.Store, prefix: str, times: np.ndarray[Any, Any]) -> None:
    """One batch file of one-row requests at ``times``, named as the server names it (by its flush time)."""
    entries = [(float(t), "v2/infer", 200, 1.0, f"r{t}", 1, None, np.array([1]), None) for t in times]
    store.write_bytes(requestlog.batch_uri(prefix, float(times.max()) + 1.0),
                      requestlog.encode_batch(entries, "m", "v", "sha256:x"))


def test_candidate_requests_of_the_step_are_counted_over_rounds_not_only_in_the_recent_log(tmp_path: Any) -> None:
    store = store_mod.Store(f"file://{tmp_path}")
    spec = deployment.DeploymentSpec.model_validate(SPEC)
    candidate = analysis.log_uri(store, "ns", "m", "m-v2")
    now = time.time()
    start, step_start = now - 300.0, now - 200.0
    _write(store, candidate, np.linspace(now - 290, now - 210, 40))  # the first step: not counted
    _write(store, candidate, np.linspace(now - 190, now - 100, 70))  # this step, long before the recent log
    _write(store, analysis.log_uri(store, "ns", "m", "m-v1"), np.linspace(now - 290, now - 100, 50))
    cand = {"modelVersion": "m-v2", "digest": "sha256:x", "startTime": _iso(start), "stepStartTime": _iso(step_start)}
    status: dict[str, Any] = {
        "canary": cand, "stable": {"modelVersion": "m-v1"},
        # a round that analysed up to 100 s ago: this round reads the log from 130 s ago only
        "analysis": {"candidate": {k: cand[k] for k in ("modelVersion", "digest", "startTime")},
                     "cursor": {"candidate": now - 100.0, "stable": now - 100.0}},
    }
    first = analysis.analyse(store, "ns", "m", spec, status)
    assert first.candidate_requests == 70

    _write(store, candidate, np.linspace(now - 20, now - 10, 35))
    second = analysis.analyse(store, "ns", "m", spec, {**status, "analysis": first.status})
    assert second.candidate_requests == 105
    again = analysis.analyse(store, "ns", "m", spec, {**status, "analysis": second.status})
    assert again.candidate_requests == 105  # nothing new: nothing counted twice

    next_step = {**cand, "stepStartTime": _iso(now - 14.9)}
    moved = analysis.analyse(store, "ns", "m", spec, {**status, "canary": next_step, "analysis": again.status})
    assert moved.candidate_requests == int(np.count_nonzero(np.linspace(now - 20, now - 10, 35) >= now - 14.9))
