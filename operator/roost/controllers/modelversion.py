"""ModelVersion controller: resolves, verifies and evaluates an artifact through the ``evaluate`` worker."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import kopf
import pydantic

from roost.api import common, modelversion
from roost.controllers import dataset as dataset_controller
from roost.controllers import loop
from roost.controllers.runtime import Key, Runtime
from roost.reconcile import modelversion as reconcile_mv
from roost.reconcile import plan as plan_mod

KIND = modelversion.KIND


def _older(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ka = (a["metadata"].get("creationTimestamp", ""), a["metadata"]["name"])
    kb = (b["metadata"].get("creationTimestamp", ""), b["metadata"]["name"])
    return ka < kb


async def reconcile_once(rt: Runtime, body: dict[str, Any]) -> plan_mod.Plan:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    try:
        spec = modelversion.ModelVersionSpec.model_validate(body["spec"])
    except pydantic.ValidationError as e:
        return dataset_controller.invalid_spec(body, e)
    status = body.get("status") or {}
    refs: set[Key] = set()
    if spec.source.training_run_ref:
        refs.add(("TrainingRun", ns, spec.source.training_run_ref.name))
    if spec.source.artifact:
        refs.add(("Dataset", ns, spec.source.artifact.dataset_ref.name))
    if spec.gates.baseline:
        refs.add(("ModelVersion", ns, spec.gates.baseline.model_version_ref.name))
    rt.refers((KIND.kind, ns, name), refs)
    if reconcile_mv.final(status):
        return reconcile_mv.reconcile(reconcile_mv.Observed(ns, name, meta.get("generation", 0), spec, status,
                                                            datetime.datetime.now(datetime.UTC)))

    siblings = await asyncio.to_thread(rt.kube.list, KIND.kind, ns)
    duplicate = next((o["metadata"]["name"] for o in siblings
                      if o["metadata"]["name"] != name and o["spec"].get("model") == spec.model
                      and o["spec"].get("version") == spec.version and _older(o, body)), None)

    async def status_of(kind: str, obj_name: str) -> dict[str, Any] | None:
        obj = await asyncio.to_thread(rt.kube.get, kind, ns, obj_name)
        return None if obj is None else (obj.get("status") or {})

    run = ds = baseline = None
    if not status.get("job"):
        if spec.source.training_run_ref:
            run = await status_of("TrainingRun", spec.source.training_run_ref.name)
        if spec.source.artifact:
            ds = await status_of("Dataset", spec.source.artifact.dataset_ref.name)
        if spec.gates.baseline:
            baseline = await status_of("ModelVersion", spec.gates.baseline.model_version_ref.name)
    elif spec.gates.baseline:
        baseline = await status_of("ModelVersion", spec.gates.baseline.model_version_ref.name)
    unit, result = await loop.observe_unit(rt, body, "evaluate")
    return reconcile_mv.reconcile(reconcile_mv.Observed(
        namespace=ns, name=name, generation=meta.get("generation", 0), spec=spec, status=status,
        now=datetime.datetime.now(datetime.UTC), run=run, dataset=ds, baseline=baseline,
        duplicate_of=duplicate, unit=unit, result=result, uid=meta.get("uid", ""),
    ))


@kopf.daemon(common.GROUP, common.VERSION, KIND.plural, cancellation_timeout=5.0)
async def modelversion_daemon(stopped: Any, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    await loop.run(memo.runtime, KIND.kind, str(namespace), name, reconcile_once, stopped)
