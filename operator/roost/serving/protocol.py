"""The inference protocols, as pure functions: parse and validate requests, build responses.

Two wire protocols are spoken, both with the model name in the URL (the roost.dev Deployment's name):

- KServe V1 (https://kserve.github.io/website/latest/modelserving/data_plane/v1_protocol/):
  ``POST /v1/models/<name>:predict`` with ``{"instances": [...]}`` answered by ``{"predictions": [...]}``.
- The Open Inference Protocol, a.k.a. KServe V2
  (https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md):
  ``POST /v2/models/<name>/infer`` with typed tensors ``{"id", "inputs": [{"name", "shape", "datatype",
  "data"}], "outputs"}`` answered by ``{"model_name", "model_version", "id", "outputs": [...]}``.

Every request is checked against the model's *signature* (recorded at training time) before the model
sees it: names, datatypes, shapes and nulls. The checks are vectorised (numpy and pandas' C type
inference over whole columns); only the error path walks values one by one, to name the culprit.
When every input of the signature is numeric with one datatype (all FP64 or all INT64), a parsed
request holds its rows as one ``[N, F]`` numpy block in signature order rather than a DataFrame: the
server batches and predicts on blocks without building a DataFrame per request (``.frame`` builds one
on demand).
The Open Inference Protocol's binary tensor data extension is spoken too (as Triton and KServe do): with
an ``Inference-Header-Content-Length: <n>`` header the first ``n`` body bytes are the JSON request and a
tensor may carry ``"parameters": {"binary_data_size": <bytes>}`` instead of ``data``, its values raw and
little-endian after the JSON, tensor after tensor (BYTES elements each prefixed by a 4-byte length);
outputs are answered the same way when asked (``binary_data_output`` or an output's ``binary_data``).
The common request -- one ``[N, F]`` numeric tensor for a numeric signature -- takes a fast path that
accepts and refuses exactly what the general checks do (it hands anything unusual to them).
A request that fails a check raises :class:`ProtocolError` with the HTTP status to answer (400, 404,
413) and a message that names the input and the problem. This module does no I/O and knows nothing
about HTTP frameworks, so every rule here is unit-tested without a server.
"""

from __future__ import annotations

import array
import functools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import numpy as np
import orjson
import pandas as pd
from numpy.typing import NDArray
from pandas.api.types import infer_dtype

from roost import errors

#: Output tensor names, as KServe's scikit-learn runtime names them.
PREDICT: Final = "predict"
PREDICT_PROBA: Final = "predict_proba"

#: The tensor datatypes of the Open Inference Protocol that carry numbers.
FLOAT_DATATYPES: Final = frozenset({"FP16", "FP32", "FP64"})
INT_DATATYPES: Final = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
V2_DATATYPES: Final = FLOAT_DATATYPES | INT_DATATYPES | {"BOOL", "BYTES"}

#: What a signature may declare per input (``datatype``) and per task (``outputs.datatype``).
INPUT_DATATYPES: Final = frozenset({"FP64", "INT64", "BOOL", "BYTES"})
INPUT_TYPES: Final = frozenset({"numeric", "categorical", "boolean"})
TASKS: Final = frozenset({"classification", "regression"})
OUTPUT_DATATYPES: Final = frozenset({"INT64", "FP64", "BYTES", "BOOL"})

#: Which wire datatypes a signature datatype accepts (floats become INT64 only when integral).
_COMPATIBLE: Final[Mapping[str, frozenset[str]]] = {
    "FP64": FLOAT_DATATYPES | INT_DATATYPES,
    "INT64": FLOAT_DATATYPES | INT_DATATYPES,
    "BOOL": frozenset({"BOOL"}),
    "BYTES": frozenset({"BYTES"}),
}
_EXPECTED: Final[Mapping[str, str]] = {
    "FP64": "numbers",
    "INT64": "integers",
    "BOOL": "booleans",
    "BYTES": "strings",
}
#: pandas' ``infer_dtype`` verdicts -> the numpy kind they can be converted from.
_INFERRED_KINDS: Final[Mapping[str, str]] = {
    "floating": "f", "integer": "i", "mixed-integer-float": "f", "boolean": "b", "string": "U",
}


