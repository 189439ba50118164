"""Datasets on a real control plane with the real operator: versions, profiles, bad data, refresh, restarts."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from roost.storage import store as store_mod
from tests.conftest import Operator, Roost
from tests.integration import _lifecycle as lc

pytestmark = pytest.mark.integration


def test_breast_cancer_becomes_ready_with_its_digest_shape_profile_and_a_new_version_event(
        roost: Roost, operator: Operator, namespace: str, api_client: Any, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    roost.create(namespace, lc.dataset("breast-cancer", csv.as_uri(), validation={"minRows": 500}))

    obj = roost.wait("Dataset", namespace, "breast-cancer", op=operator)

    status = obj["status"]
    assert status["rows"] == lc.BREAST_CANCER_ROWS
    assert status["columns"] == lc.BREAST_CANCER_COLUMNS
    assert status["digest"] == "sha256:" + hashlib.sha256(csv.read_bytes()).hexdigest()
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert lc.condition(obj, "Validated")["status"] == "True"
    assert lc.condition(obj, "Stalled")["status"] == "False"
    assert [h["digest"] for h in status["history"]] == [status["digest"]]
    assert status.get("job") is None

    profile = store_mod.Store(operator.store).read_json(status["profileURI"])
    frame = pd.read_csv(csv)
    by_name = {f["name"]: f for f in profile["features"]}
    for column in ("mean_radius", "worst_area", "smoothness_error"):
        for stat in ("mean", "std", "min", "max"):
            expected = float(getattr(frame[column], stat)())
            assert by_name[column][stat] == pytest.approx(expected, rel=1e-9, abs=1e-9), (column, stat)
    assert profile["rows"] == lc.BREAST_CANCER_ROWS

    [event] = lc.wait_event(api_client, namespace, "breast-cancer", "NewVersion", "Normal")
    assert status["digest"][:19] in event.message


def test_penguins_schema_records_island_and_sex_as_categorical(
        roost: Roost, operator: Operator, namespace: str, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "penguins.csv")
    roost.create(namespace, lc.dataset("penguins", csv.as_uri(), target="species"))

    obj = roost.wait("Dataset", namespace, "penguins", op=operator)

    schema = {f["name"]: f for f in obj["status"]["schema"]}
    assert schema["island"]["type"] == "categorical"
    assert schema["sex"]["type"] == "categorical"
    assert schema["sex"]["missing"] == 11
    assert schema["bill_length_mm"]["type"] == "numeric"
    assert "species" not in schema
    assert obj["status"]["rows"] == 344
    assert obj["status"]["target"]["classes"] == ["Adelie", "Chinstrap", "Gentoo"]


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (Dataset manifest, the reason it must stall with)."""
    def write(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return path.as_uri()

    cancer = lc.copy_data(tmp_path, "breast_cancer.csv").as_uri()
    penguins = lc.copy_data(tmp_path, "penguins.csv").as_uri()
    return {
        "unreachable": (lc.dataset("unreachable", "file:///nonexistent/data.csv"), "SourceUnreachable"),
        "empty": (lc.dataset("empty", write("empty.csv", b"")), "MalformedData"),
        "ragged": (lc.dataset("ragged", write("ragged.csv", b"a,b,target\n1,2,0\n3,4,1,9,9\n5,6,0\n")),
                   "MalformedData"),
        "not-utf8": (lc.dataset("not-utf8", write("latin1.csv", "city,target\nMünchen,1\nWien,0\n".encode("latin-1"))),
                     "MalformedData"),
        "no-target": (lc.dataset("no-target", write("notarget.csv", b"a,b\n1,2\n3,4\n")), "SchemaMismatch"),
        "duplicate-columns": (lc.dataset("duplicate-columns", write("dups.csv", b"a,a,target\n1,2,0\n3,4,1\n")),
                              "MalformedData"),
        "wrong-type": (lc.dataset("wrong-type", penguins, target="species",
                                  schema={"features": [{"name": "island", "type": "numeric"}]}), "SchemaMismatch"),
        "wrong-values": (lc.dataset("wrong-values", penguins, target="species",
                                    schema={"features": [{"name": "island", "type": "categorical",
                                                          "values": ["Biscoe", "Dream"]}]}), "SchemaMismatch"),
        "digest-pin": (lc.dataset("digest-pin", cancer), "DigestMismatch"),
        "min-rows": (lc.dataset("min-rows", cancer, validation={"minRows": 1000}), "ValidationFailed"),
    }


def test_bad_data_stalls_with_its_reason_and_a_warning_event_and_the_operator_stays_healthy(
        roost: Roost, operator: Operator, namespace: str, api_client: Any, tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    cases["digest-pin"][0]["spec"]["source"]["digest"] = "sha256:" + "0" * 64
    for manifest, _ in cases.values():
        roost.create(namespace, manifest)

    for name, (_, reason) in cases.items():
        obj = roost.wait("Dataset", namespace, name, "Stalled", reason=reason, timeout=90, op=operator)
        assert lc.condition(obj, "Ready")["status"] == "False", name
        validated = lc.condition(obj, "Validated")
        assert (validated["status"], validated["reason"]) == ("False", reason), name
        assert obj["status"].get("job") is None, name
        lc.wait_event(api_client, namespace, name, reason, "Warning")
    unreachable = roost.get("Dataset", namespace, "unreachable")
    assert unreachable["status"]["attempts"] == 3  # SourceUnreachable is retried twice before it stalls
    assert "nonexistent" in lc.condition(unreachable, "Stalled")["message"]
    assert "'island'" in lc.condition(roost.get("Dataset", namespace, "wrong-values"), "Stalled")["message"]

    good = lc.copy_data(tmp_path, "penguins.csv")
    roost.create(namespace, lc.dataset("good", good.as_uri(), target="species"))
    roost.wait("Dataset", namespace, "good", op=operator)
    assert operator.proc is not None and operator.proc.poll() is None


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_refresh_takes_a_new_version_when_the_source_changes(
        roost: Roost, operator: Operator, namespace: str, api_client: Any, tmp_path: Path) -> None:
    csv = lc.copy_data(tmp_path, "breast_cancer.csv")
    roost.create(namespace, lc.dataset("refreshed", csv.as_uri(), refreshInterval="2s"))
    ready = roost.wait("Dataset", namespace, "refreshed", op=operator)
    first = ready["status"]["digest"]

    lines = csv.read_bytes().splitlines(keepends=True)
    _replace(csv, b"".join([*lines, *lines[1:11]]))
    new_digest = lc.sha256_of(csv)

    deadline = time.monotonic() + 30
    obj = roost.get("Dataset", namespace, "refreshed")
    seen: set[tuple[str, str]] = set()  # (Ready, Reconciling) while refreshing
    while time.monotonic() < deadline and obj["status"].get("digest") != new_digest:
        seen.add((lc.condition(obj, "Ready")["status"], lc.condition(obj, "Reconciling")["status"]))
        time.sleep(0.1)
        obj = roost.get("Dataset", namespace, "refreshed")
    status = obj["status"]
    # The current version stays Ready (and usable by runs) while the next one is fetched.
    assert {r for r, _ in seen} == {"True"}, seen
    assert ("True", "True") in seen, seen
    assert lc.condition(obj, "Ready")["lastTransitionTime"] == lc.condition(ready, "Ready")["lastTransitionTime"]
    assert status["digest"] == new_digest, operator.tail()
    assert status["rows"] == lc.BREAST_CANCER_ROWS + 10
    assert [h["digest"] for h in status["history"]] == [new_digest, first]
    assert [h["rows"] for h in status["history"]] == [lc.BREAST_CANCER_ROWS + 10, lc.BREAST_CANCER_ROWS]
    assert lc.condition(obj, "Ready")["status"] == "True"
    lc.wait_event(api_client, namespace, "refreshed", "NewVersion", "Normal", count=2)


def _write_large_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    columns: dict[str, Any] = {f"x{i}": np.round(rng.normal(size=rows), 4) for i in range(10)}
    columns["target"] = rng.integers(0, 2, size=rows)
    pacsv.write_csv(pa.table(columns), str(path))


def test_operator_killed_mid_profile_adopts_the_running_unit_instead_of_starting_another(
        roost: Roost, operator: Operator, namespace: str, tmp_path: Path) -> None:
    csv = tmp_path / "large.csv"
    _write_large_csv(csv, 1_000_000)  # ~75 MB: a few seconds of profiling
    roost.create(namespace, lc.dataset("large", csv.as_uri()))
    deadline = time.monotonic() + 30
    job = None
    while job is None and time.monotonic() < deadline:
        job = (roost.get("Dataset", namespace, "large").get("status") or {}).get("job")
        time.sleep(0.05)
    assert job, operator.tail()
    units = operator.workdir / "state" / "work" / namespace

    operator.restart(kill=True)
    assert not (units / job / "exit").exists(), "the unit finished before the operator was killed"

    obj = roost.wait("Dataset", namespace, "large", timeout=120, op=operator)
    assert obj["status"]["rows"] == 1_000_000
    assert sorted(p.name for p in units.iterdir()) == [job]
    assert (units / job / "exit").read_text().split()[0] == "0"
    assert lc.condition(obj, "Ready")["status"] == "True"
