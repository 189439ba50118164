"""The Dataset worker: fetch, verify, validate, snapshot, split and profile one version of the data.

A Dataset becomes Ready only through this worker. It turns the user's declaration (where the data is,
what it must look like, how to split it) into three content-addressed artifacts that everything
downstream trusts by digest:

- the **snapshot**: a Parquet file of the features and the target (original column names), so a
  TrainingRun reads exactly the bytes that were validated, whatever happens to the source later;
- the **split**: reproducible train/test row indices (``sklearn.model_selection.train_test_split``);
- the **profile**: per-feature statistics -- the reference that DriftPolicy compares live traffic to.

Memory is bounded whatever the file size: the source is streamed to a local file (never read whole),
parsed in record batches by pyarrow's streaming readers, and summarised batch by batch
(:mod:`roost.workers.sketch`). What the worker holds at once:

- pass 1 (source -> snapshot + moments + frequencies): the CSV reader's buffered blocks (a few dozen
  of ``Options.block_size``, 512 KiB: ~20 MiB) plus O(1) per numeric column and at most
  ``max_exact_distinct`` values per categorical column;
- exact quantiles, for a column with at most ``exact_quantile_max`` non-missing values (default
  1,000,000): that one column as float64, about 24 bytes per value (~24 MB at the default);
- larger columns: a KLL sketch (~24 KiB each) and one Parquet batch (``parquet_batch_bytes``, 1 MiB);
- the snapshot writer: one row group being assembled and one being written (``row_group_bytes``, 4 MiB);
- the split: O(rows) integers, because sklearn splits the index array: ~12 bytes per row
  unstratified, ~70 with stratification (``StratifiedShuffleSplit``'s sorts), transiently.

Measured on 5M rows x 11 columns (376 MB of CSV, 2 shared cores): ~12 s end to end (~420k rows/s);
resident memory grows ~100 MiB before the split and ~500 MiB at the stratified split's peak.

Bad input is reported as :class:`roost.errors.PermanentError` with one of the reasons below; the runner
writes it to ``result.json`` and the operator turns it into a ``Stalled`` condition.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import hashlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, BinaryIO

import fsspec
import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pydantic
from sklearn import model_selection

from roost import errors
from roost.api import dataset
from roost.storage import store as store_mod
from roost.workers import sketch

log = logging.getLogger("roost.worker.profile")

# Reasons (CamelCase), shared with the Dataset's conditions.
SOURCE_UNREACHABLE = "SourceUnreachable"
DIGEST_MISMATCH = "DigestMismatch"
MALFORMED_DATA = "MalformedData"
SCHEMA_MISMATCH = "SchemaMismatch"
VALIDATION_FAILED = "ValidationFailed"
INVALID_SPEC = "InvalidSpec"

QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
DECILE_LEVELS: tuple[float, ...] = tuple(i / 10 for i in range(1, 10))
EXACT_QUANTILE_MAX_ENV = "ROOST_PROFILE_EXACT_QUANTILE_MAX"
PROFILE_VERSION = 1
CHUNK = 1 << 20
MAX_BLOCK_SIZE = 1 << 30
SAMPLE_SEED = 0
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".lz4", ".zst", ".zstd")
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")
_CSV_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to ([^:]+): invalid value '(.*)'$", re.S
)
_JSON_ROW = re.compile(r" in row (\d+)")

FloatArray = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Options:
    """Tunables of the profile; the defaults suit production, tests lower the thresholds.

    Attributes:
        exact_quantile_max: columns with at most this many non-missing values get exact quantiles
            (numpy/pandas linear interpolation); above it, a KLL sketch. Env override:
            ``ROOST_PROFILE_EXACT_QUANTILE_MAX``.
        sample_size: size of each numeric column's uniform sample (all values when fewer).
        top_k: categories listed per categorical feature before ``__other__``.
        kll_k: KLL accuracy parameter (rank error ~0.28% at k=1000).
        max_exact_distinct: distinct values counted exactly per categorical column.
        block_size: bytes of CSV/JSONL text parsed per record batch. pyarrow's streaming CSV reader
            buffers a few dozen blocks, so this sets pass 1's memory (~20 MiB at 512 KiB). A CSV row
            longer than a block makes the read restart with blocks four times larger.
        parquet_batch_bytes: about this many bytes of float64 values per batch when reading Parquet.
        row_group_bytes: the snapshot's row groups hold about this many bytes of (decoded) values.
        target_max_int_classes: an integer target with at most this many distinct values is a class label.
    """

    exact_quantile_max: int = 1_000_000
    sample_size: int = 10_000
    top_k: int = 50
    kll_k: int = sketch.DEFAULT_KLL_K
    max_exact_distinct: int = sketch.DEFAULT_MAX_EXACT_DISTINCT
    block_size: int = 512 << 10
    parquet_batch_bytes: int = 1 << 20
    row_group_bytes: int = 4 << 20
    target_max_int_classes: int = 20

    @classmethod
    def from_env(cls) -> Options:
        """Defaults, with ``ROOST_PROFILE_EXACT_QUANTILE_MAX`` applied when set."""
        env = os.environ.get(EXACT_QUANTILE_MAX_ENV)
        return cls(exact_quantile_max=int(env)) if env else cls()


# ----- entry point -----------------------------------------------------------------------------


def run(
    job: dict[str, Any], store: store_mod.Store, output: str, *, options: Options | None = None
) -> dict[str, Any]:
    """Profile one version of a Dataset and store its snapshot, split and profile content-addressed.

    Args:
        job: ``{"dataset": {"namespace", "name"}, "spec": <DatasetSpec wire dict>, "previousDigest"}``.
        store: where the artifacts go (``store.put_file``/``put_bytes``, content-addressed).
        output: the work's URI prefix; the runner writes ``result.json`` there (nothing else is).
        options: tunables (:meth:`Options.from_env` when omitted).

    Returns:
        ``{"ok": True, "digest", "rows", "columns", "schema": [{"name", "type", "missing"}],
        "target": {"name", "type", "classes"?}, "snapshotURI", "snapshotDigest", "splitURI",
        "splitDigest", "profileURI", "profileDigest", "trainRows", "testRows"}``. ``columns`` counts
        features + target; ``schema`` lists the features only.

    Raises:
        roost.errors.PermanentError: reason ``SourceUnreachable`` (fetch failed, missing file
            included), ``DigestMismatch`` (``spec.source.digest`` pin differs), ``MalformedData``
            (empty, unparsable, non-UTF-8, duplicate or nested columns), ``SchemaMismatch`` (target
            missing, declared schema violated), ``ValidationFailed`` (a ``spec.validation`` rule or
            an unsplittable dataset), ``InvalidSpec`` (the job is not a Dataset spec).
    """
    options = options or Options.from_env()
    spec = _parse_spec(job)
    ref = job.get("dataset") or {}
    log.info("Profiling Dataset %s/%s from %s", ref.get("namespace"), ref.get("name"), spec.source.uri)
    with tempfile.TemporaryDirectory(prefix="roost-profile-") as tmp:
        workdir = Path(tmp)
        source = workdir / ("source" + _compression_suffix(spec.source.uri))
        digest, size = fetch_source(spec.source.uri, source)
        log.info("Fetched %d bytes with digest %s", size, digest)
        if job.get("previousDigest") == digest:
            log.info("Source is unchanged since the previous version %s", digest)
        if spec.source.digest is not None and spec.source.digest != digest:
            raise errors.PermanentError(
                DIGEST_MISMATCH,
                f"source {spec.source.uri} has digest {digest} but spec.source.digest pins {spec.source.digest}",
            )
        if size == 0:
            raise errors.PermanentError(MALFORMED_DATA, f"source {spec.source.uri} is empty (0 bytes)")
        if spec.source.format in (dataset.DataFormat.CSV, dataset.DataFormat.JSONL):
            check_utf8(source)

        snapshot_path = workdir / "snapshot.parquet"
        scan = scan_source(source, spec, snapshot_path, options, source_digest=digest)
        check_schema(scan, spec)
        validate(scan, spec)

        profile = build_profile(scan, snapshot_path, options, source_digest=digest)
        split_path = workdir / "split.json"
        train_rows, test_rows = write_split(scan, snapshot_path, spec.split, split_path)

        snap = store.put_file(snapshot_path)
        split = store.put_file(split_path)
        prof = store.put_bytes(orjson.dumps(profile))
    log.info("Stored snapshot %s, split %s and profile %s", snap.digest, split.digest, prof.digest)

    target = scan.target
    target_out: dict[str, Any] = {"name": target.name, "type": target.kind.value}
    if target.classes is not None:
        target_out["classes"] = target.classes
    return {
        "ok": True,
        "digest": digest,
        "rows": scan.rows,
        "columns": len(scan.columns),
        "schema": [
            dataset.InferredFeature(name=c.name, type=c.kind, missing=c.missing).to_wire()
            for c in scan.features
        ],
        "target": target_out,
        "snapshotURI": snap.uri,
        "snapshotDigest": snap.digest,
        "splitURI": split.uri,
        "splitDigest": split.digest,
        "profileURI": prof.uri,
        "profileDigest": prof.digest,
        "trainRows": train_rows,
        "testRows": test_rows,
    }


def _parse_spec(job: dict[str, Any]) -> dataset.DatasetSpec:
    try:
        return dataset.DatasetSpec.model_validate(job["spec"])
    except (KeyError, TypeError) as e:
        raise errors.PermanentError(INVALID_SPEC, f"the job has no Dataset spec: {e!r}") from e
    except pydantic.ValidationError as e:
        raise errors.PermanentError(INVALID_SPEC, f"the Dataset spec is invalid: {e}") from e


def _compression_suffix(uri: str) -> str:
    """The compression extension of ``uri`` (pyarrow picks the codec from the local file's name)."""
    path = uri.split("?", 1)[0].lower()
    return next((s for s in _COMPRESSION_SUFFIXES if path.endswith(s)), "")


# ----- fetch -----------------------------------------------------------------------------------


def fetch_source(uri: str, dest: Path) -> tuple[str, int]:
    """Stream ``uri`` (anything fsspec opens: file://, http(s)://, s3://, memory://...) to ``dest``.

    Reads 1 MiB at a time and hashes while copying, so memory stays at one chunk.

    Returns:
        ``(digest, size)``: ``sha256:<hex>`` of the source bytes and their count.

    Raises:
        roost.errors.PermanentError: ``SourceUnreachable`` when the source cannot be opened or read
            (not found, refused, no credentials...), with the backend's message.
    """
    opts = store_mod.storage_options(uri)
    if uri.startswith(("http://", "https://")):
        opts["block_size"] = 0  # a plain streaming GET: no range requests, no size needed
    h = hashlib.sha256()
    size = 0
    try:
        with fsspec.open(uri, "rb", **opts) as src, open(dest, "wb") as dst:
            reader: BinaryIO = src
            for chunk in iter(lambda: reader.read(CHUNK), b""):
                h.update(chunk)
                dst.write(chunk)
                size += len(chunk)
    # The fsspec backends raise their own exception types (OSError, aiohttp's and botocore's errors,
    # ValueError for bad URLs, ImportError for a missing backend); this is the one adapter boundary.
    except Exception as e:
        dest.unlink(missing_ok=True)
        raise errors.PermanentError(SOURCE_UNREACHABLE, f"could not fetch {uri}: {type(e).__name__}: {e}") from e
    return "sha256:" + h.hexdigest(), size


def check_utf8(path: Path) -> None:
    """Check that the (decompressed) text of ``path`` is UTF-8, streaming 1 MiB at a time.

    pyarrow silently reads invalid UTF-8 as ``binary`` columns or replaces it in headers, so text
    formats are checked once here. ASCII chunks are skipped at memory speed.

    Raises:
        roost.errors.PermanentError: ``MalformedData`` naming the line and the offending byte.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line = 1
    try:
        with pa.input_stream(str(path), compression="detect") as f:
            while chunk := f.read(CHUNK):
                pending = decoder.getstate()[0]
                if not pending and chunk.isascii():
                    line += chunk.count(b"\n")
                    continue
                try:
                    decoder.decode(chunk, final=False)
                except UnicodeDecodeError as e:
                    text = pending + chunk
                    where = line + text[: e.start].count(b"\n")
                    raise errors.PermanentError(
                        MALFORMED_DATA,
                        f"source is not valid UTF-8: byte 0x{text[e.start]:02x} on line {where} ({e.reason})",
                    ) from e
                line += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        raise errors.PermanentError(MALFORMED_DATA, f"source is not valid UTF-8: it ends mid-character ({e})") from e
    except (pa.ArrowException, OSError) as e:
        raise errors.PermanentError(MALFORMED_DATA, f"source could not be decompressed: {e}") from e


# ----- pass 1: read the source, write the snapshot, summarise --------------------------------------


class _Widen(Exception):
    """Re-read the source: a value does not fit its column's inferred type (``types`` are the wider
    ones), or a CSV row is longer than a block (``grow``: quadruple the block size)."""

    def __init__(self, types: dict[str, pa.DataType], grow: bool = False) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in types.items()) or "a row is longer than a block")
        self.types = types
        self.grow = grow


@dataclasses.dataclass
class ColumnSummary:
    """One kept column (a feature or the target) and what pass 1 learned about it."""

    name: str
    index: int
    kind: dataset.FeatureType
    out_type: pa.DataType
    declared: dataset.Feature | None = None
    is_target: bool = False
    missing: int = 0
    moments: sketch.Moments | None = None
    freqs: sketch.Frequencies | None = None
    levels: sketch.Frequencies | None = None  # an integer target's distinct values, while few
    levels_limit: int = 0
    dt_min: Any = None
    dt_max: Any = None
    allowed: pa.Array | None = None
    not_allowed: int = 0
    not_allowed_example: str | None = None
    dt_count: int = 0
    classes: list[Any] | None = None  # the target's classes, once decided

    @property
    def count(self) -> int:
        """Non-missing values seen."""
        if self.moments is not None:
            return self.moments.count
        if self.freqs is not None:
            return self.freqs.total
        return self.dt_count

    def update(self, arr: pa.Array) -> pa.Array:
        """Summarise one batch of this column; return the array written to the snapshot."""
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if self.kind is dataset.FeatureType.NUMERIC:
            return self._update_numeric(arr)
        if self.kind is dataset.FeatureType.BOOLEAN:
            return self._update_boolean(arr)
        if self.kind is dataset.FeatureType.DATETIME:
            return self._update_datetime(arr)
        return self._update_categorical(arr)

    def _cast(self, arr: pa.Array, to: pa.DataType) -> pa.Array:
        if arr.type == to:
            return arr
        try:
            return pc.cast(arr, to)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            if self.declared is not None:
                raise errors.PermanentError(
                    SCHEMA_MISMATCH,
                    f"column {self.name!r} is declared {self.kind.value} but its values do not convert: {e}",
                ) from e
            raise errors.PermanentError(MALFORMED_DATA, f"column {self.name!r} could not be read as {to}: {e}") from e

    def _update_numeric(self, arr: pa.Array) -> pa.Array:
        if self.levels is not None:
            vc = pc.value_counts(arr.drop_null())
            self.levels.update([str(v) for v in vc.field("values").to_pylist()], vc.field("counts").to_pylist())
            if (self.levels.distinct() or 0) > self.levels_limit:
                self.levels = None
        out = self._cast(arr, self.out_type)
        floats = self._cast(out, pa.float64()).to_numpy(zero_copy_only=False)
        values = floats[~np.isnan(floats)]
        self.missing += int(floats.shape[0] - values.shape[0])
        assert self.moments is not None
        self.moments.update(values)
        return out

    def _update_categorical(self, arr: pa.Array) -> pa.Array:
        out = self._cast(arr, pa.string())
        self.missing += out.null_count
        vc = pc.value_counts(out.drop_null())
        assert self.freqs is not None
        self.freqs.update(vc.field("values").to_pylist(), vc.field("counts").to_pylist())
        if self.allowed is not None:
            bad = pc.and_(pc.invert(pc.is_in(out, value_set=self.allowed)), pc.is_valid(out))
            n_bad = int(pc.sum(bad).as_py() or 0)
            if n_bad:
                self.not_allowed += n_bad
                if self.not_allowed_example is None:
                    self.not_allowed_example = str(out.filter(bad)[0].as_py())
        return out

    def _update_boolean(self, arr: pa.Array) -> pa.Array:
        if self.declared is not None and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
            bad = pc.and_(pc.invert(pc.is_in(arr, value_set=pa.array([0, 1], type=arr.type))), pc.is_valid(arr))
            if pc.any(bad).as_py():
                example = arr.filter(bad)[0].as_py()
                raise errors.PermanentError(
                    SCHEMA_MISMATCH, f"column {self.name!r} is declared boolean but has value {example!r}"
                )
        out = self._cast(arr, pa.bool_())
        self.missing += out.null_count
        trues = int(pc.sum(out).as_py() or 0)
        falses = len(out) - out.null_count - trues
        assert self.freqs is not None
        seen = [(value, n) for value, n in (("true", trues), ("false", falses)) if n]
        self.freqs.update([value for value, _ in seen], [n for _, n in seen])
        return out

    def _update_datetime(self, arr: pa.Array) -> pa.Array:
        out = self._cast(arr, self.out_type)
        self.missing += out.null_count
        self.dt_count += len(out) - out.null_count
        mm = pc.min_max(out).as_py()
        if mm["min"] is not None:
            self.dt_min = mm["min"] if self.dt_min is None else min(self.dt_min, mm["min"])
            self.dt_max = mm["max"] if self.dt_max is None else max(self.dt_max, mm["max"])
        return out


@dataclasses.dataclass
class Scan:
    """What pass 1 found: the kept columns (source order), the row count and the dropped columns."""

    columns: list[ColumnSummary]
    rows: int
    ignored: list[str]
    target_name: str

    @property
    def features(self) -> list[ColumnSummary]:
        return [c for c in self.columns if not c.is_target]

    @property
    def target(self) -> ColumnSummary:
        return next(c for c in self.columns if c.is_target)


def scan_source(
    path: Path, spec: dataset.DatasetSpec, snapshot: Path, options: Options, *, source_digest: str = ""
) -> Scan:
    """Pass 1: stream the source in record batches, write the Parquet snapshot, summarise every column.

    Readers: ``pyarrow.csv.open_csv``, ``pyarrow.parquet.ParquetFile.iter_batches``, and
    ``pyarrow.json.read_json`` on newline-aligned blocks. CSV and JSONL types are inferred from the
    first block; when a later value does not fit (an integer column meets ``1.5``), the read restarts
    with the wider type (int -> float -> string), at most a few times per column.

    Raises:
        roost.errors.PermanentError: ``MalformedData``, ``SchemaMismatch`` (see :func:`run`).
    """
    hints: dict[str, pa.DataType] = {}
    for _ in range(64):
        try:
            return _scan_once(path, spec, snapshot, options, hints, source_digest)
        except _Widen as w:
            if w.grow:
                if options.block_size >= MAX_BLOCK_SIZE:
                    raise errors.PermanentError(
                        MALFORMED_DATA, f"a CSV row is longer than {MAX_BLOCK_SIZE >> 20} MiB"
                    ) from w
                options = dataclasses.replace(options, block_size=options.block_size * 4)
            log.info("Restarted the read: %s", w)
            hints.update(w.types)
    raise errors.PermanentError(MALFORMED_DATA, "column types kept changing while reading; gave up")


def _scan_once(
    path: Path, spec: dataset.DatasetSpec, snapshot: Path, options: Options,
    hints: dict[str, pa.DataType], source_digest: str,
) -> Scan:
    declared = {f.name: f for f in spec.schema_.features} if spec.schema_ is not None else None
    schema, batches = _open_batches(path, spec.source.format, declared, hints, options)
    names = [n for n in schema.names if not _PANDAS_INDEX.match(n)]
    _check_names(names, spec.target, declared)
    columns: list[ColumnSummary] = []
    ignored: list[str] = []
    for index, field in enumerate(schema):
        if _PANDAS_INDEX.match(field.name):
            continue
        if field.name != spec.target and declared is not None and field.name not in declared:
            ignored.append(field.name)
            continue
        columns.append(_plan_column(index, field, spec.target, declared, options))
    out_schema = pa.schema(
        [pa.field(c.name, c.out_type) for c in columns],
        metadata={"roost.dev/target": spec.target, "roost.dev/source-digest": source_digest},
    )
    rows = 0
    # Dictionary encoding only where it pays (strings, integers, booleans): on floats it is tried and
    # abandoned at a high cost.
    dictionary = [c.name for c in columns if not pa.types.is_floating(c.out_type)]
    pending: list[pa.RecordBatch] = []  # coalesced into row groups of about ``row_group_bytes``
    pending_bytes = 0
    # Row groups are compressed and written on a second thread (pyarrow releases the GIL) while the
    # next blocks are parsed; at most one row group is in flight, so memory stays bounded.
    inflight: futures.Future[None] | None = None
    with (
        pq.ParquetWriter(str(snapshot), out_schema, compression="zstd", use_dictionary=dictionary) as writer,
        futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="roost-snapshot") as pool,
    ):
        for batch in batches:
            arrays = [c.update(batch.column(c.index)) for c in columns]
            pending.append(pa.RecordBatch.from_arrays(arrays, schema=out_schema))
            pending_bytes += pending[-1].nbytes
            rows += batch.num_rows
            if pending_bytes >= options.row_group_bytes:
                if inflight is not None:
                    inflight.result()
                inflight = pool.submit(writer.write_table, pa.Table.from_batches(pending), row_group_size=1 << 30)
                pending, pending_bytes = [], 0
        if inflight is not None:
            inflight.result()
        if pending:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=1 << 30)
    _decide_target(next(c for c in columns if c.is_target))
    return Scan(columns=columns, rows=rows, ignored=ignored, target_name=spec.target)


def _check_names(names: Sequence[str], target: str, declared: dict[str, dataset.Feature] | None) -> None:
    seen = collections.Counter(names)
    dups = sorted(n for n, count in seen.items() if count > 1)
    if dups:
        raise errors.PermanentError(MALFORMED_DATA, f"duplicate column names: {', '.join(map(repr, dups))}")
    if target not in seen:
        raise errors.PermanentError(
            SCHEMA_MISMATCH, f"target column {target!r} is missing; the columns are {_list(names)}"
        )
    if declared is not None:
        if target in declared:
            raise errors.PermanentError(
                SCHEMA_MISMATCH, f"target column {target!r} must not be listed in spec.schema.features"
            )
        missing = [n for n in declared if n not in seen]
        if missing:
            raise errors.PermanentError(
                SCHEMA_MISMATCH,
                f"declared column {missing[0]!r} is missing from the source; the columns are {_list(names)}",
            )


def _list(names: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _infer_kind(name: str, t: pa.DataType) -> dataset.FeatureType:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_nested(t):
        raise errors.PermanentError(
            MALFORMED_DATA, f"column {name!r} is nested ({t}); only flat columns are supported"
        )
    if pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return dataset.FeatureType.NUMERIC
    if pa.types.is_boolean(t):
        return dataset.FeatureType.BOOLEAN
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return dataset.FeatureType.DATETIME
    return dataset.FeatureType.CATEGORICAL


def _plan_column(
    index: int, field: pa.Field, target: str, declared: dict[str, dataset.Feature] | None, options: Options
) -> ColumnSummary:
    t = field.type
    decl = declared.get(field.name) if declared is not None else None
    inferred = _infer_kind(field.name, t)
    kind = decl.type if decl is not None else inferred
    is_target = field.name == target
    if is_target and kind is dataset.FeatureType.DATETIME:
        raise errors.PermanentError(
            SCHEMA_MISMATCH, f"target column {target!r} is a datetime; it must be numeric, categorical or boolean"
        )
    if decl is not None and kind is dataset.FeatureType.DATETIME and inferred in (
        dataset.FeatureType.NUMERIC, dataset.FeatureType.BOOLEAN,
    ) and not pa.types.is_null(t):
        raise errors.PermanentError(
            SCHEMA_MISMATCH, f"column {field.name!r} is declared datetime but holds {inferred.value} values ({t})"
        )
    if kind is dataset.FeatureType.NUMERIC:
        keep = pa.types.is_integer(t) or pa.types.is_floating(t)
        out_type = t if keep else pa.float64()
    elif kind is dataset.FeatureType.DATETIME:
        out_type = t if pa.types.is_date(t) or pa.types.is_timestamp(t) else pa.timestamp("us")
    elif kind is dataset.FeatureType.BOOLEAN:
        out_type = pa.bool_()
    else:
        out_type = pa.string()
    col = ColumnSummary(
        name=field.name, index=index, kind=kind, out_type=out_type, declared=decl,
        is_target=is_target,
    )
    if kind is dataset.FeatureType.NUMERIC:
        col.moments = sketch.Moments()
        if is_target and pa.types.is_integer(t):
            col.levels = sketch.Frequencies(max_exact_distinct=options.target_max_int_classes + 1)
            col.levels_limit = options.target_max_int_classes
    elif kind in (dataset.FeatureType.CATEGORICAL, dataset.FeatureType.BOOLEAN):
        col.freqs = sketch.Frequencies(max_exact_distinct=options.max_exact_distinct)
    if decl is not None and decl.values is not None and kind is dataset.FeatureType.CATEGORICAL:
        col.allowed = pa.array(decl.values, type=pa.string())
    return col


def _decide_target(col: ColumnSummary) -> None:
    """An integer target with few distinct values is a class label (categorical); else keep its kind."""
    if col.levels is not None and col.moments is not None:
        col.kind = dataset.FeatureType.CATEGORICAL
        col.freqs = col.levels
        col.classes = sorted(int(v) for v in col.levels.counts())
    elif col.kind is dataset.FeatureType.BOOLEAN and col.freqs is not None:
        col.classes = sorted(v == "true" for v in col.freqs.counts())
    elif col.kind is dataset.FeatureType.CATEGORICAL and col.freqs is not None:
        if not col.freqs.exact:
            raise errors.PermanentError(
                VALIDATION_FAILED,
                f"rule target: target column {col.name!r} has more than {col.freqs.max_exact_distinct} "
                "distinct values; a class label needs fewer",
            )
        col.classes = sorted(col.freqs.counts())


# ----- readers -----------------------------------------------------------------------------------


def _open_batches(
    path: Path, fmt: dataset.DataFormat, declared: dict[str, dataset.Feature] | None,
    hints: dict[str, pa.DataType], options: Options,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    if fmt is dataset.DataFormat.CSV:
        return _open_csv(path, declared, hints, options)
    if fmt is dataset.DataFormat.PARQUET:
        return _open_parquet(path, options)
    return _open_jsonl(path, hints, options)


def _open_csv(
    path: Path, declared: dict[str, dataset.Feature] | None, hints: dict[str, pa.DataType], options: Options
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    types = dict(hints)
    for name, f in (declared or {}).items():
        if f.type is dataset.FeatureType.NUMERIC:
            types[name] = pa.float64()
        elif f.type is dataset.FeatureType.CATEGORICAL:
            types[name] = pa.string()
        elif f.type is dataset.FeatureType.BOOLEAN:
            types[name] = pa.bool_()
    try:
        reader = pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(block_size=options.block_size, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
    except (pa.ArrowException, OSError, ValueError) as e:
        raise _csv_error(e, _csv_header(path, options) if _CSV_CONVERSION.search(str(e)) else None, declared) from e
    schema = reader.schema

    def batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except (pa.ArrowException, OSError, ValueError) as e:
                raise _csv_error(e, schema, declared) from e
            if any(pa.types.is_binary(t) for t in batch.schema.types):
                raise errors.PermanentError(MALFORMED_DATA, "the CSV has a column of bytes that are not UTF-8 text")
            yield batch

    return schema, batches()


def _csv_header(path: Path, options: Options) -> pa.Schema:
    """The CSV's columns with inferred types (the first block always fits its own inference)."""
    return pacsv.open_csv(
        str(path),
        read_options=pacsv.ReadOptions(block_size=options.block_size),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
    ).schema