#: Little-endian numpy dtypes of binary tensor data, by datatype (BYTES is length-prefixed instead).
BINARY_DTYPES: Final[Mapping[str, str]] = {
    "BOOL": "|b1", "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "UINT8": "|u1",
    "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
#: The request header of the binary tensor data extension: the length of the JSON part of the body.
BINARY_HEADER: Final = "inference-header-content-length"


class ProtocolError(errors.PermanentError):
    """A request the server refuses: ``status`` is the HTTP status code, ``message`` says why.

    400 for anything wrong in the body, 404 for an unknown model, 413 for a body over the limit.
    """

    def __init__(self, message: str, status: int = 400, reason: str = "InvalidRequest") -> None:
        super().__init__(reason, message)
        self.status = status


def not_found(name: str, served: str) -> ProtocolError:
    """The 404 for a model name this server does not serve."""
    return ProtocolError(f"model {name!r} not found; this server serves {served!r}", 404, "ModelNotFound")


def too_large(limit: int) -> ProtocolError:
    """The 413 for a body over ``maxBodyBytes``."""
    return ProtocolError(f"request body is larger than maxBodyBytes ({limit} bytes)", 413, "PayloadTooLarge")


def unpredictable(detail: str) -> ProtocolError:
    """The 400 for rows the model itself refuses (its input validation) or cannot answer with finite values."""
    return ProtocolError(f"the model cannot predict these inputs: {detail}", 400, "UnpredictableInput")


# ----- the signature -----------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    """One model input (a DataFrame column the pipeline was fitted on)."""

    name: str
    type: str  # numeric | categorical | boolean
    datatype: str  # FP64 | INT64 | BOOL | BYTES

    @property
    def nullable(self) -> bool:
        """Categorical and boolean inputs may be null (training imputes them); numeric ones may not."""
        return self.type in ("categorical", "boolean") and self.datatype in ("BYTES", "BOOL")


@dataclass(frozen=True)
class Signature:
    """The model's interface, recorded by training.

    ``inputs`` are in the order of the training DataFrame's columns; ``classes`` (classification only)
    are in the estimator's ``classes_`` order, which is also the column order of ``predict_proba``.
    """

    inputs: tuple[InputSpec, ...]
    task: str
    classes: tuple[Any, ...]
    output_datatype: str
    target: str

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @functools.cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    @functools.cached_property
    def columns(self) -> pd.Index:
        """The input names as a pandas Index, built once: a DataFrame built on it skips re-inferring
        the column labels (tens of microseconds per request with pandas' string inference)."""
        return pd.Index(self.names)

    @functools.cached_property
    def groups(self) -> tuple[tuple[str, bool, tuple[int, ...]], ...]:
        """Input positions grouped by ``(datatype, nullable)``, in order of first appearance."""
        found: dict[tuple[str, bool], list[int]] = {}
        for j, spec in enumerate(self.inputs):
            found.setdefault((spec.datatype, spec.nullable), []).append(j)
        return tuple((datatype, nullable, tuple(idx)) for (datatype, nullable), idx in found.items())

    @functools.cached_property
    def block_datatype(self) -> str | None:
        """``FP64`` or ``INT64`` when every input is numeric with that one datatype (requests are then
        parsed into one ``[N, F]`` block), else None (requests are parsed into a DataFrame)."""
        if len(self.groups) == 1 and self.groups[0][0] in ("FP64", "INT64") and not self.groups[0][1]:
            return self.groups[0][0]
        return None

    @property
    def is_classifier(self) -> bool:
        return self.task == "classification"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Parse the training signature ``{"inputs": [...], "outputs": {...}, "target": str}``.

        Raises:
            ValueError: a field is missing or holds a value outside its enum.
        """
        raw_inputs = data.get("inputs")
        if not isinstance(raw_inputs, list) or not raw_inputs:
            raise ValueError("signature.inputs must be a non-empty list")
        inputs = []
        for i, item in enumerate(raw_inputs):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise ValueError(f"signature.inputs[{i}] must be an object with a name")
            kind, datatype = str(item.get("type", "numeric")), str(item.get("datatype", "FP64"))
            spec = InputSpec(item["name"], kind, datatype)
            where = f"signature input {spec.name!r}"
            if spec.type not in INPUT_TYPES:
                raise ValueError(f"{where}: type {spec.type!r} not in {sorted(INPUT_TYPES)}")
            if spec.datatype not in INPUT_DATATYPES:
                raise ValueError(f"{where}: datatype {spec.datatype!r} not in {sorted(INPUT_DATATYPES)}")
            inputs.append(spec)
        if len({i.name for i in inputs}) != len(inputs):
            raise ValueError("signature.inputs has duplicate names")
        outputs = data.get("outputs")
        if not isinstance(outputs, Mapping):
            raise ValueError("signature.outputs must be an object")
        task = outputs.get("task")
        if task not in TASKS:
            raise ValueError(f"signature.outputs.task {task!r} not in {sorted(TASKS)}")
        classes = tuple(outputs.get("classes") or ())
        if task == "classification" and not classes:
            raise ValueError("signature.outputs.classes is required for classification")
        datatype = outputs.get("datatype") or _default_output_datatype(task, classes)
        if datatype not in OUTPUT_DATATYPES:
            raise ValueError(f"signature.outputs.datatype {datatype!r} not in {sorted(OUTPUT_DATATYPES)}")
        return cls(tuple(inputs), str(task), classes, str(datatype), str(data.get("target", "")))

    def output_names(self, has_proba: bool) -> tuple[str, ...]:
        """The output tensors: ``predict``, plus ``predict_proba`` for classifiers that have it."""
        return (PREDICT, PREDICT_PROBA) if self.is_classifier and has_proba else (PREDICT,)


def _default_output_datatype(task: Any, classes: Sequence[Any]) -> str:
    if task == "regression":
        return "FP64"
    return "BYTES" if any(isinstance(c, str) for c in classes) else "INT64"


# ----- parsed requests ---------------------------------------------------------------------------
#: Validated model inputs: an ``[N, F]`` block in signature order (float64 or int64, when the signature's
#: :attr:`Signature.block_datatype` is set), else a DataFrame with the signature's columns in order.
Inputs: TypeAlias = NDArray[Any] | pd.DataFrame


def as_frame(inputs: Inputs, signature: Signature) -> pd.DataFrame:
    """``inputs`` as a DataFrame with the signature's columns (a block is wrapped, not copied)."""
    if isinstance(inputs, pd.DataFrame):
        return inputs
    return pd.DataFrame(inputs, columns=signature.columns, copy=False)


@dataclass(frozen=True)
class V1Request:
    """A validated KServe V1 request: ``inputs`` has the signature's columns in order, a row per instance."""

    inputs: Inputs
    probabilities: bool  # the :predict_proba verb, or parameters.probabilities = true
    signature: Signature

    @property
    def frame(self) -> pd.DataFrame:
        return as_frame(self.inputs, self.signature)

    @property
    def rows(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class V2Request:
    """A validated Open Inference Protocol request.

    ``outputs`` are the requested output tensor names (all the model has when the request names none).
    """

    id: str | None
    inputs: Inputs
    outputs: tuple[str, ...]
    signature: Signature
    binary_outputs: frozenset[str] = frozenset()  # outputs to answer as binary tensor data

    @property
    def frame(self) -> pd.DataFrame:
        return as_frame(self.inputs, self.signature)

    @property
    def rows(self) -> int:
        return len(self.inputs)


# ----- KServe V1 ---------------------------------------------------------------------------------
def parse_v1_request(payload: Any, signature: Signature, *, proba_verb: bool = False) -> V1Request:
    """Validate a KServe V1 body and turn it into a DataFrame.

    Accepted shapes (N instances, F = number of signature inputs):

    - ``{"instances": [[v_1, ..., v_F], ...]}``: each row a list in signature order;
    - ``{"instances": [{"<input>": v, ...}, ...]}``: each row an object with exactly the signature's inputs;
    - optional ``"parameters": {"probabilities": true}`` asks ``:predict`` for probabilities as well.

    Raises:
        ProtocolError: (400) the body is not of that shape, or a value breaks the signature.
    """
    if not isinstance(payload, dict):
        raise ProtocolError("request body must be a JSON object with an 'instances' list")
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise ProtocolError("request must have an 'instances' list (KServe V1 protocol)")
    if not instances:
        raise ProtocolError("'instances' is empty")
    params = payload.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    probabilities = proba_verb or bool(params and params.get("probabilities"))
    if signature.block_datatype == "FP64" and len(instances) <= _FAST_V1_ROWS:
        block = _fast_rows(instances, len(signature.inputs))
        if block is not None:
            return V1Request(block, probabilities, signature)
    names = signature.names
    rows = _rows_from_objects(instances, names) if isinstance(instances[0], dict) else instances
    return V1Request(_inputs_from_rows(rows, signature), probabilities, signature)


#: V1 requests of up to this many rows are type-checked value by value on the fast path.
_FAST_V1_ROWS: Final = 16


def _fast_rows(instances: list[Any], width: int) -> NDArray[np.float64] | None:
    """The float64 block of a few rows of Python floats/ints for an all-FP64 signature, or None to let the
    general checks decide (they accept exactly these rows, with the same values, and explain the others)."""
    for row in instances:
        if type(row) is not list or len(row) != width:
            return None
        for v in row:
            if type(v) is not float and type(v) is not int:
                return None
    try:
        block = np.array(instances, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    return block if _all(_isfinite(block.reshape(-1))) else None


def _rows_from_objects(instances: list[Any], names: tuple[str, ...]) -> list[Any]:
    """Order the values of ``[{input: value}]`` rows by the signature, checking the keys."""
    getter = operator.itemgetter(*names)
    try:
        rows = [getter(r) for r in instances]
        ok = all(type(r) is dict and len(r) == len(names) for r in instances)
    except (KeyError, TypeError):
        ok = False
    if ok:
        return [r if len(names) > 1 else (r,) for r in rows]
    # error path: name the first problem
    known = set(names)
    for i, r in enumerate(instances):
        if not isinstance(r, dict):
            raise ProtocolError(f"instances[{i}] must be an object like instances[0]")
        unknown = [k for k in r if k not in known]
        if unknown:
            raise ProtocolError(f"instances[{i}]: unknown input {unknown[0]!r}")
        missing = [n for n in names if n not in r]
        if missing:
            raise ProtocolError(f"instances[{i}]: missing input {missing[0]!r}")
    raise ProtocolError("instances do not match the signature")  # pragma: no cover - unreachable


def _inputs_from_rows(rows: list[Any], signature: Signature) -> Inputs:
    """Turn N rows of F JSON values into typed inputs, one vectorised check per datatype."""
    width = len(signature.inputs)
    # object first, then pandas' C type inference per datatype group: np.asarray(rows) straight to
    # float would be faster for big batches but silently turns true/false into 1/0
    try:
        block = np.array(rows, dtype=object)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"instances must be rows of {width} values: {e}") from e
    if block.ndim != 2 or block.shape[1] != width:
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, list | tuple) or len(r) != width), 0)
        raise ProtocolError(
            f"instances[{bad}] must be a list of {width} values in signature order "
            f"({', '.join(signature.names[:3])}, ...) or an object keyed by input name"
        )
    return _typed_inputs(signature, block, declared=None, where="instances")


