"""Dataset controller: snapshots, validates and profiles data through the ``profile`` worker."""

from __future__ import annotations

import datetime
from typing import Any

import kopf
import pydantic

from roost.api import common, dataset
from roost.controllers import loop
from roost.controllers.runtime import Runtime
from roost.reconcile import dataset as reconcile_dataset
from roost.reconcile import plan as plan_mod
from roost.reconcile.conditions import StatusBuilder

KIND = dataset.KIND


def invalid_spec(body: dict[str, Any], error: pydantic.ValidationError) -> plan_mod.Plan:
    """A spec the API server accepted but the models refuse (e.g. an older CRD): Stalled, InvalidSpec."""
    meta = body["metadata"]
    b = StatusBuilder(body.get("status") or {}, meta.get("generation", 0))
    message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())[:1000]
    b.stalled("InvalidSpec", message)
    return plan_mod.Plan(b.build())


async def reconcile_once(rt: Runtime, body: dict[str, Any]) -> plan_mod.Plan:
    meta = body["metadata"]
    try:
        spec = dataset.DatasetSpec.model_validate(body["spec"])
    except pydantic.ValidationError as e:
        return invalid_spec(body, e)
    unit, result = await loop.observe_unit(rt, body, "profile")
    return reconcile_dataset.reconcile(reconcile_dataset.Observed(
        namespace=meta["namespace"], name=meta["name"], generation=meta.get("generation", 0), spec=spec,
        status=body.get("status") or {}, now=datetime.datetime.now(datetime.UTC), unit=unit, result=result,
        uid=meta.get("uid", ""),
    ))


@kopf.daemon(common.GROUP, common.VERSION, KIND.plural, cancellation_timeout=5.0)
async def dataset_daemon(stopped: Any, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    await loop.run(memo.runtime, KIND.kind, str(namespace), name, reconcile_once, stopped)


@kopf.on.update(common.GROUP, common.VERSION, KIND.plural, field="spec")
async def dataset_spec_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.runtime.wake((KIND.kind, str(namespace), name))
