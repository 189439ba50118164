"""The request log: one row per inference request, written to the store as Parquet batches.

Canary analysis (error rate, latency, prediction shift per version) and drift detection (live inputs
against the training profile) both read it, on either backend, so it lives in the artifact store rather
than in a Pod's memory or in Prometheus. The request path only appends a small entry to an in-memory
buffer; a background thread encodes and writes batches, so a slow or unreachable store never slows a
prediction (but when the writer's encoding falls behind on a busy core, requests make way for it rather
than pile rows up: :data:`BACKLOG_FACTOR`). Memory is bounded: at most ``maxBufferedRows`` rows are held
(buffered plus being written); beyond that the oldest are dropped and counted
(``roost_requestlog_dropped_total``). A graceful shutdown
(SIGTERM -> uvicorn drains requests -> lifespan shutdown -> :meth:`RequestLog.close`) writes every row
still held, so nothing accepted into the log is lost while the store is reachable.

Layout: ``<uri>/<YYYYmmddTHHMMSS>-<uuid4 hex>.parquet`` (UTC flush time), one file per batch, each
written atomically by :meth:`roost.storage.store.Store.write_bytes`. Schema (:data:`SCHEMA`):

======================  =========  =====================================================================
column                  type       meaning
======================  =========  =====================================================================
``time``                float64    when the request arrived, epoch seconds
``model``               string     the served model name (the roost.dev Deployment's name)
``model_version``       string     the ModelVersion that answered
``digest``              string     the artifact's ``sha256:<hex>``
``endpoint``            string     ``v1/predict``, ``v1/predict_proba`` or ``v2/infer``
``status``              int64      the HTTP status answered
``latency_ms``          float64    time from arrival to response, milliseconds
``request_id``          string     the V2 ``id``, else the ``x-request-id`` header, else a uuid4 hex
``rows``                int64      rows predicted (0 when the request was refused)
``inputs``              string     sampled and answered, unless logged as a block (below): JSON
                                   ``{"<input>": [value per row], ...}`` (columnar, signature order);
                                   else null
``input_columns``       string     sampled and answered as a float ``[N, F]`` block (the usual V2
                                   request): JSON list of the F input names; else null
``input_values``        list       that block's ``N * F`` values, row-major (float64); else null
                        <double>
``outputs``             string     sampled and answered: JSON ``[prediction per row]`` (class labels or
                                   values; for probability-only requests the most probable class);
                                   else null
``error``               string     the error message of a refused or failed request; else null
======================  =========  =====================================================================

``json.loads(inputs)`` loads straight into ``pandas.DataFrame``, and so does
``pd.DataFrame(np.reshape(input_values, (-1, len(cols))), columns=cols)`` with ``cols = json.loads(input_columns)``
(:func:`input_frame` does either for one row of the log); :func:`read_table` (Arrow) and :func:`read_log` (pandas)
concatenate batches, and :func:`input_rows` decodes many requests' inputs at once (runs of float blocks without
Python work per request: what the drift worker reads its window with). Float blocks are logged as values
rather than JSON because that costs a copy instead of formatting and parsing every number: the writer spends
~3-4 us per one-row request of 30 inputs (Parquet included) instead of ~9, and a 1,000-row request's 30,000
values are not turned into 600 kB of text (non-finite values stay what they were; JSON would have made them
null). Batches written before these two columns existed read back with them null.

Cost on the request path: one tuple (:class:`Entry`) appended under a lock. The server hands over the
validated ``[N, F]`` block and the predictions array as they are (numpy arrays are not tracked by the
garbage collector, so thousands of buffered entries cost no collection time); the writer thread turns
them into the JSON columns above. Besides ``flushRows`` (log rows), the writer also flushes once
:data:`FLUSH_INPUT_ROWS` predicted rows are buffered, so batches of big requests stay a few MB each.
"""

from __future__ import annotations

import calendar
import collections
import functools
import io
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from numpy.typing import NDArray

from roost import errors
from roost.storage import store as store_mod

log = logging.getLogger("roost.serving.requestlog")

