"""Run a command and record its exit code in a file: ``python -m roost.execution.exitcode FILE -- ARGV``.

Lets the local serving backend tell a server that refused its artifact (exit 3) from one that crashed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    target, sep, *command = argv
    if sep != "--" or not command:
        print("usage: exitcode FILE -- ARGV...", file=sys.stderr)
        return 2
    proc = subprocess.Popen(command)

    def _forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    code = proc.wait()
    tmp = Path(target + ".tmp")
    tmp.write_text(str(code))
    tmp.replace(target)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
