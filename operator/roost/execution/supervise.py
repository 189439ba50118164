"""Supervise one local unit of work: run the command, kill it at its timeout, record the exit code.

Usage: ``python -m roost.execution.supervise <unit dir> <timeout seconds> -- <argv...>``. Writes
``<dir>/pid`` (the worker), then ``<dir>/exit`` atomically: ``<code> [reason]``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def _write_exit(d: Path, text: str) -> None:
    tmp = d / "exit.tmp"
    tmp.write_text(text)
    tmp.replace(d / "exit")


def main(argv: list[str]) -> int:
    d, timeout, sep, *command = argv
    assert sep == "--", "usage: supervise DIR TIMEOUT -- ARGV..."
    unit_dir = Path(d)
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    (unit_dir / "pid").write_text(str(proc.pid))

    def _forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, _forward)
    try:
        code = proc.wait(timeout=float(timeout))
        _write_exit(unit_dir, f"{code}" if code == 0 else f"{code} exited {code}")
        return code
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        _write_exit(unit_dir, f"124 DeadlineExceeded: killed after {float(timeout):.0f}s")
        return 124


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
