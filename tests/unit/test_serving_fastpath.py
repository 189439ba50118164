"""The lean prediction path gives exactly what the general one gives: fast request parsing, the response
encoder, the request log's bulk encoding, the bulk request metrics, and the binary tensor data extension."""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import Pipeline

from roost.serving import metrics, protocol, requestlog
from roost.storage import store as store_mod
from tests.unit import test_server_http as servers

SIGNATURE = protocol.Signature.from_dict({
    "inputs": [{"name": n, "type": "numeric", "datatype": "FP64"} for n in ("a", "b", "c")],
    "outputs": {"task": "classification", "classes": [0, 1], "datatype": "INT64"},
    "target": "y",
})


# ----- request parsing: the fast paths decide exactly as the general checks ------------------------------
def _general_v2(payload: Any) -> Any:
    """What the general path (no fast path) answers: the parsed block or the error message. JSON booleans in
    numeric data are refused before either path looks at the tensors."""
    tensors = payload["inputs"]
    try:
        protocol._refuse_booleans_in_numbers(tensors)
    except protocol.ProtocolError as e:
        return e.message
    parsed = [protocol._tensor(t, i) for i, t in enumerate(tensors)]
    try:
        if len(parsed) == 1 and parsed[0].name not in SIGNATURE.names:
            return protocol._inputs_from_matrix(parsed[0], SIGNATURE)
        return protocol._inputs_from_columns(parsed, SIGNATURE)
    except protocol.ProtocolError as e:
        return e.message


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except protocol.ProtocolError as e:
        return e.message


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool((a == b).all())
    return bool(a == b)


VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.sampled_from(["1.5", None, 1e308, -1e308, 0.0, -0.0]),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(min_value=0, max_value=4),
    width=st.sampled_from([3, 3, 3, 2]),
    datatype=st.sampled_from(["FP64", "FP64", "FP32", "INT64", "BYTES"]),
    name=st.sampled_from(["input-0", "a", ""]),
    values=st.lists(VALUES, min_size=0, max_size=16),
    nested=st.booleans(),
)
def test_v2_fast_matrix_accepts_and_refuses_as_the_general_path(
    rows: int, width: int, datatype: str, name: str, values: list[Any], nested: bool
) -> None:
    data: Any = (values * (rows * width))[: rows * width] if values else [1.5] * (rows * width)
    if nested and rows and len(data) == rows * width:
        data = [data[i * width:(i + 1) * width] for i in range(rows)]
    payload = {"inputs": [{"name": name, "datatype": datatype, "shape": [rows, width], "data": data}]}
    booleans = datatype != "BYTES" and any(type(v) is bool for v in (values * (rows * width))[: rows * width])
    fast = None if booleans else protocol._fast_matrix(payload["inputs"][0], SIGNATURE)
    general = _outcome(_general_v2, payload)
    if booleans:
        assert general == f"input {name!r}: datatype {datatype} data holds JSON booleans"
    if fast is not None:  # the fast path only answers what the general path accepts, with the same block
        assert isinstance(general, np.ndarray), general
        assert _same(fast, general)
    whole = _outcome(protocol.parse_v2_request, payload, SIGNATURE)
    expected = general if isinstance(general, str) else None
    if expected is not None:
        assert whole == expected
    else:
        assert _same(whole.inputs, general)


JSON_NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                        st.integers(min_value=-(2**63), max_value=2**64 - 1), st.booleans())


@settings(max_examples=200, deadline=None)
@given(values=st.lists(JSON_NUMBERS, min_size=3, max_size=300), datatype=st.sampled_from(["FP64", "FP32"]))
def test_json_bodies_skip_the_finite_check_and_get_the_same_block(values: list[Any], datatype: str) -> None:
    """What orjson parses is finite (it refuses NaN, infinities and overflowing doubles), so the server's
    fast path skips that check; with or without it the answer is the same."""
    rows = len(values) // 3
    body = orjson.dumps({"inputs": [{"name": "input-0", "datatype": datatype, "shape": [rows, 3],
                                     "data": values[: rows * 3]}]})
    payload = orjson.loads(body)
    fast = _outcome(protocol.parse_v2, payload, SIGNATURE, SIGNATURE.output_names(True), from_json=True)
    checked = _outcome(protocol.parse_v2_request, payload, SIGNATURE)
    if isinstance(checked, str):
        assert fast == checked
    else:
        assert _same(fast[1], checked.inputs)


