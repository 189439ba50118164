"""Canary and shadow rollout decisions, table-driven with an injected clock."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from roost.api import deployment
from roost.reconcile import deployment as rd
from roost.reconcile import rollout
from roost.reconcile.conditions import get
from roost.reconcile.rollout import Action, Decision, Verdict

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
PASS = Verdict(Decision.PASS, None, "every metric no worse than its margin")
FAIL = Verdict(Decision.FAIL, "latency-p95", "latency-p95 ratio 3.1 > 1.2 (interval [2.4, 3.9])")
WAIT = Verdict(Decision.INCONCLUSIVE, None, "too few requests")


def strategy(steps: list[dict[str, Any]], **analysis: Any) -> deployment.RolloutStrategy:
    return deployment.RolloutStrategy.model_validate(
        {"type": "Canary", "steps": steps, "analysis": {"maxDuration": "10m", **analysis}})


def canary(step: int = 0, weight: int = 0, started: datetime.datetime = T0) -> dict[str, Any]:
    stamp = rollout._stamp(started)
    return {"modelVersion": "v2", "digest": "sha256:2", "step": step, "weight": weight, "startTime": stamp,
            "stepStartTime": stamp}


def advance(s: deployment.RolloutStrategy, c: dict[str, Any], verdict: Verdict, now: datetime.datetime = T0,
            requests: int = 0, promote: bool = False, abort: bool = False, paused: bool = False) -> rollout.Outcome:
    return rollout.advance(rollout.Observed(s, paused, now, c, requests, verdict, promote, abort))


STEPS = [{"setWeight": 10}, {"pause": {"requests": 100}}, {"setWeight": 50}, {"pause": {"duration": "1m"}}]


@pytest.mark.parametrize(("name", "c", "verdict", "now", "requests", "expected", "step", "weight"), [
    ("first-weight-then-hold-for-requests", canary(), WAIT, T0, 0, Action.WAIT, 1, 10),
    ("requests-reached-moves-on", canary(1, 10), WAIT, T0, 100, Action.WAIT, 3, 50),
    ("duration-not-over-holds", canary(3, 50), PASS, T0 + datetime.timedelta(seconds=30), 0, Action.WAIT, 3, 50),
    ("last-step-done-and-pass-promotes", canary(3, 50), PASS, T0 + datetime.timedelta(minutes=2), 0,
     Action.PROMOTE, 4, 50),
    ("last-step-done-inconclusive-waits", canary(3, 50), WAIT, T0 + datetime.timedelta(minutes=2), 0,
     Action.WAIT, 4, 50),
    ("fail-rolls-back-at-any-step", canary(1, 10), FAIL, T0, 0, Action.ROLLBACK, 1, 10),
    ("max-duration-without-verdict-rolls-back", canary(4, 50), WAIT, T0 + datetime.timedelta(minutes=11), 0,
     Action.ROLLBACK, 4, 50),
])
def test_canary_steps(name: str, c: dict[str, Any], verdict: Verdict, now: datetime.datetime, requests: int,
                      expected: Action, step: int, weight: int) -> None:
    outcome = advance(strategy(STEPS), c, verdict, now, requests)
    assert outcome.action == expected, outcome.message
    assert outcome.canary["step"] == step
    assert outcome.canary["weight"] == weight


def test_inconclusive_at_max_duration_is_never_promoted() -> None:
    outcome = advance(strategy(STEPS), canary(4, 50), WAIT, T0 + datetime.timedelta(minutes=11))
    assert outcome.action == Action.ROLLBACK and outcome.reason == "Inconclusive"


def test_dry_run_judges_but_never_acts() -> None:
    s = strategy(STEPS, dryRun=True)
    assert advance(s, canary(1, 10), FAIL).action == Action.WAIT
    outcome = advance(s, canary(4, 50), PASS, T0 + datetime.timedelta(minutes=20))
    assert outcome.action == Action.WAIT and outcome.reason == "DryRun"


def test_manual_pause_waits_for_promote() -> None:
    s = strategy([{"setWeight": 20}, {"pause": {}}])
    held = advance(s, canary(), WAIT)
    assert held.action == Action.WAIT and held.reason == "WaitingForPromotion" and held.canary["step"] == 1
    promoted = advance(s, held.canary, WAIT, promote=True)
    assert promoted.action == Action.PROMOTE
    assert "by request" in promoted.message


def test_abort_rolls_back() -> None:
    outcome = advance(strategy(STEPS), canary(1, 10), PASS, abort=True)
    assert outcome.action == Action.ROLLBACK and outcome.reason == "Aborted"


def test_paused_spec_holds_the_current_step() -> None:
    outcome = advance(strategy(STEPS), canary(1, 10), PASS, requests=1000, paused=True)
    assert outcome.action == Action.WAIT and outcome.canary["step"] == 1 and outcome.reason == "Paused"


# ----- the Deployment reconciler's rollout path ------------------------------------------------------------
V1 = rd.Version("v1", True, True, digest="sha256:" + "1" * 64, artifact={"uri": "file:///1"}, signature={})
V2 = rd.Version("v2", True, True, digest="sha256:" + "2" * 64, artifact={"uri": "file:///2"}, signature={})
S1, S2 = rd.server_name("v1", str(V1.digest)), rd.server_name("v2", str(V2.digest))
STABLE = {"stable": {"modelVersion": "v1", "digest": V1.digest, "weight": 100}}


def reconcile(status: dict[str, Any], servers: dict[str, str], verdict: Verdict = WAIT,
              now: datetime.datetime = T0, spec: dict[str, Any] | None = None, desired: rd.Version = V2,
              requests: int = 0, mirror_supported: bool = True) -> rd.ServingPlan:
    spec = spec or {"modelVersion": desired.name, "strategy": {"type": "Canary", "steps": STEPS}}
    return rd.reconcile(rd.Observed(
        "ns", "d", 2, deployment.DeploymentSpec.model_validate(spec), status, now, desired,
        {n: rd.Server(n, s, f"http://127.0.0.1/{n}") for n, s in servers.items()}, True, verdict, requests,
        mirror_supported=mirror_supported))


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    c = get(status["conditions"], type_)
    assert c is not None
    return c["status"], c["reason"]


def test_candidate_starts_beside_stable_which_keeps_all_traffic() -> None:
    plan = reconcile(dict(STABLE), {S1: "Ready"})
    assert {name for name, _ in plan.ensure} == {S1, S2}
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 100}]
    assert cond(plan.status, "Reconciling") == ("True", "Starting")
    assert cond(plan.status, "Available") == ("True", "Serving")


def test_ready_candidate_gets_the_first_weight() -> None:
    plan = reconcile(dict(STABLE), {S1: "Ready", S2: "Ready"})
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 90},
                           {"version": "v2", "server": S2, "weight": 10}]
    assert plan.status["canary"]["modelVersion"] == "v2"
    assert [e.reason for e in plan.events][:2] == ["RolloutStarted", "StepAdvanced"]


def test_failed_analysis_rolls_back_and_records_the_evidence() -> None:
    started = reconcile(dict(STABLE), {S1: "Ready", S2: "Ready"}).status
    plan = reconcile(started, {S1: "Ready", S2: "Ready"}, FAIL)
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 100}]
    assert S2 in plan.stop
    assert cond(plan.status, "RolledBack") == ("True", "AnalysisFailed")
    assert cond(plan.status, "Stalled") == ("True", "RolledBack")
    assert cond(plan.status, "Ready")[0] == "False"
    assert cond(plan.status, "Available") == ("True", "Serving")
    assert "latency-p95" in plan.status["rollback"]["message"]
    assert plan.status["stable"]["modelVersion"] == "v1"
    again = reconcile(plan.status, {S1: "Ready"})  # the same version is not tried again
    assert S2 not in {name for name, _ in again.ensure}
    assert cond(again.status, "Stalled") == ("True", "RolledBack")


def test_candidate_that_fails_to_start_is_rolled_back() -> None:
    plan = reconcile(dict(STABLE), {S1: "Ready", S2: "Failed"})
    assert cond(plan.status, "RolledBack") == ("True", "CandidateFailed")
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 100}]


def test_passing_candidate_is_promoted_and_the_old_version_drained() -> None:
    status = reconcile(dict(STABLE), {S1: "Ready", S2: "Ready"}).status
    status = reconcile(status, {S1: "Ready", S2: "Ready"}, PASS, requests=100).status
    plan = reconcile(status, {S1: "Ready", S2: "Ready"}, PASS, now=T0 + datetime.timedelta(minutes=2))
    assert plan.routes == [{"version": "v2", "server": S2, "weight": 100}]
    assert plan.status["stable"]["modelVersion"] == "v2" and plan.status.get("canary") is None
    assert plan.status["promotion"]["from"] == "v1"
    assert cond(plan.status, "Ready") == ("True", "Promoted")
    assert S1 in plan.status["backend"]["draining"]


def test_revert_during_a_rollout_removes_the_candidate_at_once() -> None:
    status = reconcile(dict(STABLE), {S1: "Ready", S2: "Ready"}).status
    plan = reconcile(status, {S1: "Ready", S2: "Ready"}, desired=V1,
                     spec={"modelVersion": "v1", "strategy": {"type": "Canary", "steps": STEPS}})
    assert S2 in plan.stop
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 100}]
    assert plan.status.get("canary") is None
    assert "RolloutAborted" in [e.reason for e in plan.events]


def test_shadow_mirrors_every_request_and_answers_with_stable() -> None:
    spec = {"modelVersion": "v2", "strategy": {"type": "Shadow"}}
    plan = reconcile(dict(STABLE), {S1: "Ready", S2: "Ready"}, spec=spec)
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 100},
                           {"version": "v2", "server": S2, "weight": 0, "mirror": True}]
    promoted = reconcile(plan.status, {S1: "Ready", S2: "Ready"}, PASS, spec=spec)
    assert promoted.status["stable"]["modelVersion"] == "v2"


@pytest.mark.parametrize(("total", "weight", "mirror", "expected"), [
    (10, None, False, (10, 0)),   # no candidate
    (10, 20, False, (8, 2)),      # the replica ratio is the split
    (10, 25, False, (7, 3)),      # the candidate rounds up
    (1, 10, False, (1, 1)),       # one replica each: 1:1 whatever the weight
    (4, 0, False, (3, 1)),        # a candidate before its first step stays warm
    (3, 100, False, (0, 3)),
    (5, 0, True, (5, 5)),         # a shadow carries stable's whole load
    (0, 50, False, (0, 0)),       # scaled to zero
])
def test_replica_split(total: int, weight: int | None, mirror: bool, expected: tuple[int, int]) -> None:
    assert rd.replica_split(total, weight, mirror) == expected


def test_replicas_follow_the_weights_during_a_canary_and_come_back_after() -> None:
    spec = {"modelVersion": "v2", "replicas": 10, "strategy": {"type": "Canary", "steps": STEPS}}
    before = reconcile(dict(STABLE), {S1: "Ready"}, spec={**spec, "modelVersion": "v1"}, desired=V1)
    assert before.replicas == {S1: 10}
    plan = reconcile(dict(STABLE), {S1: "Ready", S2: "Ready"}, spec=spec)
    weight = plan.status["canary"]["weight"]
    assert plan.replicas == {S1: 10 - -(-10 * weight // 100), S2: max(1, -(-10 * weight // 100))}
    assert plan.status["backend"]["replicas"] == plan.replicas


def test_shadow_without_mirroring_is_refused_and_starts_no_candidate() -> None:
    spec = {"modelVersion": "v2", "strategy": {"type": "Shadow"}}
    plan = reconcile(dict(STABLE), {S1: "Ready"}, spec=spec, mirror_supported=False)
    assert [name for name, _ in plan.ensure] == [S1]
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 100}]
    assert cond(plan.status, "Stalled") == ("True", "MirrorUnsupported")
    assert cond(plan.status, "Available") == ("True", "Serving")


# ----- the baseline: a fresh copy of stable taking the candidate's share ----------------------------------
B1 = rd.baseline_server_name("v1", str(V1.digest))


def weighted(status: dict[str, Any], servers: dict[str, str], verdict: Verdict = WAIT, now: datetime.datetime = T0,
             spec: dict[str, Any] | None = None, requests: int = 0) -> rd.ServingPlan:
    """reconcile() on a backend where each server takes exactly its route's share (the local router)."""
    spec = spec or {"modelVersion": "v2", "strategy": {"type": "Canary", "steps": STEPS}}
    return rd.reconcile(rd.Observed(
        "ns", "d", 2, deployment.DeploymentSpec.model_validate(spec), status, now, V2,
        {n: rd.Server(n, s, f"http://127.0.0.1/{n}") for n, s in servers.items()}, True, verdict, requests,
        weighted_split=True))