def _csv_error(e: Exception, schema: pa.Schema | None, declared: dict[str, dataset.Feature] | None) -> Exception:
    """Map a pyarrow CSV error: a type that must widen, a declared type violated, or malformed text."""
    if "straddling object" in str(e):
        return _Widen({}, grow=True)
    m = _CSV_CONVERSION.search(str(e))
    if m is None or schema is None:
        return errors.PermanentError(MALFORMED_DATA, f"the CSV could not be parsed: {e}")
    index, row, value = int(m.group(1)), m.group(2), m.group(4)
    name, current = schema.names[index], schema.field(index).type
    if declared is not None and name in declared:
        where = f" on line {row}" if row else ""
        return errors.PermanentError(
            SCHEMA_MISMATCH,
            f"column {name!r} is declared {declared[name].type.value} but has value {value!r}{where}",
        )
    wider = _join_types(current, _type_of_text(value))
    if wider == current:
        wider = pa.string()
    if current == pa.string():
        return errors.PermanentError(MALFORMED_DATA, f"the CSV could not be parsed: {e}")
    return _Widen({name: wider})


def _type_of_text(value: str) -> pa.DataType:
    """The type pyarrow's CSV inference would give one cell (int64, float64, bool, timestamp, string)."""
    for parse, t in ((int, pa.int64()), (float, pa.float64())):
        try:
            parse(value)
            return t
        except ValueError:
            pass
    if value in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return pa.bool_()
    try:
        pc.cast(pa.array([value]), pa.timestamp("s"))
        return pa.timestamp("s")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.string()