# ----- Open Inference Protocol (V2) ---------------------------------------------------------------
def parse_v2_request(
    payload: Any, signature: Signature, *, has_proba: bool = True, binary: bytes | memoryview | None = None
) -> V2Request:
    """Validate an Open Inference Protocol inference request and turn it into a DataFrame.

    Two tensor layouts are accepted (N rows, F signature inputs; ``data`` row-major, flat or nested):

    - one tensor per input, named as the input, shape ``[N]`` or ``[N, 1]``;
    - one tensor of shape ``[N, F]`` (any name, e.g. ``input-0``), columns in signature order.

    Datatypes: FP16/FP32/FP64 and (U)INT8..64 for numeric inputs (floats must be integral for INT64
    inputs), BOOL for boolean inputs, BYTES (JSON strings) for string inputs. ``outputs`` may name
    ``predict`` and, for classifiers, ``predict_proba``; without it both are returned.

    ``binary`` is the body after the JSON part when the request uses the binary tensor data extension
    (see :func:`split_binary`): tensors with ``parameters.binary_data_size`` take their values from it, in
    order, and every byte of it must be used.

    Raises:
        ProtocolError: (400) missing/unknown/duplicate input, wrong datatype, data length that does not
            match the shape, null where the input is numeric, unknown output.
    """
    request_id, inputs, outputs, binary_outputs = parse_v2(
        payload, signature, signature.output_names(has_proba), binary
    )
    return V2Request(request_id, inputs, outputs, signature, binary_outputs)