def test_baseline_server_name_is_distinct_and_fits_a_dns_label() -> None:
    long = rd.baseline_server_name("m" * 63, "sha256:" + "a" * 64)
    assert len(long) <= 63 and long.endswith("-baseline")
    assert B1 not in (S1, S2) and f"{S1}-baseline" == B1


def test_a_weighted_canary_starts_a_baseline_with_the_candidate_and_waits_for_both() -> None:
    plan = weighted(dict(STABLE), {S1: "Ready"})
    ensured = dict(plan.ensure)
    assert set(ensured) == {S1, S2, B1}
    assert ensured[B1].baseline and ensured[B1].name == "v1" and ensured[B1].digest == V1.digest
    assert not ensured[S1].baseline
    waiting = weighted(dict(STABLE), {S1: "Ready", S2: "Ready", B1: "Starting"})
    assert waiting.routes == [{"version": "v1", "server": S1, "weight": 100}]
    assert waiting.status.get("canary") is None
    assert cond(waiting.status, "Reconciling") == ("True", "Starting")


def test_the_baseline_takes_the_candidates_share_up_to_half() -> None:
    servers = {S1: "Ready", S2: "Ready", B1: "Ready"}
    plan = weighted(dict(STABLE), servers)
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 80}, {"version": "v1", "server": B1, "weight": 10},
                           {"version": "v2", "server": S2, "weight": 10}]
    assert plan.status["canary"]["baselineWeight"] == 10
    at_50 = weighted(plan.status, servers, requests=100)
    assert at_50.status["canary"]["weight"] == 50
    assert at_50.routes == [{"version": "v1", "server": S1, "weight": 0}, {"version": "v1", "server": B1, "weight": 50},
                            {"version": "v2", "server": S2, "weight": 50}]
    assert at_50.routes[-1]["server"] == S2  # the candidate stays last: sticky keys already on it stay there


