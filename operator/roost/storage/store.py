"""An artifact store over fsspec: ``file://`` (the local default), ``s3://`` (s3fs), ``gs://``, ``az://``...

Objects are content-addressed: their bytes live under ``<root>/objects/sha256/<hex>`` and are named
by their digest ``sha256:<hex>``. Every write goes to a temporary name first and is then moved to its
final name, so a crash never leaves a half object under a final name (on S3 a single PUT is atomic
already). Reads with an expected digest verify it.

Credentials never come from manifests: s3fs reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` and
``ROOST_S3_ENDPOINT_URL`` (for S3-compatible servers) from the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec

from roost import errors

CHUNK = 1 << 20
DEFAULT_ROOT_ENV = "ROOST_STORE"


def default_root() -> str:
    """``$ROOST_STORE``, else ``file://~/.local/share/roost/artifacts``."""
    env = os.environ.get(DEFAULT_ROOT_ENV)
    if env:
        return env.rstrip("/")
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return f"file://{base / 'roost' / 'artifacts'}"


def digest_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_stream(stream: IO[bytes]) -> str:
    """``sha256:<hex>`` of everything left in ``stream``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for ``uri`` taken from the environment (never from a manifest)."""
    if uri.startswith("s3://"):
        endpoint = os.environ.get("ROOST_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
        return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
    return {}


@contextlib.contextmanager
def mapped_errors(uri: str) -> Iterator[None]:
    """Turn filesystem exceptions into :class:`roost.errors.ExternalError` (the one adapter boundary)."""
    try:
        yield
    except errors.RoostError:
        raise
    except FileNotFoundError as e:
        raise errors.ExternalError("NotFound", f"{uri}: not found") from e
    except (OSError, ValueError, ImportError) as e:
        raise errors.ExternalError("StoreUnreachable", f"{uri}: {e}") from e


@dataclass(frozen=True)
class StoredObject:
    """A content-addressed object."""

    uri: str
    digest: str
    size: int


class DigestMismatch(errors.PermanentError):
    def __init__(self, uri: str, expected: str, actual: str) -> None:
        super().__init__("DigestMismatch", f"{uri}: expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


class Store:
    """One artifact store rooted at a URI such as ``file:///var/roost`` or ``s3://bucket/roost``."""

    def __init__(self, root: str | None = None) -> None:
        self.root = (root or default_root()).rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **storage_options(self.root))

    @property
    def shared(self) -> bool:
        """Whether a Pod on another machine can reach this store (anything but ``file://``)."""
        return not self.root.startswith(("file://", "/"))

    def uri(self, *parts: str) -> str:
        """A URI under the root: ``uri("work", ns, name)``."""
        return "/".join([self.root, *(p.strip("/") for p in parts)])

    def object_uri(self, digest: str) -> str:
        return self.uri("objects", "sha256", digest.removeprefix("sha256:"))

    def _path(self, uri: str) -> str:
        _, path = fsspec.core.url_to_fs(uri, **storage_options(uri))
        return str(path)

    # ----- writes ----------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> StoredObject:
        """Store ``data`` content-addressed; storing the same bytes twice is a no-op."""
        digest = digest_bytes(data)
        uri = self.object_uri(digest)
        with mapped_errors(uri):
            if not self.fs.exists(self._path(uri)):
                self._atomic_write(uri, data)
        return StoredObject(uri, digest, len(data))

    def put_file(self, local: Path) -> StoredObject:
        """Store a local file content-addressed, streaming it (memory stays at one chunk)."""
        with open(local, "rb") as f:
            digest = digest_stream(f)
        uri = self.object_uri(digest)
        with mapped_errors(uri):
            final = self._path(uri)
            if not self.fs.exists(final):
                tmp = f"{final}.tmp-{uuid.uuid4().hex}"
                self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                with self._removed_on_error(tmp):
                    self.fs.put_file(str(local), tmp)
                    self.fs.mv(tmp, final)
        return StoredObject(uri, digest, local.stat().st_size)

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write ``data`` at a named ``uri`` atomically (temporary name, then move)."""
        with mapped_errors(uri):
            self._atomic_write(uri, data)

    def write_json(self, uri: str, obj: Any) -> None:
        self.write_bytes(uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def _atomic_write(self, uri: str, data: bytes) -> None:
        final = self._path(uri)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        with self._removed_on_error(tmp):
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            self.fs.mv(tmp, final)

    @contextlib.contextmanager
    def _removed_on_error(self, tmp: str) -> Iterator[None]:
        """Delete the temporary object ``tmp`` when the write or the move fails, then re-raise."""
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            raise

    # ----- reads -----------------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        with mapped_errors(uri):
            return bool(self.fs.exists(self._path(uri)))

    def read_bytes(self, uri: str, digest: str | None = None) -> bytes:
        """Read ``uri``; when ``digest`` is given, verify it.

        Raises:
            DigestMismatch: the bytes do not hash to ``digest``.
            roost.errors.ExternalError: the store could not be read (``NotFound``, ``StoreUnreachable``).
        """
        with mapped_errors(uri), self.fs.open(self._path(uri), "rb") as f:
            data: bytes = f.read()
        if digest is not None and digest_bytes(data) != digest:
            raise DigestMismatch(uri, digest, digest_bytes(data))
        return data

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))

    def open(self, uri: str, mode: str = "rb") -> IO[Any]:
        with mapped_errors(uri):
            handle: IO[Any] = self.fs.open(self._path(uri), mode)
            return handle

    def fetch_to(self, uri: str, local: Path, digest: str | None = None) -> Path:
        """Copy ``uri`` to a local file, verifying ``digest`` while streaming; return ``local``."""
        h = hashlib.sha256()
        with mapped_errors(uri), self.fs.open(self._path(uri), "rb") as src, open(local, "wb") as dst:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                h.update(chunk)
                dst.write(chunk)
        actual = "sha256:" + h.hexdigest()
        if digest is not None and actual != digest:
            local.unlink(missing_ok=True)
            raise DigestMismatch(uri, digest, actual)
        return local

    def list(self, uri: str) -> list[str]:
        """URIs directly under ``uri`` (empty when it does not exist)."""
        with mapped_errors(uri):
            path = self._path(uri)
            if not self.fs.exists(path):
                return []
            protocol = self.root.split("://", 1)[0] if "://" in self.root else "file"
            return [f"{protocol}://{p}" for p in sorted(self.fs.ls(path, detail=False))]