def parse_v2(
    payload: Any, signature: Signature, available: tuple[str, ...], binary: bytes | memoryview | None = None,
    *, from_json: bool = False, booleans: bool = True,
) -> tuple[str | None, Inputs, tuple[str, ...], frozenset[str]]:
    """:func:`parse_v2_request` without the :class:`V2Request`: ``(id, inputs, outputs, binary outputs)``;
    ``available`` are the model's outputs (:meth:`Signature.output_names`). The server's hot path.

    ``from_json``: the payload is what ``orjson.loads`` made of a body, so its numbers are finite (orjson
    refuses NaN, infinities and doubles that overflow) and the fast path need not check them again.
    ``booleans``: the payload may hold JSON booleans (False when the body has no ``true``/``false``): numeric
    tensors' data are then searched for them, since numpy would silently read them as 1.0 and 0.0.
    """
    if not isinstance(payload, dict):
        raise ProtocolError("request body must be a JSON object with an 'inputs' list")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise ProtocolError("request must have a non-empty 'inputs' list of tensors")
    if booleans:
        _refuse_booleans_in_numbers(tensors)
    fast = _fast_matrix(tensors[0], signature, from_json) if len(tensors) == 1 and binary is None else None
    if fast is not None:
        inputs: Inputs = fast
    else:
        reader = _BinaryReader(binary) if binary is not None else None
        parsed = [_tensor(t, i, reader) for i, t in enumerate(tensors)]
        if reader is not None:
            reader.check_used()
        names = signature.names
        if len(parsed) == 1 and parsed[0].name not in names:
            inputs = _inputs_from_matrix(parsed[0], signature)
        else:
            inputs = _inputs_from_columns(parsed, signature)
    raw_outputs = payload.get("outputs")
    parameters = payload.get("parameters")
    if parameters is None and type(raw_outputs) is list and len(raw_outputs) == 1:
        item = raw_outputs[0]  # the usual ask: one output by name, nothing else
        if type(item) is dict and len(item) == 1 and item.get("name") in available:
            return request_id, inputs, (item["name"],), _NO_OUTPUTS
    outputs = _requested_outputs(raw_outputs, available)
    return request_id, inputs, outputs, _binary_outputs(parameters, raw_outputs, outputs)


_NO_OUTPUTS: Final[frozenset[str]] = frozenset()


def _refuse_booleans_in_numbers(tensors: list[Any]) -> None:
    """Raise ProtocolError (400) for a JSON boolean in the ``data`` of a tensor whose datatype is not BOOL
    (numpy would make ``[true, 17.99]`` ``[1.0, 17.99]``)."""
    for index, tensor in enumerate(tensors):
        if type(tensor) is not dict or tensor.get("datatype") in ("BOOL", "BYTES"):
            continue
        data = tensor.get("data")
        if type(data) is list and _holds_boolean(data):
            name = tensor.get("name", index)
            raise ProtocolError(f"input {name!r}: datatype {tensor.get('datatype')} data holds JSON booleans")


def _holds_boolean(data: list[Any]) -> bool:
    return any(type(v) is bool or (type(v) is list and _holds_boolean(v)) for v in data)


def _fast_matrix(raw: Any, signature: Signature, finite: bool = False) -> NDArray[Any] | None:
    """The block of the usual request -- one ``[N, F]`` FP64/FP32 tensor of JSON numbers, not named as an
    input, for an all-FP64 signature -- or None to let the general checks decide. Whatever it returns
    equals what the general path returns for the same tensor. ``finite``: the values are known finite."""
    if signature.block_datatype != "FP64" or type(raw) is not dict:
        return None
    shape, data, name = raw.get("shape"), raw.get("data"), raw.get("name")
    if (
        raw.get("datatype") not in _FAST_DATATYPES
        or type(data) is not list
        or type(shape) is not list
        or len(shape) != 2
        or type(shape[0]) is not int
        or type(shape[1]) is not int
        or shape[0] < 1
        or shape[1] != len(signature.inputs)
        or type(name) is not str
        or not name
        or name in signature.name_set
        or "parameters" in raw
    ):
        return None
    if len(data) >= _ARRAY_MIN and len(data) == shape[0] * shape[1] and type(data[0]) is float:
        # a flat list led by a float: np.asarray would give float64 (ints and bools among floats become
        # floats); array.array makes the same doubles 2-3x faster, and refuses strings, nulls and lists
        try:
            arr = np.frombuffer(array.array("d", data), dtype=np.float64)
        except (TypeError, OverflowError):
            return None
        return arr.reshape(shape[0], shape[1]) if finite or _all(_isfinite(arr)) else None
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):  # ragged: the general checks say where
        return None
    kind = arr.dtype.kind
    if kind == "i":
        arr = arr.astype(np.float64)
    elif arr.dtype != np.float64:
        return None
    if arr.size != shape[0] * shape[1] or not (finite or _all(_isfinite(arr.reshape(-1)))):
        return None
    return arr.reshape(shape[0], shape[1])


