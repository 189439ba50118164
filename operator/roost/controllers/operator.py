"""Run the operator: configure kopf once (our storages, our finalizer), build the runtime, serve.

kopf's own bookkeeping goes to annotations under ``roost.dev/`` (a structural status schema would
prune ``status.kopf``), handlers return None and write status themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import kopf

from roost.controllers import kube, runtime
from roost.execution import local, serving_local
from roost.storage import store as store_mod


def default_state_dir() -> Path:
    override = os.environ.get("ROOST_STATE_DIR")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "roost" / "operator"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="roost.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="roost.dev", key="last-handled-configuration")
    settings.persistence.finalizer = "roost.dev/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 30

    config = memo.config
    state_dir = Path(config["state_dir"])
    store = store_mod.Store(config["store"])
    k = kube.Kube()
    if config["executor"] == "kubernetes":
        from roost.execution import kube_jobs, serving_kube

        ex: Any = kube_jobs.KubernetesExecutor(k.api_client, store, image=config.get("image"))
        serving: Any = serving_kube.KubernetesServing(k.api_client, store)
    else:
        ex = local.LocalExecutor(state_dir / "work", store.root, max_parallel=int(config.get("max_parallel", 2)))
        serving = serving_local.LocalServing(state_dir / "serving", store.root)
    memo.runtime = runtime.Runtime(store=store, executor=ex, kube=k, state_dir=state_dir, serving=serving)


def main(executor: str = "local", namespaces: list[str] | None = None, all_namespaces: bool = False,
         store: str | None = None, standalone: bool = True, verbose: bool = False,
         state_dir: Path | None = None, ready_flag: Any = None, stop_flag: Any = None,
         liveness: str | None = None, metrics_port: int | None = None) -> int:
    """Run the operator until interrupted; return an exit code.

    Args:
        executor: ``local`` (subprocesses, loopback servers) or ``kubernetes`` (Jobs, Deployments).
        namespaces: namespaces to watch; ignored when ``all_namespaces``.
        store: artifact store root URI (default ``$ROOST_STORE`` or a local folder).
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("kopf.objects", "kopf._core.engines.peering", "kopf.activities.probe"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from roost.controllers import dataset, deployment, driftpolicy, modelversion, trainingrun  # noqa: F401

    if metrics_port:
        from roost.controllers import metrics

        metrics.serve(metrics_port)
    state = state_dir or default_state_dir()
    state.mkdir(parents=True, exist_ok=True)
    config = {"executor": executor, "store": store or store_mod.default_root(), "state_dir": str(state)}
    clusterwide = all_namespaces or not namespaces
    watched: list[str] = [] if clusterwide or not namespaces else list(namespaces)
    asyncio.run(kopf.operator(
        standalone=standalone, clusterwide=clusterwide, namespaces=watched,
        memo=kopf.Memo(config=config), ready_flag=ready_flag, stop_flag=stop_flag, liveness_endpoint=liveness,
    ))
    return 0
