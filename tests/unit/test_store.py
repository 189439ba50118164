"""The artifact store: content addressing, atomic writes, digest checks, and S3 through a real S3 API.

The S3 test talks to moto's server mode on a loopback port, over HTTP, through s3fs -- the same code
path as a cluster's S3-compatible store, configured only by environment variables.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from roost import errors
from roost.storage import store as store_mod


@pytest.fixture()
def store(tmp_path: Path) -> store_mod.Store:
    return store_mod.Store(f"file://{tmp_path / 'store'}")


def leftovers(root: Path) -> list[Path]:
    """Temporary files under ``root`` (every write goes through a ``.tmp-`` name first)."""
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_put_bytes_names_objects_by_their_sha256(store: store_mod.Store) -> None:
    data = b"roost\n" * 1000
    hexdigest = hashlib.sha256(data).hexdigest()
    first = store.put_bytes(data)
    assert first.digest == f"sha256:{hexdigest}" == store_mod.digest_bytes(data)
    assert first.uri == store.object_uri(first.digest) == f"{store.root}/objects/sha256/{hexdigest}"
    assert first.size == len(data)
    assert store.put_bytes(data) == first  # the same bytes: the same object, stored once
    assert store.put_bytes(data + b"!").uri != first.uri
    assert store.read_bytes(first.uri, first.digest) == data


def test_put_file_streams_to_the_same_address_as_put_bytes(store: store_mod.Store, tmp_path: Path) -> None:
    data = bytes(range(256)) * 20_000  # 5 MiB: several read chunks
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    stored = store.put_file(local)
    assert stored == store.put_bytes(data)
    assert stored.size == len(data)
    assert store.read_bytes(stored.uri, stored.digest) == data
    assert store.put_file(local) == stored


def test_writes_leave_no_temporary_files(store: store_mod.Store, tmp_path: Path) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(b"x" * 10)
    store.put_bytes(b"a")
    store.put_file(local)
    store.write_json(store.uri("work", "ns", "job", "result.json"), {"ok": True})
    store.write_bytes(store.uri("work", "ns", "job", "result.json"), b'{"ok": false}')
    assert leftovers(tmp_path / "store") == []
    assert store.read_json(store.uri("work", "ns", "job", "result.json")) == {"ok": False}
    assert store.list(store.uri("work", "ns", "job")) == [store.uri("work", "ns", "job", "result.json")]


def test_a_failed_write_leaves_neither_the_object_nor_a_temporary_file(
    store: store_mod.Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_move(src: str, dst: str, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store.fs, "mv", broken_move)
    local = tmp_path / "f.bin"
    local.write_bytes(b"payload")
    for write in (lambda: store.put_bytes(b"payload"), lambda: store.put_file(local),
                  lambda: store.write_json(store.uri("work", "r.json"), {})):
        with pytest.raises(errors.ExternalError) as info:
            write()
        assert info.value.reason == "StoreUnreachable" and "disk full" in info.value.message
    monkeypatch.undo()
    assert not store.exists(store.object_uri(store_mod.digest_bytes(b"payload")))
    assert not store.exists(store.uri("work", "r.json"))
    assert leftovers(tmp_path / "store") == []


def test_reading_with_the_wrong_digest_raises_digest_mismatch(store: store_mod.Store, tmp_path: Path) -> None:
    stored = store.put_bytes(b"model bytes")
    wrong = store_mod.digest_bytes(b"other bytes")
    with pytest.raises(store_mod.DigestMismatch) as info:
        store.read_bytes(stored.uri, wrong)
    assert info.value.reason == "DigestMismatch" and isinstance(info.value, errors.PermanentError)
    assert info.value.expected == wrong and info.value.actual == stored.digest
    assert wrong in info.value.message and stored.digest in info.value.message
    local = tmp_path / "copy.bin"
    with pytest.raises(store_mod.DigestMismatch):
        store.fetch_to(stored.uri, local, wrong)
    assert not local.exists()  # a copy that failed its check is not left behind
    assert store.fetch_to(stored.uri, local, stored.digest).read_bytes() == b"model bytes"


def test_missing_objects_are_reported_not_found(store: store_mod.Store) -> None:
    with pytest.raises(errors.ExternalError) as info:
        store.read_bytes(store.uri("nothing", "here"))
    assert info.value.reason == "NotFound"
    assert store.list(store.uri("nothing")) == []
    assert store.exists(store.uri("nothing")) is False


def test_shared_is_false_only_for_local_roots(tmp_path: Path) -> None:
    assert store_mod.Store(f"file://{tmp_path}").shared is False
    assert store_mod.Store(str(tmp_path)).shared is False
    assert store_mod.Store("memory://roost-test-shared").shared is True


# ----- S3 through moto's server on loopback --------------------------------------------------------


def test_s3_round_trip_through_an_s3_api_server(s3_endpoint: str, tmp_path: Path) -> None:
    store = store_mod.Store("s3://roost/artifacts")  # the bucket the fixture (tests/conftest.py) created
    assert store.shared is True
    data = b"weights" * 100_000
    stored = store.put_bytes(data)
    assert stored.uri == f"s3://roost/artifacts/objects/sha256/{hashlib.sha256(data).hexdigest()}"
    assert store.put_bytes(data) == stored
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    assert store.put_file(local) == stored
    assert store.read_bytes(stored.uri, stored.digest) == data
    with pytest.raises(store_mod.DigestMismatch):
        store.read_bytes(stored.uri, store_mod.digest_bytes(b"other"))

    result = store.uri("work", "ns", "job", "result.json")
    store.write_json(result, {"ok": True, "rows": 569})
    # Another client, configured only by the same environment, sees the objects.
    other = store_mod.Store("s3://roost/artifacts")
    assert other.read_json(result) == {"ok": True, "rows": 569}
    assert other.fetch_to(stored.uri, tmp_path / "copy.bin", stored.digest).read_bytes() == data
    assert other.list(store.uri("work", "ns", "job")) == [result]
    import boto3

    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
            .list_objects_v2(Bucket="roost")["Contents"]]
    assert all(".tmp-" not in k for k in keys), keys
    assert json.loads(other.read_bytes(result)) == {"ok": True, "rows": 569}
