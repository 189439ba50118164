"""The Dataset profile worker: real data in, digests, snapshot, split and profile out; bad data refused.

Numbers are checked against pandas computed independently; bad inputs must fail with the reason the
Dataset's conditions show (``SourceUnreachable``, ``DigestMismatch``, ``MalformedData``,
``SchemaMismatch``, ``ValidationFailed``), never with an unexplained exception.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from roost import errors
from roost.storage import store as store_mod
from roost.workers import profile, runner, sketch

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data"
BREAST_CANCER = DATA / "breast_cancer.csv"
PENGUINS = DATA / "penguins.csv"
LEVELS = profile.QUANTILE_LEVELS


@pytest.fixture()
def store(tmp_path: Path) -> store_mod.Store:
    return store_mod.Store(f"file://{tmp_path / 'store'}")


def make_job(uri: str, target: str, **spec: Any) -> dict[str, Any]:
    """A profile job for ``uri``; ``spec`` entries (wire, camelCase) extend the Dataset spec."""
    source = {"uri": uri, **spec.pop("source", {})}
    return {
        "dataset": {"namespace": "default", "name": "test"},
        "spec": {"source": source, "target": target, **spec},
        "previousDigest": None,
    }


def run(job: dict[str, Any], store: store_mod.Store, **options: Any) -> dict[str, Any]:
    return profile.run(job, store, store.uri("work", "default", "test"), options=profile.Options(**options))


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return f"file://{path}"


def read_profile(store: store_mod.Store, result: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(store.read_bytes(result["profileURI"], result["profileDigest"]))
    return doc


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in doc["features"]}


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


# ----- breast cancer: numbers equal pandas -------------------------------------------------------


@pytest.fixture(scope="module")
def breast_cancer(tmp_path_factory: pytest.TempPathFactory) -> tuple[store_mod.Store, dict[str, Any]]:
    store = store_mod.Store(f"file://{tmp_path_factory.mktemp('bc') / 'store'}")
    return store, run(make_job(f"file://{BREAST_CANCER}", "target"), store)


def test_result_counts_rows_columns_and_digests_the_source_bytes(
    breast_cancer: tuple[store_mod.Store, dict[str, Any]],
) -> None:
    store, result = breast_cancer
    assert result["ok"] is True
    assert result["rows"] == 569
    assert result["columns"] == 31
    assert result["digest"] == "sha256:" + hashlib.sha256(BREAST_CANCER.read_bytes()).hexdigest()
    assert set(result) == {
        "ok", "digest", "rows", "columns", "schema", "target", "snapshotURI", "snapshotDigest", "splitURI",
        "splitDigest", "profileURI", "profileDigest", "trainRows", "testRows",
    }
    assert len(result["schema"]) == 30
    assert all(f == {"name": f["name"], "type": "numeric", "missing": 0} for f in result["schema"])
    assert result["target"] == {"name": "target", "type": "categorical", "classes": [0, 1]}
    for kind in ("snapshot", "split", "profile"):
        data = store.read_bytes(result[f"{kind}URI"], result[f"{kind}Digest"])  # verifies the digest
        assert result[f"{kind}URI"] == store.object_uri(store_mod.digest_bytes(data))


def test_profile_numbers_equal_pandas(breast_cancer: tuple[store_mod.Store, dict[str, Any]]) -> None:
    store, result = breast_cancer
    frame = pd.read_csv(BREAST_CANCER)
    doc = read_profile(store, result)
    features = by_name(doc)
    assert list(features) == [c for c in frame.columns if c != "target"]
    for name, f in features.items():
        column = frame[name]
        assert f["count"] == column.count() and f["missing"] == 0
        assert close(f["mean"], column.mean()), name
        assert close(f["std"], column.std()), name
        assert f["min"] == column.min() and f["max"] == column.max()
        expected = column.quantile(list(LEVELS))
        for q, value in zip(LEVELS, expected, strict=True):
            assert close(f["quantiles"][f"p{round(q * 100):02d}"], value), (name, q)
        assert f["quantileMethod"] == "exact" and f["quantileRankError"] == 0.0
        # Histogram on the deciles: edges [min, p10..p90, max]; bin i holds edges[i] <= v < edges[i+1].
        edges = f["histogram"]["edges"]
        deciles = column.quantile([i / 10 for i in range(1, 10)]).to_numpy()
        assert len(edges) == 11 and np.allclose(edges[1:-1], deciles, rtol=1e-12)
        bins = np.searchsorted(np.asarray(edges[1:-1]), column.to_numpy(), side="right")
        assert f["histogram"]["counts"] == np.bincount(bins, minlength=10).tolist()
        assert f["sample"] == sorted(column.tolist())  # fewer values than the cap: all of them
    assert doc["target"]["frequencies"] == {"0": 212, "1": 357, "__other__": 0}
    assert doc["digest"] == result["digest"] and doc["rows"] == 569


def test_snapshot_holds_features_and_target_under_original_names(
    breast_cancer: tuple[store_mod.Store, dict[str, Any]],
) -> None:
    store, result = breast_cancer
    snapshot = pd.read_parquet(io.BytesIO(store.read_bytes(result["snapshotURI"], result["snapshotDigest"])))
    pd.testing.assert_frame_equal(snapshot, pd.read_csv(BREAST_CANCER), check_dtype=False)


def test_split_is_reproducible_and_keeps_class_shares(
    breast_cancer: tuple[store_mod.Store, dict[str, Any]], tmp_path: Path,
) -> None:
    store, result = breast_cancer
    split = json.loads(store.read_bytes(result["splitURI"], result["splitDigest"]))
    assert set(split) == {"train", "test", "seed", "testFraction", "stratified"}
    assert split["seed"] == 42 and split["testFraction"] == 0.2 and split["stratified"] is True
    train, test = split["train"], split["test"]
    assert train == sorted(train) and test == sorted(test)
    assert sorted(train + test) == list(range(569))
    assert (len(train), len(test)) == (result["trainRows"], result["testRows"]) == (455, 114)
    y = pd.read_csv(BREAST_CANCER)["target"].to_numpy()
    for cls in (0, 1):
        expected = (y == cls).mean() * len(test)
        assert abs((y[test] == cls).sum() - expected) <= 1

    again = run(make_job(f"file://{BREAST_CANCER}", "target"), store_mod.Store(f"file://{tmp_path / 'other'}"))
    assert again["splitDigest"] == result["splitDigest"]
    assert again["profileDigest"] == result["profileDigest"]
    assert again["snapshotDigest"] == result["snapshotDigest"]
    other_seed = run(make_job(f"file://{BREAST_CANCER}", "target", split={"seed": 7}), store)
    other = json.loads(store.read_bytes(other_seed["splitURI"]))
    assert other["test"] != test and other["seed"] == 7


def test_split_falls_back_to_plain_when_a_class_has_one_row(tmp_path: Path, store: store_mod.Store) -> None:
    rows = "".join(f"{i},{'a' if i % 2 else 'b'}\n" for i in range(40)) + "99,rare\n"
    result = run(make_job(write(tmp_path, "d.csv", b"x,y\n" + rows.encode()), "y"), store)
    split = json.loads(store.read_bytes(result["splitURI"]))
    assert split["stratified"] is False
    assert sorted(split["train"] + split["test"]) == list(range(41))
    assert result["target"]["classes"] == ["a", "b", "rare"]


def test_unstratified_split_when_asked_or_for_a_numeric_target(tmp_path: Path, store: store_mod.Store) -> None:
    result = run(make_job(f"file://{BREAST_CANCER}", "mean_radius", split={"stratify": True}), store)
    assert result["target"] == {"name": "mean_radius", "type": "numeric"}
    assert json.loads(store.read_bytes(result["splitURI"]))["stratified"] is False
    target = read_profile(store, result)["target"]
    assert close(target["mean"], pd.read_csv(BREAST_CANCER)["mean_radius"].mean())
    plain = run(make_job(f"file://{BREAST_CANCER}", "target", split={"stratify": False}), store)
    assert json.loads(store.read_bytes(plain["splitURI"]))["stratified"] is False


# ----- penguins: categorical features ------------------------------------------------------------


def test_penguins_frequencies_equal_pandas_value_counts(store: store_mod.Store) -> None:
    result = run(make_job(f"file://{PENGUINS}", "species"), store)
    frame = pd.read_csv(PENGUINS)
    assert result["rows"] == len(frame) == 344 and result["columns"] == 8
    schema = {f["name"]: f for f in result["schema"]}
    assert schema["island"]["type"] == schema["sex"]["type"] == "categorical"
    assert schema["bill_length_mm"]["type"] == "numeric"
    assert {n: f["missing"] for n, f in schema.items()} == frame.drop(columns="species").isna().sum().to_dict()
    assert result["target"] == {"name": "species", "type": "categorical",
                                "classes": ["Adelie", "Chinstrap", "Gentoo"]}
    features = by_name(read_profile(store, result))
    for name in ("island", "sex"):
        counts = frame[name].value_counts().to_dict()
        assert features[name]["frequencies"] == {**counts, "__other__": 0}
        assert features[name]["count"] == frame[name].count() and features[name]["distinct"] == len(counts)
    numeric = features["bill_length_mm"]
    assert close(numeric["mean"], frame["bill_length_mm"].mean())
    assert close(numeric["std"], frame["bill_length_mm"].std())
    assert close(numeric["quantiles"]["p95"], frame["bill_length_mm"].quantile(0.95))


def test_top_k_folds_the_rest_into_other(tmp_path: Path, store: store_mod.Store) -> None:
    values = [f"v{i:02d}" for i in range(10) for _ in range(10 - i)]  # v00 x10, v01 x9, ... v09 x1
    body = "c,y\n" + "".join(f"{v},{i % 2}\n" for i, v in enumerate(values))
    result = run(make_job(write(tmp_path, "d.csv", body.encode()), "y"), store, top_k=3)
    freq = by_name(read_profile(store, result))["c"]["frequencies"]
    assert freq == {"v00": 10, "v01": 9, "v02": 8, "__other__": len(values) - 27}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_parquet_and_jsonl_sources_profile_like_the_csv(fmt: str, tmp_path: Path, store: store_mod.Store) -> None:
    frame = pd.read_csv(PENGUINS)
    path = tmp_path / f"penguins.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    result = run(make_job(f"file://{path}", "species", source={"format": fmt}), store)
    expected = run(make_job(f"file://{PENGUINS}", "species"), store)
    assert result["schema"] == expected["schema"] and result["target"] == expected["target"]
    got, want = by_name(read_profile(store, result)), by_name(read_profile(store, expected))
    assert got["island"]["frequencies"] == want["island"]["frequencies"]
    assert got["sex"]["frequencies"] == want["sex"]["frequencies"]
    for name in ("bill_length_mm", "body_mass_g"):
        assert close(got[name]["mean"], want[name]["mean"]) and got[name]["quantiles"] == want[name]["quantiles"]


def test_boolean_datetime_and_numeric_types_are_inferred(tmp_path: Path, store: store_mod.Store) -> None:
    body = "when,flag,score,label\n" + "".join(
        f"2024-01-{1 + i % 28:02d},{'true' if i % 3 else 'false'},{i * 0.5},{'true' if i % 2 else 'false'}\n"
        for i in range(60)
    )
    result = run(make_job(write(tmp_path, "d.csv", body.encode()), "label"), store)
    assert [(f["name"], f["type"]) for f in result["schema"]] == [
        ("when", "datetime"), ("flag", "boolean"), ("score", "numeric"),
    ]
    assert result["target"] == {"name": "label", "type": "boolean", "classes": [False, True]}
    features = by_name(read_profile(store, result))
    assert features["flag"]["frequencies"] == {"true": 40, "false": 20, "__other__": 0}
    assert features["when"]["min"].startswith("2024-01-01") and features["when"]["max"].startswith("2024-01-28")


def test_csv_column_types_widen_when_a_late_value_does_not_fit(tmp_path: Path, store: store_mod.Store) -> None:
    lines = [f"{i},{i % 7},{i % 2}" for i in range(20_000)] + ["1.5,seven,1", ",,0"]
    body = ("a,b,y\n" + "\n".join(lines) + "\n").encode()
    result = run(make_job(write(tmp_path, "d.csv", body), "y"), store, block_size=4096)
    assert [(f["name"], f["type"], f["missing"]) for f in result["schema"]] == [
        ("a", "numeric", 1), ("b", "categorical", 1),
    ]
    features = by_name(read_profile(store, result))
    assert features["a"]["max"] == 19_999 and features["a"]["count"] == 20_001
    assert features["b"]["frequencies"]["seven"] == 1


def test_jsonl_fields_that_appear_late_or_change_type_widen(tmp_path: Path, store: store_mod.Store) -> None:
    lines = [json.dumps({"a": i, "y": i % 2}) for i in range(5_000)]
    lines += [json.dumps({"a": 0.5, "y": 1, "late": "x"}), json.dumps({"a": "text", "y": 0})]
    uri = write(tmp_path, "d.jsonl", ("\n".join(lines) + "\n").encode())
    result = run(make_job(uri, "y", source={"format": "jsonl"}), store, block_size=4096)
    assert [(f["name"], f["type"]) for f in result["schema"]] == [("a", "categorical"), ("late", "categorical")]
    assert result["rows"] == 5_002


def test_declared_schema_keeps_declared_columns_and_checks_them(store: store_mod.Store) -> None:
    schema = {"features": [
        {"name": "island", "type": "categorical", "values": ["Biscoe", "Dream", "Torgersen"]},
        {"name": "year", "type": "categorical"},
        {"name": "body_mass_g", "type": "numeric", "min": 0, "max": 10_000},
    ]}
    result = run(make_job(f"file://{PENGUINS}", "species", schema=schema), store)
    assert [f["name"] for f in result["schema"]] == ["island", "body_mass_g", "year"]  # source order
    assert result["columns"] == 4
    doc = read_profile(store, result)
    assert doc["ignoredColumns"] == ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "sex"]
    assert by_name(doc)["year"]["frequencies"] == {"2009": 120, "2008": 114, "2007": 110, "__other__": 0}
    snapshot = pq.read_table(io.BytesIO(store.read_bytes(result["snapshotURI"])))
    assert snapshot.column_names == ["species", "island", "body_mass_g", "year"]
    assert snapshot.schema.field("year").type == pa.string()


def test_matching_digest_pin_is_accepted_and_http_and_memory_sources_work(
    store: store_mod.Store, http_root: str,
) -> None:
    digest = "sha256:" + hashlib.sha256(PENGUINS.read_bytes()).hexdigest()
    pinned = run(make_job(f"file://{PENGUINS}", "species", source={"digest": digest}), store)
    assert pinned["digest"] == digest
    over_http = run(make_job(f"{http_root}/penguins.csv", "species"), store)
    assert over_http["digest"] == digest and over_http["profileDigest"] == pinned["profileDigest"]
    with fsspec.open("memory://roost-test/penguins.csv", "wb") as f:
        f.write(PENGUINS.read_bytes())
    in_memory = run(make_job("memory://roost-test/penguins.csv", "species"), store)
    assert in_memory["digest"] == digest


@pytest.fixture()
def http_root() -> Iterator[str]:
    """A plain HTTP server on loopback serving examples/data."""
    handler = functools.partial(QuietHandler, directory=str(DATA))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# ----- bad inputs --------------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


GOOD = b"a,b,y\n1,x,0\n2,y,1\n3,x,0\n4,y,1\n5,x,0\n"

BAD_INPUTS: list[tuple[str, bytes | None, dict[str, Any], str, str]] = [
    # id, file bytes (None: the URI is given in spec), extra spec, reason, words the message must have
    ("missing-local-file", None, {"uri": "file:///nonexistent/roost/data.csv"}, "SourceUnreachable", "nonexistent"),
    ("missing-memory-object", None, {"uri": "memory://roost-test/absent.csv"}, "SourceUnreachable", "absent.csv"),
    ("empty-file", b"", {}, "MalformedData", "empty"),
    ("header-only", b"a,b,y\n", {}, "ValidationFailed", "minRows"),
    ("ragged-rows", b"a,b,y\n1,2,0\n3,4,5,6\n", {}, "MalformedData", "Expected 3 columns"),
    ("non-utf8", b"a,b,y\n1,caf\xe9,0\n2,x,1\n", {}, "MalformedData", "line 2"),
    ("missing-target", GOOD, {"target": "label"}, "SchemaMismatch", "'label'"),
    ("duplicate-columns", b"a,a,y\n1,2,0\n", {}, "MalformedData", "'a'"),
    ("digest-pin", GOOD, {"source": {"digest": "sha256:" + "0" * 64}}, "DigestMismatch",
     "sha256:" + hashlib.sha256(GOOD).hexdigest()),
    ("min-rows", GOOD, {"validation": {"minRows": 100}}, "ValidationFailed", "minRows=100"),
    ("max-missing", b"a,b,y\n1,,0\n,,1\n3,x,0\n", {"validation": {"maxMissingFraction": 0.2}},
     "ValidationFailed", "maxMissingFraction"),
    ("feature-rule", b"a,b,y\n1,,0\n2,,1\n3,x,0\n",
     {"validation": {"features": [{"name": "b", "maxMissingFraction": 0.5}]}}, "ValidationFailed", "features[b]"),
    ("rule-for-unknown-column", GOOD,
     {"validation": {"features": [{"name": "zz", "maxMissingFraction": 0.5}]}}, "SchemaMismatch", "'zz'"),
    ("missing-label", b"a,b,y\n1,x,0\n2,y,\n", {}, "ValidationFailed", "label"),
    ("declared-numeric-gets-text", GOOD, {"schema": {"features": [{"name": "b", "type": "numeric"}]}},
     "SchemaMismatch", "'b'"),
    ("declared-column-absent", GOOD, {"schema": {"features": [{"name": "zz", "type": "numeric"}]}},
     "SchemaMismatch", "'zz'"),
    ("declared-values", GOOD, {"schema": {"features": [{"name": "b", "type": "categorical", "values": ["x"]}]}},
     "SchemaMismatch", "'y'"),
    ("declared-min", GOOD, {"schema": {"features": [{"name": "a", "type": "numeric", "min": 2}]}},
     "SchemaMismatch", "min"),
    ("declared-not-nullable", b"a,b,y\n1,x,0\n,y,1\n",
     {"schema": {"features": [{"name": "a", "type": "numeric", "nullable": False}]}}, "SchemaMismatch", "nullable"),
    ("declared-boolean-gets-2", b"a,b,y\n1,x,0\n2,y,1\n",
     {"schema": {"features": [{"name": "a", "type": "boolean"}]}}, "SchemaMismatch", "'a'"),
    ("one-row-cannot-split", b"a,b,y\n1,x,0\n", {}, "ValidationFailed", "split"),
    ("malformed-jsonl", b'{"a": 1, "y": 0}\n{"a": 2,\n', {"source": {"format": "jsonl"}}, "MalformedData", "line 2"),
    ("nested-jsonl", b'{"a": [1, 2], "y": 0}\n', {"source": {"format": "jsonl"}}, "MalformedData", "nested"),
    ("duplicate-jsonl-keys", b'{"a": 1, "a": 2, "y": 0}\n', {"source": {"format": "jsonl"}}, "MalformedData", "/a"),
    ("not-parquet", GOOD, {"source": {"format": "parquet"}}, "MalformedData", "Parquet"),
    ("invalid-spec", GOOD, {"split": {"testFraction": 2}}, "InvalidSpec", "testFraction"),
]


@pytest.mark.parametrize(("data", "spec", "reason", "words"), [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_with_its_reason(
    data: bytes | None, spec: dict[str, Any], reason: str, words: str, tmp_path: Path, store: store_mod.Store,
) -> None:
    spec = json.loads(json.dumps(spec))
    uri = spec.pop("uri", None) or write(tmp_path, "data", data or b"")
    target = spec.pop("target", "y")
    with pytest.raises(errors.PermanentError) as info:
        run(make_job(uri, target, **spec), store)
    assert info.value.reason == reason, info.value.message
    assert words in info.value.message


def test_unreachable_http_source_is_source_unreachable(store: store_mod.Store) -> None:
    with pytest.raises(errors.PermanentError) as info:
        run(make_job(f"http://127.0.0.1:{free_port()}/data.csv", "y"), store)
    assert info.value.reason == "SourceUnreachable"


def test_runner_writes_the_reason_to_result_json(tmp_path: Path, store: store_mod.Store) -> None:
    uri = write(tmp_path, "d.csv", b"a,y\n1,0\n")
    input_uri = store.uri("work", "t", "input.json")
    store.write_json(input_uri, make_job(uri, "missing"))
    assert runner.main("profile", input_uri, store.uri("work", "t"), store.root) == 0
    result = store.read_json(runner.result_uri(store.uri("work", "t")))
    assert result["ok"] is False and result["reason"] == "SchemaMismatch" and "'missing'" in result["message"]


def test_no_temporary_files_are_left_behind(tmp_path: Path, store: store_mod.Store,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    monkeypatch.setattr("tempfile.tempdir", None)
    run(make_job(f"file://{PENGUINS}", "species"), store)
    with pytest.raises(errors.PermanentError):
        run(make_job(f"file://{PENGUINS}", "nope"), store)
    assert list(work.iterdir()) == []


# ----- large data: the sketch path and bounded memory --------------------------------------------


def test_sketch_quantiles_stay_within_the_rank_error_bound(tmp_path: Path, store: store_mod.Store) -> None:
    rng = np.random.default_rng(3)
    n = 200_000
    columns = {"lognormal": rng.lognormal(0, 1, n), "uniform": rng.uniform(-5, 5, n),
               "ints": rng.integers(0, 1000, n).astype(np.float64)}
    path = tmp_path / "d.csv"
    pacsv.write_csv(pa.table({**columns, "y": rng.integers(0, 2, n)}), str(path))
    result = run(make_job(f"file://{path}", "y"), store, exact_quantile_max=10_000, sample_size=1_000)
    features = by_name(read_profile(store, result))
    for name, values in columns.items():
        f = features[name]
        assert f["quantileMethod"] == "kll"
        eps = f["quantileRankError"]
        assert 0 < eps < 0.01
        ordered = np.sort(values)
        for q in LEVELS:
            v = f["quantiles"][f"p{round(q * 100):02d}"]
            # The value's rank interval [#(< v), #(<= v)] / n must come within eps of q.
            lo = np.searchsorted(ordered, v, side="left") / n
            hi = np.searchsorted(ordered, v, side="right") / n
            assert lo - eps <= q <= hi + eps, (name, q, lo, hi, eps)
        assert close(f["mean"], float(values.mean())) and close(f["std"], float(values.std(ddof=1)))
        edges = np.asarray(f["histogram"]["edges"][1:-1])
        assert f["histogram"]["counts"] == np.bincount(np.searchsorted(edges, values, side="right"),
                                                       minlength=10).tolist()
        sample = np.asarray(f["sample"])
        assert len(sample) == 1_000 and np.all(np.diff(sample) >= 0) and np.isin(sample, values).all()


MEMORY_PROBE = textwrap.dedent("""
    import json, sys, threading, time
    import pyarrow as pa
    from roost.storage import store as store_mod
    from roost.workers import profile

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    path, root, warm = sys.argv[1:4]
    store = store_mod.Store(root)
    def job(uri):
        return {"dataset": {"namespace": "d", "name": "big"},
                "spec": {"source": {"uri": uri}, "target": "y"}, "previousDigest": None}
    profile.run(job(warm), store, store.uri("warm"))  # load every lazily imported module first
    before, peak, done = rss(), [0], threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)
    sampler = threading.Thread(target=sample)
    sampler.start()
    result = profile.run(job("file://" + path), store, store.uri("big"))
    done.set()
    sampler.join()
    print(json.dumps({"before": before, "peak": peak[0], "arrow": pa.default_memory_pool().max_memory(),
                      "result": result}))
