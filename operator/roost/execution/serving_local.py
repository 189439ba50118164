"""The local serving backend: a router and one ``roost serve`` process per version, on loopback ports.

Everything a restarted operator needs to adopt what runs is on disk under
``<state>/serving/<namespace>/<deployment>/``: the router's config, pid and port; per server its
config, pid, port and log. Processes run in their own session, so they outlive the operator; a dead
server is restarted with backoff; nothing here dials anything but 127.0.0.1.

``<state>/serving/scrape-targets.json`` lists every server's and router's ``/metrics`` address in
Prometheus's file-based service discovery format (``file_sd_configs``), with ``roost_namespace``,
``roost_deployment`` and ``roost_process`` labels; it is rewritten whenever a process starts or stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.execution import local

HEALTH_PATH = "/v2/health/ready"
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class ServerState:
    """What the backend observed of one version's server."""

    name: str
    state: str  # Ready | Starting | Failed | Missing
    url: str | None = None
    message: str = ""
    restarts: int = 0


SCRAPE_TARGETS = "scrape-targets.json"
_TARGETS_LOCK = threading.Lock()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _healthy(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status) == 200
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write(path: Path, text: str) -> None:
    # a name of this thread's own: one Deployment's reconcile may rewrite a shared file while another's does
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _stop(pid: int | None, grace: float = 10.0) -> None:
    if not pid or not local._alive(pid):
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)  # the wrapper forwards it once; a second signal would force uvicorn out
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and local._alive(pid):
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


