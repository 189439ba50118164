"""``roost serve``: the model server of one ModelVersion, speaking KServe V1 and the Open Inference Protocol.

It exists so that every backend (local processes, Kubernetes Pods) serves a model the same way: load
the artifact from the store, refuse it unless its sha256 and its types check out, then answer
predictions over HTTP with Prometheus metrics and a request log that canary analysis and drift
detection read from the store. One process serves one version; switching versions without dropping a
request is the router's job (:mod:`roost.serving.router`).

Endpoints (``<name>`` is the roost.dev Deployment's name, ``modelName`` in the config):

==========================================  ==================================================================
``POST /v1/models/<name>:predict``          KServe V1: ``{"instances": [...]}`` -> ``{"predictions": [...]}``
``POST /v1/models/<name>:predict_proba``    KServe V1: probabilities per class, ``[[p, ...], ...]``
``GET  /v1/models/<name>``                  KServe V1: ``{"name", "ready": true}``
``GET  /v2``, ``/v2/health/live|ready``     Open Inference Protocol: server metadata and health
``GET  /v2/models/<name>[/ready]``          Open Inference Protocol: model metadata / readiness
``POST /v2/models/<name>/infer``            Open Inference Protocol: typed tensors in and out
``.../v2/models/<name>/versions/<v>/...``   the same, pinned to a version (404 unless ``<v>`` is served)
``GET  /metrics``                           Prometheus text format (:mod:`roost.serving.metrics`)
==========================================  ==================================================================

Status codes: 200; 400 for a body that breaks the protocol or the signature (``{"error": "..."}``
naming the input and the problem), and for rows the model itself refuses (scikit-learn's input
validation, e.g. a finite value that overflows a scaler) or answers with non-finite values; 404 for
another model name or path; 405; 413 over ``maxBodyBytes`` (from the announced Content-Length, before
the body is read); 500 when the model itself fails otherwise (the server keeps serving). Every response
carries ``x-roost-model-version`` and ``x-request-id`` (the request's id, percent-encoded unless it is
printable ASCII). Request parsing and response shapes live in :mod:`roost.serving.protocol`.

Config (JSON file, ``main(config_path)``)::

    {"modelName": "breast-cancer", "modelVersion": "breast-cancer-v1", "namespace": "default",
     "artifact": {"uri": "file:///.../objects/sha256/<hex>", "digest": "sha256:<hex>"},
     "signature": {"inputs": [...], "outputs": {...}, "target": "..."},
     "store": "file:///var/roost",
     "requestLog": {"uri": "file:///var/roost/requestlog/default/breast-cancer/breast-cancer-v1",
                    "sampleRate": 1.0, "flushInterval": 5, "flushRows": 1000, "maxBufferedRows": 100000},
     "host": "127.0.0.1", "port": 8080, "maxBodyBytes": 10485760,
     "runtime": {"name": "onnx", "artifact": {"uri": "...", "digest": "sha256:<hex>"}, "parity": {...}},
     "batching": {"enabled": true, "maxBatchRows": 64, "maxWaitMs": 0, "inlineRows": 1024}}

``runtime`` (optional) is the ModelVersion's ``status.runtime`` as the evaluate worker recorded it: the
server predicts with ONNX Runtime only when it names ``onnx`` and its parity passed (labels identical,
probabilities within 1e-5 of scikit-learn's on the holdout), after checking the ONNX bytes' digest;
otherwise with scikit-learn (:mod:`roost.serving.runtime`). ``batching`` (optional) tunes how concurrent
requests are merged into one predict call (:mod:`roost.serving.batching`).

The inference endpoints of the served model are answered by a lean ASGI path (exact path match, no
routing, no Request/Response objects); everything else, including the same endpoints under another
model name, goes through Starlette. Both share one implementation (:meth:`_Service.serve`).

Exit codes of :func:`main`: 0 after a graceful shutdown (SIGTERM/SIGINT), 1 when the port cannot be
bound, 2 for an unreadable config, 3 when the artifact is refused (``DigestMismatch``,
``UntrustedType``, ``InvalidArtifact``, ``SignatureMismatch``, not found; for the ONNX artifact too) —
then nothing is served.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import json
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio.to_thread
import numpy as np
import orjson
import uvicorn
from numpy.typing import NDArray
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost import errors
from roost.serving import batching as batching_mod
from roost.serving import metrics as metrics_mod
from roost.serving import protocol, requestlog, uvicorn_run
from roost.serving import runtime as runtime_mod
from roost.storage import models
from roost.storage import store as store_mod

log = logging.getLogger("roost.serving.server")

VERSION_HEADER: Final = "x-roost-model-version"
REQUEST_ID_HEADER: Final = "x-request-id"
DEFAULT_MAX_BODY_BYTES: Final = 10 * 1024 * 1024
DEFAULT_PORT: Final = 8080
GRACEFUL_SHUTDOWN_SECONDS: Final = 25  # under Kubernetes' default 30 s termination grace period

# endpoint labels, in metrics and in the request log
V1_PREDICT: Final = "v1/predict"
V1_PREDICT_PROBA: Final = "v1/predict_proba"
V2_INFER: Final = "v2/infer"

EXIT_OK, EXIT_BIND, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3
CLIENT_CLOSED_REQUEST: Final = 499  # nginx's status for a client that went away; logged, never sent

_JSON: Final = "application/json"
_JSON_BYTES: Final = b"application/json"
_BINARY_BYTES: Final = b"application/octet-stream"  # a body with binary tensor data after the JSON
_VERSION_HEADER_BYTES: Final = VERSION_HEADER.encode()
_BINARY_HEADER_BYTES: Final = protocol.BINARY_HEADER.encode()
_DUMPS_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY
_METRICS_EVERY: Final = 256  # answered requests whose predictions are counted in one go (and at each scrape)


def new_request_id() -> str:
    """A random version-4 UUID as 32 hex digits, as ``uuid.uuid4().hex`` but 10x faster: no UUID object and
    no system call (an id must be unique, not secret)."""
    n = random.getrandbits(128)
    n = (n & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    return f"{n:032x}"


def request_id_header(request_id: str) -> bytes:
    """The ``x-request-id`` response header's value for ``request_id``: as it is when printable ASCII, else
    percent-encoded (RFC 3986; control characters would break the HTTP response, and header values are
    not Unicode), so any ``id`` a client sends can be echoed."""
    if request_id.isascii() and request_id.isprintable():
        return request_id.encode()
    return urllib.parse.quote(request_id, safe=_HEADER_SAFE).encode()


def request_id_from_header(raw: bytes) -> str:
    """An ``x-request-id`` request header's value: UTF-8 when it decodes as such, else Latin-1 (RFC 9110)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_HEADER_SAFE: Final = "".join(c for c in map(chr, range(0x20, 0x7F)) if c != "%")


