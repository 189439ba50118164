"""Adaptive batching: concurrent predict calls merged into one call of the runtime.

A model's fixed cost per call (scikit-learn's input validation and joblib dispatch, or one ONNX Runtime
session run) is paid once per batch instead of once per request. The batcher never waits when only one
request is waiting, so a lone client sees no added latency:

- a call is queued and a flush is scheduled for the end of the current event-loop iteration, so that
  every request whose bytes arrived in the same iteration joins it;
- while a batch runs (in a worker thread, or on the loop for a cheap runtime and a small batch), new
  calls queue up and go in the next batch;
- with ``maxWaitMs`` > 0 and more than one request waiting, the flush waits up to that long after the
  first one arrived for the batch to reach ``maxBatchRows``;
- a request larger than ``maxBatchRows`` runs alone, and batches never exceed it otherwise.

Answers are sliced back by row offsets, so each request gets exactly its own rows' predictions. If a
merged call fails, each request of the batch is predicted alone, so one bad request fails only itself.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from roost.serving import protocol

Result = tuple[NDArray[Any], NDArray[Any] | None]
#: ``predict(inputs, labels=..., proba=...) -> (labels [N], probabilities [N, C] or None)``.
PredictFn = Callable[..., Result]

DEFAULT_MAX_ROWS: Final = 64
DEFAULT_MAX_WAIT_MS: Final = 0.0
DEFAULT_INLINE_ROWS: Final = 1024


@dataclass(frozen=True)
class BatchingConfig:
    """The ``batching`` block of the server config.

    Attributes:
        enabled: merge concurrent requests (default true); false predicts each request on its own.
        max_rows: largest merged batch, in rows (a bigger request still runs, alone).
        max_wait: seconds a batch of more than one request may wait to fill up (0: never wait).
        inline_rows: a runtime cheap enough to run on the event loop (ONNX Runtime) does so for
            batches up to this many rows; larger batches and scikit-learn run in a worker thread.
    """

    enabled: bool = True
    max_rows: int = DEFAULT_MAX_ROWS
    max_wait: float = DEFAULT_MAX_WAIT_MS / 1000.0
    inline_rows: int = DEFAULT_INLINE_ROWS

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchingConfig:
        """Parse ``{"enabled", "maxBatchRows", "maxWaitMs", "inlineRows"}`` (all optional).

        Raises:
            ValueError: a number out of range.
        """
        cfg = cls(
            enabled=bool(data.get("enabled", True)),
            max_rows=int(data.get("maxBatchRows", DEFAULT_MAX_ROWS)),
            max_wait=float(data.get("maxWaitMs", DEFAULT_MAX_WAIT_MS)) / 1000.0,
            inline_rows=int(data.get("inlineRows", DEFAULT_INLINE_ROWS)),
        )
        if cfg.max_rows < 1 or cfg.inline_rows < 0 or not 0.0 <= cfg.max_wait <= 1.0:
            raise ValueError("batching: maxBatchRows must be >= 1, inlineRows >= 0, maxWaitMs within 0..1000")
        return cfg


class _Job:
    __slots__ = ("arrived", "future", "inputs", "labels", "proba", "rows")

    def __init__(self, inputs: protocol.Inputs, labels: bool, proba: bool, future: asyncio.Future[Result],
                 arrived: float) -> None:
        self.inputs = inputs
        self.rows = len(inputs)
        self.labels = labels
        self.proba = proba
        self.future = future
        self.arrived = arrived


class Batcher:
    """Merges concurrent :meth:`predict` calls on one event loop into batched calls of ``predict``.

    Args:
        predict: the runtime's predict function (thread-safe is not required: one batch runs at a time).
        config: sizes and waits.
        inline: whether ``predict`` is cheap enough to run on the event loop for small batches.

    Attributes:
        batches: merged calls made so far; ``rows``: rows predicted; ``requests``: calls answered.
    """

    def __init__(self, predict: PredictFn, config: BatchingConfig | None = None, *, inline: bool = False) -> None:
        self._predict = predict
        self.config = config or BatchingConfig()
        self.inline = inline
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_rows = 0
        self._busy = False
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.batches = 0
        self.rows = 0
        self.requests = 0

    async def predict(self, inputs: protocol.Inputs, *, labels: bool, proba: bool) -> Result:
        """Predict ``inputs`` (N rows), possibly merged with concurrent calls.

        Returns:
            ``(labels [N], probabilities [N, C] or None)`` for exactly these rows; probabilities are
            given when ``proba`` is asked for.

        Raises:
            Exception: whatever the runtime raised for these rows.
        """
        loop = self._loop
        # asyncio.get_running_loop() makes a system call (getpid) on Python 3.11: look it up only when the
        # loop may have changed (first call, another thread, or the old loop stopped)
        if loop is None or self._thread != threading.get_ident() or not loop.is_running():
            loop = asyncio.get_running_loop()
            self._thread = threading.get_ident()
            if loop is not self._loop:  # first call, or a new loop (the old one's queue died with it)
                self._loop, self._queue, self._queued_rows = loop, collections.deque(), 0
                self._busy = self._scheduled = False
                self._timer = None
        job = _Job(inputs, labels, proba, loop.create_future(), time.monotonic())
        self._queue.append(job)
        self._queued_rows += job.rows
        if not self._busy:
            if self._timer is not None and self._queued_rows >= self.config.max_rows:
                self._timer.cancel()
                self._timer = None
                self._schedule()
            elif self._timer is None:
                self._schedule()
        return await job.future

    def close(self) -> None:
        """Stop the worker thread (after the batch it runs, if any)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ----- internals ---------------------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _on_timer(self) -> None:
        self._timer = None
        self._flush(waited=True)

    def _flush(self, waited: bool = False) -> None:
        self._scheduled = False
        if self._busy or not self._queue or self._timer is not None:
            return
        cfg = self.config
        if cfg.enabled and not waited and cfg.max_wait > 0 and len(self._queue) > 1 \
                and self._queued_rows < cfg.max_rows:
            assert self._loop is not None
            delay = self._queue[0].arrived + cfg.max_wait - time.monotonic()
            if delay > 0:
                self._timer = self._loop.call_later(delay, self._on_timer)
                return
        batch = self._take()
        rows = sum(j.rows for j in batch)
        self._busy = True
        if self.inline and rows <= cfg.inline_rows:
            try:
                self._complete(batch, self._run(batch))
            finally:
                self._idle()
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="roost-predict")
        assert self._loop is not None
        running = self._loop.run_in_executor(self._executor, self._run, batch)
        running.add_done_callback(lambda done: self._finished(batch, done))

    def _finished(self, batch: list[_Job], done: asyncio.Future[list[Result | BaseException]]) -> None:
        try:
            exc = done.exception()
            self._complete(batch, [exc] * len(batch) if exc is not None else done.result())
        finally:
            self._idle()

    def _idle(self) -> None:
        self._busy = False
        if self._queue:
            self._schedule()

    def _take(self) -> list[_Job]:
        if not self.config.enabled:
            job = self._queue.popleft()
            self._queued_rows -= job.rows
            return [job]
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        limit = self.config.max_rows
        while self._queue and rows + self._queue[0].rows <= limit:
            job = self._queue.popleft()
            rows += job.rows
            batch.append(job)
        self._queued_rows -= rows
        return batch

    def _complete(self, batch: list[_Job], results: list[Result | BaseException]) -> None:
        self.batches += 1
        for job, result in zip(batch, results, strict=True):
            self.requests += 1
            if job.future.done():  # the caller went away
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                self.rows += job.rows
                job.future.set_result(result)

    def _run(self, batch: list[_Job]) -> list[Result | BaseException]:
        """Predict the batch in one call; on failure, each job alone (runs on the loop or the worker)."""
        if len(batch) == 1:
            return [self._run_one(batch[0])]
        try:
            inputs = _concat([j.inputs for j in batch])
            labels, proba = self._predict(inputs, labels=any(j.labels for j in batch),
                                          proba=any(j.proba for j in batch))
            total = len(inputs)
            if len(labels) != total or (proba is not None and len(proba) != total):
                raise ValueError(f"the runtime answered {len(labels)} rows for {total}")
        except Exception:
            return [self._run_one(j) for j in batch]
        results: list[Result | BaseException] = []
        offset = 0
        for job in batch:
            end = offset + job.rows
            results.append((labels[offset:end], proba[offset:end] if proba is not None and job.proba else None))
            offset = end
        return results

    def _run_one(self, job: _Job) -> Result | BaseException:
        try:
            return self._predict(job.inputs, labels=job.labels, proba=job.proba)
        except Exception as e:
            return e


def _concat(parts: list[protocol.Inputs]) -> protocol.Inputs:
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    frames = [p if isinstance(p, pd.DataFrame) else pd.DataFrame(p) for p in parts]
    return pd.concat(frames, ignore_index=True)
