"""Safe model artifacts: scikit-learn models as skops files, never pickle.

A pickle runs code while it loads, so a model file from a store or a pull request could run anything
in the operator, a training job or a model server. skops stores an object as a JSON schema plus
``.npy`` arrays and, when loading, builds only the types it is told to trust
(https://skops.readthedocs.io/en/stable/persistence.html). Roost trusts:

* what skops trusts by default (every scikit-learn estimator and transformer, numpy and scipy
  primitives, builtin containers), and
* :data:`TRUSTED_TYPES`, an explicit list of scikit-learn internals that fitted models of the
  allowlisted estimators (``roost.api.trainingrun.ESTIMATORS``) contain,

and only types whose module is under :data:`TRUSTED_MODULES`. Any other type in a file refuses the
whole file with :class:`UntrustedTypes` before a single object is built. The check reads the file's
JSON schema only; nothing from the file is imported or executed.

:func:`dump` writes the same bytes for the same model: skops names arrays after ``id()`` and stamps
zip entries with the current time, so the archive is rewritten canonically (ids renumbered in schema
order, fixed timestamps). A retried training run therefore stores the same object under the same
digest instead of a twin.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import skops.io as sio
from sklearn import base as sk_base
from sklearn import compose, pipeline

from roost import errors
from roost.storage import store as store_mod

FORMAT = "skops"

# Types skops does not trust by default that fitted models of the allowlisted estimators hold.
# Besides numpy's dtype, they are scikit-learn's own compiled structures; skops leaves them out of
# its defaults because it cannot check their arrays (for TreePredictor, a crafted node array can
# crash the process on the first prediction: scikit-learn PR 34558). Roost only loads files whose
# sha256 was pinned by its own training run or by a reviewed manifest, and accepts that residual
# risk for these types.
TRUSTED_TYPES: frozenset[str] = frozenset({
    "numpy.dtype",  # SimpleImputer's fit dtype; rebuilt from an empty array read with allow_pickle=False
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.SEuclideanDistance64",
    "sklearn.metrics._dist_metrics.ManhattanDistance64",
    "sklearn.metrics._dist_metrics.ChebyshevDistance64",
    "sklearn.metrics._dist_metrics.MinkowskiDistance64",
    "sklearn.metrics._dist_metrics.WMinkowskiDistance64",
    "sklearn.metrics._dist_metrics.MahalanobisDistance64",
    "sklearn.metrics._dist_metrics.HammingDistance64",
    "sklearn.metrics._dist_metrics.CanberraDistance64",
    "sklearn.metrics._dist_metrics.BrayCurtisDistance64",
})

# Every type in a file must live under one of these modules, whatever skops trusts by default.
TRUSTED_MODULES: tuple[str, ...] = ("builtins", "numpy", "scipy.sparse", "scipy.special", "sklearn")

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest timestamp a zip entry can carry
_SCHEMA = "schema.json"


class UntrustedTypes(errors.PermanentError):
    """The file names types outside the allowlist; it was not loaded.

    Attributes:
        types: the offending fully qualified type names, sorted.
    """

    def __init__(self, types: list[str]) -> None:
        super().__init__("UntrustedType", f"the model file contains untrusted types: {', '.join(types)}")
        self.types = types


class InvalidArtifact(errors.PermanentError):
    """The bytes are not a skops file this version of Roost can read."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidArtifact", message)


def dump(estimator: Any) -> bytes:
    """Serialise ``estimator`` (typically a fitted ``sklearn.pipeline.Pipeline``) as skops bytes.

    The bytes are deterministic for the same fitted model and library versions (see the module
    docstring), so content addressing turns identical models into one stored object.

    Returns:
        A zip archive in the skops format (``schema.json`` + ``.npy`` arrays), deflate-compressed.
    """
    return _canonical(sio.dumps(estimator))


def load(data: bytes) -> Any:
    """Load skops ``data`` if every type it names is trusted.

    Args:
        data: the bytes of a skops file (already digest-checked by the caller, see :func:`load_verified`).

    Returns:
        The rebuilt object (for Roost's own artifacts, a fitted ``Pipeline``).

    Raises:
        UntrustedTypes: reason ``UntrustedType``; the file names a type outside the allowlist.
        InvalidArtifact: reason ``InvalidArtifact``; the bytes are not a readable skops file.
    """
    try:
        schema = _read_schema(data)
        untrusted = set(sio.get_untrusted_types(data=data))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as e:
        raise InvalidArtifact(f"not a readable skops file: {e}") from e
    offending = {t for t in untrusted if t not in TRUSTED_TYPES}
    offending |= {t for t in type_names(schema) if not _in_trusted_module(t)}
    if offending:
        raise UntrustedTypes(sorted(offending))
    try:
        return sio.loads(data, trusted=sorted(untrusted))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidArtifact(f"the skops file could not be loaded: {e}") from e


def load_verified(store: store_mod.Store, uri: str, digest: str) -> Any:
    """Read ``uri``, check that its bytes hash to ``digest``, then :func:`load` them.

    Raises:
        roost.storage.store.DigestMismatch: reason ``DigestMismatch``; checked before anything is parsed.
        UntrustedTypes: reason ``UntrustedType``.
        InvalidArtifact: reason ``InvalidArtifact``.
        roost.errors.ExternalError: the store could not be read.
    """
    return load(store.read_bytes(uri, digest))


def type_names(schema: Any) -> set[str]:
    """Every ``module.Class`` a skops schema names (reading JSON only, importing nothing)."""
    return {f"{node['__module__']}.{node['__class__']}" for node in _nodes(schema)}


