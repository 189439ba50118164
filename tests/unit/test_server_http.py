"""The model server over real HTTP on loopback, with real scikit-learn models on the breast-cancer data.

Servers run in-process (uvicorn in a thread) except where a signal is the point (SIGTERM flushes the
request log), which runs ``roost.serving.server.main`` in a subprocess as ``roost serve`` does. The
helpers at the top are shared with ``test_router``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sklearn import base as sk_base
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from starlette.types import ASGIApp

from roost.serving import protocol, requestlog, server
from roost.storage import models
from roost.storage import store as store_mod
from tests.conftest import http_ready

MODEL = "breast-cancer"
VERSION_HEADER = "x-roost-model-version"
MAX_BODY = 64 * 1024


# ----- helpers (also used by test_router) -------------------------------------------------------------
def breast_cancer() -> tuple[pd.DataFrame, pd.Series]:
    """569 rows, 30 numeric features named with underscores, binary target (0 malignant, 1 benign)."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    return X, y


def fit_logistic(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)


def fit_forest(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    return make_pipeline(RandomForestClassifier(n_estimators=10, random_state=0)).fit(X, y)


def server_config(
    store: store_mod.Store,
    estimator: Any,
    X: pd.DataFrame,
    *,
    version: str = f"{MODEL}-v1",
    port: int = 0,
    request_log: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``roost serve`` config for ``estimator``, its artifact stored content-addressed in ``store``."""
    stored = store.put_bytes(models.dump(estimator))
    return {
        "modelName": MODEL,
        "modelVersion": version,
        "namespace": "default",
        "artifact": {"uri": stored.uri, "digest": stored.digest},
        "signature": models.signature_of(estimator, X, "target"),
        "store": store.root,
        "host": "127.0.0.1",
        "port": port,
        **({"requestLog": request_log} if request_log else {}),
        **extra,
    }


def app_for(config: dict[str, Any], store: store_mod.Store) -> ASGIApp:
    cfg = server.ServerConfig.from_dict(config)
    return server.create_app(cfg, server.load_model(store, cfg), store=store)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ThreadServer:
    """uvicorn serving ``app`` in a daemon thread on a loopback port chosen by the kernel."""

    def __init__(self, app: ASGIApp) -> None:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
        # without it Nagle + delayed ACKs cost 40 ms a request
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def v2_per_input(frame: pd.DataFrame, datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    """One tensor per input, shape [N], as the Open Inference Protocol examples write it."""
    inputs = [
        {"name": c, "shape": [len(frame)], "datatype": datatype, "data": frame[c].tolist()}
        for c in frame.columns
    ]
    return {"inputs": inputs, **extra}


def v2_matrix(frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """One [N, F] tensor named input-0, as KServe's scikit-learn examples write it."""
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(frame.shape),
                "datatype": "FP64",
                "data": frame.to_numpy().tolist(),
            }
        ],
        **extra,
    }


def v1_rows(frame: pd.DataFrame) -> dict[str, Any]:
    return {"instances": frame.to_numpy().tolist()}