# ----- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerConfig:
    """The server's JSON config (see the module docstring for the file shape)."""

    model_name: str
    model_version: str
    namespace: str
    artifact_uri: str
    artifact_digest: str
    signature: protocol.Signature
    store: str
    request_log: requestlog.RequestLogConfig | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    runtime: runtime_mod.RuntimeConfig | None = None
    batching: batching_mod.BatchingConfig = field(default_factory=batching_mod.BatchingConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerConfig:
        """Parse the camelCase config object.

        Raises:
            ValueError: a required field is missing or malformed.
        """
        def text(key: str, value: Any) -> str:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key} must be a non-empty string")
            return value

        artifact = data.get("artifact")
        if not isinstance(artifact, Mapping):
            raise ValueError("artifact must be an object with uri and digest")
        signature = data.get("signature")
        if not isinstance(signature, Mapping):
            raise ValueError("signature must be an object")
        raw_log = data.get("requestLog")
        max_body = int(data.get("maxBodyBytes") or DEFAULT_MAX_BODY_BYTES)
        if max_body < 1:
            raise ValueError("maxBodyBytes must be positive")
        raw_runtime = data.get("runtime")
        if raw_runtime is not None and not isinstance(raw_runtime, Mapping):
            raise ValueError("runtime must be an object")
        raw_batching = data.get("batching") or {}
        if not isinstance(raw_batching, Mapping):
            raise ValueError("batching must be an object")
        return cls(
            model_name=text("modelName", data.get("modelName")),
            model_version=text("modelVersion", data.get("modelVersion")),
            namespace=str(data.get("namespace") or "default"),
            artifact_uri=text("artifact.uri", artifact.get("uri")),
            artifact_digest=text("artifact.digest", artifact.get("digest")),
            signature=protocol.Signature.from_dict(signature),
            store=text("store", data.get("store")),
            request_log=requestlog.RequestLogConfig.from_dict(raw_log) if raw_log else None,
            host=str(data.get("host") or "127.0.0.1"),
            port=int(data.get("port", DEFAULT_PORT)),
            max_body_bytes=max_body,
            runtime=runtime_mod.RuntimeConfig.from_dict(raw_runtime) if raw_runtime else None,
            batching=batching_mod.BatchingConfig.from_dict(raw_batching),
        )


