"""The Gateway API's standard CRDs (``sigs.k8s.io/gateway-api``), from the Go module proxy, for a dev cluster.

The Kubernetes serving backend keeps an HTTPRoute when its CRD is installed (exact canary weights,
request mirroring for shadow). The CRDs ship inside the Go module; ``go mod download`` fetches it
once into the Go module cache (outside the repository), like the control plane's own sources.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from roost import errors

MODULE = "sigs.k8s.io/gateway-api"
VERSION = "v1.4.1"
GROUP = "gateway.networking.k8s.io"


def crd_dir(version: str = VERSION) -> Path:
    """``config/crd/standard`` of the module, downloaded into the Go module cache if needed.

    Raises:
        roost.errors.PermanentError: ``GoNotFound`` without a ``go`` command; ``DownloadFailed`` when
            the module proxy does not answer.
    """
    go = shutil.which("go")
    if go is None:
        raise errors.PermanentError("GoNotFound", "the Gateway API CRDs come from the Go module proxy: install Go")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    done = subprocess.run([go, "mod", "download", "-json", f"{MODULE}@{version}"], capture_output=True, text=True,
                          env=env, timeout=600, cwd=Path.home())
    try:
        info = json.loads(done.stdout)
    except ValueError:
        info = {}
    if done.returncode != 0 or not info.get("Dir"):
        raise errors.PermanentError("DownloadFailed", f"go mod download {MODULE}@{version}: "
                                                      f"{info.get('Error') or done.stderr.strip()[-500:]}")
    return Path(info["Dir"]) / "config" / "crd" / "standard"


def crds(names: tuple[str, ...] = ("httproutes",), version: str = VERSION) -> list[dict[str, Any]]:
    """The standard-channel CRD objects of ``names`` (plurals, e.g. ``httproutes``, ``gateways``)."""
    folder = crd_dir(version)
    return [yaml.safe_load((folder / f"{GROUP}_{name}.yaml").read_text()) for name in names]