def output(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(o for o in body["outputs"] if o["name"] == name)
    return found


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as ``{(sample name, sorted labels): value}``."""
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


# ----- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    return breast_cancer()


@pytest.fixture(scope="module")
def logistic(data: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    return fit_logistic(*data)


@pytest.fixture(scope="module")
def forest(data: tuple[pd.DataFrame, pd.Series]) -> Pipeline:
    X, y = data
    return fit_forest(X, y.map({0: "malignant", 1: "benign"}))  # string labels: BYTES on the wire


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> store_mod.Store:
    return store_mod.Store(f"file://{tmp_path_factory.mktemp('store')}")


@pytest.fixture(scope="module")
def lr_server(store: store_mod.Store, logistic: Pipeline, data: Any) -> Iterator[ThreadServer]:
    config = server_config(store, logistic, data[0], maxBodyBytes=MAX_BODY)
    with ThreadServer(app_for(config, store)) as running:
        yield running


@pytest.fixture(scope="module")
def rf_server(store: store_mod.Store, forest: Pipeline, data: Any) -> Iterator[ThreadServer]:
    with ThreadServer(
        app_for(server_config(store, forest, data[0], version=f"{MODEL}-rf"), store)
    ) as running:
        yield running


@pytest.fixture()
def lr(lr_server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lr_server.url, timeout=30) as client:
        yield client


@pytest.fixture()
def rf(rf_server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rf_server.url, timeout=30) as client:
        yield client


# ----- predictions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["logistic", "forest"])
def test_v1_predict_equals_estimator_predict(which: str, request: pytest.FixtureRequest, data: Any) -> None:
    client: httpx.Client = request.getfixturevalue("lr" if which == "logistic" else "rf")
    estimator = request.getfixturevalue(which)
    rows = data[0].iloc[::57]
    expected = estimator.predict(rows).tolist()
    by_list = client.post(f"/v1/models/{MODEL}:predict", json=v1_rows(rows))
    by_object = client.post(f"/v1/models/{MODEL}:predict", json={"instances": rows.to_dict(orient="records")})
    for response in (by_list, by_object):
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        assert response.headers[VERSION_HEADER] == f"{MODEL}-{'v1' if which == 'logistic' else 'rf'}"


def test_v1_probabilities_sum_to_one_and_equal_predict_proba(
    lr: httpx.Client, logistic: Pipeline, data: Any
) -> None:
    rows = data[0].iloc[:7]
    expected = logistic.predict_proba(rows)
    verb = lr.post(f"/v1/models/{MODEL}:predict_proba", json=v1_rows(rows)).json()["predictions"]
    asked = lr.post(
        f"/v1/models/{MODEL}:predict", json={**v1_rows(rows), "parameters": {"probabilities": True}}
    )
    for probabilities in (np.array(verb), np.array(asked.json()["probabilities"])):
        assert probabilities.shape == (7, 2)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-12, atol=1e-15)
    assert asked.json()["predictions"] == logistic.predict(rows).tolist()


def test_v2_infer_per_input_tensors_returns_predict_and_probabilities(
    lr: httpx.Client, logistic: Pipeline, data: Any
) -> None:
    rows = data[0].iloc[100:105]
    response = lr.post(f"/v2/models/{MODEL}/infer", json=v2_per_input(rows, id="req-42"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (MODEL, f"{MODEL}-v1", "req-42")
    predict, proba = output(body, "predict"), output(body, "predict_proba")
    assert predict == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [5],
        "data": logistic.predict(rows).tolist(),
    }
    assert proba["datatype"] == "FP64" and proba["shape"] == [5, 2]
    probabilities = np.array(proba["data"]).reshape(5, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(probabilities, logistic.predict_proba(rows), rtol=1e-12, atol=1e-15)


def test_v2_infer_accepts_n_by_1_shapes_and_narrow_datatypes(lr: httpx.Client, data: Any) -> None:
    rows = data[0].iloc[:3]
    body = v2_per_input(rows, "FP32")
    for tensor in body["inputs"]:
        tensor["shape"] = [3, 1]
        tensor["data"] = [[v] for v in tensor["data"]]
    response = lr.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    assert output(response.json(), "predict")["shape"] == [3]
    assert response.json()["id"]  # a generated id when the request has none


@pytest.mark.parametrize("which", ["logistic", "forest"])
def test_v2_infer_one_matrix_tensor(which: str, request: pytest.FixtureRequest, data: Any) -> None:
    client: httpx.Client = request.getfixturevalue("lr" if which == "logistic" else "rf")
    estimator = request.getfixturevalue(which)
    rows = data[0].iloc[200:260]
    body = client.post(
        f"/v2/models/{MODEL}/infer", json=v2_matrix(rows, outputs=[{"name": "predict"}])
    ).json()
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    assert output(body, "predict")["data"] == estimator.predict(rows).tolist()


def test_v2_string_class_labels_are_bytes(rf: httpx.Client, forest: Pipeline, data: Any) -> None:
    rows = data[0].iloc[::100]
    body = rf.post(f"/v2/models/{MODEL}/infer", json=v2_per_input(rows)).json()
    predict = output(body, "predict")
    assert predict["datatype"] == "BYTES" and set(predict["data"]) <= {"benign", "malignant"}
    assert predict["data"] == forest.predict(rows).tolist()
    proba = np.array(output(body, "predict_proba")["data"]).reshape(len(rows), 2)
    only = rf.post(
        f"/v2/models/{MODEL}/infer", json=v2_matrix(rows, outputs=[{"name": "predict_proba"}])
    ).json()
    assert [o["name"] for o in only["outputs"]] == ["predict_proba"]
    np.testing.assert_allclose(proba, forest.predict_proba(rows), rtol=1e-12, atol=1e-15)


def test_mixed_pipeline_takes_categorical_and_boolean_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "count": rng.integers(0, 5, size=n),
            "color": rng.choice(["red", "green", "blue"], size=n).astype(object),
            "flag": rng.random(n) < 0.5,
        }
    )
    target = (frame["size"] + (frame["color"] == "red") + frame["flag"] > 0.8).astype(int)
    estimator = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), ["size", "count"]),
                        (
                            "categorical",
                            make_pipeline(
                                SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore"),
                            ),
                            ["color"],
                        ),
                        ("boolean", "passthrough", ["flag"]),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, target)
    store = store_mod.Store(f"file://{tmp_path}")
    config = server_config(store, estimator, frame)
    assert [i["datatype"] for i in config["signature"]["inputs"]] == ["FP64", "INT64", "BYTES", "BOOL"]
    rows = frame.iloc[:6].copy()
    colors = rows["color"].tolist()
    colors[2] = None  # categorical inputs may be null: the pipeline imputes them
    rows["color"] = pd.Series(colors, index=rows.index, dtype=object)
    body = {
        "inputs": [
            {"name": "size", "shape": [6], "datatype": "FP64", "data": rows["size"].tolist()},
            {"name": "count", "shape": [6], "datatype": "INT32", "data": rows["count"].tolist()},
            {"name": "color", "shape": [6], "datatype": "BYTES", "data": colors},
            {"name": "flag", "shape": [6], "datatype": "BOOL", "data": rows["flag"].tolist()},
        ]
    }
    records = [dict(zip(rows.columns, r, strict=True)) for r in rows.itertuples(index=False)]
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in records]
    with ThreadServer(app_for(config, store)) as running, httpx.Client(base_url=running.url) as client:
        v2 = client.post(f"/v2/models/{MODEL}/infer", json=body)
        v1 = client.post(f"/v1/models/{MODEL}:predict", json={"instances": records})
    assert v2.status_code == 200, v2.text
    assert output(v2.json(), "predict")["data"] == estimator.predict(rows).tolist()
    assert v1.json()["predictions"] == estimator.predict(rows).tolist()


# ----- metadata and health -------------------------------------------------------------------------
def test_v2_metadata_lists_all_30_inputs_and_both_outputs(lr: httpx.Client, data: Any) -> None:
    meta = lr.get(f"/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL and meta["versions"] == [f"{MODEL}-v1"] and meta["platform"] == "sklearn"
    assert [i["name"] for i in meta["inputs"]] == list(data[0].columns)
    assert len(meta["inputs"]) == 30
    assert all(i["datatype"] == "FP64" and i["shape"] == [-1] for i in meta["inputs"])
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]


def test_health_readiness_and_server_metadata(lr: httpx.Client) -> None:
    assert lr.get("/v2/health/live").json() == {"live": True}
    assert lr.get("/v2/health/ready").json() == {"ready": True}
    assert lr.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    assert lr.get(f"/v1/models/{MODEL}").json() == {"name": MODEL, "ready": True}
    assert lr.get("/v1/models").json() == {"models": [MODEL]}
    assert lr.get("/v2").json()["name"] == "roost"
    assert lr.get(f"/v2/models/{MODEL}/versions/{MODEL}-v1").status_code == 200
    assert lr.get(f"/v2/models/{MODEL}/versions/{MODEL}-v9").status_code == 404


# ----- refusals ------------------------------------------------------------------------------------
def _without_first(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "inputs": body["inputs"][1:]}


def _with_extra(body: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": [*body["inputs"], {"name": "bogus", "shape": [1], "datatype": "FP64", "data": [1.0]}]}


def _retyped(body: dict[str, Any]) -> dict[str, Any]:
    first = {**body["inputs"][0], "datatype": "BYTES", "data": ["17.9"]}
    return {"inputs": [first, *body["inputs"][1:]]}


def _reshaped(body: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": [{**body["inputs"][0], "shape": [2]}, *body["inputs"][1:]]}


def _nulled(body: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": [{**body["inputs"][0], "data": [None]}, *body["inputs"][1:]]}


BAD_V2 = [
    (_without_first, 400, "missing input 'mean_radius'"),
    (_with_extra, 400, "unknown input 'bogus'"),
    (_retyped, 400, "input 'mean_radius': datatype BYTES does not match"),
    (_reshaped, 400, "input 'mean_radius': data has 1 values but shape [2] needs 2"),
    (_nulled, 400, "input 'mean_radius': null/NaN at row 0 is not allowed"),
]


@pytest.mark.parametrize(("change", "status", "message"), BAD_V2, ids=lambda v: getattr(v, "__name__", None))
def test_v2_bad_input_is_4xx_naming_the_problem(
    lr: httpx.Client, data: Any, change: Any, status: int, message: str
) -> None:
    response = lr.post(f"/v2/models/{MODEL}/infer", json=change(v2_per_input(data[0].iloc[:1])))
    assert response.status_code == status
    assert message in response.json()["error"]
    assert response.headers[VERSION_HEADER] == f"{MODEL}-v1"


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "message"),
    [
        ("POST", f"/v2/models/{MODEL}/infer", b"{not json", 400, "malformed JSON"),
        ("POST", f"/v2/models/{MODEL}/infer", b"", 400, "malformed JSON"),
        ("POST", f"/v2/models/{MODEL}/infer", b"[1, 2]", 400, "JSON object"),
        ("POST", "/v2/models/other/infer", b"{}", 404, "model 'other' not found"),
        ("GET", "/v2/models/other", None, 404, "model 'other' not found"),
        ("POST", "/v1/models/other:predict", b"{}", 404, "model 'other' not found"),
        ("POST", f"/v1/models/{MODEL}:predict", b'{"instances": [[1, 2]]}', 400, "list of 30 values"),
        (
            "POST",
            f"/v1/models/{MODEL}:predict",
            b'{"instances": [[' + b'"a", ' * 29 + b'"a"]]}',
            400,
            "input 'mean_radius': expected numbers",
        ),
        ("POST", f"/v1/models/{MODEL}:predict", b'{"instances": [{"mean_radius": 1}]}', 400, "missing input"),
        ("GET", "/nowhere", None, 404, "Not Found"),
        ("GET", f"/v2/models/{MODEL}/infer", None, 405, "Method Not Allowed"),
    ],
    ids=[
        "malformed",
        "empty",
        "not-object",
        "v2-name",
        "metadata-name",
        "v1-name",
        "short-row",
        "strings",
        "missing-key",
        "no-route",
        "wrong-method",
    ],
)
def test_bad_requests_are_4xx_json_and_the_server_keeps_answering(
    lr: httpx.Client,
    logistic: Pipeline,
    data: Any,
    method: str,
    path: str,
    content: bytes | None,
    status: int,
    message: str,
) -> None:
    response = lr.request(method, path, content=content)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert response.headers[VERSION_HEADER] == f"{MODEL}-v1"
    after = lr.post(f"/v1/models/{MODEL}:predict", json=v1_rows(data[0].iloc[:2]))
    assert after.json() == {"predictions": logistic.predict(data[0].iloc[:2]).tolist()}


def test_body_over_max_body_bytes_is_413(lr: httpx.Client, data: Any) -> None:
    rows = pd.concat([data[0]] * 2)  # about 300 kB of JSON, over the 64 kB limit of this server
    response = lr.post(f"/v1/models/{MODEL}:predict", json=v1_rows(rows))
    assert response.status_code == 413
    assert f"maxBodyBytes ({MAX_BODY} bytes)" in response.json()["error"]
    assert response.headers[VERSION_HEADER] == f"{MODEL}-v1"
    assert lr.get("/v2/health/ready").status_code == 200


def test_a_body_announced_over_the_limit_is_refused_before_it_is_sent(lr_server: ThreadServer) -> None:
    """``Expect: 100-continue`` with a Content-Length over maxBodyBytes: 413 at once, no 100 Continue."""
    with socket.create_connection(("127.0.0.1", lr_server.port), timeout=10) as conn:
        conn.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {MAX_BODY * 100}\r\nExpect: 100-continue\r\n\r\n".encode())
        head = conn.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head
    assert f"maxBodyBytes ({MAX_BODY} bytes)" in head


def test_values_the_model_cannot_take_are_a_400_and_the_server_keeps_answering(
    lr: httpx.Client, logistic: Pipeline, data: Any,
) -> None:
    huge = data[0].iloc[:1].copy()
    huge.loc[:, :] = 1.7e308  # finite, but the standard scaler overflows to infinity
    for path, body in ((f"/v2/models/{MODEL}/infer", v2_matrix(huge)), (f"/v1/models/{MODEL}:predict", v1_rows(huge))):
        refused = lr.post(path, json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"].startswith("the model cannot predict these inputs: ")
    after = lr.post(f"/v1/models/{MODEL}:predict", json=v1_rows(data[0].iloc[:2]))
    assert after.json() == {"predictions": logistic.predict(data[0].iloc[:2]).tolist()}


def test_json_booleans_in_numeric_data_are_refused(lr: httpx.Client, data: Any) -> None:
    body = v2_matrix(data[0].iloc[:1])
    body["inputs"][0]["data"][0][0] = True  # numpy would read it as 1.0
    refused = lr.post(f"/v2/models/{MODEL}/infer", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"] == "input 'input-0': datatype FP64 data holds JSON booleans"
    per_input = v2_per_input(data[0].iloc[:2])
    per_input["inputs"][3]["data"][1] = False
    assert lr.post(f"/v2/models/{MODEL}/infer", json=per_input).status_code == 400
    fine = v2_matrix(data[0].iloc[:1], parameters={"binary_data_output": False})  # "false" elsewhere is fine
    assert lr.post(f"/v2/models/{MODEL}/infer", json=fine).status_code == 200


@pytest.mark.parametrize(("given", "header"), [
    ("plain-id_42", "plain-id_42"), ("a\nb\r\x00\x7f", "a%0Ab%0D%00%7F"), ("snow ☃", "snow %E2%98%83"),
    ("100%", "100%"), ("50% ☃", "50%25 %E2%98%83"),
])
def test_any_v2_id_is_echoed_in_the_body_and_safely_in_the_header(
    lr: httpx.Client, data: Any, given: str, header: str,
) -> None:
    response = lr.post(f"/v2/models/{MODEL}/infer", json=v2_matrix(data[0].iloc[:1], id=given))
    assert response.status_code == 200
    assert response.json()["id"] == given
    assert response.headers["x-request-id"] == header


def test_a_utf8_request_id_header_is_read_as_utf8(lr: httpx.Client, data: Any) -> None:
    response = lr.post(f"/v2/models/{MODEL}/infer", json=v2_matrix(data[0].iloc[:1]),
                       headers={b"x-request-id": "café".encode()})
    assert response.status_code == 200
    assert response.json()["id"] == "café"
    assert response.headers["x-request-id"] == "caf%C3%A9"


def test_regressor_has_no_probabilities(tmp_path: Path, data: Any) -> None:
    from sklearn.linear_model import Ridge

    X, y = data
    store = store_mod.Store(f"file://{tmp_path}")
    config = server_config(store, make_pipeline(Ridge()).fit(X, y.astype(float)), X)
    with ThreadServer(app_for(config, store)) as running, httpx.Client(base_url=running.url) as client:
        refused = client.post(f"/v1/models/{MODEL}:predict_proba", json=v1_rows(X.iloc[:1]))
        served = client.post(f"/v2/models/{MODEL}/infer", json=v2_matrix(X.iloc[:3]))
        samples = scrape(client)
    assert refused.status_code == 400 and "gives no probabilities" in refused.json()["error"]
    assert [o["name"] for o in served.json()["outputs"]] == ["predict"]
    assert output(served.json(), "predict")["datatype"] == "FP64"
    assert metric(samples, "roost_prediction_value_bucket", le="+Inf") == 3


class Flaky(sk_base.BaseEstimator, sk_base.ClassifierMixin):  # type: ignore[misc]
    """A model with a bug: rows with a negative mean_radius make it raise."""

    classes_ = np.array([0, 1])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if (X["mean_radius"] < 0).any():
            raise RuntimeError("boom")
        return np.zeros(len(X), dtype=np.int64)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.tile([1.0, 0.0], (len(self.predict(X)), 1))


def test_a_failing_model_answers_500_and_the_server_keeps_serving(logistic: Pipeline, data: Any) -> None:
    X = data[0]
    signature = protocol.Signature.from_dict(models.signature_of(logistic, X, "target"))
    config = server.ServerConfig(
        MODEL, "flaky-v1", "default", "file:///none", "sha256:0", signature, "file:///none"
    )
    app = server.create_app(config, server.Model(Flaky(), signature, "sha256:0"))
    broken = X.iloc[:2].copy()
    broken["mean_radius"] = -1.0
    with ThreadServer(app) as running, httpx.Client(base_url=running.url) as client:
        failed = client.post(f"/v2/models/{MODEL}/infer", json=v2_matrix(broken))
        fine = client.post(f"/v2/models/{MODEL}/infer", json=v2_matrix(X.iloc[:2]))
        samples = scrape(client)
    assert failed.status_code == 500
    assert failed.json() == {"error": "prediction failed: RuntimeError: boom"}
    assert failed.headers[VERSION_HEADER] == "flaky-v1"
    assert fine.status_code == 200 and output(fine.json(), "predict")["data"] == [0, 0]
    assert metric(samples, "roost_requests_total", code="500") == 1
    assert metric(samples, "roost_requests_total", code="200") == 1


# ----- metrics -------------------------------------------------------------------------------------
def test_metrics_count_requests_latency_and_predicted_classes(
    rf: httpx.Client, forest: Pipeline, data: Any
) -> None:
    before = scrape(rf)
    rows = data[0].iloc[:20]
    rf.post(f"/v2/models/{MODEL}/infer", json=v2_matrix(rows))
    rf.post(f"/v1/models/{MODEL}:predict", json=v1_rows(rows))
    rf.post(f"/v1/models/{MODEL}:predict", content=b"{")
    after = scrape(rf)
    digest = rf.get(f"/v2/models/{MODEL}").json() and next(
        dict(ls)["digest"] for (n, ls) in after if n == "roost_requests_total"
    )
    labels = {"model": MODEL, "version": f"{MODEL}-rf", "digest": digest}

    def delta(name: str, **more: str) -> float:
        return metric(after, name, **labels, **more) - metric(before, name, **labels, **more)

    assert digest.startswith("sha256:")
    assert delta("roost_requests_total", endpoint="v2/infer", code="200") == 1
    assert delta("roost_requests_total", endpoint="v1/predict", code="200") == 1
    assert delta("roost_requests_total", endpoint="v1/predict", code="400") == 1
    assert delta("roost_request_latency_seconds_count", endpoint="v1/predict") == 2
    predicted = pd.Series(forest.predict(rows)).value_counts()
    for cls, count in predicted.items():
        assert delta("roost_predictions_total", **{"class": str(cls)}) == 2 * count


# ----- loading -------------------------------------------------------------------------------------
class Rogue(sk_base.BaseEstimator):  # type: ignore[misc]
    """A type outside the allowlist: loading it would import this module."""

    def predict(self, X: Any) -> Any:
        return X


@pytest.mark.parametrize("problem", ["DigestMismatch", "NotFound", "UntrustedType", "SignatureMismatch"])
def test_a_refused_artifact_exits_3_without_listening(
    tmp_path: Path, logistic: Pipeline, data: Any, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_mod.Store(f"file://{tmp_path}")
    port = free_port()
    config = server_config(store, logistic, data[0], port=port)
    if problem == "DigestMismatch":
        config["artifact"]["digest"] = "sha256:" + "0" * 64
    elif problem == "NotFound":
        config["artifact"]["uri"] = store.uri("objects", "missing")
    elif problem == "UntrustedType":
        stored = store.put_bytes(sio.dumps(Rogue()))
        config["artifact"] = {"uri": stored.uri, "digest": stored.digest}
    else:
        config["signature"]["inputs"] = config["signature"]["inputs"][::-1]
    path = tmp_path / "server.json"
    path.write_text(json.dumps(config))
    with caplog.at_level("ERROR"):
        assert server.main(str(path)) == 3
    assert problem in caplog.text
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_an_unreadable_config_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    path.write_text('{"modelName": "x"}')
    assert server.main(str(path)) == 2


# ----- request log ---------------------------------------------------------------------------------
def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    if not http_ready(f"{url}/v2/health/ready", timeout, process):
        code = process.poll()
        raise RuntimeError(f"the server exited with {code}" if code is not None else "the server did not become ready")


def serve_subprocess(config: dict[str, Any], tmp_path: Path, name: str = "server") -> subprocess.Popen[bytes]:
    """``roost serve`` as a subprocess (output in ``<tmp_path>/<name>.log``), ready to answer."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    code = "import sys; from roost.serving import server; sys.exit(server.main(sys.argv[1]))"
    with open(tmp_path / f"{name}.log", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(path)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_ready(f"http://127.0.0.1:{config['port']}", process)
    except RuntimeError:
        process.kill()
        raise RuntimeError((tmp_path / f"{name}.log").read_text()) from None
    return process


def test_request_log_holds_exactly_the_requests_sent_across_sigterm(
    tmp_path: Path, logistic: Pipeline, data: Any
) -> None:
    X = data[0]
    store = store_mod.Store(f"file://{tmp_path}/store")
    log_uri = store.uri("requestlog", "default", MODEL, f"{MODEL}-v1")
    port = free_port()
    config = server_config(
        store, logistic, X, port=port, request_log={"uri": log_uri, "flushRows": 5, "flushInterval": 60}
    )
    process = serve_subprocess(config, tmp_path)
    sent: list[tuple[str, int]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for i in range(9):
                r = client.post(
                    f"/v2/models/{MODEL}/infer", json=v2_per_input(X.iloc[i : i + 1], id=f"v2-{i}")
                )
                sent.append((f"v2-{i}", r.status_code))
            r = client.post(
                f"/v1/models/{MODEL}:predict", json=v1_rows(X.iloc[:3]), headers={"x-request-id": "v1-0"}
            )
            sent.append(("v1-0", r.status_code))
            r = client.post(
                f"/v2/models/{MODEL}/infer", json=_without_first(v2_per_input(X.iloc[:1], id="bad"))
            )
            sent.append(("bad", r.status_code))
            r = client.post("/v2/models/other/infer", json={}, headers={"x-request-id": "lost"})
            sent.append(("lost", r.status_code))
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, (tmp_path / "server.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert [s for _, s in sent] == [200] * 10 + [400, 404]
    frame = requestlog.read_log(store, log_uri)
    assert list(zip(frame["request_id"], frame["status"], strict=True)) == sent
    assert (
        len(os.listdir(log_uri.removeprefix("file://"))) >= 2
    )  # batches of 5 while serving, the rest at exit
    assert frame["rows"].tolist() == [1] * 9 + [3, 0, 0]
    first = frame.iloc[0]
    logged = requestlog.input_frame(first)
    assert logged is not None and logged.iloc[0].to_dict() == {c: X.iloc[0][c] for c in X.columns}
    assert json.loads(first["outputs"]) == logistic.predict(X.iloc[:1]).tolist()
    assert json.loads(frame.iloc[9]["outputs"]) == logistic.predict(X.iloc[:3]).tolist()
    assert requestlog.input_frame(frame.iloc[10]) is None and "missing input" in frame.iloc[10]["error"]
    assert set(frame["endpoint"]) == {"v2/infer", "v1/predict"}
    assert (frame["latency_ms"] > 0).all() and set(frame["model_version"]) == {f"{MODEL}-v1"}


def test_unwritable_request_log_store_drops_oldest_and_counts(
    tmp_path: Path, logistic: Pipeline, data: Any
) -> None:
    (tmp_path / "blocker").write_text("a file where the log directory should be")
    store = store_mod.Store(f"file://{tmp_path}")
    config = server_config(
        store,
        logistic,
        data[0],
        request_log={
            "uri": store.uri("blocker", "log"),
            "flushRows": 1,
            "flushInterval": 0.1,
            "maxBufferedRows": 3,
        },
    )
    app = app_for(config, store)
    with ThreadServer(app) as running, httpx.Client(base_url=running.url) as client:
        for i in range(6):
            assert (
                client.post(f"/v1/models/{MODEL}:predict", json=v1_rows(data[0].iloc[i : i + 1])).status_code
                == 200
            )
        samples = scrape(client)
    assert metric(samples, "roost_requestlog_dropped_total") == 3
    assert metric(samples, "roost_requestlog_buffered_rows") == 3
