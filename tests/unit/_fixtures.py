"""Dataset versions for worker tests, in the format the profile worker writes.

A version is a Parquet snapshot (features + target under their original names) and a split JSON
(``{"train", "test", "seed", "testFraction", "stratified"}``), both content-addressed in a
``file://`` Store, plus the job's ``dataset`` object that names them.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import model_selection

from roost.storage import store as store_mod

REPO = Path(__file__).resolve().parents[2]
BREAST_CANCER_CSV = REPO / "examples" / "data" / "breast_cancer.csv"
TARGET = "target"


def breast_cancer() -> pd.DataFrame:
    """scikit-learn's breast-cancer data: 569 rows, 30 numeric features, binary ``target``."""
    return pd.read_csv(BREAST_CANCER_CSV)


def with_mixed_types(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus a categorical, a boolean and a datetime feature, with a few missing values."""
    out = frame.copy()
    out["radius_band"] = pd.cut(out["mean_radius"], bins=[0, 12, 16, 100], labels=["small", "mid", "large"])
    out["radius_band"] = out["radius_band"].astype(object)
    out["smooth"] = out["mean_smoothness"] < out["mean_smoothness"].median()
    out["taken"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(out)), unit="D")
    out["smooth"] = out["smooth"].astype(object)
    out.loc[::30, "smooth"] = None
    out.loc[::50, "radius_band"] = None
    out.loc[::40, "mean_texture"] = np.nan
    return out


def schema_of(frame: pd.DataFrame, target: str = TARGET) -> list[dict[str, Any]]:
    """The profile worker's schema: ``[{"name", "type", "missing"}]`` for every feature, in column order."""
    features = []
    for name in frame.columns:
        if name == target:
            continue
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or set(column.dropna().map(type)) == {bool}:
            kind = "boolean"
        elif pd.api.types.is_datetime64_any_dtype(column):
            kind = "datetime"
        elif pd.api.types.is_numeric_dtype(column):
            kind = "numeric"
        else:
            kind = "categorical"
        features.append({"name": name, "type": kind, "missing": int(column.isna().sum())})
    return features


def make_dataset(
    store: store_mod.Store,
    frame: pd.DataFrame,
    *,
    name: str = "breast-cancer",
    target: str = TARGET,
    test_fraction: float = 0.2,
    seed: int = 42,
    stratified: bool = True,
) -> dict[str, Any]:
    """Store ``frame`` as a snapshot with a split; return the job's ``dataset`` object."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    snapshot = store.put_bytes(buffer.getvalue())
    rows = np.arange(len(frame))
    train, test = model_selection.train_test_split(
        rows, test_size=test_fraction, random_state=seed, stratify=frame[target] if stratified else None,
    )
    split_doc = {
        "train": sorted(int(i) for i in train), "test": sorted(int(i) for i in test),
        "seed": seed, "testFraction": test_fraction, "stratified": stratified,
    }
    split = store.put_bytes(json.dumps(split_doc, sort_keys=True).encode())
    return {
        "name": name,
        "digest": snapshot.digest,
        "snapshotURI": snapshot.uri,
        "snapshotDigest": snapshot.digest,
        "splitURI": split.uri,
        "splitDigest": split.digest,
        "schema": schema_of(frame, target),
        "target": target,
    }


def train_job(dataset: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A train job for ``dataset``; ``spec`` entries (camelCase) override a small default spec."""
    wire: dict[str, Any] = {
        "datasetRef": {"name": dataset["name"]},
        "model": dataset["name"],
        "task": "classification",
        "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}},
        "preprocessing": {"numeric": "standard"},
        "metrics": ["accuracy", "roc_auc"],
        "seed": 0,
    }
    wire.update(spec)
    return {"run": {"namespace": "default", "name": "test"}, "spec": wire, "dataset": dataset, "attempt": 1}
