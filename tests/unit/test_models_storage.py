"""Model artifacts are skops files that load only with trusted types, and dump to the same bytes."""

from __future__ import annotations

import collections
import hashlib
import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn import base as sk_base
from sklearn import ensemble, pipeline, preprocessing

from roost.api import trainingrun
from roost.storage import models
from roost.storage import store as store_mod
from roost.workers import _data, train


class Boom:
    """Writes a marker file when it is rebuilt from a file: proof that loading ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("code from the model file ran")
        self.__dict__.update(state)


Array = np.ndarray[Any, Any]


def small_frame(rows: int = 120, seed: int = 0) -> tuple[pd.DataFrame, Array, Array]:
    """Mixed-type features, a 3-class target and a continuous target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "x1": rng.normal(size=rows),
        "x2": rng.integers(0, 10, size=rows),
        "colour": pd.Series(rng.choice(["red", "green", "blue"], size=rows), dtype=object),
        "flag": pd.Series(rng.random(rows) < 0.5, dtype=object),
    })
    classes = (frame["x1"] > 0).astype(int) + (frame["x2"] > 5).astype(int)
    return frame, classes.to_numpy(), frame["x1"].to_numpy() * 3 + rng.normal(size=rows)


# Keep ensembles small: the test is about types, not quality.
SMALL: dict[str, dict[str, Any]] = {
    "RandomForest": {"n_estimators": 3}, "ExtraTrees": {"n_estimators": 3},
    "GradientBoosting": {"n_estimators": 3}, "HistGradientBoosting": {"max_iter": 3},
}

FEATURES = (
    _data.Feature("x1", "numeric"), _data.Feature("x2", "numeric"),
    _data.Feature("colour", "categorical"), _data.Feature("flag", "boolean"),
)


def fitted(dotted: str, **params: Any) -> pipeline.Pipeline:
    """A Roost pipeline around ``dotted`` fitted on :func:`small_frame`."""
    module, _, name = dotted.rpartition(".")
    estimator = getattr(importlib.import_module(module), name)(**params)
    frame, classes, values = small_frame()
    model = train.build_pipeline(FEATURES, trainingrun.Preprocessing(numeric="standard"), estimator)
    return model.fit(frame, classes if sk_base.is_classifier(estimator) else values)


def test_dump_gives_the_same_bytes_for_the_same_model_and_loads_back() -> None:
    model = fitted("sklearn.ensemble.RandomForestClassifier", n_estimators=5, random_state=0)
    twin = fitted("sklearn.ensemble.RandomForestClassifier", n_estimators=5, random_state=0)
    data = models.dump(model)

    assert data == models.dump(model) == models.dump(twin)
    loaded = models.load(data)
    frame, _, _ = small_frame(seed=1)
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))


@pytest.mark.parametrize(
    ("dotted", "params"),
    [(e, SMALL.get(e.rsplit(".", 1)[-1].removesuffix("Classifier").removesuffix("Regressor"), {}))
     for e in trainingrun.ESTIMATORS]
    + [("sklearn.neighbors.KNeighborsClassifier", {"algorithm": a}) for a in ("kd_tree", "ball_tree")]
    + [("sklearn.neighbors.KNeighborsRegressor", {"algorithm": "ball_tree", "metric": "manhattan"})],
    ids=lambda v: v.rsplit(".", 1)[-1] if isinstance(v, str) else "-".join(map(str, v.values())),
)
def test_every_allowlisted_estimator_round_trips_with_trusted_types(
    dotted: str, params: dict[str, Any],
) -> None:
    model = fitted(dotted, **params)

    loaded = models.load(models.dump(model))

    frame, _, _ = small_frame(seed=2)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_a_custom_class_is_refused_and_nothing_from_the_file_runs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = sio.dumps({"model": Boom(str(marker))})
    # Control: trusting every type in the file does run its code.
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert marker.exists()
    marker.unlink()

    with pytest.raises(models.UntrustedTypes) as refused:
        models.load(data)

    assert refused.value.reason == "UntrustedType"
    assert "Boom" in refused.value.message
    assert not marker.exists()


def test_a_function_reference_is_refused_by_name() -> None:
    data = sio.dumps(pipeline.make_pipeline(preprocessing.FunctionTransformer(func=os.system)))

    with pytest.raises(models.UntrustedTypes) as refused:
        models.load(data)

    assert refused.value.types == [f"{os.system.__module__}.system"]


def test_types_outside_the_trusted_modules_are_refused_even_if_skops_trusts_them() -> None:
    data = sio.dumps({"counts": collections.Counter("ab")})

    with pytest.raises(models.UntrustedTypes) as refused:
        models.load(data)

    assert "collections.Counter" in refused.value.types


def test_load_verified_checks_the_digest_before_parsing(tmp_path: Path) -> None:
    store = store_mod.Store(f"file://{tmp_path}")
    stored = store.put_bytes(models.dump(fitted("sklearn.linear_model.LogisticRegression")))
    tampered = bytearray(store.read_bytes(stored.uri))
    tampered[-10] ^= 0xFF
    store.write_bytes(stored.uri, bytes(tampered))

    with pytest.raises(store_mod.DigestMismatch) as mismatch:
        models.load_verified(store, stored.uri, stored.digest)

    assert mismatch.value.reason == "DigestMismatch"
    assert mismatch.value.actual == "sha256:" + hashlib.sha256(tampered).hexdigest()


def test_bytes_that_are_not_a_skops_file_are_an_invalid_artifact() -> None:
    with pytest.raises(models.InvalidArtifact) as invalid:
        models.load(b"\x80\x04not a zip, maybe a pickle")

    assert invalid.value.reason == "InvalidArtifact"


def test_signature_lists_inputs_in_order_with_types_and_the_classes() -> None:
    model = fitted("sklearn.linear_model.LogisticRegression")
    frame, _, _ = small_frame()

    signature = models.signature_of(models.load(models.dump(model)), frame, "label")

    assert signature == {
        "inputs": [
            {"name": "x1", "type": "numeric", "datatype": "FP64"},
            {"name": "x2", "type": "numeric", "datatype": "INT64"},
            {"name": "colour", "type": "categorical", "datatype": "BYTES"},
            {"name": "flag", "type": "boolean", "datatype": "BOOL"},
        ],
        "outputs": {"task": "classification", "classes": [0, 1, 2], "datatype": "INT64"},
        "target": "label",
    }


def test_signature_of_a_regressor_without_a_column_transformer_uses_dtypes() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1, 2, 3]})
    model = ensemble.RandomForestRegressor(n_estimators=2, random_state=0).fit(frame, [1.0, 2.0, 3.0])

    signature = models.signature_of(model, frame, "y")

    assert signature["inputs"] == [
        {"name": "a", "type": "numeric", "datatype": "FP64"},
        {"name": "b", "type": "numeric", "datatype": "INT64"},
    ]
    assert signature["outputs"] == {"task": "regression", "datatype": "FP64"}
