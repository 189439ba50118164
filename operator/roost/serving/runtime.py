"""Serving runtimes: scikit-learn itself, or ONNX Runtime where a converted model matched it.

scikit-learn validates its input and dispatches work on every call (about 0.1-2 ms for one row of a
linear model, several ms for a 100-tree forest), which dominates a model server's time. ONNX Runtime
runs the same pipeline as one compiled graph in microseconds. It is only used where it gives the same
answers, and that is decided once, when the ModelVersion is validated (the ``evaluate`` worker calls
:func:`validate`):

1. :func:`convert` turns the fitted pipeline into ONNX with skl2onnx, in float64 (trees in float32
   after a cast, exactly as scikit-learn casts their input, with thresholds adjusted by skl2onnx so
   that ``float(x) <= t`` decides as in scikit-learn). It refuses what it cannot convert faithfully:
   inputs that are not all numeric, imputers that drop columns, converters that fail.
2. :func:`check_parity` runs both on the holdout rows the server can receive (no missing numeric
   values: the protocol refuses them): predicted labels must be identical and probabilities (or
   regression values) within :data:`TOLERANCE`.
3. The ONNX bytes are stored content-addressed; the evaluate result records ``runtime`` = ``{"name":
   "onnx", "artifact": {"uri", "digest"}, "parity": {...}}`` or ``{"name": "sklearn", "reason": ...}``.

The server then loads ONNX only when the config's ``runtime`` block says parity passed, verifying the
ONNX bytes' digest first (:func:`load_onnx`). Serving keeps a second guard for rows outside the holdout:
a row whose two most probable classes under ONNX are within :data:`MARGIN_GUARD` of each other, or whose
ONNX label is not its most probable class, is answered by scikit-learn (:class:`OnnxPredictor`), so a
near-tie can never flip a label. Nothing here fails a ModelVersion: a refusal is a ``sklearn`` runtime.
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from roost import errors
from roost.serving import protocol
from roost.storage import store as store_mod

log = logging.getLogger("roost.serving.runtime")

SKLEARN: Final = "sklearn"
ONNX: Final = "onnx"
#: Largest difference allowed between ONNX and scikit-learn probabilities (or regression values).
TOLERANCE: Final = 1e-5
#: Rows whose top-two ONNX probabilities are closer than this are answered by scikit-learn.
MARGIN_GUARD: Final = 1e-4
#: The opsets the converted graphs use; ONNX Runtime >= 1.15 runs them.
TARGET_OPSET: Final[Mapping[str, int]] = {"": 18, "ai.onnx.ml": 3}
_ALLOWED_DOMAINS: Final = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_INPUT: Final = "X"


class Refused(Exception):
    """The pipeline cannot be served by ONNX Runtime faithfully; ``reason`` says why (for status)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ----- predictors ------------------------------------------------------------------------------------
class Predictor(Protocol):
    """Predicts a batch of validated inputs (:data:`roost.serving.protocol.Inputs`)."""

    name: str
    #: True when a call is cheap enough to run on the event loop (no thread hand-off) for small batches.
    inline: bool

    def predict(
        self, inputs: protocol.Inputs, *, labels: bool, proba: bool
    ) -> tuple[NDArray[Any], NDArray[Any] | None]:
        """``(labels [N], probabilities [N, n_classes] or None)``; see :meth:`SklearnPredictor.predict`."""
        ...


class SklearnPredictor:
    """scikit-learn's own ``predict``/``predict_proba`` on a DataFrame with the signature's columns."""

    name = SKLEARN
    inline = False

    def __init__(self, estimator: Any, signature: protocol.Signature) -> None:
        self.estimator = estimator
        self.signature = signature

    def predict(
        self, inputs: protocol.Inputs, *, labels: bool, proba: bool
    ) -> tuple[NDArray[Any], NDArray[Any] | None]:
        """Predict N rows.

        Returns:
            ``(labels [N], probabilities [N, n_classes] or None)``. When only probabilities are asked
            for, the labels are the most probable classes (what the request log and metrics record).

        Raises:
            protocol.ProtocolError: 400 ``UnpredictableInput`` when scikit-learn refuses the rows (its
                input validation raises ``ValueError``, e.g. a value that overflows a scaler or the
                float32 cast of a tree model) or answers with non-finite values: the request's fault,
                not the server's. (A model that raised ``ValueError`` on good rows would show in the
                canary's rejection rate rather than its error rate.)
        """
        frame = protocol.as_frame(inputs, self.signature)
        try:
            probabilities = np.asarray(self.estimator.predict_proba(frame)) if proba else None
            if labels or probabilities is None:
                predicted = np.asarray(self.estimator.predict(frame))
            else:
                predicted = np.asarray(self.estimator.classes_)[np.argmax(probabilities, axis=1)]
        except ValueError as e:
            raise protocol.unpredictable(str(e)) from e
        for answer in (predicted, probabilities):
            if answer is not None and answer.dtype.kind == "f" and not np.isfinite(answer).all():
                raise protocol.unpredictable("the model's answer is not finite")
        return predicted, probabilities