@pytest.mark.parametrize("text", [b"[NaN]", b"[Infinity]", b"[-Infinity]", b"[1e400]", b"[-1e309]"])
def test_orjson_refuses_what_is_not_finite(text: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(VALUES, min_size=2, max_size=4), min_size=1, max_size=3))
def test_v1_fast_rows_accept_and_refuse_as_the_general_path(rows: list[list[Any]]) -> None:
    fast = protocol._fast_rows(rows, len(SIGNATURE.inputs))
    general = _outcome(protocol._inputs_from_rows, rows, SIGNATURE)
    if fast is not None:
        assert isinstance(general, np.ndarray), general
        assert _same(fast, general)
    whole = _outcome(protocol.parse_v1_request, {"instances": rows}, SIGNATURE)
    if isinstance(general, str):
        assert whole == general
    else:
        assert _same(whole.inputs, general)


# ----- binary tensor data extension -------------------------------------------------------------------------
def binary_request(block: np.ndarray, datatype: str = "FP64", **extra: Any) -> tuple[bytes, int]:
    raw = np.ascontiguousarray(block, dtype=np.dtype(protocol.BINARY_DTYPES[datatype])).tobytes()
    header = orjson.dumps({
        "inputs": [{"name": "input-0", "datatype": datatype, "shape": list(block.shape),
                    "parameters": {"binary_data_size": len(raw)}}],
        **extra,
    })
    return header + raw, len(header)


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "INT64", "INT32", "UINT8", "FP16"])
def test_binary_tensor_equals_the_json_tensor(datatype: str) -> None:
    block = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 250.0]])
    body, n = binary_request(block, datatype)
    json_part, binary = protocol.split_binary(body, str(n).encode())
    parsed = protocol.parse_v2_request(orjson.loads(json_part), SIGNATURE, binary=binary)
    from_json = protocol.parse_v2_request(
        {"inputs": [{"name": "input-0", "datatype": datatype, "shape": [2, 3], "data": block.tolist()}]}, SIGNATURE
    )
    assert _same(parsed.inputs, from_json.inputs)
    assert parsed.inputs.flags.writeable and parsed.inputs.dtype == np.float64


def test_binary_bool_and_bytes_tensors_per_input() -> None:
    sig = protocol.Signature.from_dict({
        "inputs": [{"name": "flag", "type": "boolean", "datatype": "BOOL"},
                   {"name": "color", "type": "categorical", "datatype": "BYTES"}],
        "outputs": {"task": "classification", "classes": ["no", "yes"]}, "target": "y",
    })
    words = ["red", "grün"]
    strings = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    header = orjson.dumps({"inputs": [
        {"name": "flag", "datatype": "BOOL", "shape": [2], "parameters": {"binary_data_size": 2}},
        {"name": "color", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(strings)}},
    ]})
    parsed = protocol.parse_v2_request(orjson.loads(header), sig, binary=memoryview(b"\x01\x00" + strings))
    assert parsed.frame["flag"].tolist() == [True, False]
    assert parsed.frame["color"].tolist() == words


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b, n: (b + b"\x00", n), "1 bytes of binary tensor data follow the inputs"),
        (lambda b, n: (b[:-1], n), "runs past the end of the body"),
        (lambda b, n: (b, len(b) + 1), "must be the length of the JSON part"),
        (lambda b, n: (b, 0), "must be the length of the JSON part"),
    ],
)
def test_binary_data_that_does_not_add_up_is_refused(change: Any, message: str) -> None:
    body, n = change(*binary_request(np.ones((2, 3))))
    with pytest.raises(protocol.ProtocolError, match=message) as caught:
        json_part, binary = protocol.split_binary(body, str(n))
        protocol.parse_v2_request(orjson.loads(json_part), SIGNATURE, binary=binary)
    assert caught.value.status == 400


def test_binary_size_without_the_header_or_with_data_is_refused() -> None:
    tensor = {"name": "input-0", "datatype": "FP64", "shape": [1, 3], "parameters": {"binary_data_size": 24}}
    with pytest.raises(protocol.ProtocolError, match="no inference-header-content-length header"):
        protocol.parse_v2_request({"inputs": [tensor]}, SIGNATURE)
    with pytest.raises(protocol.ProtocolError, match="both 'data' and binary_data_size"):
        protocol.parse_v2_request({"inputs": [{**tensor, "data": [1, 2, 3]}]}, SIGNATURE, binary=bytes(24))
    with pytest.raises(protocol.ProtocolError, match=r"needs 24"):
        protocol.parse_v2_request({"inputs": [{**tensor, "parameters": {"binary_data_size": 16}}]}, SIGNATURE,
                                  binary=bytes(16))


