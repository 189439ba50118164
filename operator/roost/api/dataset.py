"""``Dataset``: where data lives, its schema, validation rules and split; its snapshots and profile."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field

from roost.api import common
from roost.api.common import Digest, Duration, RoostModel


class DataFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"


class Source(RoostModel):
    """Where the data is fetched from."""

    uri: str = Field(
        min_length=1, max_length=2048, pattern=r"^(file|https?|s3|gs|az|abfs|memory)://.+",
        description="Location of the data: file://, https://, s3://, gs://, az:// (anything fsspec reads).",
    )
    format: DataFormat = Field(default=DataFormat.CSV, description="File format: csv, parquet or jsonl.")
    digest: Digest | None = Field(
        default=None,
        description="Optional pin, sha256:<hex> of the source bytes; other content is refused (DigestMismatch).",
    )


class Feature(RoostModel):
    """One column of the data and what its values may be."""

    name: str = Field(min_length=1, max_length=256, description="Column name in the source.")
    type: FeatureType = Field(description="numeric, categorical, boolean or datetime.")
    nullable: bool = Field(default=True, description="Whether missing values are allowed.")
    min: float | None = Field(default=None, description="Smallest allowed value (numeric features).")
    max: float | None = Field(default=None, description="Largest allowed value (numeric features).")
    values: list[str] | None = Field(
        default=None, max_length=1024, description="Allowed values (categorical features).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class Schema(RoostModel):
    """The declared schema; the source must match it, else SchemaMismatch."""

    features: list[Feature] = Field(
        min_length=1, max_length=4096, description="Features, in any order; the target is not listed here.",
        json_schema_extra={
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        },
    )


class FeatureRule(RoostModel):
    """A validation rule for one feature."""

    name: str = Field(min_length=1, max_length=256, description="Column name.")
    max_missing_fraction: float = Field(ge=0, le=1, description="Largest allowed share of missing values.")


class Validation(RoostModel):
    """Rules the snapshot must pass to become Ready."""

    min_rows: int = Field(default=1, ge=1, description="Fewest rows accepted.")
    max_missing_fraction: float = Field(
        default=1.0, ge=0, le=1, description="Largest allowed share of missing cells over all features.",
    )
    features: list[FeatureRule] = Field(
        default_factory=list, max_length=4096, description="Per-feature rules.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class Split(RoostModel):
    """How rows are split into training and holdout (test) sets; stored as row indices."""

    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of rows in the holdout set.")
    seed: int = Field(default=42, ge=0, description="Seed of the shuffle, so the split is reproducible.")
    stratify: bool = Field(default=True, description="Keep the target's class shares in both sets.")


class DatasetSpec(RoostModel):
    """Desired state of a Dataset."""

    source: Source = Field(description="Where the data is fetched from.")
    target: str = Field(min_length=1, max_length=256, description="Name of the label column.")
    schema_: Schema | None = Field(
        default=None, alias="schema",
        description="Declared schema; inferred and recorded in status when omitted.",
    )
    validation: Validation = Field(default_factory=Validation, description="Rules the data must pass.")
    split: Split = Field(default_factory=Split, description="Train/holdout split.")
    refresh_interval: Duration | None = Field(
        default=None, description="Re-fetch this often (e.g. 1h); new content becomes a new version.",
    )


class InferredFeature(RoostModel):
    """A feature as observed in the snapshot."""

    name: str = Field(description="Column name.")
    type: FeatureType = Field(description="Observed type.")
    missing: int = Field(default=0, ge=0, description="Number of missing values.")


class DatasetVersion(RoostModel):
    """One snapshot the Dataset has had."""

    digest: str = Field(description="sha256 of the source bytes.")
    rows: int = Field(ge=0, description="Rows in the snapshot.")
    snapshot_uri: str = Field(description="Where the Parquet snapshot lives.")
    profile_uri: str = Field(description="Where the profile (drift reference) lives.")
    split_uri: str = Field(description="Where the train/holdout row indices live.")
    snapshot_digest: str | None = Field(default=None, description="sha256 of the Parquet snapshot.")
    split_digest: str | None = Field(default=None, description="sha256 of the split file.")
    profile_digest: str | None = Field(default=None, description="sha256 of the profile.")
    train_rows: int | None = Field(default=None, ge=0, description="Rows in the training split.")
    test_rows: int | None = Field(default=None, ge=0, description="Rows in the holdout split.")
    time: str = Field(description="When the version was taken (RFC 3339).")


class DatasetStatus(common.CommonStatus):
    """Observed state of a Dataset."""

    digest: str | None = Field(default=None, description="sha256 of the current version's source bytes.")
    snapshot_uri: str | None = Field(default=None, description="Current Parquet snapshot.")
    profile_uri: str | None = Field(default=None, description="Current profile, the reference for drift.")
    split_uri: str | None = Field(default=None, description="Current train/holdout row indices.")
    rows: int | None = Field(default=None, ge=0, description="Rows in the current version.")
    columns: int | None = Field(default=None, ge=0, description="Columns in the current version, target included.")
    schema_: list[InferredFeature] | None = Field(
        default=None, alias="schema", max_length=4096, description="Features as observed (target excluded).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    job: str | None = Field(default=None, description="Name of the current unit of work, if any.")
    attempts: int = Field(default=0, ge=0, description="Attempts of the current unit of work.")
    retry_at: str | None = Field(default=None, description="After a failed attempt: when the next one starts.")
    last_fetch_time: str | None = Field(default=None, description="When the source was last fetched.")
    pending_fetch_time: str | None = Field(default=None, description="When the running fetch started.")
    current: DatasetVersion | None = Field(default=None, description="The current version in full.")
    target: dict[str, Any] | None = Field(
        default=None, description="The label column: name, type and classes.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    history: list[DatasetVersion] = Field(
        default_factory=list, max_length=20, description="The latest versions, newest first.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


KIND = common.KindInfo(
    kind="Dataset",
    plural="datasets",
    short_names=("rds", "rdataset"),
    spec=DatasetSpec,
    status=DatasetStatus,
    printer_columns=(
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Rows", "type": "integer", "jsonPath": ".status.rows"},
        {"name": "Digest", "type": "string", "jsonPath": ".status.digest", "priority": 0},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    description="A versioned, validated and profiled snapshot of training data.",
)
