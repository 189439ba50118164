"""Dataset decisions, table-driven with an injected clock."""

from __future__ import annotations

import datetime
from typing import Any

from roost.api import dataset
from roost.execution.executor import State, UnitStatus
from roost.reconcile import dataset as rd
from roost.reconcile.conditions import get

NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
SPEC = dataset.DatasetSpec.model_validate({"source": {"uri": "file:///d.csv"}, "target": "y"})
RESULT = {"ok": True, "digest": "sha256:" + "1" * 64, "rows": 569, "columns": 31, "schema": [],
          "snapshotURI": "file:///s", "profileURI": "file:///p", "splitURI": "file:///x",
          "snapshotDigest": "sha256:s", "splitDigest": "sha256:x", "profileDigest": "sha256:p",
          "target": {"name": "y", "type": "categorical"}, "trainRows": 455, "testRows": 114}


def observe(status: dict[str, Any], unit: UnitStatus | None = None, result: dict[str, Any] | None = None,
            spec: dataset.DatasetSpec = SPEC, now: datetime.datetime = NOW, generation: int = 1) -> rd.Observed:
    return rd.Observed("ns", "bc", generation, spec, status, now, unit, result)


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    c = get(status["conditions"], type_)
    assert c is not None
    return c["status"], c["reason"]


def test_new_dataset_submits_a_profile_unit_and_reports_reconciling() -> None:
    plan = rd.reconcile(observe({}))
    assert plan.submit is not None and plan.submit.worker == "profile"
    assert plan.status["job"] == plan.submit.name
    assert cond(plan.status, "Ready") == ("False", "Fetching")
    assert cond(plan.status, "Reconciling") == ("True", "Fetching")
    assert "observedGeneration" not in plan.status


def test_unit_name_is_deterministic_so_a_restart_adopts_it() -> None:
    assert rd.reconcile(observe({})).submit == rd.reconcile(observe({})).submit


def test_running_unit_keeps_waiting() -> None:
    status = rd.reconcile(observe({})).status
    plan = rd.reconcile(observe(status, UnitStatus(State.RUNNING, "pid 5")))
    assert plan.submit is None
    assert plan.requeue_after == rd.POLL_SECONDS


def test_good_result_makes_it_ready_with_a_new_version_event() -> None:
    status = rd.reconcile(observe({})).status
    plan = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), RESULT))
    assert cond(plan.status, "Ready") == ("True", "Profiled")
    assert cond(plan.status, "Validated") == ("True", "Validated")
    assert plan.status["digest"] == RESULT["digest"] and plan.status["rows"] == 569
    assert plan.status["history"][0]["digest"] == RESULT["digest"]
    assert plan.status["observedGeneration"] == 1 and plan.status["job"] is None
    assert [e.reason for e in plan.events] == ["NewVersion"]
    assert plan.status["phase"] == "Ready"


def test_ready_dataset_without_refresh_does_nothing() -> None:
    status = rd.reconcile(observe({})).status
    ready = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), RESULT)).status
    plan = rd.reconcile(observe(ready))
    assert plan.submit is None and plan.requeue_after is None


def test_bad_data_stalls_with_the_workers_reason() -> None:
    status = rd.reconcile(observe({})).status
    bad = {"ok": False, "reason": "DigestMismatch", "message": "expected sha256:a, got sha256:b"}
    plan = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), bad))
    assert cond(plan.status, "Stalled") == ("True", "DigestMismatch")
    assert cond(plan.status, "Ready") == ("False", "DigestMismatch")
    assert plan.events[0].type == "Warning"