""")


def test_large_csv_is_profiled_with_bounded_memory(tmp_path: Path) -> None:
    rows, width, rng = 1_000_000, 24, np.random.default_rng(11)
    path = tmp_path / "big.csv"
    data = {f"x{i}": np.round(rng.normal(i, 1 + i, rows), 2) for i in range(width)}
    data["y"] = np.round(rng.normal(0, 1, rows), 2)  # a numeric target: a plain split
    pacsv.write_csv(pa.table(data), str(path))
    row = ",".join(["1"] * len(data))
    warm = write(tmp_path, "warm.csv", f"{','.join(data)}\n{row}\n{row}\n{row}\n".encode())
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), f"file://{tmp_path / 'store'}", warm],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, profile.EXACT_QUANTILE_MAX_ENV: str(rows // 2)},  # every column sketched
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    size = path.stat().st_size
    growth = probe["peak"] - probe["before"]  # resident set, sampled every 5 ms
    assert probe["result"]["rows"] == rows
    # pandas.read_csv would grow by 1.5-3x the file (the data alone is 200 MB as float64); the worker
    # holds a few blocks and batches, the sketches and the split's index arrays (~70 MiB measured).
    assert growth < size, f"resident growth {growth >> 20} MiB, file {size >> 20} MiB"
    assert probe["arrow"] < 48 * 2**20, f"arrow pool peak {probe['arrow'] >> 20} MiB"
    store = store_mod.Store(f"file://{tmp_path / 'store'}")
    features = by_name(read_profile(store, probe["result"]))
    assert features["x0"]["quantileMethod"] == "kll" and features["x0"]["count"] == rows
    assert close(features["x3"]["mean"], float(data["x3"].mean()))


# ----- sketch.py ---------------------------------------------------------------------------------


def test_moments_merged_over_batches_equal_two_pass_numpy() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(1e6, 1, 1000), rng.normal(-3, 100, 77), rng.uniform(0, 1, 5000)])
    m = sketch.Moments()
    for part in np.array_split(values, [10, 11, 500, 2000, 6000]):
        m.update(part)
    assert m.count == values.shape[0]
    assert close(m.mean, float(values.mean()), 1e-12)
    assert close(m.std() or 0.0, float(values.std(ddof=1)), 1e-10)
    assert (m.min, m.max) == (values.min(), values.max())
    assert sketch.Moments().std() is None
    one = sketch.Moments()
    one.update(np.array([2.0]))
    assert one.std() is None and one.std(ddof=0) == 0.0


def test_frequencies_switch_to_a_sketch_past_the_cap_and_keep_heavy_hitters() -> None:
    f = sketch.Frequencies(max_exact_distinct=100)
    f.update(["hot", "warm"], [5_000, 2_000])
    assert f.exact and f.max_error == 0 and f.distinct() == 2
    f.update([f"id{i}" for i in range(10_000)], [1] * 10_000)
    assert not f.exact and f.distinct() is None and f.total == 17_000
    top = f.top(2)
    assert list(top)[:2] == ["hot", "warm"]
    assert abs(top["hot"] - 5_000) <= f.max_error and abs(top["warm"] - 2_000) <= f.max_error
    assert top["__other__"] == 17_000 - top["hot"] - top["warm"]


def test_frequencies_top_breaks_ties_by_value() -> None:
    f = sketch.Frequencies()
    f.update(["b", "a", "c"], [2, 2, 3])
    assert list(f.top(2).items()) == [("c", 3), ("a", 2), ("__other__", 2)]


def test_compressed_csv_and_rows_longer_than_a_block_are_read(tmp_path: Path, store: store_mod.Store) -> None:
    import gzip

    packed = gzip.compress(PENGUINS.read_bytes())
    result = run(make_job(write(tmp_path, "penguins.csv.gz", packed), "species"), store)
    assert result["digest"] == store_mod.digest_bytes(packed) and result["rows"] == 344
    long_row = b"a,b,y\n" + b"x" * 300_000 + b",1,0\n" + b"z,2,1\n" * 5
    result = run(make_job(write(tmp_path, "long.csv", long_row), "y"), store, block_size=4096)
    assert result["rows"] == 6 and result["schema"][0]["type"] == "categorical"


def test_s3_source_is_fetched_with_the_environment_endpoint(
    store: store_mod.Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "ROOST_S3_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        s3.put_object(Bucket="data", Key="penguins.csv", Body=PENGUINS.read_bytes())
        result = run(make_job("s3://data/penguins.csv", "species"), store)
        assert result["digest"] == store_mod.digest_bytes(PENGUINS.read_bytes()) and result["rows"] == 344
        with pytest.raises(errors.PermanentError) as info:
            run(make_job("s3://data/absent.csv", "species"), store)
        assert info.value.reason == "SourceUnreachable"
    finally:
        server.stop()