# ----- responses -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [np.array([1]), np.array([0, 1, 1]), np.array(["yes"], dtype=object)])
@pytest.mark.parametrize("with_proba", [False, True])
def test_the_encoder_writes_what_build_v2_response_builds(labels: np.ndarray, with_proba: bool) -> None:
    sig = SIGNATURE if labels.dtype != object else protocol.Signature.from_dict(
        {"inputs": [{"name": "a"}], "outputs": {"task": "classification", "classes": ["no", "yes"]}, "target": "y"})
    outputs = {protocol.PREDICT: labels}
    if with_proba:
        outputs[protocol.PREDICT_PROBA] = np.tile([0.25, 0.75], (len(labels), 1))
    encoder = protocol.V2Encoder("m", "m-v1", sig)
    expected = orjson.dumps(protocol.build_v2_response("m", "m-v1", "id-1", sig, outputs),
                            option=orjson.OPT_SERIALIZE_NUMPY)
    for _ in range(2):  # the second time from the one-label cache
        assert encoder.encode("id-1", outputs) == (expected, None)


def test_binary_outputs_follow_the_json_with_their_sizes() -> None:
    encoder = protocol.V2Encoder("m", "m-v1", SIGNATURE)
    labels, proba = np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]])
    body, n = encoder.encode("x", {"predict": labels, "predict_proba": proba}, frozenset({"predict_proba"}))
    assert n is not None
    head = orjson.loads(body[:n])
    assert head["outputs"][0]["data"] == [0, 1]
    assert head["outputs"][1]["parameters"] == {"binary_data_size": 32} and "data" not in head["outputs"][1]
    assert np.frombuffer(body[n:], dtype="<f8").tolist() == proba.reshape(-1).tolist()