SCHEMA = pa.schema(
    [
        ("time", pa.float64()),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("digest", pa.string()),
        ("endpoint", pa.string()),
        ("status", pa.int64()),
        ("latency_ms", pa.float64()),
        ("request_id", pa.string()),
        ("rows", pa.int64()),
        ("inputs", pa.string()),
        ("input_columns", pa.string()),
        ("input_values", pa.list_(pa.float64())),
        ("outputs", pa.string()),
        ("error", pa.string()),
    ]
)

_FINAL_FLUSH_ATTEMPTS = 3
#: Predicted rows (summed over buffered requests) that trigger a write, whatever ``flushRows`` says.
FLUSH_INPUT_ROWS = 20_000
#: Backpressure: with this many times ``flushRows`` log rows or :data:`FLUSH_INPUT_ROWS` predicted rows
#: waiting (the writer's encoding falls behind, e.g. big requests at full load on one core), each request
#: first waits for the writer's next piece of encoding (at most :data:`BACKLOG_WAIT`), so the server slows
#: to what it can log instead of holding ever more rows. Never while the writer waits on the store: a slow
#: store does not hold requests back, and an unreachable one drops the oldest rows at ``maxBufferedRows``.
BACKLOG_FACTOR = 4
BACKLOG_WAIT = 0.02  # seconds, at most, per request


@dataclass(frozen=True)
class RequestLogConfig:
    """``requestLog`` of the server config.

    Attributes:
        uri: prefix under which Parquet batches go, e.g. ``file:///var/roost/requestlog/ns/deploy/v1``.
        sample_rate: share (0..1) of requests whose inputs and outputs are kept; every request gets a row.
        flush_interval: seconds between writes of whatever is buffered.
        flush_rows: write as soon as this many rows are buffered.
        max_buffered_rows: memory bound; the oldest rows are dropped beyond it.
    """

    uri: str
    sample_rate: float = 1.0
    flush_interval: float = 5.0
    flush_rows: int = 1000
    max_buffered_rows: int = 100_000

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestLogConfig:
        """Parse ``{"uri", "sampleRate", "flushInterval", "flushRows", "maxBufferedRows"}``.

        Raises:
            ValueError: ``uri`` missing or a number out of range.
        """
        uri = data.get("uri")
        if not isinstance(uri, str) or not uri:
            raise ValueError("requestLog.uri is required")
        cfg = cls(
            uri=uri.rstrip("/"),
            sample_rate=float(data.get("sampleRate", cls.sample_rate)),
            flush_interval=float(data.get("flushInterval", cls.flush_interval)),
            flush_rows=int(data.get("flushRows", cls.flush_rows)),
            max_buffered_rows=int(data.get("maxBufferedRows", cls.max_buffered_rows)),
        )
        if not 0.0 <= cfg.sample_rate <= 1.0:
            raise ValueError(f"requestLog.sampleRate must be within 0..1, got {cfg.sample_rate}")
        if cfg.flush_interval <= 0 or cfg.flush_rows < 1 or cfg.max_buffered_rows < 1:
            raise ValueError("requestLog.flushInterval, flushRows and maxBufferedRows must be positive")
        return cfg


class Entry(NamedTuple):
    """One request, as the server hands it over. Encoding to JSON happens later, off the request path.

    ``inputs`` is the validated ``[N, F]`` block in the log's ``columns`` order, a DataFrame, or a mapping of
    input name to values; ``outputs`` the predictions array; both ``None`` when the request was not
    sampled or not answered. A plain tuple, cheap to build on the request path.
    """

    time: float
    endpoint: str
    status: int
    latency_ms: float
    request_id: str
    rows: int
    inputs: Any = None
    outputs: Any = None
    error: str | None = None


