"""DriftPolicy controller: scheduled ``drift`` checks of a Deployment, retrains and proposals."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import kopf
import pydantic

from roost.api import common, driftpolicy
from roost.controllers import dataset as dataset_controller
from roost.controllers import loop, metrics
from roost.controllers.runtime import Key, Runtime
from roost.reconcile import driftpolicy as reconcile_drift
from roost.reconcile import plan as plan_mod

KIND = driftpolicy.KIND
log = logging.getLogger("roost.controllers")


async def reconcile_once(rt: Runtime, body: dict[str, Any]) -> plan_mod.Plan:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    try:
        spec = driftpolicy.DriftPolicySpec.model_validate(body["spec"])
    except pydantic.ValidationError as e:
        return dataset_controller.invalid_spec(body, e)
    status = body.get("status") or {}

    def get(kind: str, obj_name: str | None) -> dict[str, Any] | None:
        return rt.kube.get(kind, ns, obj_name) if obj_name else None

    deploy = await asyncio.to_thread(get, "Deployment", spec.deployment_ref.name)
    deploy_status = None if deploy is None else (deploy.get("status") or {})
    served_name = ((deploy_status or {}).get("stable") or {}).get("modelVersion")
    served = await asyncio.to_thread(get, "ModelVersion", served_name)
    lineage = ((served or {}).get("status") or {}).get("lineage") or {}
    dataset_name = (spec.reference.dataset_ref.name if spec.reference.dataset_ref
                    else (lineage.get("datasetVersion") or {}).get("name"))
    dataset_obj = await asyncio.to_thread(get, "Dataset", dataset_name)
    retrain_name = (status.get("retrain") or {}).get("name")
    retrain_obj = await asyncio.to_thread(get, "TrainingRun", retrain_name)
    refs: set[Key] = {("Deployment", ns, spec.deployment_ref.name)}
    if dataset_name:
        refs.add(("Dataset", ns, dataset_name))
    if retrain_name:
        refs.add(("TrainingRun", ns, retrain_name))
    rt.refers((KIND.kind, ns, name), refs)
    latest = 0
    if (status.get("retrain") or {}).get("state") in ("Running", "Evaluating") and served is not None:
        model = (served.get("spec") or {}).get("model")
        versions = await asyncio.to_thread(rt.kube.list, "ModelVersion", ns)
        latest = max((int((v.get("spec") or {}).get("version") or 0) for v in versions
                      if (v.get("spec") or {}).get("model") == model), default=0)
    unit, result = await loop.observe_unit(rt, body, "drift")
    evaluation, evaluation_result = None, None
    if (status.get("retrain") or {}).get("job"):
        evaluation, evaluation_result = await loop.observe_unit(rt, body, "evaluate", status["retrain"]["job"])
    plan = reconcile_drift.reconcile(reconcile_drift.Observed(
        namespace=ns, name=name, generation=meta.get("generation", 0), spec=spec, status=status,
        now=datetime.datetime.now(datetime.UTC), uid=meta.get("uid", ""), deployment=deploy_status, served=served,
        dataset=None if dataset_obj is None else (dataset_obj.get("status") or {}),
        retrain_run=None if retrain_obj is None else (retrain_obj.get("status") or {}), unit=unit, result=result,
        evaluation=evaluation, evaluation_result=evaluation_result, latest_version=latest,
    ))
    if plan.status.get("lastCheckTime") != status.get("lastCheckTime"):
        metrics.record_drift(ns, name, plan.status)
    for manifest in plan.create:
        created = await asyncio.to_thread(rt.kube.create, ns, manifest)
        log.info("%s TrainingRun %s/%s for DriftPolicy %s", "Created" if created else "Adopted",
                 ns, manifest["metadata"]["name"], name)
    return plan


@kopf.daemon(common.GROUP, common.VERSION, KIND.plural, cancellation_timeout=5.0)
async def driftpolicy_daemon(stopped: Any, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    await loop.run(memo.runtime, KIND.kind, str(namespace), name, reconcile_once, stopped)


@kopf.on.update(common.GROUP, common.VERSION, KIND.plural, field="spec")
async def driftpolicy_spec_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.runtime.wake((KIND.kind, str(namespace), name))
