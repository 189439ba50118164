"""The router: weighted and sticky routing, live config reloads, and version switches under load.

Backends are real model servers (uvicorn in threads) with real scikit-learn models; the helpers come
from ``test_server_http``.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roost.serving import router
from roost.storage import store as store_mod
from tests.unit import test_server_http as servers

MODEL = servers.MODEL
V1, V2 = f"{MODEL}-v1", f"{MODEL}-v2"


# ----- pure parts ----------------------------------------------------------------------------------
def backends(*weights: int) -> tuple[router.Backend, ...]:
    return tuple(
        router.Backend(f"v{i + 1}", f"http://127.0.0.1:{9001 + i}", w) for i, w in enumerate(weights)
    )


@pytest.mark.parametrize(
    ("weights", "point", "expected"),
    [
        ((100, 0), 0.0, "v1"),
        ((100, 0), 0.999, "v1"),
        ((0, 100), 0.0, "v2"),
        ((50, 50), 0.49, "v1"),
        ((50, 50), 0.5, "v2"),
        ((90, 10), 0.95, "v2"),
        ((0, 0), 0.5, None),
    ],
)
def test_choose_splits_the_unit_line_by_weight(
    weights: tuple[int, ...], point: float, expected: str | None
) -> None:
    chosen = router.choose(backends(*weights), point)
    assert (chosen.version if chosen else None) == expected


def test_sticky_keys_stay_with_the_canary_as_its_weight_grows() -> None:
    keys = [f"user-{i}" for i in range(2000)]
    points = [router.sticky_point(k) for k in keys]
    assert points == [router.sticky_point(k) for k in keys]  # stable
    at_10 = {
        k for k, p in zip(keys, points, strict=True) if router.choose(backends(90, 10), p).version == "v2"
    }
    at_50 = {
        k for k, p in zip(keys, points, strict=True) if router.choose(backends(50, 50), p).version == "v2"
    }
    assert at_10 <= at_50
    assert 100 < len(at_10) < 300 and 850 < len(at_50) < 1150


def test_candidates_after_a_failure_prefer_weighted_then_previous_then_idle_backends() -> None:
    old = router.RouterConfig(MODEL, backends(100, 0))
    new = router.RouterConfig(MODEL, (router.Backend("v3", "http://127.0.0.1:9003", 0), *backends(0, 100)))
    order = router.candidates(new, old, new.backends[2])
    assert [b.version for b in order] == ["v2", "v1", "v3"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modelName": ""}, "modelName"),
        ({"backends": {}}, "backends must be a list"),
        ({"backends": [{"version": "v1", "url": "127.0.0.1:1", "weight": 1}]}, "http"),
        ({"backends": [{"version": "v1", "url": "http://127.0.0.1:1", "weight": 101}]}, "0..100"),
        ({"backends": [{"url": "http://127.0.0.1:1", "weight": 1}]}, "version"),
        ({"stickyBy": "cookie:x"}, "stickyBy"),
    ],
    ids=["name", "backends-type", "url", "weight", "version", "sticky"],
)
def test_config_rejects_malformed(change: dict[str, Any], message: str) -> None:
    base = {"modelName": MODEL, "backends": [], "stickyBy": None}
    with pytest.raises(ValueError, match=message):
        router.RouterConfig.from_dict({**base, **change})


def write_config(path: Path, entries: list[tuple[str, str, int]], sticky: str | None = None) -> None:
    """Replace the router config atomically, as the operator does (write a temporary file, rename)."""
    config = {
        "modelName": MODEL,
        "host": "127.0.0.1",
        "port": 0,
        "stickyBy": sticky,
        "backends": [{"version": v, "url": u, "weight": w} for v, u, w in entries],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config))
    os.replace(tmp, path)


def test_watcher_reloads_changed_files_and_keeps_the_last_good_config(tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    write_config(path, [("v1", "http://127.0.0.1:1", 100)])
    watcher = router.ConfigWatcher(str(path), interval=0.0)
    write_config(path, [("v1", "http://127.0.0.1:1", 0), ("v2", "http://127.0.0.1:2", 100)])
    assert [b.version for b in watcher.get().backends] == ["v1", "v2"]
    assert watcher.previous is not None and watcher.previous.backends[0].weight == 100
    path.write_text("{not json")
    assert [b.weight for b in watcher.get().backends] == [0, 100]
    assert watcher.reloads == 1


# ----- over HTTP -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, servers.ThreadServer]]:
    X, y = servers.breast_cancer()
    store = store_mod.Store(f"file://{tmp_path_factory.mktemp('store')}")
    estimator = servers.fit_logistic(X, y)
    with (
        servers.ThreadServer(
            servers.app_for(servers.server_config(store, estimator, X, version=V1), store)
        ) as v1,
        servers.ThreadServer(
            servers.app_for(servers.server_config(store, estimator, X, version=V2), store)
        ) as v2,
    ):
        yield {V1: v1, V2: v2}


class RouterUnderTest:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "router.json"

    def configure(
        self, entries: list[tuple[str, str, int]], sticky: str | None = None, wait: bool = True
    ) -> None:
        write_config(self.path, entries, sticky)
        if wait and hasattr(self, "client"):  # until the router serves the new weights
            expected = [w for _, _, w in entries]
            deadline = time.monotonic() + 5
            while [b["weight"] for b in self.client.get("/healthz").json()["backends"]] != expected:
                assert time.monotonic() < deadline, "the router did not reload its config"
                time.sleep(0.05)


@pytest.fixture()
def make_router(tmp_path: Path) -> Iterator[Any]:
    started: list[servers.ThreadServer] = []
    clients: list[httpx.Client] = []

    def start(entries: list[tuple[str, str, int]], sticky: str | None = None) -> RouterUnderTest:
        under_test = RouterUnderTest(tmp_path)
        under_test.configure(entries, sticky)
        running = servers.ThreadServer(router.create_app(str(under_test.path))).__enter__()
        started.append(running)
        under_test.client = httpx.Client(base_url=running.url, timeout=30)  # type: ignore[attr-defined]
        clients.append(under_test.client)  # type: ignore[attr-defined]
        return under_test

    yield start
    for client in clients:
        client.close()
    for running in started:
        running.stop()


def versions_of(client: httpx.Client, n: int, path: str = "/v2/health/ready", **kwargs: Any) -> list[str]:
    found = []
    for _ in range(n):
        response = client.get(path, **kwargs)
        assert response.status_code == 200, response.text
        found.append(response.headers["x-roost-model-version"])
    return found


def test_weights_100_0_send_everything_to_one_backend(
    model_servers: dict[str, Any], make_router: Any
) -> None:
    urls = {v: s.url for v, s in model_servers.items()}
    r = make_router([(V1, urls[V1], 100), (V2, urls[V2], 0)])
    assert set(versions_of(r.client, 30)) == {V1}
    r.configure([(V1, urls[V1], 0), (V2, urls[V2], 100)])
    assert set(versions_of(r.client, 30)) == {V2}


def test_weights_50_50_split_roughly_in_half(model_servers: dict[str, Any], make_router: Any) -> None:
    urls = {v: s.url for v, s in model_servers.items()}
    r = make_router([(V1, urls[V1], 50), (V2, urls[V2], 50)])
    counts = collections.Counter(versions_of(r.client, 200))
    assert 60 <= counts[V1] <= 140 and counts[V1] + counts[V2] == 200  # binomial sd 7: over 5 sd of room


def test_sticky_keys_always_reach_the_same_version(model_servers: dict[str, Any], make_router: Any) -> None:
    urls = {v: s.url for v, s in model_servers.items()}
    r = make_router([(V1, urls[V1], 50), (V2, urls[V2], 50)], sticky="header:x-user-id")
    seen = {}
    for user in range(24):
        found = set(versions_of(r.client, 4, headers={"x-user-id": f"user-{user}"}))
        assert len(found) == 1, f"user-{user} reached {found}"
        seen[user] = found.pop()
    assert set(seen.values()) == {V1, V2}


def test_requests_pass_through_with_body_query_status_and_headers(
    model_servers: dict[str, Any], make_router: Any
) -> None:
    X, _ = servers.breast_cancer()
    direct = httpx.post(
        f"{model_servers[V1].url}/v1/models/{MODEL}:predict", json=servers.v1_rows(X.iloc[:4])
    )
    r = make_router([(V1, model_servers[V1].url, 100)])
    proxied = r.client.post(
        f"/v1/models/{MODEL}:predict?debug=1",
        json=servers.v1_rows(X.iloc[:4]),
        headers={"x-request-id": "abc"},
    )
    assert proxied.status_code == 200 and proxied.json() == direct.json()
    assert proxied.headers["x-request-id"] == "abc" and proxied.headers["x-roost-model-version"] == V1
    missing = r.client.get("/v2/models/other")
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
    assert r.client.get("/healthz").json()["model"] == MODEL
    assert 'roost_router_requests_total{code="200",model="breast-cancer",version="breast-cancer-v1"}' in (
        r.client.get("/metrics").text
    )


def test_unreachable_backends_give_503_with_the_reason(make_router: Any) -> None:
    dead = f"http://127.0.0.1:{servers.free_port()}"
    r = make_router([(V1, dead, 100)])
    response = r.client.get("/v2/health/ready")
    assert response.status_code == 503
    assert f"no backend reachable: {V1} ({dead}): ConnectError" in response.json()["error"]
    r.configure([(V1, dead, 0)])
    assert "weight > 0" in r.client.get("/v2/health/ready").json()["error"]


def test_a_dead_backend_is_retried_on_another(model_servers: dict[str, Any], make_router: Any) -> None:
    dead = f"http://127.0.0.1:{servers.free_port()}"
    r = make_router([(V1, dead, 50), (V2, model_servers[V2].url, 50)])
    assert set(versions_of(r.client, 20)) == {V2}
    assert "roost_router_retries_total" in r.client.get("/metrics").text


def test_switching_versions_under_load_fails_no_request(tmp_path: Path, make_router: Any) -> None:
    X, y = servers.breast_cancer()
    store = store_mod.Store(f"file://{tmp_path}/store")
    v1 = servers.ThreadServer(
        servers.app_for(servers.server_config(store, servers.fit_logistic(X, y), X, version=V1), store)
    ).__enter__()
    forest = servers.fit_forest(X, y)
    v2 = servers.ThreadServer(
        servers.app_for(servers.server_config(store, forest, X, version=V2), store)
    ).__enter__()
    try:
        r = make_router([(V1, v1.url, 100), (V2, v2.url, 0)])
        results: list[tuple[int, str]] = []
        errors: list[Exception] = []
        stop = threading.Event()
        body = servers.v2_matrix(X.iloc[:1])

        def load() -> None:
            with httpx.Client(base_url=r.client.base_url, timeout=30) as client:
                while not stop.is_set():
                    try:
                        response = client.post(f"/v2/models/{MODEL}/infer", json=body)
                        results.append(
                            (response.status_code, response.headers.get("x-roost-model-version", ""))
                        )
                    except Exception as e:  # a failed request is what this test is about
                        errors.append(e)

        def wait_for(version: str, count: int) -> None:
            deadline = time.monotonic() + 30
            while sum(1 for _, v in results if v == version) < count:
                assert time.monotonic() < deadline, f"fewer than {count} answers from {version}"
                time.sleep(0.01)

        sender = threading.Thread(target=load)
        sender.start()
        try:
            wait_for(V1, 20)
            r.configure([(V1, v1.url, 0), (V2, v2.url, 100)], wait=False)
            v1.stop()  # the operator retires the old version right away; the router may not know yet
            wait_for(V2, 20)
        finally:
            stop.set()
            sender.join(30)
    finally:
        v1.stop()
        v2.stop()
    assert not errors
    assert [s for s, _ in results if s != 200] == []
    versions = [v for _, v in results]
    assert versions[0] == V1 and versions[-1] == V2
    switch = versions.index(V2)
    assert set(versions[switch:]) == {V2}  # once switched, never back


def test_bodies_over_the_router_limit_are_413(tmp_path: Path, model_servers: dict[str, Any]) -> None:
    path = tmp_path / "router.json"
    write_config(path, [(V1, model_servers[V1].url, 100)])
    path.write_text(json.dumps({**json.loads(path.read_text()), "maxBodyBytes": 1000}))
    with servers.ThreadServer(router.create_app(str(path))) as running:
        response = httpx.post(f"{running.url}/v1/models/{MODEL}:predict", content=b"x" * 5000)
    assert response.status_code == 413 and "maxBodyBytes (1000 bytes)" in response.json()["error"]


def test_mirror_backend_must_have_zero_weight() -> None:
    with pytest.raises(ValueError, match="mirror"):
        router.RouterConfig.from_dict({"modelName": "m", "backends": [
            {"version": "v1", "url": "http://127.0.0.1:1", "weight": 100},
            {"version": "v2", "url": "http://127.0.0.1:2", "weight": 10, "mirror": True}]})


def test_mirror_is_never_a_retry_candidate() -> None:
    config = router.RouterConfig.from_dict({"modelName": "m", "backends": [
        {"version": "v1", "url": "http://127.0.0.1:1", "weight": 100},
        {"version": "v2", "url": "http://127.0.0.1:2", "weight": 0, "mirror": True}]})
    first = router.choose(config.backends, 0.5)
    assert first is not None and first.version == "v1"
    assert [b.version for b in router.candidates(config, None, first)] == ["v1"]