class RequestLog:
    """A bounded buffer of :class:`Entry` and the thread that writes it to the store in Parquet batches.

    Thread-safe: :meth:`record` is called from the event loop, writing happens on a daemon thread.
    ``columns`` names the columns of ``[N, F]`` input blocks (the signature's inputs, in order).
    """

    def __init__(
        self,
        store: store_mod.Store,
        config: RequestLogConfig,
        *,
        model: str,
        model_version: str,
        digest: str,
        on_drop: Callable[[int], None] | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self._constants = (model, model_version, digest)
        self._columns = tuple(columns) if columns is not None else None
        self._input_rows = 0  # predicted rows of the waiting entries (a flush trigger)
        self._on_drop = on_drop
        self._buffer: collections.deque[Entry] = collections.deque()
        self._inflight = 0
        self._lock = threading.Lock()  # guards the buffer and counters
        self._flush_lock = threading.Lock()  # one batch write at a time
        self._wake = threading.Event()
        self._progress = threading.Event()  # set by the writer at each piece of encoding done
        self._in_store = False  # the writer waits on the store: a backlog then never holds a request back
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failing = False
        self.dropped = 0
        self.written = 0
        self.batches = 0

    @property
    def buffered(self) -> int:
        """Rows held in memory (waiting or being written)."""
        return len(self._buffer) + self._inflight

    # ----- request path ------------------------------------------------------------------------
    def record(self, entry: Entry | tuple[Any, ...]) -> bool:
        """Accept ``entry`` (an :class:`Entry` or a plain tuple of its fields, in order) into the buffer; return
        False when it was dropped instead (log closed).

        When the buffer is full the oldest waiting row is dropped (or, if every held row is being
        written right now, this one), and counted in :attr:`dropped` and ``on_drop``.
        """
        accepted = False
        dropped = 0
        with self._lock:
            buffer = self._buffer
            if self._closed:
                dropped = 1
            elif len(buffer) + self._inflight < self.config.max_buffered_rows:
                accepted = True
            elif buffer:  # full: drop the oldest waiting row
                self._input_rows -= buffer.popleft()[5]  # rows
                accepted = True
                dropped = 1
            else:  # full, and every held row is being written: drop this one
                dropped = 1
            backlog = False
            if accepted:
                buffer.append(entry)  # type: ignore[arg-type]  # an Entry or a tuple of its fields
                self._input_rows += entry[5]  # rows
                if (len(buffer) >= self.config.flush_rows or self._input_rows >= FLUSH_INPUT_ROWS) \
                        and not self._wake.is_set():
                    self._wake.set()
                backlog = (
                    (len(buffer) >= BACKLOG_FACTOR * self.config.flush_rows
                     or self._input_rows >= BACKLOG_FACTOR * FLUSH_INPUT_ROWS)
                    and not self._failing and self._thread is not None
                )
            self.dropped += dropped
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        if backlog and not self._in_store:
            # the writer's encoding falls behind: wait (briefly) for its next piece of work before answering
            self._progress.clear()
            self._wake.set()
            self._progress.wait(BACKLOG_WAIT)
        return accepted

    # ----- writer ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="roost-requestlog", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer and write everything still held (retrying a few times).

        Rows that cannot be written after the retries are reported in the log as lost.
        """
        with self._lock:
            self._closed = True
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for attempt in range(_FINAL_FLUSH_ATTEMPTS):
            if self.flush():
                return
            time.sleep(0.2 * (attempt + 1))
        log.error("Lost %d request-log rows: the store %s stayed unreachable", self.buffered, self.config.uri)

    def flush(self) -> bool:
        """Write every waiting row as one Parquet batch now; return False when the store refused it.

        On failure the rows go back to the front of the buffer (oldest first), to be retried.
        """
        with self._flush_lock:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            batch = list(self._buffer)
            self._buffer.clear()
            self._inflight = len(batch)
            input_rows, self._input_rows = self._input_rows, 0
        if not batch:
            return True
        try:
            data = encode_batch(batch, *self._constants, columns=self._columns, pause=self._step)
        except Exception:  # a bug in encoding must not wedge the buffer: drop the batch, loudly
            log.exception("Dropped %d request-log rows that could not be encoded", len(batch))
            with self._lock:
                self._inflight = 0
                self.dropped += len(batch)
            if self._on_drop is not None:
                self._on_drop(len(batch))
            return True
        uri = batch_uri(self.config.uri)
        self._step()
        self._in_store = True
        try:
            self.store.write_bytes(uri, data)
        except errors.RoostError as e:
            with self._lock:
                self._buffer.extendleft(reversed(batch))
                self._inflight = 0
                self._input_rows += input_rows
            if not self._failing:
                log.warning("Failed to write request log batch (%d rows), will retry: %s", len(batch), e)
            self._failing = True
            return False
        finally:
            self._in_store = False
        with self._lock:
            self._inflight = 0
            self.written += len(batch)
            self.batches += 1
        if self._failing:
            log.info("Wrote request log batch to %s after failures", uri)
        self._failing = False
        return True

    def _step(self) -> None:
        """A piece of the writer's encoding is done: release requests waiting on a backlog, and the GIL."""
        self._progress.set()
        time.sleep(0)

    def _run(self) -> None:
        interval = self.config.flush_interval
        due = time.monotonic() + interval
        while not self._stopping.is_set():
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return
            now = time.monotonic()
            waiting = len(self._buffer)
            full = (waiting >= self.config.flush_rows or self._input_rows >= FLUSH_INPUT_ROWS) and not self._failing
            if not full and now < due:
                continue
            due = now + interval
            if waiting:
                self.flush()


def batch_uri(prefix: str, now: float | None = None) -> str:
    """``<prefix>/<YYYYmmddTHHMMSS>-<uuid4 hex>.parquet`` (UTC)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{prefix.rstrip('/')}/{stamp}-{uuid.uuid4().hex}.parquet"


def encode_batch(
    entries: Sequence[Entry], model: str, model_version: str, digest: str, *, columns: Sequence[str] | None = None,
    pause: Callable[[], None] | None = None,
) -> bytes:
    """Parquet bytes (:data:`SCHEMA`) for ``entries``; ``columns`` name the columns of ``[N, F]`` input blocks.
    ``pause`` is called between pieces of the encoding (default: let other threads take the GIL)."""
    n = len(entries)
    times, endpoints, statuses, latencies, ids, rows, inputs, outputs, errors_ = (
        zip(*entries, strict=True) if n else ((),) * 9
    )
    names = tuple(columns) if columns is not None else None
    block_names, block_values, json_inputs = _input_blocks(inputs, names)
    table = pa.Table.from_pydict(
        {
            "time": times,
            "model": [model] * n,
            "model_version": [model_version] * n,
            "digest": [digest] * n,
            "endpoint": endpoints,
            "status": statuses,
            "latency_ms": latencies,
            "request_id": ids,
            "rows": rows,
            "inputs": _inputs_column(json_inputs, names, pause or _pause),
            "input_columns": block_names,
            "input_values": block_values,
            "outputs": _outputs_column(outputs),
            "error": errors_,
        },
        schema=SCHEMA,
    )
    sink = io.BytesIO()
    # dictionary encoding only where values repeat, statistics only on the small columns (min/max of long
    # JSON strings cost more than writing them); zstd, not pyarrow's default snappy: on logged breast-cancer
    # rows it wrote 20 requests of 1,000 rows in 10.8 ms instead of 13.9, and 0.84 MB instead of 2.9
    pq.write_table(table, sink, use_dictionary=_DICTIONARY_COLUMNS, write_statistics=_STATISTICS_COLUMNS,
                   compression=_COMPRESSION)
    return sink.getvalue()


_DICTIONARY_COLUMNS = ["model", "model_version", "digest", "endpoint", "status", "input_columns"]
_STATISTICS_COLUMNS = ["time", "status", "latency_ms", "rows"]
_COMPRESSION = "zstd"


def _input_blocks(
    inputs: Sequence[Any], columns: tuple[str, ...] | None
) -> tuple[list[str | None], pa.ListArray, list[Any]]:
    """Split the entries' inputs: float ``[N, F]`` blocks named by ``columns`` become the ``input_columns``
    and ``input_values`` of their rows (one concatenation for the whole batch); the others are left for the
    ``inputs`` JSON. Returns ``(input_columns, input_values, inputs left for JSON)``."""
    n = len(inputs)
    blocks = [i for i, value in enumerate(inputs)
              if columns is not None and type(value) is np.ndarray and value.ndim == 2 and value.dtype.kind == "f"
              and value.shape[1] == len(columns)]
    if not blocks:
        return [None] * n, pa.nulls(n, pa.list_(pa.float64())), list(inputs)
    assert columns is not None
    sizes = np.zeros(n, dtype=np.int64)
    sizes[blocks] = [inputs[i].size for i in blocks]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    values = np.concatenate([inputs[i].reshape(-1) for i in blocks]).astype(np.float64, copy=False)
    is_block = np.zeros(n, dtype=bool)
    is_block[blocks] = True
    listed = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=pa.array(~is_block))
    name = orjson.dumps(list(columns)).decode()
    left = list(inputs)
    for i in blocks:
        left[i] = None
    return [name if b else None for b in is_block.tolist()], listed, left


def logged_inputs(
    inputs: Any, input_columns: Any, input_values: Any
) -> tuple[tuple[str, ...], NDArray[np.float64] | dict[str, list[Any]], int] | None:
    """A logged request's inputs from its ``inputs``, ``input_columns`` and ``input_values`` fields:
    ``(names, block, rows)`` with ``block`` the float ``[rows, len(names)]`` array or the JSON columns
    ``{name: [value per row]}``; None when its inputs were not logged or do not form a table."""
    if isinstance(input_values, np.ndarray | list) and isinstance(input_columns, str):
        names = _input_names(input_columns)
        block = np.asarray(input_values, dtype=np.float64).reshape(-1, len(names))
        return names, block, block.shape[0]
    return _json_inputs(inputs)


def _json_inputs(inputs: Any) -> tuple[tuple[str, ...], dict[str, list[Any]], int] | None:
    """``(names, {name: [value per row]}, rows)`` of a request's JSON ``inputs``; None if not a table."""
    if not isinstance(inputs, str | bytes):
        return None
    decoded = orjson.loads(inputs)
    if not isinstance(decoded, dict) or not decoded:
        return None
    table = {k: v if isinstance(v, list) else [v] for k, v in decoded.items()}
    rows = len(next(iter(table.values())))
    if any(len(v) != rows for v in table.values()):
        return None
    return tuple(table), table, rows


@functools.lru_cache(maxsize=64)
def _input_names(input_columns: str) -> tuple[str, ...]:
    return tuple(orjson.loads(input_columns))


def input_frame(row: Mapping[str, Any]) -> pd.DataFrame | None:
    """The logged inputs of one row of :func:`read_log` as a DataFrame (one column per input), or None when the
    request's inputs were not logged (see :func:`logged_inputs`)."""
    decoded = logged_inputs(row.get("inputs"), row.get("input_columns"), row.get("input_values"))
    if decoded is None:
        return None
    names, block, _ = decoded
    return pd.DataFrame(block, columns=list(names)) if isinstance(block, np.ndarray) else pd.DataFrame(block)


def _inputs_column(
    inputs: Sequence[Any], columns: tuple[str, ...] | None, pause: Callable[[], None] | None = None
) -> list[bytes | None]:
    """The ``inputs`` JSON of each entry. One-row numeric blocks (most requests) are encoded together:
    one ``orjson.dumps`` of all of them, cut into rows and values and laid into a per-row template --
    the same bytes as ``orjson.dumps({column: [value]})`` entry by entry, in a fraction of the time."""
    out: list[bytes | None] = [None] * len(inputs)
    groups: dict[np.dtype[Any], list[int]] = {}
    pause = pause or _pause
    for i, value in enumerate(inputs):
        if value is None:
            continue
        if (columns is not None and type(value) is np.ndarray and value.ndim == 2 and value.shape[0] == 1
                and value.shape[1] == len(columns) and value.dtype.kind in "fi"):
            groups.setdefault(value.dtype, []).append(i)
        else:
            out[i] = _inputs_json(value, columns)
            _pause()
    if groups:
        assert columns is not None
        template = _row_template(columns)
        for group in groups.values():
            for start in range(0, len(group), _CHUNK):
                positions = group[start:start + _CHUNK]
                block = np.concatenate([inputs[i] for i in positions])
                text = orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY)  # b"[[v,v,...],[v,...]]"
                for i, row in zip(positions, text[2:-2].split(b"],["), strict=True):
                    out[i] = template % tuple(row.split(b","))
                _pause()
    return out