class OnnxPredictor:
    """ONNX Runtime on the float64 ``[N, F]`` block, with scikit-learn for near-tied rows.

    Args:
        session: an ``onnxruntime.InferenceSession`` of a graph made by :func:`convert`.
        fallback: the scikit-learn model the graph was converted from (answers the guarded rows).
        signature: the model's signature (block-typed: every input numeric with one datatype).
        guard: False only to measure raw parity (:func:`check_parity`).
        float32: the graph casts its input to float32 (tree models): rows beyond float32's range then go to
            scikit-learn.
    """

    name = ONNX
    inline = True

    def __init__(self, session: Any, fallback: SklearnPredictor, signature: protocol.Signature,
                 *, guard: bool = True, float32: bool = True) -> None:
        self.session = session
        self.float32 = float32
        self.fallback = fallback
        self.signature = signature
        self.guard = guard
        self.classifier = signature.is_classifier
        self.classes = np.asarray(fallback.estimator.classes_) if self.classifier else None
        outputs = [o.name for o in session.get_outputs()]
        self.input = session.get_inputs()[0].name
        self.outputs = outputs[:2] if self.classifier else outputs[:1]

    def run(self, inputs: protocol.Inputs) -> list[NDArray[Any]]:
        """The graph's raw outputs: ``[labels, probabilities]`` or ``[values [N, 1]]``."""
        result: list[NDArray[Any]] = self.session.run(self.outputs, {self.input: _block(inputs)})
        return result

    def predict(
        self, inputs: protocol.Inputs, *, labels: bool, proba: bool
    ) -> tuple[NDArray[Any], NDArray[Any] | None]:
        """As :meth:`SklearnPredictor.predict` (and raising as it does for the rows it answers);
        probabilities are float64 (trees compute in float32).

        scikit-learn answers, besides near-tied rows, the rows ONNX Runtime answers with non-finite
        values and, for graphs that cast to float32, the rows holding a value beyond float32's range (cast
        to infinity there, refused by scikit-learn), so that both runtimes answer every request alike.
        """
        block = _block(inputs)
        if not self.classifier:
            (raw_values,) = self.run(block)
            values = raw_values.reshape(-1).astype(np.float64, copy=False)  # ORT's own array: ours to edit
            if self.guard:
                unsure = ~np.isfinite(values)
                self._answer_by_fallback(inputs, block, unsure, labels, values, None)
            return values, None
        raw_labels, raw_proba = self.run(block)
        probabilities = raw_proba.astype(np.float64, copy=False)  # a fresh array either way: ours to edit
        assert self.classes is not None
        top = probabilities.argmax(axis=1)
        predicted = self.classes.take(top)  # a fresh array
        if self.guard:
            unsure = _near_ties(probabilities)
            raw = raw_labels.reshape(-1)
            unsure |= raw != (predicted if predicted.dtype == raw.dtype else predicted.astype(raw.dtype))
            self._answer_by_fallback(inputs, block, unsure, labels, predicted, probabilities)
        return predicted, probabilities if proba else None

    def _answer_by_fallback(
        self, inputs: protocol.Inputs, block: NDArray[np.float64], unsure: NDArray[np.bool_], labels: bool,
        predicted: NDArray[Any], probabilities: NDArray[Any] | None,
    ) -> None:
        """Replace, in place, the answers of the ``unsure`` rows (and of rows beyond float32's range, for a
        float32 graph) by scikit-learn's."""
        if self.float32 and float(np.abs(block).max(initial=0.0)) > _FLOAT32_MAX:
            unsure |= (np.abs(block) > _FLOAT32_MAX).any(axis=1)
        if not unsure.any():
            return
        rows = np.flatnonzero(unsure)
        subset = inputs.iloc[rows] if isinstance(inputs, pd.DataFrame) else inputs[rows]
        sk_labels, sk_proba = self.fallback.predict(subset, labels=labels or probabilities is None,
                                                    proba=probabilities is not None)
        predicted[rows] = sk_labels
        if probabilities is not None:
            assert sk_proba is not None
            probabilities[rows] = sk_proba


