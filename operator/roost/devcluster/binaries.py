"""Where the control-plane binaries come from: ``$KUBEBUILDER_ASSETS``, the cache, or a one-time build.

The build compiles pinned Go modules (``hack/controlplane/``) with the local Go toolchain from the
Go module proxy; the result is cached per Kubernetes version under ``~/.cache/roost/controlplane``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from roost import errors

NAMES = ("etcd", "kube-apiserver", "kube-controller-manager")
REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_DIR = REPO_ROOT / "hack" / "controlplane"


@dataclass(frozen=True)
class Binaries:
    """Paths of the three executables."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path


def kube_version() -> str:
    """The pinned Kubernetes version, read from ``hack/controlplane/kube/go.mod``."""
    gomod = BUILD_DIR / "kube" / "go.mod"
    if gomod.exists():
        match = re.search(r"^require k8s.io/kubernetes (v[0-9.]+)$", gomod.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    return "v1.33.13"


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "roost" / "controlplane" / kube_version()


def _complete(directory: Path) -> Binaries | None:
    paths = [directory / n for n in NAMES]
    if all(p.is_file() and os.access(p, os.X_OK) for p in paths):
        return Binaries(*paths)
    return None


def locate() -> Binaries | None:
    """Binaries from ``$KUBEBUILDER_ASSETS`` or the cache, without building."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        found = _complete(Path(assets))
        if found is None:
            raise errors.PermanentError(
                "MissingBinaries",
                f"KUBEBUILDER_ASSETS={assets} lacks one of {', '.join(NAMES)}",
            )
        return found
    return _complete(cache_dir())


def ensure(echo: bool = True) -> Binaries:
    """Return usable binaries, building them once when neither the assets nor the cache have them.

    Raises:
        roost.errors.PermanentError: no binaries and no way to build them (reason ``MissingBinaries``).
    """
    found = locate()
    if found:
        return found
    if shutil.which("go") is None:
        raise errors.PermanentError(
            "MissingBinaries",
            "no control plane binaries: set KUBEBUILDER_ASSETS to a folder with etcd, kube-apiserver and "
            f"kube-controller-manager, or install Go (>= 1.24) so that roost can build them into {cache_dir()}",
        )
    script = BUILD_DIR / "build.sh"
    if not script.exists():
        raise errors.PermanentError(
            "MissingBinaries", f"build recipe {script} not found: run roost from a checkout of the repository",
        )
    target = cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    if echo:
        print(f"Building the local control plane {kube_version()} into {target} "
              "(happens once; 15-25 minutes on 2 cores)", file=sys.stderr, flush=True)
    result = subprocess.run(["bash", str(script), str(target)], check=False)
    if result.returncode != 0:
        raise errors.PermanentError("BuildFailed", f"building the control plane failed (exit {result.returncode})")
    built = _complete(target)
    if built is None:
        raise errors.PermanentError("BuildFailed", f"the build finished but {target} lacks binaries")
    return built