_CHUNK = 256  # one-row entries encoded between two pauses


def _pause() -> None:
    """Let the event loop's thread take the GIL now if it waits for it: the writer works in short pieces,
    so a request never waits a whole switch interval (5 ms) behind the encoding of a batch."""
    time.sleep(0)


def _outputs_column(outputs: Sequence[Any]) -> list[bytes | None]:
    """The ``outputs`` JSON of each entry; one-value numeric arrays are encoded together, as above."""
    out: list[bytes | None] = [None] * len(outputs)
    groups: dict[np.dtype[Any], list[int]] = {}
    for i, value in enumerate(outputs):
        if value is None:
            continue
        if type(value) is np.ndarray and value.shape == (1,) and value.dtype.kind in "fiu" and value.dtype.isnative:
            groups.setdefault(value.dtype, []).append(i)
        else:
            out[i] = _outputs_json(value)
    for positions in groups.values():
        block = np.concatenate([outputs[i] for i in positions])
        text = orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY)  # b"[v,v,...]"
        for i, token in zip(positions, text[1:-1].split(b","), strict=True):
            out[i] = b"[" + token + b"]"
    return out


@functools.lru_cache(maxsize=8)
def _row_template(columns: tuple[str, ...]) -> bytes:
    """``b'{"<c1>":[%s],"<c2>":[%s],...}'``: the JSON of one row, keys escaped as orjson escapes them."""
    keys = [orjson.dumps(c).replace(b"%", b"%%") for c in columns]
    return b"{" + b",".join(k + b":[%s]" for k in keys) + b"}"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return str(value)


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _inputs_json(inputs: Any, columns: tuple[str, ...] | None = None) -> bytes | None:
    """``{"<input>": [value per row], ...}``; a block is split into its columns (named by ``columns``)."""
    if inputs is None:
        return None
    if isinstance(inputs, pd.DataFrame):
        inputs = inputs.to_dict(orient="list")
    elif isinstance(inputs, np.ndarray) and inputs.ndim == 2 and columns is not None:
        if len(columns) != inputs.shape[1]:
            raise ValueError(f"an input block of {inputs.shape[1]} columns for {len(columns)} column names")
        if len(inputs) <= 8:  # a few rows: Python lists are cheapest to build and to encode
            inputs = dict(zip(columns, inputs.T.tolist(), strict=True))
        else:  # many: contiguous numpy columns, which orjson encodes in C
            inputs = dict(zip(columns, np.ascontiguousarray(inputs.T), strict=True))
    return orjson.dumps(inputs, default=_json_default, option=_JSON_OPTIONS)