_all, _isfinite = np.logical_and.reduce, np.isfinite  # without ndarray.all()'s Python wrapper


_FAST_DATATYPES: Final = frozenset({"FP64", "FP32"})
_ARRAY_MIN: Final = 64  # below this many values np.asarray is the quicker of the two


def split_binary(body: bytes, header_length: str | bytes) -> tuple[bytes, memoryview]:
    """Split a body of the binary tensor data extension into its JSON part and the binary data after it.

    Raises:
        ProtocolError: (400) the header is not a length within the body.
    """
    text = (header_length.decode("latin-1") if isinstance(header_length, bytes) else header_length).strip()
    if not text.isdigit() or not 0 < int(text) <= len(body):
        raise ProtocolError(
            f"{BINARY_HEADER} must be the length of the JSON part of the body (1..{len(body)}), got {text!r}"
        )
    n = int(text)
    view = memoryview(body)
    return bytes(view[:n]), view[n:]


class _BinaryReader:
    """Hands out the binary tensor data after the JSON part, tensor after tensor."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        self.offset = 0

    def take(self, name: str, size: Any) -> memoryview:
        if type(size) is not int or size < 0:
            raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
        end = self.offset + size
        if end > len(self.data):
            raise ProtocolError(
                f"input {name!r}: binary_data_size {size} runs past the end of the body "
                f"({len(self.data) - self.offset} binary bytes left)"
            )
        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def check_used(self) -> None:
        left = len(self.data) - self.offset
        if left:
            raise ProtocolError(f"{left} bytes of binary tensor data follow the inputs and no input claims them")


def _binary_values(name: str, datatype: str, shape: list[int], chunk: memoryview) -> NDArray[Any]:
    """The flat values of a binary tensor (row-major, little-endian; BYTES length-prefixed)."""
    size = math.prod(shape)
    if datatype == "BYTES":
        values: list[str] = []
        offset, raw = 0, bytes(chunk)
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ProtocolError(f"input {name!r}: binary BYTES data ends inside an element's length")
            length = int.from_bytes(raw[offset:offset + 4], "little")
            start, offset = offset + 4, offset + 4 + length
            if offset > len(raw):
                raise ProtocolError(f"input {name!r}: binary BYTES element {len(values)} runs past its data")
            try:
                values.append(raw[start:offset].decode("utf-8"))
            except UnicodeDecodeError as e:
                raise ProtocolError(f"input {name!r}: binary BYTES element {len(values)} is not UTF-8") from e
        if len(values) != size:
            raise ProtocolError(f"input {name!r}: data has {len(values)} values but shape {shape} needs {size}")
        return np.array(values, dtype=object)
    dtype = np.dtype(BINARY_DTYPES[datatype])
    if len(chunk) != size * dtype.itemsize:
        raise ProtocolError(
            f"input {name!r}: binary_data_size is {len(chunk)} bytes but shape {shape} of {datatype} needs "
            f"{size * dtype.itemsize}"
        )
    if datatype == "BOOL":
        raw_bool = np.frombuffer(chunk, dtype=np.uint8)
        if (raw_bool > 1).any():
            raise ProtocolError(f"input {name!r}: binary BOOL data holds bytes other than 0 and 1")
        return raw_bool.astype(bool)
    # native byte order, in a private copy: nothing downstream holds on to the request's buffer
    return np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="))


def _binary_outputs(parameters: Any, raw_outputs: Any, outputs: tuple[str, ...]) -> frozenset[str]:
    """The outputs to answer as binary tensor data: all with ``parameters.binary_data_output``, else those
    whose ``outputs[].parameters.binary_data`` is true (an output's own setting wins)."""
    everything = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    chosen = set(outputs) if everything else set()
    for item in raw_outputs if isinstance(raw_outputs, list) else ():
        params = item.get("parameters")  # items are objects naming a known output (checked before)
        if isinstance(params, dict) and "binary_data" in params:
            if params["binary_data"] is True:
                chosen.add(item["name"])
            else:
                chosen.discard(item["name"])
    return frozenset(chosen)


@dataclass(frozen=True)
class _Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: NDArray[Any]  # flat, as parsed


def _tensor(raw: Any, index: int, binary: _BinaryReader | None = None) -> _Tensor:
    if not isinstance(raw, dict):
        raise ProtocolError(f"inputs[{index}] must be a tensor object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"inputs[{index}] has no 'name'")
    datatype = raw.get("datatype")
    if datatype not in V2_DATATYPES:
        raise ProtocolError(f"input {name!r}: datatype {datatype!r} is not one of {sorted(V2_DATATYPES)}")
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
    ):
        raise ProtocolError(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    data = raw.get("data")
    params = raw.get("parameters")
    if isinstance(params, dict) and "binary_data_size" in params:
        if binary is None:
            raise ProtocolError(
                f"input {name!r} has binary_data_size but the request has no {BINARY_HEADER} header"
            )
        if data is not None:
            raise ProtocolError(f"input {name!r} has both 'data' and binary_data_size")
        chunk = binary.take(name, params["binary_data_size"])
        return _Tensor(name, str(datatype), tuple(shape), _binary_values(name, str(datatype), shape, chunk))
    if not isinstance(data, list):
        raise ProtocolError(
            f"input {name!r}: 'data' must be a list (or the tensor's values binary, with "
            f"parameters.binary_data_size and the {BINARY_HEADER} header)"
        )
    try:
        arr = np.array(data, dtype=object) if datatype == "BYTES" else np.asarray(data)
        if arr.dtype.kind in "US":  # numpy turned mixed values into strings: keep the originals
            arr = np.array(data, dtype=object)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"input {name!r}: data is not a regular row-major array: {e}") from e
    flat = arr.reshape(-1)
    size = math.prod(shape)
    if flat.size != size or (flat.dtype == object and flat.size and isinstance(flat[0], list)):
        raise ProtocolError(f"input {name!r}: data has {flat.size} values but shape {shape} needs {size}")
    if datatype in INT_DATATYPES and flat.dtype.kind == "f" and not (np.floor(flat) == flat).all():
        raise ProtocolError(f"input {name!r}: data holds non-integer values for datatype {datatype}")
    return _Tensor(name, str(datatype), tuple(shape), flat)


def _inputs_from_matrix(tensor: _Tensor, signature: Signature) -> Inputs:
    width = len(signature.inputs)
    if len(tensor.shape) != 2 or tensor.shape[1] != width:
        raise ProtocolError(
            f"input {tensor.name!r} is not a signature input, so it must be one [N, {width}] tensor "
            f"with columns in signature order; got shape {list(tensor.shape)}"
        )
    if tensor.shape[0] == 0:
        raise ProtocolError(f"input {tensor.name!r} has no rows")
    return _typed_inputs(signature, tensor.data.reshape(tensor.shape), tensor.datatype, where="input")


def _inputs_from_columns(tensors: list[_Tensor], signature: Signature) -> Inputs:
    by_name: dict[str, _Tensor] = {}
    known = set(signature.names)
    for t in tensors:
        if t.name not in known:
            first = ", ".join(signature.names[:5])
            raise ProtocolError(f"unknown input {t.name!r}; the model's inputs are {first}, ...")
        if t.name in by_name:
            raise ProtocolError(f"input {t.name!r} given twice")
        by_name[t.name] = t
    missing = [n for n in signature.names if n not in by_name]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ProtocolError(f"missing input {missing[0]!r}{more}")
    rows = tensors[0].shape[0]
    for t in tensors:
        if not (len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)):
            raise ProtocolError(f"input {t.name!r}: shape must be [N] or [N, 1], got {list(t.shape)}")
        if t.shape[0] != rows:
            first = tensors[0].name
            raise ProtocolError(f"input {t.name!r} has {t.shape[0]} rows but input {first!r} has {rows}")
    if rows == 0:
        raise ProtocolError("inputs have no rows")
    groups: dict[tuple[str, bool], list[InputSpec]] = {}
    for spec in signature.inputs:
        _check_declared(spec, by_name[spec.name].datatype)
        groups.setdefault((spec.datatype, spec.nullable), []).append(spec)
    columns: dict[str, NDArray[Any]] = {}
    for (datatype, nullable), specs in groups.items():
        flats = [by_name[s.name].data for s in specs]
        if len(flats) > 1 and all(f.dtype.kind in "fiu" for f in flats):
            # one conversion for the whole group; no bool/str/null can hide in a numeric stack
            typed = _coerce_block(specs, np.column_stack(flats), datatype, nullable, "input")
            if len(groups) == 1:
                return typed if signature.block_datatype else pd.DataFrame(typed, columns=signature.columns)
            columns.update((s.name, typed[:, k]) for k, s in enumerate(specs))
        else:
            columns.update((s.name, _coerce(s, f)) for s, f in zip(specs, flats, strict=True))
    return _frame(signature, columns)


