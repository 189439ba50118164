"""``roost report drift <policy>``: copy a DriftPolicy's latest HTML report to a local file."""

from __future__ import annotations

from pathlib import Path

from roost import errors
from roost.controllers import kube as kube_mod
from roost.storage import store as store_mod


def drift(policy: str, namespace: str, out: str | None, kubeconfig: str | None = None) -> int:
    """Write the policy's ``status.reportURI`` (verified by its digest) to ``out``; print where.

    Raises:
        roost.errors.PermanentError: the policy does not exist or has no report yet.
    """
    k = kube_mod.Kube(kubeconfig=kubeconfig)
    obj = k.get("DriftPolicy", namespace, policy)
    if obj is None:
        raise errors.PermanentError("NotFound", f"DriftPolicy {namespace}/{policy} does not exist")
    uri = (obj.get("status") or {}).get("reportURI")
    if not uri:
        raise errors.PermanentError("NoReport", f"DriftPolicy {namespace}/{policy} has not run a check yet")
    digest = "sha256:" + uri.rstrip("/").rsplit("/", 1)[-1]
    root = uri.split("/objects/sha256/", 1)[0]
    target = Path(out or f"{policy}-drift-report.html").resolve()
    store_mod.Store(root).fetch_to(uri, target, digest)
    print(f"wrote {target} (checked at {obj['status'].get('lastCheckTime')}, "
          f"drift detected: {obj['status'].get('driftDetected')})")
    return 0