def _join_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The narrowest type holding values of both ``a`` and ``b`` (string when nothing narrower does)."""
    if a == b:
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_nested(a) or pa.types.is_nested(b):
        return a if pa.types.is_nested(a) else b  # refused later as nested
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in numeric) and any(f(b) for f in numeric):
        return pa.int64() if pa.types.is_integer(a) and pa.types.is_integer(b) else pa.float64()
    temporal = (pa.types.is_date, pa.types.is_timestamp)
    if any(f(a) for f in temporal) and any(f(b) for f in temporal):
        tz = {getattr(t, "tz", None) for t in (a, b)}
        return pa.timestamp("us", tz=tz.pop()) if len(tz) == 1 else pa.string()
    return pa.string()


def _open_parquet(path: Path, options: Options) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    try:
        pf = pq.ParquetFile(str(path), pre_buffer=False)
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as e:
        raise errors.PermanentError(MALFORMED_DATA, f"the Parquet file could not be read: {e}") from e

    def batches() -> Iterator[pa.RecordBatch]:
        it = pf.iter_batches(batch_size=_batch_rows(options, len(schema)))
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except (pa.ArrowException, OSError, ValueError) as e:
                raise errors.PermanentError(MALFORMED_DATA, f"the Parquet file could not be read: {e}") from e
            yield batch

    return schema, batches()


def _jsonl_blocks(path: Path, block_size: int) -> Iterator[tuple[int, bytes]]:
    """Newline-aligned blocks of ``path`` (decompressed), with the line number each starts at."""
    line = 1
    rest = b""
    with pa.input_stream(str(path), compression="detect") as f:
        while chunk := f.read(block_size):
            buf = rest + chunk
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                rest = buf
                continue
            body, rest = buf[:cut], buf[cut:]
            if body.strip():
                yield line, body
            line += body.count(b"\n")
    if rest.strip():
        yield line, rest


def _read_json_block(line: int, body: bytes) -> pa.Table:
    try:
        return pajson.read_json(
            pa.BufferReader(body), read_options=pajson.ReadOptions(use_threads=False, block_size=len(body) + 1)
        )
    except (pa.ArrowException, ValueError) as e:
        if "changed from" in str(e):
            return _read_mixed_json_block(line, body)
        text = _JSON_ROW.sub(lambda m: f" on line {line + int(m.group(1))}", str(e))
        raise errors.PermanentError(MALFORMED_DATA, f"the JSON lines could not be parsed: {text}") from e


def _read_mixed_json_block(line: int, body: bytes) -> pa.Table:
    """A block where a field holds both strings and numbers (pyarrow refuses it): parse it in Python and
    turn that field's values into their JSON text, so the column becomes a string column (as in CSV)."""
    records: list[dict[str, Any]] = []
    for offset, text in enumerate(body.splitlines()):
        if not text.strip():
            continue
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise errors.PermanentError(
                MALFORMED_DATA, f"the JSON lines could not be parsed: line {line + offset}: {e}"
            ) from e
        if not isinstance(record, dict):
            raise errors.PermanentError(
                MALFORMED_DATA, f"the JSON lines could not be parsed: line {line + offset} is not an object"
            )
        records.append(record)
    kinds: dict[str, set[type]] = collections.defaultdict(set)
    for record in records:
        for key, value in record.items():
            if value is not None:
                kinds[key].add(str if isinstance(value, str) else bool if isinstance(value, bool) else float)
    mixed = {key for key, seen in kinds.items() if len(seen) > 1}
    for record in records:
        for key in mixed & record.keys():
            value = record[key]
            if value is not None and not isinstance(value, str):
                record[key] = orjson.dumps(value).decode()
    keys = list(dict.fromkeys(key for record in records for key in record))
    try:
        return pa.table({key: pa.array([record.get(key) for record in records]) for key in keys})
    except (pa.ArrowException, ValueError) as e:
        raise errors.PermanentError(MALFORMED_DATA, f"the JSON lines could not be parsed near line {line}: {e}") from e