def _requested_outputs(raw: Any, available: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return available
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("'outputs' must be a non-empty list of {\"name\": ...} objects")
    names: list[str] = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in available:
            raise ProtocolError(f"unknown output {name!r}; this model has {', '.join(available)}")
        if name not in names:
            names.append(name)
    return tuple(names)


# ----- typing columns ----------------------------------------------------------------------------
def _typed_inputs(signature: Signature, block: NDArray[Any], declared: str | None, where: str) -> Inputs:
    """Coerce an ``[N, F]`` block column group by column group (one group per signature datatype)."""
    groups = signature.groups
    if declared is not None:
        for _datatype, _nullable, idx in groups:  # the first input of each datatype is the one named
            _check_declared(signature.inputs[idx[0]], declared)
    if len(groups) == 1:
        datatype, nullable, _ = groups[0]
        typed = _coerce_block(signature.inputs, block, datatype, nullable, where)
        return typed if signature.block_datatype else pd.DataFrame(typed, columns=signature.columns)
    columns: dict[str, NDArray[Any]] = {}
    for datatype, nullable, idx in groups:
        specs = tuple(signature.inputs[j] for j in idx)
        typed = _coerce_block(specs, block[:, idx], datatype, nullable, where)
        for k, spec in enumerate(specs):
            columns[spec.name] = typed[:, k]
    return _frame(signature, columns)


def _frame(signature: Signature, columns: Mapping[str, NDArray[Any]]) -> pd.DataFrame:
    """A DataFrame in signature order; one 2-D block when every column has the same dtype (faster)."""
    dtypes = {c.dtype for c in columns.values()}
    names = signature.names
    if len(dtypes) == 1 and next(iter(dtypes)).kind != "O":
        return pd.DataFrame(np.column_stack([columns[n] for n in names]), columns=signature.columns)
    return pd.DataFrame({n: columns[n] for n in names}, columns=signature.columns)


def _check_declared(spec: InputSpec, declared: str) -> None:
    if declared not in _COMPATIBLE[spec.datatype]:
        raise ProtocolError(
            f"input {spec.name!r}: datatype {declared} does not match the signature ({spec.datatype}: "
            f"{spec.type}, expects {_EXPECTED[spec.datatype]})"
        )


def _coerce(spec: InputSpec, column: NDArray[Any]) -> NDArray[Any]:
    return _coerce_block((spec,), column.reshape(-1, 1), spec.datatype, spec.nullable, "input")[:, 0]


def _coerce_block(
    specs: Sequence[InputSpec], block: NDArray[Any], datatype: str, nullable: bool, where: str
) -> NDArray[Any]:
    """Convert an ``[N, k]`` block whose columns share ``datatype`` to its numpy dtype, or explain why not."""
    kind: str = block.dtype.kind
    out: NDArray[Any] | None = None
    if kind == "O":
        inferred = infer_dtype(block.ravel(), skipna=nullable)
        kind = _INFERRED_KINDS.get(inferred, "O")
        if inferred == "empty" and nullable:  # every value null
            kind = "b" if datatype == "BOOL" else "U"
    if datatype == "FP64" and kind in "fiu":
        out = block.astype(np.float64)
        if not np.isfinite(out).all():
            out = None
    elif datatype == "INT64" and kind in "iu":
        out = block.astype(np.int64)
    elif datatype == "INT64" and kind == "f":
        floats = block.astype(np.float64)
        if np.isfinite(floats).all() and (np.floor(floats) == floats).all():
            out = floats.astype(np.int64)
    elif datatype in ("BOOL", "BYTES") and kind == ("b" if datatype == "BOOL" else "U"):
        missing = pd.isna(block) if nullable and block.dtype.kind == "O" else None
        if missing is not None and missing.any():
            out = block.copy()  # object column; nulls as NaN, as pandas holds them in training data
            out[missing] = np.nan
        else:
            out = block.astype(bool if datatype == "BOOL" else object)
    if out is None:
        raise ProtocolError(_explain(specs, block, datatype, where))
    return out


def _explain(specs: Sequence[InputSpec], block: NDArray[Any], datatype: str, where: str) -> str:
    """Name the first column and row that break the signature (error path: walks values)."""
    for k, spec in enumerate(specs):
        column = block[:, k]
        for i, value in enumerate(column.tolist()):
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                if spec.nullable:
                    continue
                return f"input {spec.name!r}: null/NaN at row {i} is not allowed ({spec.type} input)"
            if not _matches(value, datatype):
                return (
                    f"input {spec.name!r}: expected {_EXPECTED[datatype]} ({datatype}) but row {i} "
                    f"of the {where} has {value!r}"
                )
    return f"inputs {', '.join(s.name for s in specs)}: values do not match the signature ({datatype})"


def _matches(value: Any, datatype: str) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool | np.bool_)
    if datatype == "BYTES":
        return isinstance(value, str)
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return False
    return datatype == "FP64" or float(value).is_integer()