def load_config(path: str) -> ServerConfig:
    """Read and parse the config file at ``path``.

    Raises:
        OSError: unreadable file.
        ValueError: not JSON, or not a valid config.
    """
    with open(path, "rb") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError("the config must be a JSON object")
    return ServerConfig.from_dict(data)


# ----- the model -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """A loaded, verified estimator and its signature; what the endpoints predict with.

    ``predictor`` is the runtime that answers (ONNX Runtime where parity passed); None means
    scikit-learn on ``estimator``.
    """

    estimator: Any
    signature: protocol.Signature
    digest: str
    predictor: runtime_mod.Predictor | None = None

    @property
    def has_proba(self) -> bool:
        return self.signature.is_classifier and hasattr(self.estimator, "predict_proba")

    @property
    def runtime(self) -> runtime_mod.Predictor:
        return self.predictor or runtime_mod.SklearnPredictor(self.estimator, self.signature)

    def predict(
        self, inputs: protocol.Inputs, *, labels: bool, proba: bool
    ) -> tuple[NDArray[Any], NDArray[Any] | None]:
        """Predict ``inputs`` (N rows in signature order: a block or a DataFrame).

        Returns:
            ``(labels [N], probabilities [N, n_classes] or None)``. When only probabilities are asked
            for, the labels are the most probable classes (what the request log and metrics record).
        """
        return self.runtime.predict(inputs, labels=labels, proba=proba)


def load_model(store: store_mod.Store, config: ServerConfig) -> Model:
    """Load the artifact, verifying its digest and types, and check it against the signature; then
    the ONNX graph when the config's ``runtime`` names one whose parity passed.

    Raises:
        roost.errors.PermanentError: reason ``DigestMismatch``, ``UntrustedType``, ``InvalidArtifact`` or
            ``SignatureMismatch`` (of the skops artifact or of the ONNX graph).
        roost.errors.ExternalError: reason ``NotFound`` or ``StoreUnreachable``.
    """
    estimator = models.load_verified(store, config.artifact_uri, config.artifact_digest)
    check_signature(estimator, config.signature)
    sklearn = runtime_mod.SklearnPredictor(estimator, config.signature)
    predictor: runtime_mod.Predictor = sklearn
    chosen = config.runtime
    if chosen is not None and chosen.name == runtime_mod.ONNX and not chosen.parity_passed:
        log.warning("Serving %s with scikit-learn: the ONNX parity recorded is not a pass (%s)",
                    config.model_version, dict(chosen.parity or {}))
    elif chosen is not None and chosen.name == runtime_mod.ONNX:
        try:
            predictor = runtime_mod.load_onnx(store, chosen, sklearn, config.signature)
        except ImportError as e:
            log.warning("Serving %s with scikit-learn: onnxruntime is not installed (%s)", config.model_version, e)
    elif chosen is not None and chosen.reason:
        log.info("Serving %s with scikit-learn: %s", config.model_version, chosen.reason)
    log.info("Predicting with %s", predictor.name)
    return Model(estimator, config.signature, config.artifact_digest, predictor)


def check_signature(estimator: Any, signature: protocol.Signature) -> None:
    """Refuse an estimator whose fitted columns or classes differ from the signature.

    Raises:
        roost.errors.PermanentError: reason ``SignatureMismatch``.
    """
    def mismatch(message: str) -> errors.PermanentError:
        return errors.PermanentError("SignatureMismatch", message)

    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None and [str(n) for n in fitted] != list(signature.names):
        raise mismatch(f"the model was fitted on columns {list(fitted)[:5]}... but the signature lists "
                       f"{list(signature.names)[:5]}...")
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is not None and n_features != len(signature.inputs):
        raise mismatch(f"the model takes {n_features} features, the signature lists {len(signature.inputs)}")
    if signature.is_classifier:
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise mismatch("the signature says classification but the model has no classes")
        if np.asarray(classes).tolist() != list(signature.classes):
            raise mismatch(f"the model's classes {np.asarray(classes).tolist()} differ from the signature's "
                           f"{list(signature.classes)}")
    if not hasattr(estimator, "predict"):
        raise mismatch("the artifact has no predict method")


# ----- the HTTP application ------------------------------------------------------------------------
def _package_version() -> str:
    try:
        return importlib.metadata.version("roost")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


class _VersionHeader:
    """Pure ASGI middleware adding ``x-roost-model-version`` to every response (lighter than
    Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, version: str) -> None:
        self.app = app
        self.header = (VERSION_HEADER.encode(), version.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


class _App(Starlette):
    """Starlette, except that ``POST`` to the served model's inference paths is answered directly.

    An exact path lookup replaces routing and the middleware stack, and the body and response go
    straight through ASGI messages (with the headers the stack would add); anything else (other
    methods, other model names, metadata, metrics) goes through Starlette as usual.
    """

    service: _Service | None = None
    paths: Mapping[str, str] = {}
    version: bytes = b""

    def serve_inference_paths(self, service: _Service) -> None:
        name, version = service.config.model_name, service.config.model_version
        self.service = service
        self.version = version.encode()
        self.paths = {
            f"/v1/models/{name}:predict": V1_PREDICT,
            f"/v1/models/{name}:predict_proba": V1_PREDICT_PROBA,
            f"/v2/models/{name}/infer": V2_INFER,
            f"/v2/models/{name}/versions/{version}/infer": V2_INFER,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.paths.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        service = self.service
        if endpoint is None or service is None or scope.get("root_path"):
            await super().__call__(scope, receive, send)
            return
        length, header_id, binary_length = _headers(scope["headers"])
        body: bytes | Coroutine[Any, Any, bytes]
        if length is not None and length.isdigit() and int(length) > service.config.max_body_bytes:
            body = service.read_asgi_body(receive, length)  # refused (413) before a byte is read
        else:
            # the usual request: its whole body in the first message (the reader is only made for the others)
            first = await receive()
            received: bytes = first.get("body", b"")
            body = received
            if (first["type"] != "http.request" or first.get("more_body", False)
                    or len(received) > service.config.max_body_bytes):
                body = service.read_asgi_body(receive, length, first)
        status, content, request_id, json_length = await service.serve(
            endpoint, body, header_id, None, binary_length,
        )
        headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", _JSON_BYTES if json_length is None else _BINARY_BYTES),
            (b"x-request-id", request_id_header(request_id)),
            (_VERSION_HEADER_BYTES, self.version),
        ]
        if json_length is not None:
            headers.append((_BINARY_HEADER_BYTES, str(json_length).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, str | None, bytes | None]:
    """``(content-length, x-request-id, inference-header-content-length)`` of ASGI headers (names are
    lower-case)."""
    length: bytes | None = None
    request_id: str | None = None
    binary_length: bytes | None = None
    for key, value in headers:
        if key == b"content-length":
            length = value
        elif key == b"x-request-id":
            request_id = request_id_from_header(value)
        elif key == _BINARY_HEADER_BYTES:
            binary_length = value
    return length, request_id, binary_length


class _Service:
    """The endpoints, bound to one model, its metrics and its request log."""

    def __init__(
        self,
        config: ServerConfig,
        model: Model,
        metrics: metrics_mod.ServerMetrics,
        request_log: requestlog.RequestLog | None,
    ) -> None:
        self.config = config
        self.model = model
        self.metrics = metrics
        self.request_log = request_log
        self.sample_rate = config.request_log.sample_rate if config.request_log else 0.0
        self.version_headers = {VERSION_HEADER: config.model_version}
        predictor = model.runtime
        self.batcher = batching_mod.Batcher(predictor.predict, config.batching, inline=predictor.inline)
        self.classes = np.asarray(getattr(model.estimator, "classes_", []))
        self.names = model.signature.names
        self.signature = model.signature
        self.has_proba = model.has_proba  # a property that walks the pipeline: asked once
        self.available = model.signature.output_names(self.has_proba)
        self.observe_request = metrics.observe_request
        self.encoder = protocol.V2Encoder(config.model_name, config.model_version, model.signature)
        self._predicted: list[NDArray[Any]] = []  # answered, not yet counted in the metrics
        self._server_metadata = orjson.dumps(protocol.server_metadata(_package_version()))
        self._metadata = orjson.dumps(
            protocol.model_metadata(
                config.model_name, config.model_version, model.signature, has_proba=model.has_proba
            )
        )

    # ----- helpers -------------------------------------------------------------------------------
    @staticmethod
    def json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        content = body if isinstance(body, bytes) else orjson.dumps(body, option=_DUMPS_OPTIONS)
        return Response(content, status, headers=headers, media_type=_JSON)

    def check_name(self, request: Request) -> None:
        self.check_path(request.path_params)

    def check_path(self, params: Mapping[str, Any]) -> None:
        name = params["name"]
        if name != self.config.model_name:
            raise protocol.not_found(name, self.config.model_name)
        version = params.get("version")
        if version is not None and version != self.config.model_version:
            raise protocol.ProtocolError(
                f"version {version!r} of model {name!r} not found; this server serves "
                f"{self.config.model_version!r}", 404, "ModelNotFound",
            )

    async def read_body(self, request: Request) -> bytes:
        """The body. Raises ProtocolError 413 over ``maxBodyBytes``, ClientDisconnect."""
        limit = self.config.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise protocol.too_large(limit)
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise protocol.too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_asgi_body(self, receive: Receive, length: bytes | None, first: Message | None = None) -> bytes:
        """As :meth:`read_body`, straight from ASGI ``receive`` (``first``: a message received already)."""
        limit = self.config.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            raise protocol.too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message, first = (first, None) if first is not None else (await receive(), None)
            if message["type"] != "http.request":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise protocol.too_large(limit)
            if not message.get("more_body", False):
                if not chunks:
                    return bytes(chunk)
                chunks.append(chunk)
                return b"".join(chunks)
            chunks.append(chunk)

    # ----- inference -----------------------------------------------------------------------------
    async def v1_predict(self, request: Request) -> Response:
        return await self.infer(request, V1_PREDICT)

    async def v1_predict_proba(self, request: Request) -> Response:
        return await self.infer(request, V1_PREDICT_PROBA)

    async def v2_infer(self, request: Request) -> Response:
        return await self.infer(request, V2_INFER)

    async def infer(self, request: Request, endpoint: str) -> Response:
        """Serve one inference request routed by Starlette (any model name; see :meth:`serve`)."""
        binary_length = request.headers.get(protocol.BINARY_HEADER)
        header_id = request.headers.get(REQUEST_ID_HEADER)
        status, content, request_id, json_length = await self.serve(
            endpoint, self.read_body(request),
            request_id_from_header(header_id.encode("latin-1")) if header_id is not None else None,
            request.path_params, binary_length.encode("latin-1") if binary_length is not None else None,
        )
        headers = {REQUEST_ID_HEADER: request_id_header(request_id).decode()}
        if json_length is not None:
            headers[protocol.BINARY_HEADER] = str(json_length)
        return Response(content, status, headers=headers,
                        media_type=_JSON if json_length is None else _BINARY_BYTES.decode())

    async def serve(
        self,
        endpoint: str,
        read: Coroutine[Any, Any, bytes] | bytes,
        header_id: str | None,
        path_params: Mapping[str, Any] | None,
        binary_length: bytes | None = None,
    ) -> tuple[int, bytes, str, int | None]:
        """Serve one inference request; count it, time it and log it whatever its outcome.

        Args:
            endpoint: ``V1_PREDICT``, ``V1_PREDICT_PROBA`` or ``V2_INFER``.
            read: the body, or a coroutine reading it (raising ProtocolError 413 or ClientDisconnect),
                closed unawaited when the path is refused first.
            header_id: the ``x-request-id`` header, if any.
            path_params: the route's ``name`` (and ``version``) to check; None when already matched.
            binary_length: the ``inference-header-content-length`` header (binary tensor data), if any.

        Returns:
            ``(status, body, request id, JSON length)``: the body is JSON, followed by binary tensor data
            when the JSON length is not None (it then goes in the ``inference-header-content-length`` header).
        """
        arrived = time.time()
        start = time.perf_counter()
        request_id: str | None = None
        inputs: protocol.Inputs | None = None
        predicted: NDArray[Any] | None = None
        error: str | None = None
        json_length: int | None = None
        try:
            if path_params is not None:
                self.check_path(path_params)
            body = read if type(read) is bytes else await read  # type: ignore[misc]
            binary: memoryview | None = None
            if binary_length is not None:
                body, binary = protocol.split_binary(body, binary_length)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise protocol.ProtocolError(f"malformed JSON: {e}") from e
            if endpoint == V2_INFER:
                if type(payload) is dict:
                    given = payload.get("id")
                    request_id = given if type(given) is str else None  # known even if the rest is refused
                _, inputs, wanted, binary_outputs = protocol.parse_v2(
                    payload, self.signature, self.available, binary, from_json=True,
                    booleans=b"true" in body or b"false" in body,
                )
                want_labels, want_proba = protocol.PREDICT in wanted, protocol.PREDICT_PROBA in wanted
            else:
                if binary is not None:
                    raise protocol.ProtocolError("binary tensor data is an Open Inference Protocol (v2) extension")
                v1 = protocol.parse_v1_request(payload, self.signature, proba_verb=endpoint == V1_PREDICT_PROBA)
                inputs = v1.inputs
                if v1.probabilities and not self.has_proba:
                    name, task = self.config.model_name, self.signature.task
                    raise protocol.ProtocolError(f"model {name!r} gives no probabilities ({task})")
                want_labels, want_proba = endpoint == V1_PREDICT, v1.probabilities
            request_id = request_id or header_id or new_request_id()
            labels, probabilities = await self.batcher.predict(inputs, labels=want_labels, proba=want_proba)
            if not want_labels and probabilities is not None:  # the most probable classes, for log and metrics
                labels = self.classes[np.argmax(probabilities, axis=1)]
            predicted = labels
            if endpoint == V2_INFER:
                outputs: dict[str, NDArray[Any]] = {protocol.PREDICT: labels} if want_labels else {}
                if probabilities is not None:
                    outputs[protocol.PREDICT_PROBA] = probabilities
                content, json_length = self.encoder.encode(request_id, outputs, binary_outputs)
            else:
                response = protocol.build_v1_response(
                    predicted if want_labels else None, probabilities, proba_verb=endpoint == V1_PREDICT_PROBA
                )
                content = orjson.dumps(response, option=_DUMPS_OPTIONS)
            status = 200
        except protocol.ProtocolError as e:
            status, error = e.status, e.message
        except ClientDisconnect:  # not the model's fault: kept out of the 5xx error rate
            status, error = CLIENT_CLOSED_REQUEST, "the client disconnected before sending the whole body"
        except Exception as e:  # the model (or a bug) failed: answer 500 and keep serving
            log.exception("Failed to predict for request %s", request_id)
            status, error = 500, f"prediction failed: {type(e).__name__}: {e}"
        if error is not None:
            if type(read) is not bytes:
                read.close()  # type: ignore[union-attr]  # unawaited when the path was refused (else a no-op)
            content = orjson.dumps({"error": error})
            predicted = None
            json_length = None
        request_id = request_id or header_id or new_request_id()
        latency = time.perf_counter() - start
        self.observe_request(endpoint, status, latency)
        if predicted is not None:
            pending = self._predicted
            pending.append(predicted)
            if len(pending) >= _METRICS_EVERY:
                self.count_predictions()
        if self.request_log is not None:
            # the validated block and the predictions as they are (an Entry's fields, as a plain tuple): the
            # log's writer thread encodes them
            if predicted is None:
                self.request_log.record((arrived, endpoint, status, latency * 1000.0, request_id, 0, None, None, error))
            elif self.sample_rate >= 1.0 or random.random() < self.sample_rate:
                self.request_log.record((arrived, endpoint, status, latency * 1000.0, request_id, len(predicted),
                                         inputs, predicted, None))
            else:
                self.request_log.record((arrived, endpoint, status, latency * 1000.0, request_id, len(predicted),
                                         None, None, None))
        return status, content, request_id, json_length

    # ----- metadata and health -------------------------------------------------------------------
    async def v1_models(self, request: Request) -> Response:
        return self.json({"models": [self.config.model_name]})

    async def v1_model(self, request: Request) -> Response:
        self.check_name(request)
        return self.json({"name": self.config.model_name, "ready": True})

    async def v2_server(self, request: Request) -> Response:
        return self.json(self._server_metadata)

    async def live(self, request: Request) -> Response:
        return self.json({"live": True})

    async def ready(self, request: Request) -> Response:
        return self.json({"ready": True})

    async def v2_model(self, request: Request) -> Response:
        self.check_name(request)
        return self.json(self._metadata)

    async def v2_model_ready(self, request: Request) -> Response:
        self.check_name(request)
        return self.json({"name": self.config.model_name, "ready": True})

    def count_predictions(self) -> None:
        """Count the predictions answered since the last count (one ``np.unique`` for many requests)."""
        if self._predicted:
            pending, self._predicted = self._predicted, []
            self.metrics.observe_predictions(pending[0] if len(pending) == 1 else np.concatenate(pending))

    async def metrics_endpoint(self, request: Request) -> Response:
        self.count_predictions()
        return Response(self.metrics.render(), media_type=metrics_mod.CONTENT_TYPE)


async def _protocol_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, protocol.ProtocolError)
    return _Service.json({"error": exc.message}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = {"error": f"{exc.detail}: {request.method} {request.url.path}"}
    return _Service.json(body, exc.status_code, headers=exc.headers)  # 405 keeps its Allow header


def _unexpected_error(version: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The 500 for an exception that escaped an endpoint. Starlette answers it from its outermost
    middleware, outside :class:`_VersionHeader`, so the header is set here."""

    async def handle(request: Request, exc: Exception) -> Response:
        log.error("Failed to serve %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        body = {"error": f"internal error: {type(exc).__name__}: {exc}"}
        return _Service.json(body, 500, headers={VERSION_HEADER: version})

    return handle


def create_app(
    config: ServerConfig,
    model: Model,
    *,
    store: store_mod.Store | None = None,
    metrics: metrics_mod.ServerMetrics | None = None,
) -> Starlette:
    """The ASGI application serving ``model``.

    The request log (when configured) starts with the app's lifespan and is flushed when it ends.
    ``app.state.metrics`` and ``app.state.request_log`` expose both for callers and tests.
    """
    metrics = metrics or metrics_mod.ServerMetrics(
        config.model_name, config.model_version, model.digest, classifier=model.signature.is_classifier
    )
    request_log = None
    if config.request_log is not None:
        request_log = requestlog.RequestLog(
            store or store_mod.Store(config.store),
            config.request_log,
            model=config.model_name,
            model_version=config.model_version,
            digest=model.digest,
            on_drop=metrics.requestlog_dropped.inc,
            columns=model.signature.names,
        )
        metrics.track_buffer(lambda: float(request_log.buffered) if request_log else 0.0)
    service = _Service(config, model, metrics, request_log)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if request_log is not None:
            request_log.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.batcher.close)
            batcher = service.batcher
            if batcher.batches:
                log.info("Answered %d requests (%d rows) in %d predict calls", batcher.requests, batcher.rows,
                         batcher.batches)
            if request_log is not None:
                await anyio.to_thread.run_sync(request_log.close)
                log.info("Flushed request log: %d rows written, %d dropped",
                         request_log.written, request_log.dropped)

    routes = [
        Route("/v1/models", service.v1_models, methods=["GET"]),
        Route("/v1/models/{name}:predict", service.v1_predict, methods=["POST"]),
        Route("/v1/models/{name}:predict_proba", service.v1_predict_proba, methods=["POST"]),
        Route("/v1/models/{name}", service.v1_model, methods=["GET"]),
        Route("/v2", service.v2_server, methods=["GET"]),
        Route("/v2/health/live", service.live, methods=["GET"]),
        Route("/v2/health/ready", service.ready, methods=["GET"]),
        Route("/v2/models/{name}", service.v2_model, methods=["GET"]),
        Route("/v2/models/{name}/ready", service.v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", service.v2_infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}", service.v2_model, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", service.v2_model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/infer", service.v2_infer, methods=["POST"]),
        Route("/metrics", service.metrics_endpoint, methods=["GET"]),
    ]
    app = _App(
        routes=routes,
        middleware=[Middleware(_VersionHeader, version=config.model_version)],
        exception_handlers={
            protocol.ProtocolError: _protocol_error,
            HTTPException: _http_error,
            Exception: _unexpected_error(config.model_version),
        },
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.request_log = request_log
    app.state.service = service
    app.serve_inference_paths(service)
    return app


# ----- the process ---------------------------------------------------------------------------------
def main(config_path: str) -> int:
    """Run the model server until SIGTERM/SIGINT; return the process exit code.

    The artifact is loaded and verified before the port is bound: a refused artifact is one log line
    and exit code 3, and nothing listens.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = load_config(config_path)
    except (OSError, ValueError) as e:
        log.error("Refused config %s: %s", config_path, e)
        return EXIT_CONFIG
    try:
        store = store_mod.Store(config.store)
        model = load_model(store, config)
    except errors.RoostError as e:
        log.error("Refused to serve %s: %s: %s", config.model_version, e.reason, e.message)
        return EXIT_REFUSED
    except Exception as e:  # e.g. an fsspec protocol that is not installed
        log.error("Refused to serve %s (%s): %s: %s", config.model_version, config.artifact_uri,
                  type(e).__name__, e)
        return EXIT_REFUSED
    log.info("Loaded model %s version %s (%s)", config.model_name, config.model_version,
             config.artifact_digest)
    app = create_app(config, model, store=store)
    gc.collect()
    gc.freeze()  # the model's many objects are never garbage: keep them out of every collection
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_level="warning", access_log=False,
            lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, proxy_headers=False,
            server_header=False,  # one header less to write and check per response
        )
    )
    log.info("Serving %s on http://%s:%d", config.model_name, config.host, config.port)
    code = uvicorn_run.run(server, not_started=EXIT_BIND)
    if code == EXIT_OK:
        log.info("Stopped serving %s", config.model_name)
    return code

