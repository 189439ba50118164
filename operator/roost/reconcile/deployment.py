"""Deployment decisions: which version servers must run, how the router splits traffic, what stops.

``Replace``: the new version's server starts and becomes ready, the router sends it all traffic, and
the old server stops after a drain period, so that a version switch fails no request. ``Canary`` and
``Shadow``: the candidate runs beside the stable version and is judged on live traffic
(:mod:`roost.reconcile.rollout` walks the steps); it is promoted on evidence or rolled back, and a
rolled-back version is not tried again until the spec names another. A Rejected version is never
served: the current one keeps serving (``Stalled``/``VersionNotReady``).

Where the backend gives each process an exact share of the requests (the local router), a canary
also runs a *baseline*: a fresh copy of stable that takes the candidate's share (up to half the
traffic), started with the candidate, so that the two processes the latency comparison looks at are
asked equally often and are equally new — Kayenta's canary/baseline pair (Spinnaker docs, "Canary
best practices": compare the canary with a baseline of the same size, not with production). How fast
a process answers depends on how often it is asked (measured in ``examples/canary/README.md``).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from roost.api import deployment
from roost.reconcile import conditions, rollout
from roost.reconcile.conditions import FALSE, TRUE, StatusBuilder
from roost.reconcile.plan import Event

DRAIN_SECONDS = 2.0
POLL_SECONDS = 0.5
ANALYSIS_SECONDS = 2.0
HEALTH_SECONDS = 5.0


@dataclass(frozen=True)
class Server:
    """A version server the backend knows about (see ``execution.serving_local.ServerState``)."""

    name: str
    state: str  # Ready | Starting | Failed | Missing
    url: str | None = None
    message: str = ""


@dataclass(frozen=True)
class Version:
    """A ModelVersion as the Deployment needs it."""

    name: str
    exists: bool
    ready: bool
    stalled_reason: str | None = None
    message: str = ""
    digest: str | None = None
    artifact: dict[str, Any] | None = None
    signature: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None  # status.runtime: onnx (parity passed) or sklearn
    baseline: bool = False  # a canary's baseline copy of this (stable) version: it logs apart


@dataclass(frozen=True)
class Observed:
    namespace: str
    name: str
    generation: int
    spec: deployment.DeploymentSpec
    status: dict[str, Any]
    now: datetime.datetime
    desired: Version
    servers: dict[str, Server]  # by server name
    router_ready: bool = False
    verdict: rollout.Verdict = rollout.NO_ANALYSIS
    candidate_requests: int = 0
    promote_requested: bool = False
    abort_requested: bool = False
    analysis_evidence: dict[str, Any] | None = None
    mirror_supported: bool = True  # the backend can mirror requests (Kubernetes: the Gateway API is installed)
    weighted_split: bool = False  # each server takes exactly its route's share (the local router)


@dataclass
class ServingPlan:
    status: dict[str, Any]
    ensure: list[tuple[str, Version]] = field(default_factory=list)  # (server name, version) to keep running
    routes: list[dict[str, Any]] | None = None  # [{"version", "server", "weight"}]; None = leave as is
    stop: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    replicas: dict[str, int] = field(default_factory=dict)  # per server in ``ensure`` (see replica_split)


def server_name(version: str, digest: str) -> str:
    """``<modelVersion>-<10 hex of the digest>``: a new artifact under a name gets a new server."""
    return f"{version}-{digest.removeprefix('sha256:')[:10]}"[:63]


def baseline_server_name(version: str, digest: str) -> str:
    """The server of a canary's baseline copy of ``version``: ``<server_name>-baseline``, at most 63 chars."""
    return f"{server_name(version, digest)[:54]}-baseline"