# ----- responses ---------------------------------------------------------------------------------
def build_v1_response(
    predictions: NDArray[Any] | None, probabilities: NDArray[Any] | None, *, proba_verb: bool = False
) -> dict[str, Any]:
    """The KServe V1 response body.

    ``:predict`` -> ``{"predictions": [label or value per row]}`` (plus ``"probabilities": [[p per class]]``
    when asked with ``parameters.probabilities``); ``:predict_proba`` -> ``{"predictions": [[p per class]]}``
    as KServe's scikit-learn server answers. Class order is the signature's ``outputs.classes``.
    """
    if proba_verb:
        return {"predictions": jsonable(probabilities)}
    body: dict[str, Any] = {"predictions": jsonable(predictions)}
    if probabilities is not None:
        body["probabilities"] = jsonable(probabilities)
    return body


def build_v2_response(
    model_name: str,
    model_version: str,
    request_id: str,
    signature: Signature,
    outputs: Mapping[str, NDArray[Any]],
) -> dict[str, Any]:
    """The Open Inference Protocol response body.

    ``outputs`` maps ``predict`` -> shape ``[N]`` (datatype from the signature; string labels as BYTES) and
    ``predict_proba`` -> shape ``[N, n_classes]`` FP64, data flattened row-major.
    """
    tensors = []
    for name, values in outputs.items():
        if name == PREDICT:
            datatype = signature.output_datatype
            data = _as_datatype(values, datatype)
        else:
            datatype = "FP64"
            data = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        tensors.append(
            {"name": name, "datatype": datatype, "shape": list(values.shape), "data": jsonable(data)}
        )
    return {"model_name": model_name, "model_version": model_version, "id": request_id, "outputs": tensors}


