"""The request log: Parquet batches in the store, bounded memory, nothing lost on close."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roost.serving import requestlog
from roost.storage import store as store_mod


def entry(i: int, *, status: int = 200, sampled: bool = True, at: float | None = None) -> requestlog.Entry:
    frame = pd.DataFrame({"a": [float(i), i + 0.5], "color": ["red", None]})
    return requestlog.Entry(
        time=at if at is not None else time.time(),
        endpoint="v2/infer",
        status=status,
        latency_ms=1.5,
        request_id=f"r{i}",
        rows=2 if status == 200 else 0,
        inputs=frame if sampled and status == 200 else None,
        outputs=np.array([i, i + 1]) if sampled and status == 200 else None,
        error=None if status == 200 else "bad input",
    )


def make_log(
    root: str, uri: str, *, flush_rows: int = 1000, interval: float = 60.0, max_rows: int = 1000
) -> tuple[requestlog.RequestLog, list[int]]:
    drops: list[int] = []
    config = requestlog.RequestLogConfig(
        uri, flush_interval=interval, flush_rows=flush_rows, max_buffered_rows=max_rows
    )
    log = requestlog.RequestLog(
        store_mod.Store(root),
        config,
        model="bc",
        model_version="bc-v1",
        digest="sha256:abc",
        on_drop=drops.append,
    )
    return log, drops


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_config_reads_camel_case_and_checks_ranges() -> None:
    config = requestlog.RequestLogConfig.from_dict(
        {"uri": "file:///x/", "sampleRate": 0.5, "flushInterval": 2, "flushRows": 10, "maxBufferedRows": 20}
    )
    assert config == requestlog.RequestLogConfig("file:///x", 0.5, 2.0, 10, 20)
    with pytest.raises(ValueError, match="sampleRate"):
        requestlog.RequestLogConfig.from_dict({"uri": "file:///x", "sampleRate": 2})
    with pytest.raises(ValueError, match="uri"):
        requestlog.RequestLogConfig.from_dict({})


def test_flushed_rows_read_back_with_schema_and_json_columns(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    log, _ = make_log(root, f"{root}/log")
    log.record(entry(1))
    log.record(entry(2, status=400))
    log.record(entry(3, sampled=False))
    assert log.flush()
    frame = requestlog.read_log(store_mod.Store(root), f"{root}/log")
    assert list(frame.columns) == requestlog.SCHEMA.names
    assert frame["request_id"].tolist() == ["r1", "r2", "r3"]
    assert frame["status"].tolist() == [200, 400, 200]
    assert set(frame["model"]) == {"bc"} and set(frame["model_version"]) == {"bc-v1"}
    first = frame.iloc[0]
    assert json.loads(first["inputs"]) == {"a": [1.0, 1.5], "color": ["red", None]}
    assert json.loads(first["outputs"]) == [1, 2]
    assert pd.isna(frame.iloc[1]["inputs"]) and frame.iloc[1]["error"] == "bad input"
    assert pd.isna(frame.iloc[2]["inputs"]) and frame.iloc[2]["rows"] == 2
    names = [p.name for p in (tmp_path / "log").iterdir()]
    assert len(names) == 1 and names[0].endswith(".parquet") and names[0][8] == "T"


def test_background_writer_flushes_by_rows_and_by_interval(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    by_rows, _ = make_log(root, f"{root}/rows", flush_rows=3)
    by_time, _ = make_log(root, f"{root}/time", interval=0.2)
    by_rows.start()
    by_time.start()
    try:
        for i in range(3):
            by_rows.record(entry(i))
        by_time.record(entry(9))
        wait_for(lambda: by_rows.written == 3 and by_time.written == 1)
    finally:
        by_rows.close()
        by_time.close()
    assert len(requestlog.read_log(store_mod.Store(root), f"{root}/rows")) == 3


def test_unwritable_store_bounds_the_buffer_drops_oldest_and_keeps_the_rest(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    root = f"file://{tmp_path}"
    uri = f"{root}/blocker/log"
    log, drops = make_log(root, uri, max_rows=5)
    for i in range(8):
        assert log.record(entry(i))
    assert not log.flush()  # the store refuses: rows go back to the buffer
    assert log.buffered == 5 and log.dropped == 3 and sum(drops) == 3
    log.record(entry(8))
    assert log.dropped == 4 and log.buffered == 5
    blocker.unlink()  # the store is reachable again
    log.close()
    frame = requestlog.read_log(store_mod.Store(root), uri)
    assert frame["request_id"].tolist() == ["r4", "r5", "r6", "r7", "r8"]  # the oldest were dropped


def test_close_writes_everything_and_refuses_later_rows(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    log, drops = make_log(root, f"{root}/log")
    log.start()
    for i in range(7):
        log.record(entry(i))
    log.close()
    assert not log.record(entry(99))
    assert drops == [1]
    assert len(requestlog.read_log(store_mod.Store(root), f"{root}/log")) == 7


def test_read_log_filters_by_time_and_ignores_partial_writes(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    store = store_mod.Store(root)
    assert list(requestlog.read_log(store, f"{root}/log").columns) == requestlog.SCHEMA.names
    old = time.time() - 3600
    store.write_bytes(
        requestlog.batch_uri(f"{root}/log", now=old + 1),
        requestlog.encode_batch([entry(1, at=old), entry(2, at=old + 1)], "bc", "bc-v1", "sha256:abc"),
    )
    store.write_bytes(
        requestlog.batch_uri(f"{root}/log"),
        requestlog.encode_batch([entry(3), entry(4)], "bc", "bc-v1", "sha256:abc"),
    )
    (tmp_path / "log" / "20990101T000000-x.parquet.tmp-123").write_bytes(b"partial")
    assert len(requestlog.read_log(store, f"{root}/log")) == 4
    recent = requestlog.read_log(store, f"{root}/log", since=old + 0.5)
    assert recent["request_id"].tolist() == ["r2", "r3", "r4"]
    assert requestlog.read_log(store, f"{root}/log", since=time.time() + 10).empty


def test_a_canary_baseline_logs_apart_from_stable_and_drift_reads_both(tmp_path: Path) -> None:
    from roost.controllers import analysis
    from roost.workers import drift

    root = f"file://{tmp_path}"
    store = store_mod.Store(root)
    stable_uri = analysis.log_uri(store, "ns", "bc", "bc-v1")
    baseline_uri = analysis.log_uri(store, "ns", "bc", "bc-v1", baseline=True)
    assert baseline_uri.startswith(stable_uri + "/") and baseline_uri != stable_uri
    for uri, first in ((stable_uri, 1), (baseline_uri, 10)):
        log, _ = make_log(root, uri)
        log.record(entry(first))
        log.record(entry(first + 1))
        assert log.flush()
    # the analysis reads each log alone: stable's batches are only the files directly under its prefix
    assert requestlog.read_log(store, stable_uri)["request_id"].tolist() == ["r1", "r2"]
    assert requestlog.read_log(store, baseline_uri)["request_id"].tolist() == ["r10", "r11"]
    # drift looks at every request clients were answered, the baseline's included
    window = drift.window_frame(store, store.uri("requestlogs", "ns", "bc"), 100, None)
    assert sorted(window["a"].tolist()) == [1.0, 1.5, 2.0, 2.5, 10.0, 10.5, 11.0, 11.5]


def _window_by_request(store: store_mod.Store, prefix: str, size: int) -> pd.DataFrame:
    """The window decoded the plain way, one DataFrame per logged request (the oracle)."""
    frames = [requestlog.read_log(store, p) for p in store.list(prefix)]
    log = pd.concat(frames, ignore_index=True)
    log = log[log["status"] == 200].sort_values("time", kind="stable")
    parts = []
    for _, row in log.iterrows():
        block = requestlog.input_frame(row)
        if block is None:
            continue
        predictions = json.loads(row["outputs"]) if row["outputs"] else None
        if isinstance(predictions, list) and len(predictions) == len(block):
            block["__prediction__"] = predictions
        parts.append(block)
    # a block of nulls alone reads as objects; joined with the rest of its column it is the float NaN
    return pd.concat(parts, ignore_index=True).iloc[-size:].reset_index(drop=True).infer_objects()


@pytest.mark.parametrize("size", [1, 7, 120, 10_000])
def test_the_drift_window_holds_the_newest_rows_of_every_request_as_logged(tmp_path: Path, size: int) -> None:
    from roost.workers import drift

    root = f"file://{tmp_path}"
    store = store_mod.Store(root)
    prefix = store.uri("requestlogs", "ns", "bc")
    rng = np.random.default_rng(5)
    columns = ("x", "y", "z")
    for version in ("bc-v1", "bc-v2"):
        log, _ = make_log(root, f"{prefix}/{version}", max_rows=10_000)
        log._columns = columns
        start = time.time() - 100
        for i in range(150):  # one-row blocks, a few big ones, refused and unsampled requests, a frame
            rows = 1 if i % 10 else 25
            at = start + i * 0.5 + (0.25 if version == "bc-v2" else 0.0)
            if i % 37 == 5:
                log.record(requestlog.Entry(at, "v2/infer", 400, 1.0, f"{version}-{i}", 0, None, None, "bad input"))
            elif i % 41 == 3:
                log.record(requestlog.Entry(at, "v2/infer", 200, 1.0, f"{version}-{i}", rows))
            elif i % 53 == 7:
                frame = pd.DataFrame({"x": [np.nan] * rows, "y": [1.0] * rows, "z": [2.0] * rows})
                log.record(requestlog.Entry(at, "v1/predict", 200, 1.0, f"{version}-{i}", rows, frame,
                                            np.arange(rows), None))
            elif i % 47 == 11:  # answers that do not match the rows: no prediction for them
                log.record(requestlog.Entry(at, "v2/infer", 200, 1.0, f"{version}-{i}", rows,
                                            rng.normal(size=(rows, 3)), np.arange(rows + 1), None))
            else:  # v1 answers numbers, v2 string labels (one of them with a comma)
                block = rng.normal(size=(rows, 3))
                answers = rng.integers(0, 2, rows)
                if version == "bc-v2":
                    answers = np.array(["benign", "malignant" if i % 29 else "malignant, likely"])[answers]
                log.record(requestlog.Entry(at, "v2/infer", 200, 1.0, f"{version}-{i}", rows, block, answers, None))
        assert log.flush()
    window = drift.window_frame(store, prefix, size, None)
    expected = _window_by_request(store, prefix, size)
    assert len(window) == min(size, len(expected)) and len(window) > 0
    pd.testing.assert_frame_equal(window.isna(), expected.isna())  # a missing prediction: None or NaN alike
    pd.testing.assert_frame_equal(window.fillna(-1.0), expected.fillna(-1.0), check_dtype=False)
    if size == 10_000:
        assert window["__prediction__"].isna().sum() == 2 * 3  # i = 11, 58, 105 of each version: 1 row, 2 answers
        assert (window["__prediction__"] == "malignant, likely").any()


def test_float_blocks_are_logged_as_values_and_other_inputs_as_json(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    log, _ = make_log(root, f"{root}/log")
    log._columns = ("a", "b")
    block = np.array([[1.5, np.inf], [np.nan, -2.0]])
    log.record(requestlog.Entry(time.time(), "v2/infer", 200, 1.0, "block", 2, block, np.array([0, 1])))
    log.record(requestlog.Entry(time.time(), "v2/infer", 200, 1.0, "ints", 1, np.array([[3, 4]]), np.array([1])))
    log.record(entry(7))
    assert log.flush()
    frame = requestlog.read_log(store_mod.Store(root), f"{root}/log")
    first, ints, mixed = (frame.iloc[i] for i in range(3))
    assert pd.isna(first["inputs"]) and json.loads(first["input_columns"]) == ["a", "b"]
    np.testing.assert_array_equal(first["input_values"], [1.5, np.inf, np.nan, -2.0])  # inf stays inf
    pd.testing.assert_frame_equal(requestlog.input_frame(first), pd.DataFrame(block, columns=["a", "b"]))
    assert json.loads(ints["inputs"]) == {"a": [3], "b": [4]} and ints["input_values"] is None
    colors = requestlog.input_frame(mixed)["color"]
    assert colors.iloc[0] == "red" and pd.isna(colors.iloc[1])
    assert requestlog.input_frame(frame.iloc[0:1].assign(inputs=None, input_values=None).iloc[0]) is None


def test_batches_written_before_the_block_columns_still_read(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    old_schema = pa.schema([f for f in requestlog.SCHEMA if f.name not in ("input_columns", "input_values")])
    row = {"time": [time.time()], "model": ["bc"], "model_version": ["bc-v1"], "digest": ["sha256:abc"],
           "endpoint": ["v2/infer"], "status": [200], "latency_ms": [1.0], "request_id": ["old"], "rows": [1],
           "inputs": ['{"a":[2.5]}'], "outputs": ["[1]"], "error": [None]}
    (tmp_path / "log").mkdir()
    pq.write_table(pa.table(row, schema=old_schema), tmp_path / "log" / "20260101T000000-old.parquet")
    frame = requestlog.read_log(store_mod.Store(f"file://{tmp_path}"), f"file://{tmp_path}/log")
    assert list(frame.columns) == requestlog.SCHEMA.names
    assert frame.iloc[0]["input_values"] is None and requestlog.input_frame(frame.iloc[0])["a"].tolist() == [2.5]