@pytest.mark.parametrize("verdict", [PASS, FAIL])
def test_the_baseline_drains_when_the_rollout_ends(verdict: Verdict) -> None:
    servers = {S1: "Ready", S2: "Ready", B1: "Ready"}
    status = weighted(dict(STABLE), servers).status
    status = weighted(status, servers, requests=100).status
    plan = weighted(status, servers, verdict, now=T0 + datetime.timedelta(minutes=2))
    assert B1 not in dict(plan.ensure)
    assert B1 in plan.status["backend"]["draining"] and B1 not in plan.stop
    assert all(r["server"] != B1 for r in plan.routes or [])
    later = weighted(plan.status, servers, verdict, now=T0 + datetime.timedelta(minutes=3))
    assert B1 in later.stop


def test_no_baseline_when_switched_off_for_a_shadow_or_where_pods_share_the_load() -> None:
    servers = {S1: "Ready", S2: "Ready"}
    off = weighted(dict(STABLE), servers, spec={"modelVersion": "v2", "strategy": {
        "type": "Canary", "steps": STEPS, "analysis": {"baseline": False}}})
    assert B1 not in dict(off.ensure) and off.status["canary"].get("baselineWeight") is None
    shadow = weighted(dict(STABLE), servers, spec={"modelVersion": "v2", "strategy": {"type": "Shadow"}})
    assert B1 not in dict(shadow.ensure)
    by_replicas = reconcile(dict(STABLE), servers)  # the Kubernetes backend: traffic follows ready Pods
    assert B1 not in dict(by_replicas.ensure) and len(by_replicas.routes or []) == 2


def test_a_baseline_that_fails_is_dropped_and_the_rollout_goes_on_against_stable() -> None:
    servers = {S1: "Ready", S2: "Ready", B1: "Ready"}
    status = weighted(dict(STABLE), servers).status
    plan = weighted(status, {**servers, B1: "Failed"})
    assert "BaselineFailed" in [e.reason for e in plan.events]
    assert plan.status["canary"].get("baselineWeight") is None
    assert plan.routes == [{"version": "v1", "server": S1, "weight": 90}, {"version": "v2", "server": S2, "weight": 10}]
    assert B1 in plan.stop
    again = weighted(plan.status, {S1: "Ready", S2: "Ready"})
    assert B1 not in dict(again.ensure) and "BaselineFailed" not in [e.reason for e in again.events]
