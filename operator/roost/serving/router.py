"""``roost router``: a thin reverse proxy that splits one model's traffic between version backends.

It exists so that a version switch, a canary weight or a shadow-free rollout is a file rewrite, not a
restart: the operator atomically replaces the router's JSON config and the router picks it up within
0.2 s (it checks the file's mtime/inode at most every 0.2 s, on the request path, with one ``stat``).
Clients keep one URL (``/v2/models/<deployment>/infer``) across versions, as in KServe.

Config (JSON file, ``main(config_path)``)::

    {"modelName": "breast-cancer", "host": "127.0.0.1", "port": 8080,
     "backends": [{"version": "breast-cancer-v1", "url": "http://127.0.0.1:9001", "weight": 90},
                  {"version": "breast-cancer-v2", "url": "http://127.0.0.1:9002", "weight": 10}],
     "stickyBy": "header:x-user-id",          # or null
     "maxBodyBytes": 16777216}               # optional

Routing: each request goes to a backend drawn with probability ``weight / sum(weights)``. With
``stickyBy``, a request carrying that header goes where a stable hash of its value (sha256, the same in
every router replica and across restarts) falls on the cumulative weight line, so a key always reaches
the same version while weights stand; when the last-listed backend (the canary) gains weight, keys
already on it stay on it. The request (method, path, query, body, end-to-end headers) is forwarded
with a pooled ``httpx.AsyncClient``; the backend's status, body and headers come back, including
``x-roost-model-version`` (added from the config if the backend did not send it).

Failures: when the chosen backend cannot be reached (connection refused, or closed before any
response, e.g. a version being replaced), the request goes to the next candidate (:func:`candidates`:
other backends with weight > 0, then the previous config's, then weight-0 ones), each tried at most
once; only when none answers does the client get 503 ``{"error": "no backend reachable: ..."}``. A
backend that accepted the request but does not answer in time gives 504 (never retried: the request
may be running). Predictions have no side effects beyond the request log, so a request the failed
backend may have read is safe to send again. Own endpoints: ``GET /healthz`` and ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import itertools
import json
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost.serving import metrics as metrics_mod
from roost.serving import uvicorn_run

log = logging.getLogger("roost.serving.router")

VERSION_HEADER: Final = "x-roost-model-version"
CHECK_INTERVAL: Final = 0.2
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

#: Hop-by-hop headers (RFC 9110 section 7.6.1) and those the proxy recomputes; never forwarded.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    }
)
#: Failures that happen before the backend could have answered: safe to send elsewhere.
_RETRYABLE: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                     httpx.WriteError, httpx.PoolTimeout)


# ----- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """One model server: its ModelVersion, base URL and traffic weight (0..100)."""

    version: str
    url: str
    weight: int
    mirror: bool = False  # shadow: gets a copy of every request; its answers are discarded


@dataclass(frozen=True)
class RouterConfig:
    """The router's JSON config (see the module docstring)."""

    model_name: str
    backends: tuple[Backend, ...]
    sticky_header: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouterConfig:
        """Parse the camelCase config object.

        Raises:
            ValueError: a field is missing or malformed.
        """
        name = data.get("modelName")
        if not isinstance(name, str) or not name:
            raise ValueError("modelName must be a non-empty string")
        raw = data.get("backends")
        if not isinstance(raw, list):
            raise ValueError("backends must be a list")
        backends = []
        for i, b in enumerate(raw):
            if not isinstance(b, Mapping) or not isinstance(b.get("version"), str) or not b["version"]:
                raise ValueError(f"backends[{i}] must have a version")
            url = b.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"backends[{i}].url must be an http(s) URL, got {url!r}")
            weight = b.get("weight", 0)
            if type(weight) is not int or not 0 <= weight <= 100:
                raise ValueError(f"backends[{i}].weight must be an integer within 0..100, got {weight!r}")
            mirror = bool(b.get("mirror", False))
            if mirror and weight:
                raise ValueError(f"backends[{i}] is a mirror: its weight must be 0")
            backends.append(Backend(b["version"], url.rstrip("/"), weight, mirror))
        sticky = data.get("stickyBy")
        header = None
        if sticky is not None:
            if not isinstance(sticky, str) or not sticky.startswith("header:") or sticky == "header:":
                raise ValueError(f"stickyBy must be 'header:<name>' or null, got {sticky!r}")
            header = sticky.removeprefix("header:").lower()
        return cls(
            model_name=name,
            backends=tuple(backends),
            sticky_header=header,
            host=str(data.get("host") or "127.0.0.1"),
            port=int(data.get("port", 8080)),
            max_body_bytes=int(data.get("maxBodyBytes") or DEFAULT_MAX_BODY_BYTES),
        )