def test_binary_outputs_are_asked_per_request_or_per_output() -> None:
    payload = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]}
    assert protocol.parse_v2_request(payload, SIGNATURE).binary_outputs == frozenset()
    every = protocol.parse_v2_request({**payload, "parameters": {"binary_data_output": True}}, SIGNATURE)
    assert every.binary_outputs == {"predict", "predict_proba"}
    one = protocol.parse_v2_request(
        {**payload, "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}, SIGNATURE)
    assert one.binary_outputs == {"predict"} and one.outputs == ("predict",)


# ----- request log: bulk encoding writes the same JSON as entry by entry -----------------------------------
def test_bulk_encoded_log_columns_equal_per_entry_json() -> None:
    rng = np.random.default_rng(3)
    columns = ("a", 'we"ird%s', "c")
    inputs: list[Any] = []
    outputs: list[Any] = []
    for i in range(200):
        kind = i % 5
        block = (rng.normal(size=(1, 3)) * 10.0 ** rng.integers(-30, 30) if kind in (0, 1) else
                 rng.integers(-10**15, 10**15, size=(1, 3)) if kind == 2 else
                 rng.normal(size=(int(rng.integers(2, 12)), 3)) if kind == 3 else None)
        inputs.append(block)
        outputs.append(None if block is None else
                       rng.integers(0, 3, size=len(block)) if i % 2 else rng.normal(size=len(block)))
    got_in = requestlog._inputs_column(inputs, columns)
    got_out = requestlog._outputs_column(outputs)
    for block, predicted, text_in, text_out in zip(inputs, outputs, got_in, got_out, strict=True):
        if block is None:
            assert text_in is None and text_out is None
            continue
        assert orjson.loads(text_in) == dict(zip(columns, block.T.tolist(), strict=True))
        assert text_in == orjson.dumps(dict(zip(columns, block.T.tolist(), strict=True)))
        assert text_out == orjson.dumps(predicted.tolist())


def test_block_inputs_read_back_as_columns(tmp_path: Any) -> None:
    root = f"file://{tmp_path}"
    log = requestlog.RequestLog(store_mod.Store(root), requestlog.RequestLogConfig(f"{root}/log"), model="m",
                                model_version="m-v1", digest="sha256:x", columns=("a", "b"))
    log.record(requestlog.Entry(time.time(), "v2/infer", 200, 1.0, "r1", 1, np.array([[1.5, 2.0]]), np.array([1])))
    log.record(requestlog.Entry(time.time(), "v2/infer", 200, 1.0, "r2", 2, np.array([[1.0, 2.0], [3.0, 4.0]]),
                                np.array([0, 1])))
    log.record(requestlog.Entry(time.time(), "v2/infer", 400, 1.0, "r3", 0, error="bad"))
    assert log.flush()
    frame = requestlog.read_log(store_mod.Store(root), f"{root}/log")
    logged = [requestlog.input_frame(frame.iloc[i]) for i in range(3)]
    assert [f.to_dict(orient="list") for f in logged[:2] if f is not None] == [
        {"a": [1.5], "b": [2.0]}, {"a": [1.0, 3.0], "b": [2.0, 4.0]},
    ]
    assert frame["input_values"][1].tolist() == [1.0, 2.0, 3.0, 4.0]  # row-major
    assert [json.loads(v) for v in frame["outputs"][:2]] == [[1], [0, 1]]
    assert logged[2] is None and frame["error"][2] == "bad"


def test_big_requests_flush_before_flush_rows(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requestlog, "FLUSH_INPUT_ROWS", 100)
    root = f"file://{tmp_path}"
    log = requestlog.RequestLog(store_mod.Store(root), requestlog.RequestLogConfig(f"{root}/log", flush_interval=60),
                                model="m", model_version="m-v1", digest="sha256:x", columns=("a",))
    log.start()
    try:
        log.record(requestlog.Entry(time.time(), "v2/infer", 200, 1.0, "r", 100, np.ones((100, 1)), np.ones(100)))
        deadline = time.monotonic() + 10
        while log.written < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.written == 1
    finally:
        log.close()


# ----- metrics: the bulk collector shows what prometheus_client's Counter and Histogram would ------------------
def test_bulk_request_metrics_equal_counter_and_histogram() -> None:
    observed = [("v2/infer", 200, 0.0004), ("v2/infer", 200, 0.001), ("v2/infer", 400, 0.02),
                ("v1/predict", 200, 0.0005), ("v2/infer", 200, 11.0), ("v2/infer", 500, 0.0)]
    ours = metrics.ServerMetrics("m", "m-v1", "sha256:x", classifier=True)
    registry = CollectorRegistry()
    base = ["model", "version", "digest"]
    requests = Counter("roost_requests", "Inference requests, by endpoint and HTTP status code.",
                       [*base, "endpoint", "code"], registry=registry)
    latency = Histogram("roost_request_latency_seconds", "Inference request latency, arrival to response, seconds.",
                        [*base, "endpoint"], buckets=metrics.LATENCY_BUCKETS, registry=registry)
    for endpoint, code, seconds in observed:
        ours.observe_request(endpoint, code, seconds)
        requests.labels("m", "m-v1", "sha256:x", endpoint, str(code)).inc()
        latency.labels("m", "m-v1", "sha256:x", endpoint).observe(seconds)

    def samples(text: bytes) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value if not s.name.endswith("_created") else 0.0)
            for family in text_string_to_metric_families(text.decode())
            if family.name.startswith(("roost_requests", "roost_request_latency"))
            for s in family.samples
        }

    assert samples(ours.render()) == samples(generate_latest(registry))


def test_metrics_fold_in_bulk_without_losing_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "FOLD_EVERY", 7)
    ours = metrics.ServerMetrics("m", "m-v1", "sha256:x", classifier=True)
    for i in range(50):
        ours.observe_request("v2/infer", 200 if i % 10 else 400, 0.001)
    text = ours.render().decode()
    labels = 'digest="sha256:x",endpoint="v2/infer",model="m",version="m-v1"'
    assert f'roost_requests_total{{code="200",{labels}}} 45.0' in text
    assert f"roost_request_latency_seconds_count{{{labels}}} 50.0" in text


# ----- the server: binary tensors end to end, and answers equal to scikit-learn's ------------------------------
@pytest.fixture(scope="module")
def lr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[servers.ThreadServer, Pipeline, Any]]:
    X, y = servers.breast_cancer()
    estimator = servers.fit_logistic(X, y)
    store = store_mod.Store(f"file://{tmp_path_factory.mktemp('store')}")
    config = servers.server_config(store, estimator, X)
    with servers.ThreadServer(servers.app_for(config, store)) as running:
        yield running, estimator, X