def _open_jsonl(
    path: Path, hints: dict[str, pa.DataType], options: Options
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    blocks = _jsonl_blocks(path, options.block_size)
    try:
        first = next(blocks)
    except StopIteration:
        raise errors.PermanentError(MALFORMED_DATA, "the JSON lines source has no records") from None
    except (pa.ArrowException, OSError) as e:
        raise errors.PermanentError(MALFORMED_DATA, f"the JSON lines could not be read: {e}") from e
    table = _read_json_block(*first)
    fields = [pa.field(f.name, hints.get(f.name, f.type)) for f in table.schema]
    fields += [pa.field(n, t) for n, t in hints.items() if n not in table.schema.names]
    schema = pa.schema(fields)

    def conform(t: pa.Table) -> pa.RecordBatch:
        new = {f.name: _join_types(pa.null(), f.type) for f in t.schema if f.name not in schema.names}
        if new:
            raise _Widen(new)
        arrays = []
        for f in schema:
            if f.name not in t.schema.names:
                arrays.append(pa.nulls(t.num_rows, f.type))
                continue
            col = t.column(f.name).combine_chunks()
            if col.type != f.type:
                if _join_types(f.type, col.type) != f.type:
                    raise _Widen({f.name: _join_types(f.type, col.type)})
                col = pc.cast(col, f.type)
            arrays.append(col)
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def batches() -> Iterator[pa.RecordBatch]:
        yield conform(table)
        try:
            for line, body in blocks:
                yield conform(_read_json_block(line, body))
        except (pa.ArrowException, OSError) as e:
            raise errors.PermanentError(MALFORMED_DATA, f"the JSON lines could not be read: {e}") from e

    return schema, batches()


# ----- checks ------------------------------------------------------------------------------------


def check_schema(scan: Scan, spec: dataset.DatasetSpec) -> None:
    """Check the declared ``spec.schema`` rules (nullable, min, max, values) against pass 1's summaries.

    Types were enforced while reading. Raises ``SchemaMismatch`` naming the column and the problem.
    """
    for col in scan.features:
        decl = col.declared
        if decl is None:
            continue
        if not decl.nullable and col.missing:
            raise errors.PermanentError(
                SCHEMA_MISMATCH, f"column {col.name!r} is declared not nullable but has {col.missing} missing values"
            )
        m = col.moments
        if m is not None and m.count:
            if decl.min is not None and m.min < decl.min:
                raise errors.PermanentError(
                    SCHEMA_MISMATCH, f"column {col.name!r} has value {m.min:g}, below its declared min {decl.min:g}"
                )
            if decl.max is not None and m.max > decl.max:
                raise errors.PermanentError(
                    SCHEMA_MISMATCH, f"column {col.name!r} has value {m.max:g}, above its declared max {decl.max:g}"
                )
        if col.not_allowed:
            raise errors.PermanentError(
                SCHEMA_MISMATCH,
                f"column {col.name!r} has {col.not_allowed} values outside its declared values, "
                f"e.g. {col.not_allowed_example!r} (allowed: {_list(decl.values or [])})",
            )


def validate(scan: Scan, spec: dataset.DatasetSpec) -> None:
    """Apply ``spec.validation``: minRows, maxMissingFraction (all feature cells), per-feature rules.

    Also refuses missing target values (every row needs a label). Raises ``ValidationFailed`` naming
    the rule and the value, or ``SchemaMismatch`` when a rule names a column that is not a feature.
    """
    rules = spec.validation
    if scan.rows < rules.min_rows:
        raise errors.PermanentError(
            VALIDATION_FAILED, f"rule minRows: the data has {scan.rows} rows, fewer than minRows={rules.min_rows}"
        )
    features = {c.name: c for c in scan.features}
    cells = scan.rows * len(features)
    missing = sum(c.missing for c in features.values())
    if cells and missing / cells > rules.max_missing_fraction:
        raise errors.PermanentError(
            VALIDATION_FAILED,
            f"rule maxMissingFraction: {missing / cells:.4g} of feature values are missing ({missing} of "
            f"{cells}), more than maxMissingFraction={rules.max_missing_fraction:g}",
        )
    for rule in rules.features:
        col = features.get(rule.name)
        if col is None:
            raise errors.PermanentError(
                SCHEMA_MISMATCH, f"validation rule for {rule.name!r} names a column that is not a feature"
            )
        fraction = col.missing / scan.rows
        if fraction > rule.max_missing_fraction:
            raise errors.PermanentError(
                VALIDATION_FAILED,
                f"rule features[{rule.name}].maxMissingFraction: {fraction:.4g} of {rule.name!r} is missing "
                f"({col.missing} of {scan.rows}), more than {rule.max_missing_fraction:g}",
            )
    target = scan.target
    if target.missing:
        raise errors.PermanentError(
            VALIDATION_FAILED,
            f"rule target: target column {target.name!r} has {target.missing} missing values; every row needs a label",
        )


# ----- profile -----------------------------------------------------------------------------------


def build_profile(scan: Scan, snapshot: Path, options: Options, *, source_digest: str) -> dict[str, Any]:
    """The profile document (JSON-ready): the reference distribution of every feature and the target.

    Numeric columns: ``count, missing, mean, std (ddof=1), min, max`` from :class:`sketch.Moments`;
    ``quantiles`` p01..p99, exact (linear interpolation, Hyndman & Fan type 7, as numpy and pandas)
    when the column has at most ``exact_quantile_max`` values, else from a KLL sketch with
    ``quantileRankError`` its rank-error bound; ``histogram`` on the deciles: ``edges`` =
    [min, p10..p90, max] and ``counts`` per bin, bin i holding edges[i] <= v < edges[i+1] with the
    first bin open below and the last open above (apply the same rule to live data);
    ``sample``: a sorted uniform sample of at most ``sample_size`` values (all values when fewer),
    drawn without replacement with a fixed seed.
    Categorical and boolean columns: ``count, missing, distinct, frequencies`` (top ``top_k`` values
    by count, ties by value, then ``__other__``), ``frequenciesExact``, ``frequencyMaxError``.
    Datetime columns: ``count, missing, min, max`` (ISO 8601).
    """
    numeric = [c for c in scan.columns if c.kind is dataset.FeatureType.NUMERIC]
    numeric_stats = _numeric_profiles(numeric, snapshot, options)

    def describe(col: ColumnSummary) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": col.name, "type": col.kind.value, "count": col.count, "missing": col.missing}
        if col.kind is dataset.FeatureType.NUMERIC:
            doc.update(numeric_stats[col.name])
        elif col.kind is dataset.FeatureType.DATETIME:
            doc["min"] = col.dt_min.isoformat() if col.dt_min is not None else None
            doc["max"] = col.dt_max.isoformat() if col.dt_max is not None else None
        else:
            assert col.freqs is not None
            doc["distinct"] = col.freqs.distinct()
            doc["frequencies"] = col.freqs.top(len(col.classes) if col.classes is not None else options.top_k)
            doc["frequenciesExact"] = col.freqs.exact
            doc["frequencyMaxError"] = col.freqs.max_error
        return doc

    target = describe(scan.target)
    if scan.target.classes is not None:
        target["classes"] = scan.target.classes
    return {
        "kind": "DatasetProfile",
        "version": PROFILE_VERSION,
        "digest": source_digest,
        "rows": scan.rows,
        "columns": len(scan.columns),
        "features": [describe(c) for c in scan.features],
        "target": target,
        "ignoredColumns": scan.ignored,
        "settings": {
            "exactQuantileMaxValues": options.exact_quantile_max,
            "sampleSize": options.sample_size,
            "topK": options.top_k,
            "kllK": options.kll_k,
            "quantileMethod": "linear interpolation (numpy/pandas default) when exact; KLL sketch above",
            "histogramBins": "edges[i] <= v < edges[i+1]; first bin open below, last open above",
        },
    }


def _numeric_profiles(
    columns: Sequence[ColumnSummary], snapshot: Path, options: Options
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    large: list[ColumnSummary] = []
    for col in columns:
        assert col.moments is not None
        m = col.moments
        base: dict[str, Any] = {"mean": None, "std": None, "min": None, "max": None, "quantiles": None,
                                "quantileMethod": None, "quantileRankError": None, "histogram": None,
                                "sample": []}
        if m.count:
            base.update(mean=m.mean, std=m.std(ddof=1), min=m.min, max=m.max)
        out[col.name] = base
        if m.count == 0:
            continue
        if m.count > options.exact_quantile_max:
            large.append(col)
            continue
        values = _read_values(snapshot, col.name)
        sample = values[_sample_positions(values.shape[0], options.sample_size)]
        values.sort()
        levels = _quantiles_sorted(values, (*QUANTILE_LEVELS, *DECILE_LEVELS))
        edges = [m.min, *levels[len(QUANTILE_LEVELS):], m.max]
        below = np.searchsorted(values, edges[1:-1], side="left")
        counts = np.diff(np.concatenate(([0], below, [values.shape[0]])))
        base.update(
            quantiles=_quantile_doc(levels[: len(QUANTILE_LEVELS)]), quantileMethod="exact",
            quantileRankError=0.0, histogram={"edges": edges, "counts": counts.tolist()},
            sample=np.sort(sample).tolist(),
        )
        del values
    if large:
        out.update(_streamed_profiles(large, snapshot, options, out))
    return out


def _read_values(snapshot: Path, name: str) -> FloatArray:
    """One column of the snapshot as float64 without missing values (shape ``(count,)``)."""
    column = pq.read_table(str(snapshot), columns=[name]).column(name)
    floats = pc.cast(column, pa.float64()).to_numpy()
    del column
    return np.ascontiguousarray(floats[~np.isnan(floats)], dtype=np.float64)


def _iter_values(snapshot: Path, names: Sequence[str], options: Options) -> Iterator[dict[str, FloatArray]]:
    """Batches of the named snapshot columns, each as float64 without missing values."""
    reader = pq.ParquetFile(str(snapshot), pre_buffer=False)
    for batch in reader.iter_batches(batch_size=_batch_rows(options, len(names)), columns=names):
        out: dict[str, FloatArray] = {}
        for name in names:
            floats = pc.cast(batch.column(name), pa.float64()).to_numpy(zero_copy_only=False)
            out[name] = floats[~np.isnan(floats)]
        yield out


def _streamed_profiles(
    columns: Sequence[ColumnSummary], snapshot: Path, options: Options, out: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Quantiles from KLL sketches (one pass), then histogram counts and the sample (a second pass)."""
    names = [c.name for c in columns]
    sketches = {n: sketch.QuantileSketch(options.kll_k) for n in names}
    for values in _iter_values(snapshot, names, options):
        for n in names:
            sketches[n].update(values[n])
    levels = {n: sketches[n].quantiles((*QUANTILE_LEVELS, *DECILE_LEVELS)) for n in names}
    interior = {n: np.asarray(levels[n][len(QUANTILE_LEVELS):]) for n in names}
    counts = {n: np.zeros(10, dtype=np.int64) for n in names}
    positions = {c.name: _sample_positions(c.count, options.sample_size) for c in columns}
    samples: dict[str, list[FloatArray]] = {n: [] for n in names}
    offsets = dict.fromkeys(names, 0)
    for values in _iter_values(snapshot, names, options):
        for n in names:
            v = values[n]
            counts[n] += np.bincount(np.searchsorted(interior[n], v, side="right"), minlength=10)
            pos = positions[n]
            lo, hi = np.searchsorted(pos, [offsets[n], offsets[n] + v.shape[0]])
            samples[n].append(v[pos[lo:hi] - offsets[n]])
            offsets[n] += v.shape[0]
    result: dict[str, dict[str, Any]] = {}
    for col in columns:
        n, m = col.name, col.moments
        assert m is not None
        doc = dict(out[n])
        doc.update(
            quantiles=_quantile_doc(levels[n][: len(QUANTILE_LEVELS)]), quantileMethod="kll",
            quantileRankError=sketches[n].rank_error(),
            histogram={"edges": [m.min, *interior[n].tolist(), m.max], "counts": counts[n].tolist()},
            sample=np.sort(np.concatenate(samples[n])).tolist(),
        )
        result[n] = doc
    return result


def _batch_rows(options: Options, columns: int) -> int:
    """Rows per Parquet batch so that a batch of ``columns`` float64 columns is ~``parquet_batch_bytes``."""
    return max(1024, options.parquet_batch_bytes // (8 * max(1, columns)))


def _sample_positions(n: int, size: int) -> npt.NDArray[np.int64]:
    """Sorted positions of a uniform sample without replacement of ``size`` out of ``n`` (all when fewer)."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(SAMPLE_SEED)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def _quantiles_sorted(x: FloatArray, levels: Sequence[float]) -> list[float]:
    """Quantiles of sorted ``x`` by linear interpolation between order statistics (Hyndman & Fan type 7).

    Position ``h = (n - 1) q``; the value is ``x[floor(h)] + (h - floor(h)) (x[floor(h)+1] - x[floor(h)])``,
    evaluated as numpy's ``method="linear"`` does (from the nearer end when the fraction is >= 0.5).
    """
    n = x.shape[0]
    h = (n - 1) * np.asarray(levels, dtype=np.float64)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    t = h - lo
    a, b = x[lo], x[hi]
    diff = b - a
    values = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return [float(v) for v in values]


def _quantile_doc(values: Sequence[float]) -> dict[str, float]:
    return {f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILE_LEVELS, values, strict=True)}


# ----- split -------------------------------------------------------------------------------------


def write_split(scan: Scan, snapshot: Path, split: dataset.Split, dest: Path) -> tuple[int, int]:
    """Split the row indices with ``train_test_split`` and write them as JSON to ``dest``.

    Stratifies on the target when ``split.stratify`` and the target is a class label (categorical,
    boolean, or an integer with few levels), unless a class has a single row or either side would
    have fewer rows than there are classes -- then the split is plain (``"stratified": false``).
    Index lists are sorted ascending. The document is ``{"seed", "stratified", "test",
    "testFraction", "train"}``, written in chunks so no JSON text of the whole list is built.

    Returns:
        ``(train_rows, test_rows)``.

    Raises:
        roost.errors.PermanentError: ``ValidationFailed`` when the rows cannot make two non-empty sets.
    """
    n = scan.rows
    index = np.arange(n, dtype=np.int64 if n >= 2**31 else np.int32)
    labels = _class_codes(scan, snapshot) if split.stratify and scan.target.classes is not None else None
    stratified = labels is not None and _can_stratify(labels, n, split.test_fraction, scan.target.name)
    try:
        parts = model_selection.train_test_split(
            index, test_size=split.test_fraction, random_state=split.seed, shuffle=True,
            stratify=labels if stratified else None,
        )
    except ValueError as e:
        if not stratified:
            raise errors.PermanentError(
                VALIDATION_FAILED, f"rule split.testFraction: {n} rows cannot be split into train and test: {e}"
            ) from e
        log.info("Fell back to a plain split: %s", e)
        stratified = False
        parts = model_selection.train_test_split(
            index, test_size=split.test_fraction, random_state=split.seed, shuffle=True
        )
    train, test = parts
    del index, labels, parts
    train.sort()
    test.sort()
    with open(dest, "wb") as f:
        f.write(b'{"seed":%d,"stratified":%s,"test":' % (split.seed, b"true" if stratified else b"false"))
        _write_int_list(f, test)
        f.write(b',"testFraction":' + orjson.dumps(split.test_fraction) + b',"train":')
        _write_int_list(f, train)
        f.write(b"}")
    return int(train.shape[0]), int(test.shape[0])


def _write_int_list(f: BinaryIO, values: npt.NDArray[np.integer[Any]], chunk: int = 1 << 16) -> None:
    f.write(b"[")
    for start in range(0, values.shape[0], chunk):
        if start:
            f.write(b",")
        f.write(orjson.dumps(values[start : start + chunk].astype(np.int64), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1])
    f.write(b"]")


def _class_codes(scan: Scan, snapshot: Path) -> npt.NDArray[np.int32]:
    """The target's class index per row (shape ``(rows,)``), read batch by batch from the snapshot."""
    target = scan.target
    assert target.classes is not None
    value_set = pa.array(target.classes, type=target.out_type)
    codes = np.empty(scan.rows, dtype=np.int32)
    at = 0
    for batch in pq.ParquetFile(str(snapshot), pre_buffer=False).iter_batches(columns=[target.name]):
        column = batch.column(0)
        if column.type != value_set.type:
            column = pc.cast(column, value_set.type)
        idx = pc.index_in(column, value_set=value_set).to_numpy(zero_copy_only=False)
        codes[at : at + idx.shape[0]] = idx
        at += idx.shape[0]
    return codes


def _can_stratify(labels: npt.NDArray[np.int32], n: int, test_fraction: float, target: str) -> bool:
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    n_test = math.ceil(test_fraction * n)
    if counts.min() < 2:
        log.info("Split %r without stratification: a class has a single row", target)
        return False
    if n_test < counts.shape[0] or n - n_test < counts.shape[0]:
        log.info("Split %r without stratification: %d classes do not fit %d test rows", target, len(counts), n_test)
        return False
    return True
