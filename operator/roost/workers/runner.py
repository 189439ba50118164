"""Dispatch ``roost worker <name>`` to the worker's ``run(job, store, output) -> result`` function."""

from __future__ import annotations

import importlib
import logging
import sys
import time
from typing import Any, Protocol

from roost import errors
from roost.storage import store as store_mod

WORKERS = {
    "profile": "roost.workers.profile",
    "train": "roost.workers.train",
    "evaluate": "roost.workers.evaluate",
    "drift": "roost.workers.drift",
}

log = logging.getLogger("roost.worker")


class WorkerFn(Protocol):
    def __call__(self, job: dict[str, Any], store: store_mod.Store, output: str) -> dict[str, Any]: ...


def result_uri(output: str) -> str:
    return output.rstrip("/") + "/result.json"


def main(name: str, input_uri: str, output: str, store_root: str | None = None) -> int:
    """Run one worker; return the process exit code (0 when a result, good or bad, was written)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if name not in WORKERS:
        print(f"unknown worker {name!r}; known: {', '.join(WORKERS)}", file=sys.stderr)
        return 2
    store = store_mod.Store(store_root)
    job = store.read_json(input_uri)
    run: WorkerFn = importlib.import_module(WORKERS[name]).run
    started = time.time()
    try:
        result = run(job, store, output)
        result.setdefault("ok", True)
    except errors.PermanentError as e:
        log.warning("Rejected input: %s", e)
        result = {"ok": False, "reason": e.reason, "message": e.message}
    result["durationSeconds"] = round(time.time() - started, 3)
    store.write_json(result_uri(output), result)
    log.info("Wrote result ok=%s to %s", result["ok"], result_uri(output))
    return 0
