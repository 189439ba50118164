"""TrainingRun controller: waits for its Dataset, runs the ``train`` worker, records the result."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import kopf
import pydantic

from roost.api import common, trainingrun
from roost.controllers import dataset as dataset_controller
from roost.controllers import loop
from roost.controllers.runtime import Runtime
from roost.reconcile import plan as plan_mod
from roost.reconcile import trainingrun as reconcile_run

KIND = trainingrun.KIND


async def reconcile_once(rt: Runtime, body: dict[str, Any]) -> plan_mod.Plan:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    try:
        spec = trainingrun.TrainingRunSpec.model_validate(body["spec"])
    except pydantic.ValidationError as e:
        return dataset_controller.invalid_spec(body, e)
    rt.refers((KIND.kind, ns, name), {("Dataset", ns, spec.dataset_ref.name)})
    status = body.get("status") or {}
    ds = None
    if not reconcile_run.finished(status) and not status.get("job"):
        ds_obj = await asyncio.to_thread(rt.kube.get, "Dataset", ns, spec.dataset_ref.name)
        ds = (ds_obj or {}).get("status") or ({} if ds_obj else None)
    unit, result = await loop.observe_unit(rt, body, "train")
    return reconcile_run.reconcile(reconcile_run.Observed(
        namespace=ns, name=name, generation=meta.get("generation", 0), spec=spec, status=status,
        now=datetime.datetime.now(datetime.UTC), dataset=ds, unit=unit, result=result, uid=meta.get("uid", ""),
    ))


@kopf.daemon(common.GROUP, common.VERSION, KIND.plural, cancellation_timeout=5.0)
async def trainingrun_daemon(stopped: Any, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    await loop.run(memo.runtime, KIND.kind, str(namespace), name, reconcile_once, stopped)


@kopf.on.delete(common.GROUP, common.VERSION, KIND.plural, optional=True)
async def trainingrun_deleted(body: Any, memo: Any, **_: Any) -> None:
    """Deleting a TrainingRun cancels its work."""
    job = (body.get("status") or {}).get("job")
    if job:
        rt: Runtime = memo.runtime
        await asyncio.to_thread(rt.executor.cancel, loop.unit_for(rt, dict(body), job, "train"))