def load_config(path: str) -> RouterConfig:
    """Read and parse the config file. Raises OSError or ValueError."""
    with open(path, "rb") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError("the config must be a JSON object")
    return RouterConfig.from_dict(data)


class ConfigWatcher:
    """The current config, re-read when the file changes (checked at most every ``interval`` seconds).

    A config that fails to parse is logged and ignored: the last good one stays in force. The config
    before the last change is kept as :attr:`previous`, for retries during a switch.
    """

    def __init__(self, path: str, interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self.current = load_config(path)
        self.previous: RouterConfig | None = None
        self._key = self._stat()
        self._checked = time.monotonic()
        self.reloads = 0

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def get(self) -> RouterConfig:
        """The config in force, after at most one cheap ``stat`` per ``interval``."""
        now = time.monotonic()
        if now - self._checked < self.interval:
            return self.current
        self._checked = now
        key = self._stat()
        if key is None or key == self._key:
            return self.current
        self._key = key
        try:
            config = load_config(self.path)
        except (OSError, ValueError) as e:
            log.warning("Ignored router config %s: %s", self.path, e)
            return self.current
        if config != self.current:
            self.previous, self.current = self.current, config
            self.reloads += 1
            log.info("Reloaded router config: %s", describe(config))
        return self.current


def describe(config: RouterConfig) -> str:
    """``v1=90 v2=10`` for logs."""
    return " ".join(f"{b.version}={b.weight}" for b in config.backends) or "no backends"


# ----- choosing a backend (pure) ------------------------------------------------------------------
def sticky_point(key: str) -> float:
    """A stable point in [0, 1) for ``key`` (sha256; the same in every process, unlike ``hash``)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def choose(backends: Sequence[Backend], point: float) -> Backend | None:
    """The backend whose share of the cumulative weight line holds ``point`` (in [0, 1)).

    Backends with weight 0 never win; ``None`` when no backend has weight.
    """
    weighted = [b for b in backends if b.weight > 0]
    if not weighted:
        return None
    cumulative = list(itertools.accumulate(b.weight for b in weighted))
    index = bisect.bisect_right(cumulative, point * cumulative[-1])
    return weighted[min(index, len(weighted) - 1)]


def candidates(config: RouterConfig, previous: RouterConfig | None, first: Backend) -> list[Backend]:
    """Where to send a request whose first choice is ``first``, in order, each URL once: it, the
    other backends with weight > 0 (heaviest first), those of the previous config, and last the
    current config's weight-0 backends (during a switch the router may still hold the old config
    for up to 0.2 s while the old version is already gone; the new one is better than a 503)."""
    order = [first]
    order += sorted((b for b in config.backends if b.weight > 0), key=lambda b: -b.weight)
    if previous is not None:
        order += sorted((b for b in previous.backends if b.weight > 0), key=lambda b: -b.weight)
    order += [b for b in config.backends if b.weight == 0 and not b.mirror]
    seen: set[str] = set()
    unique = []
    for b in order:
        if b.url not in seen:
            seen.add(b.url)
            unique.append(b)
    return unique


# ----- the proxy -----------------------------------------------------------------------------------
class Router:
    """The ASGI endpoints: ``/healthz``, ``/metrics`` and everything else proxied."""

    def __init__(self, watcher: ConfigWatcher, *, timeout: float = 30.0) -> None:
        self.watcher = watcher
        self.metrics = metrics_mod.RouterMetrics(watcher.current.model_name)
        self.timeout = httpx.Timeout(timeout, connect=2.0)
        self.client: httpx.AsyncClient | None = None
        self._reloads_seen = 0
        self._mirrors: set[asyncio.Task[None]] = set()

    async def _mirror(self, backend: Backend, method: str, target: str, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> None:
        """Send a copy to a shadow backend; its answer (or failure) never reaches the client."""
        assert self.client is not None
        try:
            response = await self.client.request(method, backend.url + target, headers=headers, content=body)
            self.metrics.observe(backend.version, response.status_code)
        except httpx.HTTPError:
            self.metrics.observe(backend.version, 599)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # trust_env=False: a proxy from HTTP_PROXY must never sit between the router and its backends
        async with httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            self.client = client
            yield
        self.client = None

    async def healthz(self, request: Request) -> Response:
        config = self.watcher.get()
        backends = [{"version": b.version, "url": b.url, "weight": b.weight} for b in config.backends]
        body = {"ok": True, "model": config.model_name, "backends": backends}
        return Response(orjson.dumps(body), media_type="application/json")

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=metrics_mod.CONTENT_TYPE)

    async def proxy(self, request: Request) -> Response:
        """Forward ``request`` to a backend chosen by weight (or sticky key); retry unreachable ones."""
        config = self.watcher.get()
        if self.watcher.reloads != self._reloads_seen:
            self.metrics.reloads.inc(self.watcher.reloads - self._reloads_seen)
            self._reloads_seen = self.watcher.reloads
        body = await _read_body(request, config.max_body_bytes)
        if body is None:
            self.metrics.observe("none", 413)
            return _error(413, f"request body is larger than maxBodyBytes ({config.max_body_bytes} bytes)")
        key = request.headers.get(config.sticky_header) if config.sticky_header else None
        first = choose(config.backends, sticky_point(key) if key is not None else random.random())
        if first is None:
            self.metrics.observe("none", 503)
            return _error(503, f"no backend of {config.model_name!r} has weight > 0")
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in _HOP_BY_HOP]
        mirrors = [b for b in config.backends if b.mirror]
        if mirrors and not any(k.lower() == b"x-request-id" for k, _ in headers):
            headers.append((b"x-request-id", uuid.uuid4().hex.encode()))  # stable and shadow log the same id
        client_host = request.client.host if request.client else None
        if client_host:
            headers.append((b"x-forwarded-for", client_host.encode()))
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        target = raw_path.decode("latin-1")
        query = request.scope.get("query_string", b"")
        if query:
            target += "?" + query.decode("latin-1")
        failures = []
        assert self.client is not None, "the router's lifespan has not started"
        for mirror in mirrors:
            task = asyncio.create_task(self._mirror(mirror, request.method, target, headers, body))
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)
        for attempt, backend in enumerate(candidates(config, self.watcher.previous, first)):
            if attempt:
                self.metrics.retries.inc()
            try:
                outgoing = self.client.build_request(
                    request.method, backend.url + target, headers=headers, content=body
                )
                upstream = await self.client.send(outgoing, stream=True)
                try:
                    content = b"".join([chunk async for chunk in upstream.aiter_raw()])
                finally:
                    await upstream.aclose()
            except _RETRYABLE as e:
                failures.append(f"{backend.version} ({backend.url}): {type(e).__name__}")
                continue
            except httpx.TimeoutException as e:  # the backend took the request but did not answer
                self.metrics.observe(backend.version, 504)
                return _error(504, f"backend {backend.version} timed out: {type(e).__name__}")
            response = Response(content, upstream.status_code)
            raw_headers = [
                (k, v) for k, v in upstream.headers.raw if k.decode("latin-1").lower() not in _HOP_BY_HOP
            ]
            if not any(k.lower() == VERSION_HEADER.encode() for k, _ in raw_headers):
                raw_headers.append((VERSION_HEADER.encode(), backend.version.encode()))
            raw_headers.append((b"content-length", str(len(content)).encode()))
            response.raw_headers = raw_headers
            self.metrics.observe(backend.version, upstream.status_code)
            return response
        self.metrics.observe("none", 503)
        log.warning("No backend reachable for %s %s: %s", request.method, target, "; ".join(failures))
        return _error(503, f"no backend reachable: {'; '.join(failures)}")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The whole body (buffered: a retry must resend it), or None as soon as it exceeds ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status, media_type="application/json")


def create_app(config_path: str) -> Starlette:
    """The router's ASGI application for the config file at ``config_path``.

    Raises:
        OSError, ValueError: the config cannot be read.
    """
    router = Router(ConfigWatcher(config_path))
    app = Starlette(
        routes=[
            Route("/healthz", router.healthz, methods=["GET"]),
            Route("/metrics", router.metrics_endpoint, methods=["GET"]),
            Route("/{path:path}", router.proxy, methods=METHODS),
        ],
        lifespan=router.lifespan,
    )
    app.state.router = router
    return app


def main(config_path: str) -> int:
    """Run the router until SIGTERM/SIGINT; return the process exit code (2 for a bad config)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request would fill the disk
    try:
        app = create_app(config_path)
    except (OSError, ValueError) as e:
        log.error("Refused router config %s: %s", config_path, e)
        return 2
    router: Router = app.state.router
    config = router.watcher.current
    log.info("Routing %s on http://%s:%d: %s", config.model_name, config.host, config.port, describe(config))
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False,
                       lifespan="on", timeout_graceful_shutdown=25)
    )
    return uvicorn_run.run(server, not_started=1)
