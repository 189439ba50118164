"""Start, reuse, inspect and stop the local control plane (``roost dev up|down|status|env``).

Processes run detached (their own session) with logs and pid files under the state directory, so a
second ``up`` adopts what runs and a stale pid file is cleaned. Every port is a free loopback port.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from roost import errors
from roost.devcluster import binaries, certs

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")


def default_state_dir() -> Path:
    override = os.environ.get("ROOST_DEV_STATE_DIR")
    if override:
        return Path(override)
    base = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    return base / "roost" / "dev"


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int


@dataclass(frozen=True)
class Status:
    """What ``roost dev status`` reports."""

    state_dir: Path
    kubeconfig: Path
    server: str | None
    running: dict[str, int | None]
    healthy: bool


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child counts as dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


class Cluster:
    """One local control plane, rooted at ``state_dir``."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.kubeconfig = self.state_dir / "kubeconfig"
        self._state_file = self.state_dir / "state.json"
        self._logs = self.state_dir / "logs"

    # ----- state -----------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._state_file.read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _save(self, data: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self._state_file)

    def _pid(self, component: str) -> int | None:
        pid = self._load().get("pids", {}).get(component)
        return int(pid) if pid else None

    @property
    def server(self) -> str | None:
        port = self._load().get("ports", {}).get("apiserver")
        return f"https://127.0.0.1:{port}" if port else None

    # ----- health ----------------------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        bundle = certs.ensure(self.state_dir / "pki")
        ctx = ssl.create_default_context(cafile=str(bundle.ca_cert))
        ctx.load_cert_chain(str(bundle.admin_cert), str(bundle.admin_key))
        return ctx

    def _get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        if not self.server:
            return 0, b""
        try:
            with urllib.request.urlopen(self.server + path, timeout=timeout, context=self._ssl_context()) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), e.read()
        except (OSError, ValueError):
            return 0, b""

    def healthy(self) -> bool:
        """The API server answers ``/readyz`` and every process we started is alive."""
        if not all(_alive(self._pid(c)) for c in COMPONENTS):
            return False
        code, _ = self._get("/readyz")
        return code == 200

    def status(self) -> Status:
        running = {c: (self._pid(c) if _alive(self._pid(c)) else None) for c in COMPONENTS}
        return Status(self.state_dir, self.kubeconfig, self.server, running, self.healthy())

    # ----- lifecycle -------------------------------------------------------------------------
    def up(self, timeout: float = 120.0, echo: bool = True) -> Status:
        """Start the control plane, or adopt the one that already runs; install the CRDs; wait for them.

        Raises:
            roost.errors.PermanentError: binaries missing and not buildable (``MissingBinaries``), or a
                component failed to start (``StartFailed``, with the tail of its log).
        """
        if self.healthy():
            self._install_crds()
            return self.status()
        self.down(quiet=True)
        bins = binaries.ensure(echo=echo)
        bundle = certs.ensure(self.state_dir / "pki")
        self._logs.mkdir(parents=True, exist_ok=True)
        data_dir = self.state_dir / "etcd"
        ports = Ports(free_port(), free_port(), free_port())
        state: dict[str, Any] = {"ports": asdict(ports), "pids": {}}
        self._save(state)

        etcd_url = f"http://127.0.0.1:{ports.etcd_client}"
        peer_url = f"http://127.0.0.1:{ports.etcd_peer}"
        state["pids"]["etcd"] = self._spawn("etcd", [
            str(bins.etcd), "--data-dir", str(data_dir), "--name", "roost-dev",
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"roost-dev={peer_url}", "--unsafe-no-fsync",
            "--quota-backend-bytes", str(4 * 1024**3), "--log-level", "warn",
        ])
        self._save(state)
        self._wait(lambda: self._http_ok(f"{etcd_url}/health"), "etcd", 30.0)

        issuer = f"https://127.0.0.1:{ports.apiserver}/"
        state["pids"]["kube-apiserver"] = self._spawn("kube-apiserver", [
            str(bins.kube_apiserver), f"--etcd-servers={etcd_url}",
            f"--secure-port={ports.apiserver}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={bundle.serving_cert}", f"--tls-private-key-file={bundle.serving_key}",
            f"--client-ca-file={bundle.ca_cert}", "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true", "--authorization-mode=RBAC",
            f"--service-account-issuer={issuer}", f"--service-account-key-file={bundle.sa_pub}",
            f"--service-account-signing-key-file={bundle.sa_key}",
            f"--cert-dir={self.state_dir / 'pki' / 'generated'}", "--v=0",
        ])
        self._save(state)
        self._write_kubeconfig(ports.apiserver, bundle)
        self._wait(lambda: self._get("/readyz")[0] == 200, "kube-apiserver", timeout)

        state["pids"]["kube-controller-manager"] = self._spawn("kube-controller-manager", [
            str(bins.kube_controller_manager), f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
            f"--root-ca-file={bundle.ca_cert}", f"--service-account-private-key-file={bundle.sa_key}",
            "--controllers=*", "--use-service-account-credentials=true", "--v=0",
        ])
        self._save(state)
        self._wait(lambda: self._get("/api/v1/namespaces/default")[0] == 200, "namespace default", timeout)
        self._install_crds()
        return self.status()

    def down(self, quiet: bool = False) -> list[str]:
        """Stop every component this state directory started (SIGTERM, then SIGKILL). Idempotent."""
        stopped = []
        state = self._load()
        for component in reversed(COMPONENTS):
            pid = state.get("pids", {}).get(component)
            if pid and _alive(int(pid)):
                _terminate(int(pid))
                stopped.append(component)
        if state.get("pids"):
            state["pids"] = {}
            self._save(state)
        return stopped

    def env(self) -> str:
        return f"export KUBECONFIG={self.kubeconfig}"

    # ----- helpers ---------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> int:
        log = open(self._logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.state_dir)
        log.close()
        return proc.pid

    def _wait(self, ready: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        name = what.split()[0]
        while time.monotonic() < deadline:
            if ready():
                return
            pid = self._pid(name) if name in COMPONENTS else None
            if name in COMPONENTS and not _alive(pid):
                break
            time.sleep(0.2)
        tail = self._tail(name)
        raise errors.PermanentError("StartFailed", f"{what} did not become ready within {timeout:.0f}s{tail}")

    def _tail(self, name: str, lines: int = 15) -> str:
        path = self._logs / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"; last lines of {path}:\n" + "\n".join(text)

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                return int(r.status) == 200
        except (OSError, ValueError):
            return False

    def _write_kubeconfig(self, port: int, bundle: certs.Bundle) -> None:
        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "roost-dev", "preferences": {},
            "clusters": [{"name": "roost-dev", "cluster": {
                "server": f"https://127.0.0.1:{port}", "certificate-authority-data": b64(bundle.ca_cert)}}],
            "users": [{"name": "roost-admin", "user": {
                "client-certificate-data": b64(bundle.admin_cert), "client-key-data": b64(bundle.admin_key)}}],
            "contexts": [{"name": "roost-dev", "context": {"cluster": "roost-dev", "user": "roost-admin"}}],
        }
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        tmp.chmod(0o600)
        tmp.replace(self.kubeconfig)

    def _install_crds(self) -> None:
        from roost.devcluster import crds  # late: needs the kubernetes client

        crds.install(self.kubeconfig)


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