_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)


def _block(inputs: protocol.Inputs) -> NDArray[np.float64]:
    """The C-contiguous float64 ``[N, F]`` block ONNX Runtime takes."""
    block = inputs.to_numpy() if isinstance(inputs, pd.DataFrame) else inputs
    if block.dtype != np.float64 or not block.flags.c_contiguous:
        block = np.ascontiguousarray(block, dtype=np.float64)
    return block


def _near_ties(probabilities: NDArray[Any]) -> NDArray[np.bool_]:
    """Rows whose two largest probabilities are within :data:`MARGIN_GUARD`, or not finite."""
    if probabilities.shape[1] == 2:
        margin = np.abs(probabilities[:, 1] - probabilities[:, 0])
    elif probabilities.shape[1] > 2:
        top2 = np.partition(probabilities, -2, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    else:
        return np.zeros(len(probabilities), dtype=bool)
    result: NDArray[np.bool_] = ~(margin >= MARGIN_GUARD)  # NaN compares False: such rows are unsure too
    return result


# ----- the runtime block of the server config -----------------------------------------------------------
@dataclass(frozen=True)
class RuntimeConfig:
    """The ``runtime`` block of a server config (a ModelVersion's ``status.runtime``)."""

    name: str
    artifact_uri: str | None = None
    artifact_digest: str | None = None
    parity: Mapping[str, Any] | None = None
    reason: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeConfig:
        """Parse ``{"name", "artifact"?: {"uri", "digest"}, "parity"?, "reason"?}``.

        Raises:
            ValueError: ``name`` missing, or ``onnx`` without an artifact uri and digest.
        """
        name = data.get("name")
        if name not in (ONNX, SKLEARN):
            raise ValueError(f"runtime.name must be {ONNX!r} or {SKLEARN!r}, got {name!r}")
        artifact = data.get("artifact") or {}
        uri, digest = artifact.get("uri"), artifact.get("digest")
        if name == ONNX and not (isinstance(uri, str) and uri and isinstance(digest, str) and digest):
            raise ValueError("runtime.artifact must have uri and digest when runtime.name is onnx")
        parity = data.get("parity")
        return cls(str(name), uri, digest, parity if isinstance(parity, Mapping) else None,
                   str(data["reason"]) if data.get("reason") else None)

    @property
    def parity_passed(self) -> bool:
        """Whether the recorded parity says ONNX answers as scikit-learn did on the holdout."""
        p = self.parity or {}
        diff = p.get("maxProbabilityDiff", p.get("maxValueDiff"))
        rows, mismatches = p.get("rows"), p.get("labelMismatches")
        return (
            self.name == ONNX and isinstance(rows, int) and rows > 0 and mismatches == 0
            and isinstance(diff, int | float) and 0 <= diff <= TOLERANCE
        )


def load_onnx(store: store_mod.Store, config: RuntimeConfig, fallback: SklearnPredictor,
              signature: protocol.Signature, *, threads: int = 1) -> OnnxPredictor:
    """Read the ONNX bytes (digest checked first), check the graph, and open a session.

    Raises:
        roost.storage.store.DigestMismatch: reason ``DigestMismatch``.
        roost.errors.PermanentError: reason ``InvalidArtifact`` (not a graph ONNX Runtime takes, or one
            that names other operator domains or external data) or ``SignatureMismatch``.
        roost.errors.ExternalError: the store could not be read.
        ImportError: onnxruntime is not installed.
    """
    assert config.artifact_uri and config.artifact_digest
    if signature.block_datatype is None:
        raise errors.PermanentError("SignatureMismatch", "ONNX serves only signatures of numeric inputs")
    data = store.read_bytes(config.artifact_uri, config.artifact_digest)
    import onnxruntime as ort

    float32 = _check_graph(data)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # never steal the loop's core
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise errors.PermanentError("InvalidArtifact", f"ONNX Runtime refused the graph: {e}") from e
    shape = session.get_inputs()[0].shape
    if len(shape) != 2 or shape[1] != len(signature.inputs):
        raise errors.PermanentError(
            "SignatureMismatch", f"the ONNX graph takes shape {shape}, the signature {len(signature.inputs)} inputs",
        )
    return OnnxPredictor(session, fallback, signature, float32=float32)


def _check_graph(data: bytes) -> bool:
    """Refuse graphs with other operator domains or external data (files outside the artifact); return whether
    the graph casts values to float32 (tree models)."""
    import onnx

    try:
        model = onnx.load_from_string(data)  # never resolves external data
    except Exception as e:  # protobuf's DecodeError and friends
        raise errors.PermanentError("InvalidArtifact", f"not an ONNX model: {e}") from e
    domains = {o.domain for o in model.opset_import} | {n.domain for n in model.graph.node}
    if not domains <= _ALLOWED_DOMAINS:
        raise errors.PermanentError("InvalidArtifact", f"the ONNX graph uses operator domains {sorted(domains)}")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise errors.PermanentError("InvalidArtifact", "the ONNX graph refers to external data")
    return any(node.op_type == "Cast" and any(a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in node.attribute)
               for node in model.graph.node)


# ----- conversion and parity (the evaluate worker) -----------------------------------------------------------
def validate(model: Any, x: pd.DataFrame, signature: Mapping[str, Any], store: store_mod.Store) -> dict[str, Any]:
    """Convert ``model``, check parity on ``x`` (the holdout), and store the ONNX bytes if it passed.

    Never raises for a model that cannot be converted: the result then names ``sklearn`` and why.

    Returns:
        ``{"name": "onnx", "artifact": {"uri", "digest"}, "parity": {"rows", "labelMismatches",
        "maxProbabilityDiff" | "maxValueDiff", "tolerance"}, "versions": {...}}`` or
        ``{"name": "sklearn", "reason": str}``.

    Raises:
        roost.errors.ExternalError: the store could not be written (the evaluation is retried).
    """
    try:
        sig = protocol.Signature.from_dict(signature)
        graph = convert(model, sig)
        parity = check_parity(model, graph, x, sig)
    except Refused as e:
        log.info("Serving with scikit-learn: %s", e.reason)
        return {"name": SKLEARN, "reason": e.reason}
    except Exception as e:  # a converter or runtime bug must never fail the evaluation
        message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        log.info("Serving with scikit-learn: conversion failed: %s: %s", type(e).__name__, message)
        return {"name": SKLEARN, "reason": f"the ONNX conversion failed: {type(e).__name__}: {message}"}
    if not parity["passed"]:
        return {"name": SKLEARN, "reason": parity["reason"]}
    stored = store.put_bytes(graph)
    return {
        "name": ONNX,
        "artifact": {"uri": stored.uri, "digest": stored.digest},
        "parity": parity["figures"],
        "versions": {name: _version(name) for name in ("skl2onnx", "onnxruntime")},
    }


def convert(model: Any, signature: protocol.Signature) -> bytes:
    """The ONNX bytes of a fitted ``model`` taking one float64 ``[N, F]`` input in signature order.

    Raises:
        Refused: the signature has non-numeric inputs, or the pipeline has a step that cannot be
            converted faithfully (an imputer that drops an all-missing column, for one).
        Exception: whatever skl2onnx raises for an estimator it does not convert.
    """
    if signature.block_datatype is None:
        kinds = sorted({f"{i.type} ({i.datatype})" for i in signature.inputs if i.datatype not in ("FP64", "INT64")})
        raise Refused(
            "ONNX serving takes numeric inputs of one datatype only; this model has "
            + (", ".join(kinds) if kinds else "both FP64 and INT64 inputs")
        )
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    prepared = _prepare(copy.deepcopy(model), list(signature.names))
    final = prepared.steps[-1][1] if hasattr(prepared, "steps") else prepared
    options = {id(final): {"zipmap": False}} if signature.is_classifier else None
    if signature.is_classifier and not hasattr(final, "predict_proba"):
        raise Refused(f"{type(final).__name__} gives no probabilities; served by scikit-learn")
    graph = convert_sklearn(
        prepared, initial_types=[(_INPUT, DoubleTensorType([None, len(signature.inputs)]))],
        options=options, target_opset=dict(TARGET_OPSET),
    )
    data: bytes = graph.SerializeToString()
    return data


def _prepare(model: Any, names: list[str]) -> Any:
    """Make ``model`` (a deep copy) convertible from one float64 matrix in ``names`` order.

    - ColumnTransformer columns named by string become positions in ``names``;
    - mean/median/constant SimpleImputers on numeric inputs become pass-throughs: the server refuses
      missing numeric values, so they never change a value it sees (ONNX Runtime has no float64 Imputer);
    - tree models get a float32 cast in front, as scikit-learn casts their input.
    """
    from skl2onnx.sklapi import CastTransformer
    from sklearn import compose, impute, pipeline

    def strip(step: Any) -> Any:
        if isinstance(step, impute.SimpleImputer):
            statistics = np.asarray(getattr(step, "statistics_", []), dtype=object)
            if step.add_indicator or any(_is_missing(v) for v in statistics):
                raise Refused("an imputer adds indicator columns or drops an all-missing column")
            if not _is_missing(step.missing_values):
                raise Refused(f"an imputer replaces {step.missing_values!r}, a value the server accepts")
            return "passthrough"
        if isinstance(step, pipeline.Pipeline):
            kept = [(n, s) for n, s in ((n, strip(s)) for n, s in step.steps) if s != "passthrough"]
            if not kept:
                return "passthrough"
            step.steps = kept
            return step
        if isinstance(step, compose.ColumnTransformer):
            step.transformers_ = [
                (name, strip(t) if t not in ("drop", "passthrough") else t, _positions(columns, names))
                for name, t, columns in step.transformers_
            ]
            if hasattr(step, "feature_names_in_"):
                del step.feature_names_in_
            return step
        return step

    model = strip(model)
    if model == "passthrough":
        raise Refused("the model has no estimator")
    if not isinstance(model, pipeline.Pipeline):
        model = pipeline.Pipeline([("estimator", model)])
    final = model.steps[-1][1]
    module = type(final).__module__
    if module.startswith(("sklearn.tree", "sklearn.ensemble._forest", "sklearn.ensemble._gb")):
        cast = CastTransformer(dtype=np.float32).fit(np.zeros((1, len(names))))
        model.steps.insert(len(model.steps) - 1, ("cast_float32", cast))
    return model


def _positions(columns: Any, names: list[str]) -> Any:
    if isinstance(columns, list | tuple | np.ndarray) and all(isinstance(c, str) for c in columns):
        try:
            return [names.index(c) for c in columns]
        except ValueError as e:
            raise Refused(f"a column transformer reads a column outside the signature: {e}") from e
    return columns


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def check_parity(model: Any, graph: bytes, x: pd.DataFrame, signature: protocol.Signature) -> dict[str, Any]:
    """Compare ONNX Runtime (unguarded) with scikit-learn on the rows of ``x`` the server could receive.

    Returns:
        ``{"passed": bool, "figures": {"rows", "labelMismatches", "maxProbabilityDiff" (classifiers) or
        "maxValueDiff" (regressors), "tolerance"}, "reason": str (when not passed)}``. Regression values
        beyond :data:`TOLERANCE` count as label mismatches.
    """
    import onnxruntime as ort

    frame = x.loc[:, list(signature.names)]
    block = frame.to_numpy(dtype=np.float64)
    usable = np.isfinite(block).all(axis=1)
    frame, block = frame[usable], block[usable]
    rows = len(block)
    if rows == 0:
        return {"passed": False, "figures": {}, "reason": "no holdout row without missing values to check ONNX on"}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    sklearn = SklearnPredictor(model, signature)
    onnx_predictor = OnnxPredictor(session, sklearn, signature, guard=False)
    figures: dict[str, Any] = {"rows": rows}
    if signature.is_classifier:
        raw_labels, raw_proba = onnx_predictor.run(block)
        expected = np.asarray(model.predict(frame))
        expected_proba = np.asarray(model.predict_proba(frame), dtype=np.float64)
        got = raw_labels.reshape(-1)
        same = got == expected.astype(got.dtype, copy=False) if got.dtype != object else got == expected
        mismatches = int(rows - np.count_nonzero(same))
        diff = float(np.max(np.abs(raw_proba.astype(np.float64) - expected_proba)))
        figures |= {"labelMismatches": mismatches, "maxProbabilityDiff": diff}
        what, counted = "probability", "label mismatches"
    else:
        (values,) = onnx_predictor.run(block)
        expected_values = np.asarray(model.predict(frame), dtype=np.float64)
        gaps = np.abs(values.reshape(-1).astype(np.float64) - expected_values)
        mismatches = int(np.count_nonzero(~(gaps <= TOLERANCE)))
        diff = float(np.max(gaps))
        figures |= {"labelMismatches": mismatches, "maxValueDiff": diff}
        what, counted = "value", "values beyond the tolerance"
    figures["tolerance"] = TOLERANCE
    passed = mismatches == 0 and diff <= TOLERANCE
    result: dict[str, Any] = {"passed": passed, "figures": figures}
    if not passed:
        result["reason"] = (
            f"ONNX parity failed on {rows} holdout rows: {mismatches} {counted}, max {what} "
            f"difference {diff:.3g} (tolerance {TOLERANCE:g})"
        )
    return result


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