class LocalServing:
    """Routers and model servers as local processes."""

    def __init__(self, root: Path, store_root: str) -> None:
        self.root = root
        self.store_root = store_root
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, namespace: str, deployment: str) -> Path:
        return self.root / namespace / deployment

    def _spawn(self, d: Path, argv: list[str]) -> int:
        with open(d / "log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=d)
        _write(d / "pid", str(proc.pid))
        return proc.pid

    # ----- model servers ---------------------------------------------------------------------
    def observe_server(self, namespace: str, deployment: str, name: str) -> ServerState:
        """What runs for ``name``, without starting anything."""
        d = self._dir(namespace, deployment) / "servers" / name
        pid, port = _read_int(d / "pid"), _read_int(d / "port")
        restarts = _read_int(d / "restarts") or 0
        if not pid or not port:
            return ServerState(name, "Missing")
        url = f"http://127.0.0.1:{port}"
        if local._alive(pid):
            ready = _healthy(url + HEALTH_PATH)
            return ServerState(name, "Ready" if ready else "Starting", url, f"pid {pid}", restarts)
        if self._exit_code(d) == 3:
            return ServerState(name, "Failed", None, f"refused to serve: {self._tail(d)}", restarts)
        return ServerState(name, "Starting", None, f"exited; restarting: {self._tail(d)}", restarts)

    def ensure_server(self, namespace: str, deployment: str, name: str, config: dict[str, Any] | None, *,
                      replicas: int = 1, resources: dict[str, Any] | None = None,
                      owner_uid: str | None = None) -> ServerState:
        """Start the server ``name`` unless it runs; restart it with backoff when it died.

        ``config`` is the ``roost serve`` config without host/port (the backend picks a free port);
        None reuses the config the server last ran with. ``replicas``, ``resources`` and ``owner_uid``
        are for the Kubernetes backend: locally one process serves a version, without limits.
        """
        d = self._dir(namespace, deployment) / "servers" / name
        d.mkdir(parents=True, exist_ok=True)
        pid = _read_int(d / "pid")
        port = _read_int(d / "port")
        restarts = _read_int(d / "restarts") or 0
        if pid and port and local._alive(pid):
            url = f"http://127.0.0.1:{port}"
            if _healthy(url + HEALTH_PATH):
                return ServerState(name, "Ready", url, f"pid {pid}", restarts)
            return ServerState(name, "Starting", url, f"pid {pid} not ready yet", restarts)
        if pid is not None:  # it ran before and died
            code = self._exit_code(d)
            if code == 3:
                return ServerState(name, "Failed", None, f"refused to serve: {self._tail(d)}", restarts)
            backoff = min(MAX_BACKOFF, 0.5 * 2 ** restarts)
            died = (d / "pid").stat().st_mtime
            if time.time() - died < backoff:
                return ServerState(name, "Starting", None, f"restarting in {backoff:.0f}s: {self._tail(d)}",
                                   restarts)
            restarts += 1
            _write(d / "restarts", str(restarts))
        if config is None:
            try:
                config = json.loads((d / "config.json").read_text())
            except (OSError, ValueError):
                return ServerState(name, "Failed", None, "no config to start the server with")
        port = _free_port()
        _write(d / "port", str(port))
        _write(d / "config.json", json.dumps({**config, "host": "127.0.0.1", "port": port}, indent=2))
        argv = [sys.executable, "-m", "roost.execution.exitcode", str(d / "exit"), "--",
                sys.executable, "-m", "roost.cli", "serve", "--config", str(d / "config.json")]
        (d / "exit").unlink(missing_ok=True)
        new_pid = self._spawn(d, argv)
        self._write_scrape_targets()
        return ServerState(name, "Starting", f"http://127.0.0.1:{port}", f"started pid {new_pid}", restarts)

    @staticmethod
    def _exit_code(d: Path) -> int | None:
        return _read_int(d / "exit")

    @staticmethod
    def _tail(d: Path, lines: int = 3) -> str:
        try:
            return " | ".join((d / "log").read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def server_names(self, namespace: str, deployment: str) -> list[str]:
        servers = self._dir(namespace, deployment) / "servers"
        return sorted(p.name for p in servers.iterdir()) if servers.exists() else []

    def stop_server(self, namespace: str, deployment: str, name: str) -> None:
        d = self._dir(namespace, deployment) / "servers" / name
        _stop(_read_int(d / "pid"))
        shutil.rmtree(d, ignore_errors=True)
        self._write_scrape_targets()

    # ----- the router ------------------------------------------------------------------------
    def route(self, namespace: str, deployment: str, backends: list[dict[str, Any]],
              sticky_by: str | None = None, *, owner_uid: str | None = None,
              gateway: dict[str, Any] | None = None) -> str:
        """Point the router at ``backends`` (``[{"version", "url", "weight", "mirror"?}]``), starting it if needed.

        ``gateway`` (a Gateway API reference) means nothing on this backend: the router is the gateway.

        Returns:
            The router's URL (the Deployment's stable URL).
        """
        d = self._dir(namespace, deployment) / "router"
        d.mkdir(parents=True, exist_ok=True)
        port = _read_int(d / "port") or _free_port()
        _write(d / "port", str(port))
        config = {"modelName": deployment, "host": "127.0.0.1", "port": port, "backends": backends,
                  "stickyBy": sticky_by}
        path = d / "config.json"
        text = json.dumps(config, indent=2, sort_keys=True)
        if not path.exists() or path.read_text() != text:
            _write(path, text)
        pid = _read_int(d / "pid")
        if not pid or not local._alive(pid):
            self._spawn(d, [sys.executable, "-m", "roost.cli", "router", "--config", str(path)])
            self._write_scrape_targets()
        return f"http://127.0.0.1:{port}"

    def mirror_supported(self) -> bool:
        """The router mirrors requests itself (Shadow)."""
        return True

    def weighted_split(self) -> bool:
        """One process per version takes exactly its route's share: a canary runs a baseline beside it."""
        return True

    def router_ready(self, namespace: str, deployment: str) -> bool:
        port = _read_int(self._dir(namespace, deployment) / "router" / "port")
        return bool(port) and _healthy(f"http://127.0.0.1:{port}/healthz")

    def stop_all(self, namespace: str, deployment: str) -> None:
        """Stop the router and every server of a Deployment (it was deleted)."""
        d = self._dir(namespace, deployment)
        for name in self.server_names(namespace, deployment):
            self.stop_server(namespace, deployment, name)
        _stop(_read_int(d / "router" / "pid"))
        shutil.rmtree(d, ignore_errors=True)
        self._write_scrape_targets()

    def _write_scrape_targets(self) -> None:
        """Rewrite :data:`SCRAPE_TARGETS` (atomically: Prometheus watches the file) from the ports on disk."""
        with _TARGETS_LOCK:  # a scan and its write at a time: a later scan is never overwritten by an earlier one
            self._write_scrape_targets_locked()

    def _write_scrape_targets_locked(self) -> None:
        groups = []
        for port_file in sorted(self.root.glob("*/*/router/port")) + sorted(self.root.glob("*/*/servers/*/port")):
            port = _read_int(port_file)
            if not port:
                continue
            rel = port_file.parent.relative_to(self.root).parts
            groups.append({"targets": [f"127.0.0.1:{port}"],
                           "labels": {"roost_namespace": rel[0], "roost_deployment": rel[1],
                                      "roost_process": rel[-1] if rel[2] == "servers" else "router"}})
        _write(self.root / SCRAPE_TARGETS, json.dumps(groups, indent=2))

    def stop_everything(self) -> int:
        """Stop every router and server under the root (``make down``); return how many were stopped."""
        count = 0
        for pid_file in self.root.glob("*/*/**/pid"):
            pid = _read_int(pid_file)
            if pid and local._alive(pid):
                _stop(pid)
                count += 1
        return count
