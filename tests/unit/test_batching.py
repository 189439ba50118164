"""Adaptive batching never mixes up answers, and merges what arrives together.

The property test drives a real server on loopback with concurrent requests of random sizes, each
with distinct rows, and checks that every response carries exactly its own rows' predictions, on both
runtimes (scikit-learn in a worker thread, ONNX Runtime on the event loop).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roost.serving import batching, protocol, runtime, server
from roost.storage import store as store_mod
from tests.unit import test_server_http as servers

MODEL = servers.MODEL


# ----- the batcher alone -------------------------------------------------------------------------------
class Recorder:
    """A predict function that labels each row with its first value and records the batch sizes."""

    def __init__(self, fail_on: float | None = None) -> None:
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, inputs: np.ndarray, *, labels: bool, proba: bool) -> batching.Result:
        self.calls.append(len(inputs))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and (inputs[:, 0] == self.fail_on).any():
            raise RuntimeError("bad row")
        first = inputs[:, 0].copy()
        return first, np.column_stack([first, -first]) if proba else None


def _run(batcher: batching.Batcher, sizes: list[int]) -> list[Any]:
    async def main() -> list[Any]:
        starts = np.cumsum([0, *sizes])
        calls = [
            batcher.predict(np.arange(a, b, dtype=np.float64).reshape(-1, 1).repeat(2, axis=1), labels=True,
                            proba=i % 2 == 0)
            for i, (a, b) in enumerate(itertools.pairwise(starts))
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(main())


@pytest.mark.parametrize("inline", [True, False], ids=["on-the-loop", "in-a-thread"])
def test_concurrent_calls_are_merged_and_each_gets_its_own_rows(inline: bool) -> None:
    recorder = Recorder()
    batcher = batching.Batcher(recorder, batching.BatchingConfig(max_rows=10), inline=inline)
    sizes = [3, 1, 4, 1, 5, 9, 2, 6, 15]
    results = _run(batcher, sizes)
    batcher.close()
    offset = 0
    for i, (size, (labels, proba)) in enumerate(zip(sizes, results, strict=True)):
        assert labels.tolist() == list(range(offset, offset + size))
        assert (proba is not None) == (i % 2 == 0)
        if proba is not None:
            assert proba[:, 1].tolist() == [-v for v in range(offset, offset + size)]
        offset += size
    assert sum(recorder.calls) == sum(sizes)
    assert len(recorder.calls) < len(sizes)  # merged
    assert all(c <= 10 for c in recorder.calls if c != 15)  # 15 > maxBatchRows: alone
    assert (recorder.threads == {"MainThread"}) == inline


def test_a_failing_request_fails_alone() -> None:
    recorder = Recorder(fail_on=4.0)
    batcher = batching.Batcher(recorder, inline=True)
    results = _run(batcher, [2, 3, 2])  # rows 0-1, 2-4 (holds 4), 5-6
    assert results[0][0].tolist() == [0, 1] and results[2][0].tolist() == [5, 6]
    assert isinstance(results[1], RuntimeError)


def test_disabled_batching_predicts_each_request_alone() -> None:
    recorder = Recorder()
    batcher = batching.Batcher(recorder, batching.BatchingConfig(enabled=False), inline=True)
    _run(batcher, [1, 2, 3])
    assert recorder.calls == [1, 2, 3]


def test_a_wait_lets_a_batch_fill_up_to_max_rows() -> None:
    recorder = Recorder()
    config = batching.BatchingConfig(max_rows=6, max_wait=0.05)
    batcher = batching.Batcher(recorder, config, inline=True)

    async def main() -> None:
        def call(a: int) -> Any:
            return batcher.predict(np.full((2, 2), float(a)), labels=True, proba=False)

        first = [asyncio.ensure_future(call(0)), asyncio.ensure_future(call(1))]
        await asyncio.sleep(0.01)  # two waiting: the batch waits for more
        assert recorder.calls == []
        await asyncio.gather(*first, call(2))  # the third fills it: no more waiting

    asyncio.run(main())
    assert recorder.calls == [6]


def test_config_parses_and_refuses_out_of_range() -> None:
    parsed = batching.BatchingConfig.from_dict({"maxBatchRows": 32, "maxWaitMs": 2, "enabled": False})
    assert (parsed.max_rows, parsed.max_wait, parsed.enabled) == (32, 0.002, False)
    with pytest.raises(ValueError, match="maxBatchRows"):
        batching.BatchingConfig.from_dict({"maxBatchRows": 0})


# ----- a real server on loopback ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    return servers.breast_cancer()


@pytest.fixture(scope="module")
def logistic(data: tuple[pd.DataFrame, pd.Series]) -> Any:
    return servers.fit_logistic(*data)


@pytest.fixture(scope="module", params=["sklearn", "onnx"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, logistic: Any, data: Any,
) -> Iterator[tuple[servers.ThreadServer, server.Model]]:
    store = store_mod.Store(f"file://{tmp_path_factory.mktemp('store')}")
    X = data[0]
    config = servers.server_config(store, logistic, X, batching={"maxBatchRows": 16, "maxWaitMs": 1})
    if request.param == "onnx":
        config["runtime"] = runtime.validate(logistic, X, config["signature"], store)
        assert config["runtime"]["name"] == "onnx"
    cfg = server.ServerConfig.from_dict(config)
    model = server.load_model(store, cfg)
    assert model.runtime.name == request.param
    with servers.ThreadServer(server.create_app(cfg, model, store=store)) as running:
        yield running, model


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=32),
    protocol_of=st.lists(st.sampled_from(["v1", "v2"]), min_size=32, max_size=32),
    offset=st.integers(min_value=0, max_value=400),
)
def test_concurrent_requests_each_get_their_own_rows_predictions(
    running: tuple[servers.ThreadServer, server.Model], data: Any, logistic: Any,
    sizes: list[int], protocol_of: list[str], offset: int,
) -> None:
    live, _model = running
    X = data[0]
    starts = offset + np.cumsum([0, *sizes])  # distinct rows for every request (at most 400 + 160 < 569)
    chunks = [X.iloc[a:b] for a, b in itertools.pairwise(starts)]

    async def one(client: httpx.AsyncClient, rows: pd.DataFrame, kind: str) -> tuple[list[Any], Any]:
        if kind == "v1":
            r = await client.post(f"/v1/models/{MODEL}:predict", json=servers.v1_rows(rows))
            assert r.status_code == 200, r.text
            return r.json()["predictions"], None
        r = await client.post(f"/v2/models/{MODEL}/infer", json=servers.v2_matrix(rows))
        assert r.status_code == 200, r.text
        body = r.json()
        proba = np.array(servers.output(body, protocol.PREDICT_PROBA)["data"]).reshape(len(rows), 2)
        return servers.output(body, protocol.PREDICT)["data"], proba

    async def main() -> list[tuple[list[Any], Any]]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=30) as client:
            return await asyncio.gather(*(one(client, c, k) for c, k in zip(chunks, protocol_of, strict=False)))

    answers = asyncio.run(main())
    for rows, (labels, proba) in zip(chunks, answers, strict=True):
        assert labels == logistic.predict(rows).tolist()
        if proba is not None:
            np.testing.assert_allclose(proba, logistic.predict_proba(rows), rtol=0, atol=runtime.TOLERANCE)


def test_the_server_merges_concurrent_requests(
    running: tuple[servers.ThreadServer, server.Model], data: Any,
) -> None:
    live, _ = running
    rows = servers.v2_matrix(data[0].iloc[:1])

    async def main() -> None:
        async with httpx.AsyncClient(base_url=live.url, limits=httpx.Limits(max_connections=32)) as client:
            for _ in range(5):
                responses = await asyncio.gather(*(client.post(f"/v2/models/{MODEL}/infer", json=rows)
                                                   for _ in range(32)))
                assert all(r.status_code == 200 for r in responses)

    app: Any = live.server.config.app
    batcher = app.state.service.batcher
    start_batches, start_requests = batcher.batches, batcher.requests
    asyncio.run(main())
    assert batcher.requests - start_requests == 160
    assert batcher.batches - start_batches < 160