def _outputs_json(outputs: Any) -> bytes | None:
    if outputs is None:
        return None
    if isinstance(outputs, np.ndarray) and not (outputs.dtype.kind in "fiub" and outputs.flags.c_contiguous):
        outputs = outputs.tolist()
    return orjson.dumps(outputs, default=_json_default, option=_JSON_OPTIONS)


def read_table(
    store: store_mod.Store, uri_prefix: str, since: float | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """Every row logged under ``uri_prefix`` (all batches, ordered by ``time``), as an Arrow table.

    Args:
        store: the store the server writes to.
        uri_prefix: the ``requestLog.uri`` of one server (one model version).
        since: keep rows with ``time >= since`` (epoch seconds); batches flushed earlier are not read.
        columns: read only these :data:`SCHEMA` columns (``time`` is always read); default all.

    Returns:
        A table of the :data:`SCHEMA` columns asked for (empty, with those columns, when nothing is logged).
    """
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in SCHEMA.names
                                                       if c in columns or c == "time"])
    tables = []
    for uri in store.list(uri_prefix):
        name = uri.rsplit("/", 1)[-1]
        if not name.endswith(".parquet"):
            continue  # a temporary name of a write in progress
        if since is not None and _flushed_before(name, since):
            continue
        with store.open(uri) as f:
            tables.append(_read_batch(pa.BufferReader(f.read()), schema))  # a batch is a few MB at most
    tables.sort(key=lambda t: t["time"][0].as_py() if t.num_rows else 0.0)  # names order by second, not by time
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    if since is not None:
        table = table.filter(pc.greater_equal(table["time"], since))
    times = table["time"].to_numpy()
    if np.any(times[1:] < times[:-1]):  # batches overlap in time (written by two threads, or clocks apart)
        table = table.take(np.argsort(times, kind="stable"))
    return table