def test_binary_request_is_answered_as_the_json_one(lr_server: Any) -> None:
    running, estimator, X = lr_server
    rows = X.iloc[:50]
    body, n = binary_request(rows.to_numpy(), outputs=[{"name": "predict"}, {"name": "predict_proba",
                                                                           "parameters": {"binary_data": True}}])
    with httpx.Client(base_url=running.url, timeout=30) as client:
        answer = client.post(f"/v2/models/{servers.MODEL}/infer", content=body, headers={
            "content-type": "application/octet-stream", protocol.BINARY_HEADER: str(n)})
        as_json = client.post(f"/v2/models/{servers.MODEL}/infer", json=servers.v2_matrix(rows))
        refused = client.post(f"/v2/models/{servers.MODEL}/infer", content=body[:-8],
                              headers={protocol.BINARY_HEADER: str(n)})
        v1 = client.post(f"/v1/models/{servers.MODEL}:predict", content=body, headers={protocol.BINARY_HEADER: str(n)})
    assert answer.status_code == 200, answer.text
    length = int(answer.headers[protocol.BINARY_HEADER])
    head = orjson.loads(answer.content[:length])
    assert servers.output(head, "predict")["data"] == estimator.predict(rows).tolist()
    proba = np.frombuffer(answer.content[length:], dtype="<f8").reshape(-1, 2)
    assert np.array_equal(proba, np.asarray(servers.output(as_json.json(), "predict_proba")["data"]).reshape(-1, 2))
    assert refused.status_code == 400 and "binary_data_size" in refused.json()["error"]
    assert v1.status_code == 400 and "v2" in v1.json()["error"]


def test_server_metadata_names_the_binary_extension(lr_server: Any) -> None:
    running, _, _ = lr_server
    assert httpx.get(f"{running.url}/v2").json()["extensions"] == ["binary_tensor_data"]


def test_many_concurrent_one_row_requests_equal_estimator_predict(lr_server: Any) -> None:
    import concurrent.futures

    running, estimator, X = lr_server
    expected = estimator.predict(X).tolist()

    def ask(i: int) -> tuple[int, Any]:
        body = servers.v2_matrix(X.iloc[i:i + 1], outputs=[{"name": "predict"}])
        with httpx.Client(base_url=running.url, timeout=30) as client:
            return i, servers.output(client.post(f"/v2/models/{servers.MODEL}/infer", json=body).json(),
                                     "predict")["data"][0]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = dict(pool.map(ask, range(0, len(X), 3)))
    assert all(answers[i] == expected[i] for i in answers)
    frame = pd.DataFrame({"i": list(answers)})
    assert len(frame) == len(range(0, len(X), 3))


# ----- request log backpressure: a writer that falls behind on CPU holds requests back, a slow store never -----
def _one_row_entry(i: int) -> requestlog.Entry:
    return requestlog.Entry(time.time(), "v2/infer", 200, 1.0, f"r{i}", 1, np.array([[float(i)]]), np.array([1]))


def test_a_writer_behind_on_encoding_holds_requests_back(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # fsspec's in-memory filesystem: writes take microseconds, so the writer is behind on encoding only
    # (requests never wait while it is in the store: a disk that stalls a write would let the loop run free)
    root = f"memory://writer-behind-{uuid.uuid4().hex}"
    encode = requestlog.encode_batch

    def slow_encode(*args: Any, **kwargs: Any) -> bytes:
        until = time.perf_counter() + 0.03  # an encoder busy on the CPU, slower than the requests come
        while time.perf_counter() < until:
            pass
        return encode(*args, **kwargs)

    monkeypatch.setattr(requestlog, "encode_batch", slow_encode)
    log = requestlog.RequestLog(store_mod.Store(root), requestlog.RequestLogConfig(f"{root}/log", flush_rows=10),
                                model="m", model_version="m-v1", digest="sha256:x", columns=("a",))
    log.start()
    most = 0
    try:
        for i in range(1000):
            assert log.record(_one_row_entry(i))
            most = max(most, len(log._buffer))
    finally:
        log.close()
    # without the hand-over the loop outruns the writer and holds all 1000 rows at once; with it, about
    # BACKLOG_FACTOR * flush_rows
    assert most <= 2 * requestlog.BACKLOG_FACTOR * 10
    assert log.written == 1000 and log.dropped == 0


def test_a_slow_store_never_holds_requests_back(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    root = f"file://{tmp_path}"
    store = store_mod.Store(root)
    write = store.write_bytes

    def slow_write(uri: str, data: bytes) -> Any:
        time.sleep(0.3)
        return write(uri, data)

    monkeypatch.setattr(store, "write_bytes", slow_write)
    log = requestlog.RequestLog(store, requestlog.RequestLogConfig(f"{root}/log", flush_rows=10), model="m",
                                model_version="m-v1", digest="sha256:x", columns=("a",))
    log.start()
    try:
        started = time.perf_counter()
        for i in range(300):
            log.record(_one_row_entry(i))
        took = time.perf_counter() - started
    finally:
        log.close()
    assert took < 0.25  # well under one store write: no request waited on it
    assert log.written == 300