# ----- signatures ----------------------------------------------------------------------------------
_TYPE_BY_TRANSFORMER = {"numeric": "numeric", "boolean": "boolean", "categorical": "categorical"}


def signature_of(model: Any, features: Any = None, target: str | None = None) -> dict[str, Any]:
    """Describe the inputs and output of a fitted model, in the Open Inference Protocol's datatypes.

    Feature names come from ``model.feature_names_in_`` (set when the model was fitted on a
    DataFrame), else from ``features.columns``. A feature's type comes from the name of the
    ColumnTransformer branch that reads it (``numeric``/``boolean``/``categorical``, as Roost's
    training builds it), else from its dtype in ``features``.

    Args:
        model: a fitted estimator or Pipeline.
        features: optional ``pandas.DataFrame`` of inputs, used for dtypes (INT64 vs FP64).
        target: the label column's name, recorded as is.

    Returns:
        ``{"inputs": [{"name", "type", "datatype"}], "outputs": {"task", "datatype", "classes"?},
        "target"}``; ``type`` is numeric|categorical|boolean, ``datatype`` FP64|INT64|BOOL|BYTES;
        ``classes`` (classification only) are JSON values in the order of ``predict_proba``'s columns.
    """
    names = _feature_names(model, features)
    branch_types = _branch_types(model)
    inputs = []
    for name in names:
        dtype = features[name].dtype if features is not None and name in features.columns else None
        kind = branch_types.get(name) or _type_of_dtype(dtype)
        inputs.append({"name": name, "type": kind, "datatype": _input_datatype(kind, dtype)})
    outputs: dict[str, Any]
    if sk_base.is_classifier(model) and hasattr(model, "classes_"):
        classes = np.asarray(model.classes_)
        outputs = {"task": "classification", "classes": classes.tolist(), "datatype": _datatype_of(classes)}
    else:
        outputs = {"task": "regression", "datatype": "FP64"}
    return {"inputs": inputs, "outputs": outputs, "target": target}


def _feature_names(model: Any, features: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    if features is not None:
        return [str(c) for c in features.columns]
    raise InvalidArtifact("the model records no feature names (it was not fitted on a DataFrame)")


def _branch_types(model: Any) -> dict[str, str]:
    """``{feature: type}`` from the first ColumnTransformer of a Pipeline (empty when there is none)."""
    steps = model.steps if isinstance(model, pipeline.Pipeline) else [("", model)]
    for _, step in steps:
        if isinstance(step, compose.ColumnTransformer) and hasattr(step, "transformers_"):
            found: dict[str, str] = {}
            for branch, _transformer, columns in step.transformers_:
                kind = _TYPE_BY_TRANSFORMER.get(branch)
                if kind is not None and isinstance(columns, list | tuple | np.ndarray):
                    found.update({str(c): kind for c in columns})
            return found
    return {}


def _type_of_dtype(dtype: Any) -> str:
    if dtype is None:
        return "numeric"
    if _is_bool(dtype):
        return "boolean"
    return "numeric" if _is_numeric(dtype) else "categorical"


def _input_datatype(kind: str, dtype: Any) -> str:
    if kind == "boolean":
        return "BOOL"
    if kind == "categorical":
        return "BYTES"
    return "INT64" if dtype is not None and np.issubdtype(np.dtype(dtype), np.integer) else "FP64"


def _datatype_of(values: np.ndarray[Any, Any]) -> str:
    if values.dtype.kind == "b":
        return "BOOL"
    if values.dtype.kind in "iu":
        return "INT64"
    if values.dtype.kind == "f":
        return "FP64"
    return "BYTES"


def _is_numeric(dtype: Any) -> bool:
    try:
        return bool(np.issubdtype(np.dtype(dtype), np.number) or np.dtype(dtype).kind == "b")
    except TypeError:  # pandas extension dtypes (str, category) have no numpy equivalent
        return False


def _is_bool(dtype: Any) -> bool:
    try:
        return bool(np.dtype(dtype).kind == "b")
    except TypeError:
        return str(dtype) == "boolean"


# ----- internals ------------------------------------------------------------------------------------
def _in_trusted_module(type_name: str) -> bool:
    return any(type_name == m or type_name.startswith(m + ".") for m in TRUSTED_MODULES)


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every skops node (a dict with ``__module__`` and ``__class__``) in a schema, depth first."""
    if isinstance(node, dict):
        if "__module__" in node and "__class__" in node:
            yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _read_schema(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return json.loads(archive.read(_SCHEMA))


def _canonical(data: bytes) -> bytes:
    """Rewrite a skops archive so that equal objects give equal bytes.

    skops names arrays ``<id(obj)>.npy`` (and byte blobs ``<uuid4>.bin``) and records ``__id__`` =
    ``id(obj)`` to restore shared references. Both are renumbered 1, 2, 3... in schema order (0
    would disable skops' memoisation), and entries get a fixed timestamp.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read(_SCHEMA))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}
        for node in _nodes(schema):
            if isinstance(node.get("__id__"), int):
                node["__id__"] = ids.setdefault(node["__id__"], len(ids) + 1)
            name = node.get("file")
            if isinstance(name, str):
                suffix = name[name.rfind("."):] if "." in name else ""
                node["file"] = files.setdefault(name, f"{len(files) + 1}{suffix}")
        blobs = {new: archive.read(old) for old, new in files.items()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as canonical:
        entries = [(_SCHEMA, json.dumps(schema, indent=2).encode()), *sorted(blobs.items())]
        for name, blob in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            canonical.writestr(info, blob)
    return out.getvalue()
