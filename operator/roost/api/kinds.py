"""The five kinds of ``roost.dev/v1alpha1``, in the order the loop runs them."""

from __future__ import annotations

from roost.api import common, dataset, deployment, driftpolicy, modelversion, trainingrun

ALL: tuple[common.KindInfo, ...] = (
    dataset.KIND,
    trainingrun.KIND,
    modelversion.KIND,
    deployment.KIND,
    driftpolicy.KIND,
)

BY_KIND: dict[str, common.KindInfo] = {k.kind: k for k in ALL}
