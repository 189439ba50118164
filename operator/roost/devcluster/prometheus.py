"""A Prometheus server for local work and tests, built once from the Go module proxy and cached.

``go install github.com/prometheus/prometheus/cmd/prometheus@<VERSION>`` (no web UI assets: the HTTP
API is all Roost uses) into ``~/.cache/roost/prometheus/<VERSION>/``, outside the repository; the
first build takes about 12 minutes on 2 cores, later runs reuse the binary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from roost import errors

MODULE = "github.com/prometheus/prometheus/cmd/prometheus"
VERSION = "v0.316.0"  # Prometheus 3.x's Go module version


def cache_dir(version: str = VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "roost" / "prometheus" / version


def locate(version: str = VERSION) -> Path | None:
    """The cached binary, without building."""
    path = cache_dir(version) / "prometheus"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def ensure(version: str = VERSION) -> Path:
    """The binary, built once when the cache lacks it.

    Raises:
        roost.errors.PermanentError: ``GoNotFound`` without a ``go`` command; ``BuildFailed`` when
            the build fails (the module proxy unreachable, ...), with the end of Go's output.
    """
    found = locate(version)
    if found:
        return found
    go = shutil.which("go")
    if go is None:
        raise errors.PermanentError("GoNotFound", "Prometheus is built from the Go module proxy: install Go")
    target = cache_dir(version)
    target.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOBIN": str(target)}
    done = subprocess.run([go, "install", "-trimpath", f"{MODULE}@{version}"], capture_output=True, text=True,
                          env=env, timeout=3600, cwd=Path.home())
    found = locate(version)
    if done.returncode != 0 or found is None:
        raise errors.PermanentError("BuildFailed", f"go install {MODULE}@{version}: {done.stderr.strip()[-800:]}")
    return found
