"""Running a uvicorn server as a process's main job, the same way for the model server and the router."""

from __future__ import annotations

import logging
import signal
import threading

import uvicorn

log = logging.getLogger(__name__)


def run(server: uvicorn.Server, not_started: int) -> int:
    """Serve until SIGTERM/SIGINT and a graceful shutdown; return the process's exit code.

    uvicorn re-raises SIGTERM/SIGINT to the previous handlers after its graceful shutdown; with Python's
    defaults that kills the process (exit -15) before the caller can finish (e.g. flush a request log).
    Handlers that only note the signal are installed first (from the main thread only: elsewhere Python
    refuses them, and uvicorn installs none).

    Returns:
        0 after a graceful stop; uvicorn's own code when it exits (it does so when it cannot bind), or
        ``not_started`` when it returned without having started.
    """
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: log.info("Received %s", signal.Signals(signum).name))
    try:
        server.run()
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else not_started
    return 0 if server.started else not_started
