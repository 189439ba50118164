"""What every drift-benchmark runner shares: the job, the data files, timing, memory and the JSON answer.

Runners (``roost_runner.py``, ``evidently_runner.py``, ``alibi_runner.py``, ``nannyml_runner.py``) each run
in their library's own virtualenv, so this module needs only the standard library and numpy. A runner is
started as ``python <runner>.py <job.json>``; the job names the data set, its columns and kind, the
reference file and the window files (``.npy``, written by ``run.py``), and how often to repeat a call. The
runner prints one line ``RESULT <json>`` last on stdout; anything else it or its library prints is ignored.

Timing: each measured call runs once untimed when the job sets ``warmup`` (windows up to 10,000 rows, so
first-call costs such as lazy imports are left out), then ``repeat`` times, or fewer when the first runs
already took ``budget`` seconds (never fewer than once); the median wall time (``time.perf_counter``) and
the median CPU time of the process (``time.process_time``: all its threads) are reported. Memory: the
process's peak resident set size (``VmHWM``; :func:`peak_rss_mib` says why not ``resource.getrusage``),
read after the reference is loaded and prepared (``rssPrepMiB``) and after the windows (``rssPeakMiB``).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
MARK = "RESULT "
WARMUP = [False]  # set from the job: one untimed call before the timed ones (small windows)


def job() -> dict[str, Any]:
    """The job passed as the first argument (a JSON file)."""
    loaded: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    return loaded


def load(path: str) -> np.ndarray:
    """A reference or window matrix (rows x columns): float64 for numeric data, int64 for categorical."""
    return np.load(path)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` survives ``fork`` and ``execve`` on Linux: a runner would
    report the launcher's peak (``run.py`` holds the data sets) whenever that is larger than its own. So the
    kernel's per-address-space high-water mark, ``VmHWM`` in ``/proc/self/status``, is read where it exists
    (it starts afresh at ``execve``); ``ru_maxrss`` elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(call: Callable[[], T], repeat: int, budget: float) -> tuple[T, dict[str, Any]]:
    """Run ``call`` up to ``repeat`` times (stopping once ``budget`` seconds have passed), after one untimed
    call when the job asks for a warm-up; the last result and ``{"wall", "cpu", "runs"}`` with the median
    wall and CPU seconds."""
    walls: list[float] = []
    cpus: list[float] = []
    result: T | None = None
    if WARMUP[0]:
        call()
    started = time.perf_counter()
    while True:
        w0, c0 = time.perf_counter(), time.process_time()
        result = call()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
        if len(walls) >= repeat or time.perf_counter() - started >= budget:
            break
    assert result is not None
    return result, {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "runs": len(walls)}


def clock(call: Callable[[], T]) -> tuple[T, float]:
    """Run ``call`` once; its result and wall seconds."""
    t0 = time.perf_counter()
    out = call()
    return out, time.perf_counter() - t0


def emit(result: dict[str, Any]) -> None:
    """Print the runner's answer as the last stdout line."""
    sys.stdout.flush()
    print(MARK + json.dumps(result, default=float), flush=True)


def main(run: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Run ``run(job)`` and emit its result, or ``{"error": ...}`` with the traceback's last line."""
    spec = job()
    WARMUP[0] = bool(spec.get("warmup"))
    try:
        out = run(spec)
    except Exception as e:  # the parent reports why a competitor could not run, whatever it was
        traceback.print_exc()
        out = {"error": f"{type(e).__name__}: {e}"}
    out.setdefault("rssPeakMiB", peak_rss_mib())
    emit(out)