class V2Encoder:
    """Writes the Open Inference Protocol responses of one model version: the same bytes as
    ``orjson.dumps(build_v2_response(...))``, with the constant head encoded once, and binary tensor data
    for the outputs a request asks so."""

    def __init__(self, model_name: str, model_version: str, signature: Signature) -> None:
        self.signature = signature
        self.head = (
            b'{"model_name":' + orjson.dumps(model_name) + b',"model_version":' + orjson.dumps(model_version)
            + b',"id":'
        )
        # the outputs of a one-row, labels-only answer, by label: most answers of a classifier
        self._one_label: dict[tuple[str, Any], bytes] = {}

    def encode(
        self, request_id: str, outputs: Mapping[str, NDArray[Any]], binary: frozenset[str] = frozenset()
    ) -> tuple[bytes, int | None]:
        """``(body, JSON length)``; the JSON length is None unless some output is binary (then the body is
        the JSON followed by the outputs' binary data, and the length goes in the binary extension's header)."""
        labels = outputs.get(PREDICT) if len(outputs) == 1 and not binary else None
        if labels is not None and labels.shape == (1,) and labels.dtype.kind in "iubUO":
            key = (labels.dtype.str, labels.item())
            encoded = self._one_label.get(key)
            if encoded is None:
                encoded = self._encode_outputs(outputs, binary)[0]
                if len(self._one_label) < _LABEL_CACHE_SIZE:
                    self._one_label[key] = encoded
            return b"".join((self.head, orjson.dumps(request_id), encoded)), None
        tensors_json, raw = self._encode_outputs(outputs, binary)
        body = b"".join((self.head, orjson.dumps(request_id), tensors_json))
        if not raw:
            return body, None
        return body + raw, len(body)

    def _encode_outputs(self, outputs: Mapping[str, NDArray[Any]], binary: frozenset[str]) -> tuple[bytes, bytes]:
        """``(b',"outputs":[...]}', binary data)``: the response after its id."""
        tensors = []
        raw: list[bytes] = []
        for name, values in outputs.items():
            if name == PREDICT:
                datatype = self.signature.output_datatype
                data = _as_datatype(values, datatype)
            else:
                datatype = "FP64"
                data = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
            tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
            if name in binary:
                chunk = _binary_bytes(data, datatype)
                tensor["parameters"] = {"binary_data_size": len(chunk)}
                raw.append(chunk)
            else:
                tensor["data"] = jsonable(data)
            tensors.append(tensor)
        return b',"outputs":' + orjson.dumps(tensors, option=orjson.OPT_SERIALIZE_NUMPY) + b"}", b"".join(raw)


_LABEL_CACHE_SIZE: Final = 1024


def _binary_bytes(data: NDArray[Any], datatype: str) -> bytes:
    """Raw little-endian values (BYTES: each UTF-8 string prefixed by its 4-byte length)."""
    if datatype == "BYTES":
        parts = []
        for value in data.reshape(-1).tolist():
            encoded = str(value).encode("utf-8")
            parts.append(len(encoded).to_bytes(4, "little"))
            parts.append(encoded)
        return b"".join(parts)
    if datatype == "BOOL":
        return np.ascontiguousarray(data, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(data, dtype=np.dtype(BINARY_DTYPES[datatype])).tobytes()


def _as_datatype(values: NDArray[Any], datatype: str) -> NDArray[Any]:
    if datatype == "FP64":
        return values.astype(np.float64, copy=False)
    if datatype == "INT64" and values.dtype.kind in "iub":
        return values.astype(np.int64, copy=False)
    if datatype == "BYTES" and values.dtype.kind != "U" and values.dtype != object:
        return values.astype(str).astype(object)
    if datatype == "BOOL":
        return values.astype(bool, copy=False)
    return values


def jsonable(values: NDArray[Any] | None) -> Any:
    """An array orjson can write directly (``OPT_SERIALIZE_NUMPY``) or, for object/str arrays, a list."""
    if values is None:
        return None
    if values.dtype.kind in "fiub" and values.dtype.isnative:
        return np.ascontiguousarray(values)
    return values.tolist()


def model_metadata(
    model_name: str, model_version: str, signature: Signature, *, has_proba: bool
) -> dict[str, Any]:
    """Open Inference Protocol model metadata (``GET /v2/models/<name>``).

    Every signature input is listed as a per-input tensor of shape ``[-1]`` (one ``[-1, F]`` tensor in
    signature order is accepted too); outputs are ``predict`` ``[-1]`` and, for classifiers,
    ``predict_proba`` ``[-1, n_classes]`` FP64.
    """
    outputs = [{"name": PREDICT, "datatype": signature.output_datatype, "shape": [-1]}]
    if PREDICT_PROBA in signature.output_names(has_proba):
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(signature.classes)]})
    return {
        "name": model_name,
        "versions": [model_version],
        "platform": "sklearn",
        "inputs": [{"name": s.name, "datatype": s.datatype, "shape": [-1]} for s in signature.inputs],
        "outputs": outputs,
    }


def server_metadata(version: str) -> dict[str, Any]:
    """Open Inference Protocol server metadata (``GET /v2``)."""
    return {"name": "roost", "version": version, "extensions": ["binary_tensor_data"]}