def test_unreachable_source_is_retried_before_stalling() -> None:
    status = rd.reconcile(observe({})).status
    flaky = {"ok": False, "reason": "SourceUnreachable", "message": "connection refused"}
    plan = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), flaky))
    # exponential backoff: the next attempt is named at once, submitted 2 s later (then 4 s)
    assert plan.submit is None and plan.status["attempts"] == 2 and plan.requeue_after == 2.0
    assert plan.status["retryAt"] == "2026-01-01T12:00:02Z" and plan.status["job"] != status["job"]
    assert cond(plan.status, "Reconciling") == ("True", "Retrying")
    early = rd.reconcile(observe(plan.status, UnitStatus(State.MISSING), now=NOW + datetime.timedelta(seconds=1)))
    assert early.submit is None and early.requeue_after == 1.0
    due = rd.reconcile(observe(plan.status, UnitStatus(State.MISSING), now=NOW + datetime.timedelta(seconds=2)))
    assert due.submit is not None and due.submit.name == plan.status["job"] and "retryAt" not in due.status
    later = NOW + datetime.timedelta(seconds=3)
    again = rd.reconcile(observe(due.status, UnitStatus(State.SUCCEEDED), flaky, now=later))
    assert again.requeue_after == 4.0 and again.status["attempts"] == 3
    final = later + datetime.timedelta(seconds=9)
    last = rd.reconcile(observe(again.status, UnitStatus(State.SUCCEEDED), flaky, now=final))
    assert cond(last.status, "Stalled") == ("True", "SourceUnreachable")


def test_refresh_interval_fetches_again_when_due() -> None:
    spec = dataset.DatasetSpec.model_validate({"source": {"uri": "file:///d.csv"}, "target": "y",
                                               "refreshInterval": "1h"})
    status = rd.reconcile(observe({}, spec=spec)).status
    ready = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), RESULT, spec=spec)).status
    early = rd.reconcile(observe(ready, spec=spec, now=NOW + datetime.timedelta(minutes=30)))
    assert early.submit is None and 1790 <= (early.requeue_after or 0) <= 1800
    due = rd.reconcile(observe(ready, spec=spec, now=NOW + datetime.timedelta(minutes=61)))
    assert due.submit is not None
    assert cond(due.status, "Ready") == ("True", "Profiled")  # the current version still serves
    assert cond(due.status, "Reconciling") == ("True", "Refreshing")


def test_a_refresh_in_progress_keeps_the_current_version_ready() -> None:
    spec = dataset.DatasetSpec.model_validate({"source": {"uri": "file:///d.csv"}, "target": "y",
                                               "refreshInterval": "1h"})
    status = rd.reconcile(observe({}, spec=spec)).status
    ready = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), RESULT, spec=spec)).status
    later = NOW + datetime.timedelta(minutes=61)
    refreshing = rd.reconcile(observe(ready, spec=spec, now=later)).status
    running = rd.reconcile(observe(refreshing, UnitStatus(State.RUNNING, "pid 7"), spec=spec, now=later)).status
    assert cond(running, "Ready") == ("True", "Profiled")
    assert cond(running, "Reconciling") == ("True", "Fetching")
    flaky = {"ok": False, "reason": "SourceUnreachable", "message": "connection refused"}
    retrying = rd.reconcile(observe(running, UnitStatus(State.SUCCEEDED), flaky, spec=spec, now=later)).status
    assert cond(retrying, "Ready") == ("True", "Profiled")
    assert cond(retrying, "Reconciling") == ("True", "Retrying")


def test_a_spec_change_while_a_unit_runs_starts_over_instead_of_recording_the_old_result() -> None:
    status = rd.reconcile(observe({})).status
    plan = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), RESULT, generation=2))
    assert plan.submit is not None and plan.submit.name != status["job"]
    assert plan.status["job"] == plan.submit.name and plan.status["attempts"] == 1
    assert "digest" not in plan.status and "observedGeneration" not in plan.status
    assert cond(plan.status, "Reconciling") == ("True", "Fetching")
    done = rd.reconcile(observe(plan.status, UnitStatus(State.SUCCEEDED), RESULT, generation=2))
    assert cond(done.status, "Ready") == ("True", "Profiled") and done.status["observedGeneration"] == 2


def test_changed_content_adds_a_version_to_history() -> None:
    status = rd.reconcile(observe({})).status
    first = rd.reconcile(observe(status, UnitStatus(State.SUCCEEDED), RESULT)).status
    again = rd.reconcile(observe(first, generation=2)).status
    changed = {**RESULT, "digest": "sha256:" + "2" * 64, "rows": 600}
    plan = rd.reconcile(observe(again, UnitStatus(State.SUCCEEDED), changed, generation=2))
    assert [h["digest"][-1] for h in plan.status["history"]] == ["2", "1"]
    assert plan.events[0].reason == "NewVersion"