def _read_batch(f: pa.BufferReader, schema: pa.Schema) -> pa.Table:
    """One batch file's ``schema`` columns; those it was written without (an older :data:`SCHEMA`) are null."""
    batch = pq.ParquetFile(f)
    present = set(batch.schema_arrow.names)
    table = batch.read(columns=[c for c in schema.names if c in present])
    return pa.table([table[c] if c in present else pa.nulls(table.num_rows, schema.field(c).type)
                     for c in schema.names], schema=schema)


def read_log(
    store: store_mod.Store, uri_prefix: str, since: float | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """:func:`read_table` as a DataFrame (index 0..n-1)."""
    frame: pd.DataFrame = read_table(store, uri_prefix, since, columns).to_pandas()
    return frame


def input_rows(table: pa.Table) -> pd.DataFrame:
    """The input rows of logged requests (a :func:`read_table` table, its rows in order) as one DataFrame, one
    column per input, plus ``__prediction__`` (the served answer per row) when outputs were logged.

    Requests whose inputs were not logged, or do not form a table, add no rows. Runs of consecutive float-block
    requests with the same columns are decoded together from Arrow (one flattened ``input_values`` buffer
    reshaped to ``[rows, F]``, their ``outputs`` parsed as one JSON array), with no Python work per request;
    JSON-logged requests are decoded one by one (:func:`logged_inputs`). A request whose logged outputs do
    not match its rows gets no prediction (NaN).
    """
    n = table.num_rows
    if n == 0:
        return pd.DataFrame()
    names_column = table["input_columns"].combine_chunks().dictionary_encode()
    values = table["input_values"].combine_chunks()
    is_block = np.asarray(values.is_valid()) & np.asarray(names_column.is_valid())
    # a run key per request: the block's column names (dictionary index), or -1 for the JSON-logged ones
    key = np.where(is_block, names_column.indices.fill_null(0).to_numpy(zero_copy_only=False), -1)
    starts = np.concatenate(([0], np.flatnonzero(key[1:] != key[:-1]) + 1, [n]))
    outputs = table["outputs"].combine_chunks()
    inputs = table["inputs"].combine_chunks()
    parts: list[pd.DataFrame] = []
    for a, b in itertools.pairwise(starts.tolist()):
        if key[a] >= 0:
            names = _input_names(names_column.dictionary[int(key[a])].as_py())
            part = _block_rows(names, values.slice(a, b - a), outputs.slice(a, b - a))
            if part is not None:
                parts.append(part)
        else:
            parts.extend(_json_rows(inputs.slice(a, b - a), outputs.slice(a, b - a)))
    if not parts:
        return pd.DataFrame()
    if len(parts) == 1:
        return parts[0]
    return pd.concat(parts, ignore_index=True).infer_objects()  # a part of nulls alone is objects, not floats


def _block_rows(names: tuple[str, ...], values: pa.ListArray, outputs: pa.StringArray) -> pd.DataFrame | None:
    """The rows of a run of float-block requests with the same ``names``; a request whose value count is not a
    multiple of ``len(names)`` (not written by a Roost server) is left out."""
    counts = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    whole = counts % len(names) == 0
    if not whole.all():
        values, outputs, counts = values.filter(pa.array(whole)), outputs.filter(pa.array(whole)), counts[whole]
    if len(values) == 0:
        return None
    block = values.flatten().to_numpy(zero_copy_only=False).reshape(-1, len(names))
    frame = pd.DataFrame(_column_major(block).T, columns=list(names), copy=False)
    predictions = _predictions(outputs, counts // len(names))
    if predictions is not None:
        frame["__prediction__"] = predictions
    return frame


def _column_major(block: NDArray[np.float64]) -> NDArray[np.float64]:
    """The ``[F, N]`` transpose of a row-major ``[N, F]`` block, copied tile by tile: each column becomes
    contiguous for the statistics, in a third of the time of a plain transposing copy (which reads the whole
    block once per cache line of every column)."""
    out = np.empty((block.shape[1], block.shape[0]), dtype=block.dtype)
    for start in range(0, block.shape[0], _TILE_ROWS):
        out[:, start:start + _TILE_ROWS] = block[start:start + _TILE_ROWS].T
    return out


_TILE_ROWS = 8192


def _predictions(outputs: pa.StringArray, rows: NDArray[np.int64]) -> NDArray[Any] | list[Any] | None:
    """One prediction per row from the requests' ``outputs`` (one JSON array each), None for the rows of a
    request whose outputs are missing or do not match its ``rows``; None when none were logged.

    The usual case -- every output a flat array of numbers or of strings without commas -- is parsed as one
    flat JSON array (its brackets cut off in Arrow, the pieces joined), checked against the commas counted
    per request; anything else is parsed request by request."""
    if outputs.null_count == len(outputs):
        return None
    if outputs.null_count == 0 and pc.all(pc.starts_with(outputs, "[")).as_py():
        inner = pc.utf8_slice_codeunits(outputs, 1, -1)  # "[a,b]" -> "a,b"
        counts = pc.add(pc.count_substring(inner, ","), 1).to_numpy(zero_copy_only=False)
        nested = pc.any(pc.or_(pc.match_substring(inner, "["), pc.match_substring(inner, "{"))).as_py()
        if not nested and np.array_equal(counts, rows):
            try:
                flat = orjson.loads("[" + _joined(inner) + "]")
            except orjson.JSONDecodeError:
                flat = None  # not plain arrays after all (e.g. a scalar output)
            if flat is not None and len(flat) == int(counts.sum()):  # no comma inside a string label
                numbers = np.asarray(flat) if flat and type(flat[0]) in (int, float) else None
                return numbers if numbers is not None and numbers.dtype.kind in "iuf" else cast(list[Any], flat)
    answered = orjson.loads("[" + _joined(outputs.fill_null("null")) + "]")
    predictions: list[Any] = []
    for a, count in zip(answered, rows.tolist(), strict=True):
        predictions.extend(_answers(a, count))
    return predictions


def _answers(answered: Any, rows: int) -> list[Any]:
    """A request's logged answers (parsed ``outputs``) if they are one per row, else ``rows`` Nones."""
    return answered if type(answered) is list and len(answered) == rows else [None] * rows


def _joined(strings: pa.StringArray) -> str:
    """``strings`` joined with commas, in Arrow."""
    whole = pa.ListArray.from_arrays(pa.array([0, len(strings)], pa.int32()), strings)
    return cast(str, pc.binary_join(whole, ",")[0].as_py())


def _json_rows(inputs: pa.StringArray, outputs: pa.StringArray) -> list[pd.DataFrame]:
    """The rows of JSON-logged requests, one DataFrame per run of requests with the same inputs."""
    parts: list[pd.DataFrame] = []
    names: tuple[str, ...] | None = None
    columns: dict[str, list[Any]] = {}
    predictions: list[Any] = []

    def close() -> None:
        if names is not None:
            frame = pd.DataFrame(columns)
            if any(p is not None for p in predictions):
                frame["__prediction__"] = predictions
            parts.append(frame)

    for raw, raw_outputs in zip(inputs.to_pylist(), outputs.to_pylist(), strict=True):
        decoded = _json_inputs(raw)
        if decoded is None:
            continue
        these, table, rows = decoded
        if these != names:
            close()
            names, columns, predictions = these, {k: [] for k in these}, []
        for k, column in table.items():
            columns[k].extend(column)
        answered = orjson.loads(raw_outputs) if raw_outputs else None
        predictions.extend(_answers(answered, rows))
    close()
    return parts


def _flushed_before(name: str, since: float) -> bool:
    """Whether batch ``name`` was written (so all its rows arrived) before ``since``."""
    try:
        stamp = time.strptime(name.split("-", 1)[0], "%Y%m%dT%H%M%S")
    except ValueError:
        return False
    return calendar.timegm(stamp) + 1 <= since
