"""LocalExecutor: each unit is a supervised subprocess on this machine.

The supervisor (``python -m roost.execution.supervise``) runs in its own session, so it outlives an
operator restart; it writes ``pid``, ``log`` and finally ``exit`` into the unit's folder, killing the
worker at its timeout. The operator re-attaches by reading that folder. A concurrency limit keeps
extra units Pending.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from roost.execution.executor import State, Unit, UnitStatus


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


class LocalExecutor:
    """Runs units as subprocesses; state lives in ``<root>/<unit name>/``."""

    def __init__(self, root: Path, store_root: str, max_parallel: int = 2) -> None:
        self.root = root
        self.store_root = store_root
        self.max_parallel = max_parallel
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, unit: Unit) -> Path:
        return self.root / unit.owner.namespace / unit.name

    def _running(self) -> int:
        count = 0
        for pid_file in self.root.glob("*/*/pid"):
            if not (pid_file.parent / "exit").exists():
                try:
                    if _alive(int(pid_file.read_text())):
                        count += 1
                except (OSError, ValueError):
                    pass
        return count

    def submit(self, unit: Unit) -> UnitStatus:
        status = self.poll(unit)
        if status.state != State.MISSING:
            return status
        if self._running() >= self.max_parallel:
            return UnitStatus(State.PENDING, f"waiting for a free slot ({self.max_parallel} run at once)")
        d = self._dir(unit)
        d.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "roost.execution.supervise", str(d), str(unit.timeout_seconds), "--",
                sys.executable, "-m", "roost.cli", "worker", unit.worker, "--input", unit.input_uri,
                "--output", unit.output_uri, "--store", self.store_root]
        with open(d / "log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        (d / "supervisor.pid").write_text(str(proc.pid))
        return UnitStatus(State.RUNNING, f"started process {proc.pid}")

    def poll(self, unit: Unit) -> UnitStatus:
        d = self._dir(unit)
        if not d.exists():
            return UnitStatus(State.MISSING)
        exit_file = d / "exit"
        if exit_file.exists():
            text = exit_file.read_text().split()
            code = int(text[0]) if text else -1
            if code == 0:
                return UnitStatus(State.SUCCEEDED, "exited 0", 0)
            why = " ".join(text[1:]) or f"exited {code}"
            return UnitStatus(State.FAILED, f"{why}; log: {d / 'log'}{self._tail(d)}", code)
        sup = d / "supervisor.pid"
        try:
            pid = int(sup.read_text())
        except (OSError, ValueError):
            return UnitStatus(State.RUNNING, "starting")
        if _alive(pid):
            return UnitStatus(State.RUNNING, f"running (pid {pid})")
        time.sleep(0.05)  # the supervisor may have just written its exit file
        if exit_file.exists():
            return self.poll(unit)
        return UnitStatus(State.FAILED, f"supervisor {pid} vanished without an exit code; log: {d / 'log'}", None)

    @staticmethod
    def _tail(d: Path, lines: int = 5) -> str:
        try:
            tail = (d / "log").read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return ("\n" + "\n".join(tail)) if tail else ""

    def cancel(self, unit: Unit) -> None:
        d = self._dir(unit)
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int((d / "supervisor.pid").read_text()), signal.SIGTERM)
        shutil.rmtree(d, ignore_errors=True)

