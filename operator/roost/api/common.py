"""Shapes shared by every kind: the base model, references, conditions, durations, quantities.

Conventions follow the Kubernetes API conventions (``api-conventions.md``): camelCase field names,
``...Ref`` for same-namespace references, conditions with ``observedGeneration`` and
``lastTransitionTime``, durations as Go/Flux duration strings (``30s``, ``5m``, ``1h30m``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "roost.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "roost"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a duration string such as ``30s``, ``5m``, ``1h30m`` or ``250ms``.

    The grammar is the subset of Go's ``time.ParseDuration`` that Argo Rollouts and Flux use.

    Raises:
        ValueError: when ``text`` is not a duration string.
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN)]
ObjectName = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=63)]


def wire_name(field: str) -> str:
    """``snake_case`` -> the API's camelCase, with initialisms upper-cased as the conventions ask
    (``snapshot_uri`` -> ``snapshotURI``)."""
    return re.sub(r"U(ri|rl)(?=[A-Z]|$)", lambda m: "U" + m.group(1).upper(), to_camel(field))


class RoostModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=wire_name,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class LocalObjectReference(RoostModel):
    """A reference to an object of a known kind in the same namespace."""

    name: ObjectName = Field(description="Name of the referenced object, in the same namespace.")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(RoostModel):
    """One aspect of the object's observed state (Kubernetes ``metav1.Condition``)."""

    type: str = Field(
        description="Type of condition in CamelCase, e.g. Ready.", pattern=r"^[A-Z][A-Za-z0-9]*$",
        max_length=316,
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: str = Field(
        description="A programmatic identifier, one CamelCase word, for the last transition.",
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024,
    )
    message: str = Field(default="", description="A human-readable message about the transition.",
                         max_length=32768)
    last_transition_time: str = Field(
        description="When the condition last changed status (RFC 3339, UTC).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int = Field(
        default=0, ge=0, description="The .metadata.generation the condition was set from."
    )


class CommonStatus(RoostModel):
    """Fields every kind's status carries."""

    observed_generation: int = Field(
        default=0, ge=0, description="The most recent .metadata.generation the operator has acted on."
    )
    phase: str | None = Field(
        default=None, max_length=64,
        description="A one-word summary derived from the conditions, for printer columns only.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16,
        description="Observations of the object's state; see each kind's docs for the types.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class Quantities(RoostModel):
    """Compute resources in Kubernetes quantity form (e.g. ``cpu: 500m``, ``memory: 1Gi``)."""

    cpu: str | None = Field(default=None, pattern=QUANTITY_PATTERN, description="CPU, e.g. 500m or 2.")
    memory: str | None = Field(default=None, pattern=QUANTITY_PATTERN, description="Memory, e.g. 512Mi.")


class Resources(RoostModel):
    """Requests and limits for the work's container or process."""

    requests: Quantities | None = Field(default=None, description="Minimum resources reserved.")
    limits: Quantities | None = Field(default=None, description="Maximum resources allowed.")


@dataclass(frozen=True)
class KindInfo:
    """What a kind contributes to its CRD besides its schema: names, columns, spec-level rules."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec: type[RoostModel]
    status: type[RoostModel]
    printer_columns: tuple[dict[str, Any], ...]
    description: str

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"