def replica_split(total: int, candidate_weight: int | None, mirror: bool = False) -> tuple[int, int]:
    """``(stable, candidate)`` replicas for a canary at ``candidate_weight`` percent of ``total``.

    Where traffic follows ready Pods (a Service over every version's Pods, the Kubernetes backend
    without the Gateway API), the replica ratio *is* the split, as in Argo Rollouts' basic canary:
    the candidate gets ``ceil(total x weight / 100)`` and stable the rest, each at least 1 while it
    takes traffic (so with ``total`` 1 a canary is 1:1 whatever its weight; 10 replicas give 10 %
    steps). A mirrored (shadow) candidate carries stable's whole load: it gets ``total``. ``total`` 0
    (scaled to zero) stays 0. Without a candidate: ``(total, 0)``.
    """
    if total == 0 or candidate_weight is None:
        return total, 0
    if mirror:
        return total, total
    weight = min(max(candidate_weight, 0), 100)
    candidate = max(1, -(-total * weight // 100))
    stable = max(1, total - candidate) if weight < 100 else 0
    return stable, candidate


def _now(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reconcile(obs: Observed) -> ServingPlan:
    """Decide servers, routes and status for one Deployment (see the module docstring)."""
    b = StatusBuilder(obs.status, obs.generation, obs.now)
    stable: dict[str, Any] = obs.status.get("stable") or {}
    stable_server = server_name(stable["modelVersion"], stable["digest"]) if stable else None
    plan = ServingPlan(b.status, requeue_after=HEALTH_SECONDS)
    if stable_server:
        plan.ensure.append((stable_server, _stable_version(stable)))
    serving = stable_server is not None and obs.servers.get(stable_server, Server("", "Missing")).state == "Ready"
    draining = dict((obs.status.get("backend") or {}).get("draining") or {})

    d = obs.desired
    if not d.exists or not d.ready:
        if d.exists and d.stalled_reason:
            reason, message = "VersionNotReady", f"ModelVersion {d.name} is {d.stalled_reason}: {d.message}"
            b.stalled(reason, message + (f"; still serving {stable['modelVersion']}" if stable else ""))
            plan.events.append(Event("Warning", reason, message))
        else:
            what = "does not exist" if not d.exists else "is not Ready"
            b.progressing("WaitingForModelVersion", f"ModelVersion {d.name} {what}")
        _availability(b, stable, serving)
        return _finish(obs, b, plan, draining)

    assert d.digest is not None
    target = server_name(d.name, d.digest)
    if target != stable_server:
        plan.ensure.append((target, d))
    target_state = obs.servers.get(target, Server(target, "Missing"))
    canary = obs.status.get("canary") or {}
    if canary and target == stable_server:
        plan.events.append(Event("Normal", "RolloutAborted",
                                 f"spec.modelVersion is back to {d.name}: removed candidate {canary['modelVersion']}"))
    elif stable and target != stable_server and obs.spec.strategy.type != deployment.StrategyType.REPLACE:
        return _rollout(obs, b, plan, draining, stable, target, target_state)

    if target_state.state == "Failed":
        message = f"the server for {d.name} failed: {target_state.message}"
        b.stalled("ServerFailed", message + (f"; still serving {stable['modelVersion']}" if stable else ""))
        plan.stop.append(target)
        plan.ensure = [e for e in plan.ensure if e[0] != target]
        plan.events.append(Event("Warning", "ServerFailed", message))
        _availability(b, stable, serving)
        return _finish(obs, b, plan, draining)

    if target_state.state != "Ready":
        b.progressing("Starting", f"starting the server for {d.name}: {target_state.message}")
        _availability(b, stable, serving)
        plan.requeue_after = POLL_SECONDS
        return _finish(obs, b, plan, draining)

    # The target serves: route all traffic to it, and drain whatever served before.
    plan.routes = [{"version": d.name, "server": target, "weight": 100}]
    if stable_server and stable_server != target:
        draining.setdefault(stable_server, _now(obs.now))
        plan.events.append(Event("Normal", "Promoted", f"Switched traffic from {stable['modelVersion']} to {d.name}"))
    elif not stable:
        plan.events.append(Event("Normal", "Serving", f"Serving {d.name} ({d.digest[:19]})"))
    b.status["stable"] = {"modelVersion": d.name, "digest": d.digest, "readyReplicas": 1, "weight": 100,
                          "artifactURI": (d.artifact or {}).get("uri")}
    b.status["canary"] = None
    if not obs.router_ready:
        b.progressing("Routing", "waiting for the router to answer")
        b.condition("Available", FALSE, "Routing", "the router is starting")
        plan.requeue_after = POLL_SECONDS
        return _finish(obs, b, plan, draining)
    b.condition("Available", TRUE, "Serving", f"{d.name} serves")
    b.ready("Serving", f"{d.name} ({d.digest[:19]}) serves all traffic")
    b.condition("RolledBack", FALSE, "Serving", "")
    return _finish(obs, b, plan, draining)


def _stable_version(stable: dict[str, Any], baseline: bool = False) -> Version:
    """``status.stable`` as the Version its server (or a canary's baseline copy of it) runs."""
    return Version(stable["modelVersion"], True, True, digest=stable["digest"],
                   artifact={"uri": stable.get("artifactURI"), "digest": stable["digest"]}, baseline=baseline)


def _rollback_record(version: Version, reason: str, message: str, obs: Observed) -> dict[str, Any]:
    return {"modelVersion": version.name, "digest": version.digest, "time": _now(obs.now), "reason": reason,
            "message": message, "evidence": obs.analysis_evidence}


def _rollout(obs: Observed, b: StatusBuilder, plan: ServingPlan, draining: dict[str, str], stable: dict[str, Any],
             target: str, target_state: Server) -> ServingPlan:
    """A Canary or Shadow rollout of ``obs.desired`` against the stable version."""
    d, stable_server = obs.desired, server_name(stable["modelVersion"], stable["digest"])
    stable_route = {"version": stable["modelVersion"], "server": stable_server, "weight": 100}
    serving = obs.servers.get(stable_server, Server("", "Missing")).state == "Ready"
    _availability(b, stable, serving)
    rolled_back = obs.status.get("rollback") or {}
    if rolled_back.get("digest") == d.digest and rolled_back.get("modelVersion") == d.name:
        plan.ensure = [e for e in plan.ensure if e[0] != target]
        message = f"{d.name} was rolled back ({rolled_back.get('reason')}): {rolled_back.get('message', '')}"
        b.stalled("RolledBack", message + f"; {stable['modelVersion']} serves")
        b.condition("RolledBack", TRUE, str(rolled_back.get("reason") or "RolledBack"), message)
        b.status["canary"] = None
        plan.routes = [stable_route]
        return _finish(obs, b, plan, draining)

    canary = dict(obs.status.get("canary") or {})
    if canary and canary.get("digest") != d.digest:  # the spec moved on to another candidate
        plan.events.append(Event("Normal", "RolloutAborted", f"spec.modelVersion changed: removed candidate "
                                                              f"{canary['modelVersion']}"))
        canary = {}
    mode = obs.spec.strategy.type.value
    if mode == deployment.StrategyType.SHADOW.value and not obs.mirror_supported:
        plan.ensure = [e for e in plan.ensure if e[0] != target]
        message = (f"a shadow rollout of {d.name} needs request mirroring; on the Kubernetes backend that is the "
                   "Gateway API's HTTPRoute (install its CRDs) — without it the stable Service would send "
                   f"clients to the candidate. {stable['modelVersion']} keeps serving")
        b.stalled("MirrorUnsupported", message)
        b.status["canary"] = None
        plan.routes = [stable_route]
        if obs.status.get("canary") or not conditions.get(obs.status.get("conditions", []), "Stalled"):
            plan.events.append(Event("Warning", "MirrorUnsupported", message))
        return _finish(obs, b, plan, draining)
    # A new candidate: an earlier version's rollback (kept in status.rollback) no longer describes this rollout.
    b.condition("RolledBack", FALSE, "RollingOut", f"rolling out {d.name}")
    baseline = _baseline(obs, plan, stable, canary, mode)  # started with the candidate
    if target_state.state == "Failed":
        message = f"the candidate {d.name} failed to start: {target_state.message}"
        return _roll_back(obs, b, plan, draining, stable_route, target, "CandidateFailed", message)
    baseline_starting = baseline is not None and not canary and obs.servers.get(
        baseline, Server("", "Missing")).state in ("Starting", "Missing")
    if target_state.state != "Ready" or baseline_starting:
        b.progressing("Starting", f"starting candidate {d.name} ({mode}): {target_state.message}"
                      if target_state.state != "Ready" else
                      f"starting a baseline copy of {stable['modelVersion']} beside candidate {d.name}")
        b.status["canary"] = canary or None
        plan.routes = [stable_route]
        plan.requeue_after = POLL_SECONDS
        return _finish(obs, b, plan, draining)
    if not canary:
        canary = {"modelVersion": d.name, "digest": d.digest, "step": 0, "weight": 0, "mode": mode,
                  "startTime": rollout._stamp(obs.now), "stepStartTime": rollout._stamp(obs.now),
                  "artifactURI": (d.artifact or {}).get("uri"), "readyReplicas": 1,
                  "baselineWeight": 0 if baseline is not None else None}
        plan.events.append(Event("Normal", "RolloutStarted", f"Started a {mode} rollout of {d.name} against "
                                                             f"{stable['modelVersion']}"
                                                             + (" and a baseline copy of it" if baseline else "")))
    elif baseline is None:
        canary["baselineWeight"] = None
    outcome = rollout.advance(rollout.Observed(
        obs.spec.strategy, obs.spec.paused, obs.now, canary, obs.candidate_requests, obs.verdict,
        obs.promote_requested, obs.abort_requested))
    plan.events += [Event(*e) for e in outcome.events]
    if outcome.action == rollout.Action.ROLLBACK:
        return _roll_back(obs, b, plan, draining, stable_route, target, outcome.reason, outcome.message)
    if outcome.action == rollout.Action.PROMOTE:
        plan.routes = [{"version": d.name, "server": target, "weight": 100}]
        draining.setdefault(stable_server, _now(obs.now))
        plan.ensure = [e for e in plan.ensure if e[0] != stable_server]
        _drain_baseline(obs, plan, draining, stable)
        b.status["stable"] = {"modelVersion": d.name, "digest": d.digest, "readyReplicas": 1, "weight": 100,
                              "artifactURI": (d.artifact or {}).get("uri")}
        b.status["canary"] = None
        b.status["promotion"] = {"modelVersion": d.name, "digest": d.digest, "time": _now(obs.now),
                                 "from": stable["modelVersion"], "how": outcome.message,
                                 "evidence": obs.analysis_evidence}
        plan.events.append(Event("Normal", "Promoted", f"Promoted {d.name} over {stable['modelVersion']}: "
                                                       f"{outcome.message}"))
        b.condition("Available", TRUE, "Serving", f"{d.name} serves")
        b.condition("RolledBack", FALSE, "Promoted", "")
        b.ready("Promoted", f"{d.name} ({str(d.digest)[:19]}) promoted and serves all traffic")
        return _finish(obs, b, plan, draining)
    weight = int(outcome.canary.get("weight") or 0)
    if mode == deployment.StrategyType.SHADOW.value:
        plan.routes = [stable_route, {"version": d.name, "server": target, "weight": 0, "mirror": True}]
    else:
        share = min(weight, 100 - weight) if baseline is not None else 0
        plan.routes = [{**stable_route, "weight": 100 - weight - share},
                       {"version": d.name, "server": target, "weight": weight}]
        if baseline is not None:
            plan.routes.insert(1, {"version": stable["modelVersion"], "server": baseline, "weight": share})
            outcome.canary["baselineWeight"] = share
    b.status["canary"] = outcome.canary
    b.progressing(outcome.reason, outcome.message)
    plan.requeue_after = ANALYSIS_SECONDS
    return _finish(obs, b, plan, draining)


def _roll_back(obs: Observed, b: StatusBuilder, plan: ServingPlan, draining: dict[str, str],
               stable_route: dict[str, Any], target: str, reason: str, message: str) -> ServingPlan:
    d = obs.desired
    plan.routes = [stable_route]
    plan.ensure = [e for e in plan.ensure if e[0] != target]
    _drain_baseline(obs, plan, draining, obs.status.get("stable") or {})
    b.status["canary"] = None
    b.status["rollback"] = _rollback_record(d, reason, message, obs)
    text = f"rolled back {d.name} ({reason}): {message}"
    b.condition("RolledBack", TRUE, reason, text)
    b.stalled("RolledBack", f"{text}; {stable_route['version']} serves")
    plan.events.append(Event("Warning", "RolledBack", text))
    return _finish(obs, b, plan, draining)


def _baseline(obs: Observed, plan: ServingPlan, stable: dict[str, Any], canary: dict[str, Any],
              mode: str) -> str | None:
    """The baseline server this canary runs (added to ``plan.ensure``), or None.

    Decided when the rollout starts (``status.canary.baselineWeight`` set or not) and kept for it; a
    baseline that fails is dropped, with an event, and latency is then compared with stable itself.
    """
    if canary:
        wanted = canary.get("baselineWeight") is not None
    else:
        analysis = obs.spec.strategy.analysis or deployment.Analysis()
        wanted = mode == deployment.StrategyType.CANARY.value and obs.weighted_split and analysis.baseline
    if not wanted:
        return None
    name = baseline_server_name(stable["modelVersion"], stable["digest"])
    state = obs.servers.get(name, Server(name, "Missing"))
    if state.state == "Failed":
        plan.events.append(Event("Warning", "BaselineFailed",
                                 f"the baseline copy of {stable['modelVersion']} failed: {state.message}; the "
                                 "candidate's latency is compared with stable itself"))
        return None
    plan.ensure.append((name, _stable_version(stable, baseline=True)))
    return name


def _drain_baseline(obs: Observed, plan: ServingPlan, draining: dict[str, str], stable: dict[str, Any]) -> None:
    """The rollout is over: its baseline stops taking requests, and stops after the drain period."""
    if stable and stable.get("digest"):
        name = baseline_server_name(stable["modelVersion"], stable["digest"])
        plan.ensure = [e for e in plan.ensure if e[0] != name]
        if name in obs.servers:
            draining.setdefault(name, _now(obs.now))


def _availability(b: StatusBuilder, stable: dict[str, Any] | None, serving: bool) -> None:
    if stable and serving:
        b.condition("Available", TRUE, "Serving", f"{stable['modelVersion']} serves")
    else:
        b.condition("Available", FALSE, "NothingServing", "no version serves yet")


def _finish(obs: Observed, b: StatusBuilder, plan: ServingPlan, draining: dict[str, str]) -> ServingPlan:
    stable = b.status.get("stable") or {}
    stable_server = server_name(stable["modelVersion"], stable["digest"]) if stable else None
    rolling_out = (stable_server is not None and obs.spec.strategy.type != deployment.StrategyType.REPLACE
                   and any(name != stable_server for name, _ in plan.ensure))
    weight = int((b.status.get("canary") or {}).get("weight") or 0) if rolling_out else None
    shadow = obs.spec.strategy.type == deployment.StrategyType.SHADOW
    stable_n, candidate_n = replica_split(obs.spec.replicas, weight, shadow)
    # a server beside stable during a Canary/Shadow rollout is its candidate (starting, or at its step's weight)
    plan.replicas = {name: stable_n if name == stable_server or not rolling_out else candidate_n
                     for name, _ in plan.ensure}
    keep = {name for name, _ in plan.ensure}
    for name in list(draining):
        if name in keep:
            draining.pop(name)
            continue
        since = datetime.datetime.fromisoformat(draining[name].replace("Z", "+00:00"))
        if (obs.now - since).total_seconds() >= DRAIN_SECONDS:
            plan.stop.append(name)
            draining.pop(name)
        else:
            keep.add(name)
            plan.requeue_after = min(plan.requeue_after or DRAIN_SECONDS, DRAIN_SECONDS)
    for name in obs.servers:
        if name not in keep and name not in plan.stop:
            plan.stop.append(name)
    backend = dict(obs.status.get("backend") or {})
    backend["draining"] = draining or None
    backend["servers"] = sorted(keep) or None
    backend["replicas"] = dict(sorted(plan.replicas.items())) or None
    b.status["backend"] = {k: v for k, v in backend.items() if v is not None} or None
    plan.status = b.build()
    return plan


def desired_version(name: str, mv: dict[str, Any] | None) -> Version:
    """Read a ModelVersion object into what the Deployment needs."""
    if mv is None:
        return Version(name, exists=False, ready=False)
    status = mv.get("status") or {}
    conds = status.get("conditions", [])
    stalled = conditions.get(conds, "Stalled")
    ready = conditions.is_true(conds, "Ready")
    artifact = status.get("artifact") or {}
    return Version(
        name, exists=True, ready=ready and bool(artifact.get("verified")),
        stalled_reason=stalled["reason"] if stalled and stalled["status"] == TRUE else None,
        message=(stalled or {}).get("message", ""), digest=artifact.get("digest"),
        artifact={"uri": artifact.get("uri"), "digest": artifact.get("digest")} if artifact else None,
        signature=status.get("signature"), runtime=status.get("runtime"),
    )
