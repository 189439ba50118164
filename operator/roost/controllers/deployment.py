"""Deployment (roost.dev) controller: serves a ModelVersion behind a stable URL through a backend."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from typing import Any

import kopf
import pydantic

from roost import errors, kubectl_plugin
from roost.api import common, deployment
from roost.controllers import analysis, loop
from roost.controllers import dataset as dataset_controller
from roost.controllers.runtime import Runtime
from roost.reconcile import deployment as reconcile_deploy
from roost.reconcile import plan as plan_mod
from roost.reconcile import rollout
from roost.reconcile.conditions import StatusBuilder

KIND = deployment.KIND
REFUSED_RETRY_SECONDS = 60.0


def server_config(rt: Runtime, ns: str, name: str, spec: deployment.DeploymentSpec,
                  version: reconcile_deploy.Version) -> dict[str, Any] | None:
    """The ``roost serve`` config of one version (None when its signature is unknown).

    A canary's baseline copy of stable logs apart from stable's own log (:func:`analysis.log_uri`).
    """
    if not version.signature or not version.artifact or not version.artifact.get("uri"):
        return None
    log_uri = analysis.log_uri(rt.store, ns, name, version.name, baseline=version.baseline)
    return {
        "modelName": name, "modelVersion": version.name, "namespace": ns,
        "artifact": version.artifact, "signature": version.signature, "store": rt.store.root,
        "requestLog": {"uri": log_uri,
                       "sampleRate": spec.logging.sample_rate, "flushInterval": 2.0, "flushRows": 1000,
                       "maxBufferedRows": 100_000},
        **({"runtime": version.runtime} if version.runtime else {}),
    }


def _requested(meta: dict[str, Any], canary: dict[str, Any]) -> tuple[bool, bool]:
    """Whether ``kubectl roost promote|abort`` asked for it during the running rollout."""
    if not canary.get("startTime"):
        return False, False
    started = datetime.datetime.fromisoformat(canary["startTime"].replace("Z", "+00:00"))
    annotations = meta.get("annotations") or {}
    asked = [kubectl_plugin.requested_at(annotations.get(kubectl_plugin.ANNOTATIONS[a])) for a in ("promote", "abort")]
    promote, abort = (t is not None and t >= started for t in asked)
    return promote, abort


async def reconcile_once(rt: Runtime, body: dict[str, Any]) -> plan_mod.Plan:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    try:
        spec = deployment.DeploymentSpec.model_validate(body["spec"])
    except pydantic.ValidationError as e:
        return dataset_controller.invalid_spec(body, e)
    rt.refers((KIND.kind, ns, name), {("ModelVersion", ns, spec.model_version)})
    backend = rt.serving
    mv = await asyncio.to_thread(rt.kube.get, "ModelVersion", ns, spec.model_version)
    desired = reconcile_deploy.desired_version(spec.model_version, mv)

    def observe() -> tuple[dict[str, reconcile_deploy.Server], bool]:
        servers = {}
        for server in backend.server_names(ns, name):
            s = backend.observe_server(ns, name, server)
            servers[server] = reconcile_deploy.Server(s.name, s.state, s.url, s.message)
        return servers, backend.router_ready(ns, name)

    servers, router_ready = await asyncio.to_thread(observe)
    mirror_supported = await asyncio.to_thread(backend.mirror_supported)
    weighted_split = backend.weighted_split()
    status = body.get("status") or {}
    live = analysis.Result({}, rollout.NO_ANALYSIS, 0, {})
    if status.get("canary") and spec.strategy.type != deployment.StrategyType.REPLACE:
        live = await asyncio.to_thread(analysis.analyse, rt.store, ns, name, spec, status)
    promote, abort = _requested(meta, status.get("canary") or {})
    plan = reconcile_deploy.reconcile(reconcile_deploy.Observed(
        ns, name, meta.get("generation", 0), spec, status, datetime.datetime.now(datetime.UTC), desired,
        servers, router_ready, live.verdict, live.candidate_requests, promote, abort, live.evidence or None,
        mirror_supported, weighted_split))
    new_candidate = (plan.status.get("canary") or {}).get("digest") != (status.get("canary") or {}).get("digest")
    if plan.status.get("canary") and live.status:
        plan.status["analysis"] = live.status
    elif plan.status.get("canary") and new_candidate:
        plan.status["analysis"] = None  # the last rollout's analysis does not describe this one
    elif not plan.status.get("canary") and live.status:
        plan.status["analysis"] = {**live.status, "state": None, "final": True}

    async def version_config(version: reconcile_deploy.Version) -> dict[str, Any] | None:
        if version.signature is None:
            other = await asyncio.to_thread(rt.kube.get, "ModelVersion", ns, version.name)
            candidate = reconcile_deploy.desired_version(version.name, other)
            if candidate.digest == version.digest:
                version = dataclasses.replace(candidate, baseline=version.baseline)
        return server_config(rt, ns, name, spec, version)

    urls: dict[str, str | None] = {}
    uid = meta.get("uid")
    resources = spec.resources.to_wire() if spec.resources else None
    try:
        for server, version in plan.ensure:
            config = await version_config(version)
            state = await asyncio.to_thread(backend.ensure_server, ns, name, server, config,
                                            replicas=plan.replicas.get(server, spec.replicas), resources=resources,
                                            owner_uid=uid)
            urls[server] = state.url
        if plan.routes is not None:
            backends = [{"version": r["version"], "server": r["server"],
                         "url": urls.get(r["server"]) or servers[r["server"]].url,
                         "weight": r["weight"], **({"mirror": True} if r.get("mirror") else {})}
                        for r in plan.routes]
            gateway = spec.gateway_ref.to_wire() if spec.gateway_ref else None
            plan.status["url"] = await asyncio.to_thread(backend.route, ns, name, backends,
                                                         spec.strategy.sticky_by, owner_uid=uid, gateway=gateway)
        for server in plan.stop:
            await asyncio.to_thread(backend.stop_server, ns, name, server)
    except errors.PermanentError as e:  # e.g. StoreNotShared: the backend refuses until the setup changes
        b = StatusBuilder(body.get("status") or {}, meta.get("generation", 0))
        b.stalled(e.reason, e.message)
        return plan_mod.Plan(b.build(), requeue_after=REFUSED_RETRY_SECONDS)
    return plan_mod.Plan(plan.status, events=plan.events, requeue_after=plan.requeue_after)


@kopf.daemon(common.GROUP, common.VERSION, KIND.plural, cancellation_timeout=5.0)
async def deployment_daemon(stopped: Any, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    await loop.run(memo.runtime, KIND.kind, str(namespace), name, reconcile_once, stopped)


@kopf.on.update(common.GROUP, common.VERSION, KIND.plural, field="spec")
async def deployment_spec_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.runtime.wake((KIND.kind, str(namespace), name))


@kopf.on.field(common.GROUP, common.VERSION, KIND.plural, field="metadata.annotations")
async def deployment_annotated(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """``kubectl roost promote|abort`` writes an annotation: look at it now."""
    memo.runtime.wake((KIND.kind, str(namespace), name))


@kopf.on.delete(common.GROUP, common.VERSION, KIND.plural)
async def deployment_deleted(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Local servers are state outside the cluster: stop them before the object goes (in-cluster
    children would be garbage-collected anyway; the Kubernetes backend deletes them sooner)."""
    await asyncio.to_thread(memo.runtime.serving.stop_all, str(namespace), name)
