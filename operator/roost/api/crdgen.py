"""Generate structural CRDs (``apiextensions.k8s.io/v1``) from the pydantic models.

Pydantic's JSON Schema uses ``$ref``/``$defs`` and ``anyOf [X, null]`` for optionals; a Kubernetes
structural schema allows neither. :func:`structural` inlines references, collapses optionals to the
non-null branch, drops keywords the API server does not know, and carries over descriptions,
defaults, bounds, enums, patterns and the ``x-kubernetes-*`` extensions declared on the models.
See "Specifying a structural schema" in the Kubernetes CRD documentation.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic_core
import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from roost.api import common, kinds

_DROP = {"title", "$defs", "additionalProperties_", "discriminator"}
_KEEP_EXT = ("x-kubernetes-",)

IMMUTABLE_KINDS = {"TrainingRun", "ModelVersion"}

# Cross-field rules on a whole spec, as CEL.
_CLASSIFICATION = "['" + "', '".join(("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")) + "']"
_REGRESSION = "['rmse', 'mae', 'r2']"
SPEC_RULES: dict[str, list[dict[str, str]]] = {
    "TrainingRun": [
        {"rule": f"self.task != 'classification' || !has(self.metrics) || self.metrics.all(m, m in {_CLASSIFICATION})",
         "message": "metrics of a classification task must be among " + _CLASSIFICATION, "fieldPath": ".metrics"},
        {"rule": f"self.task != 'regression' || !has(self.metrics) || self.metrics.all(m, m in {_REGRESSION})",
         "message": "metrics of a regression task must be among " + _REGRESSION, "fieldPath": ".metrics"},
        {"rule": "!has(self.tuning) || (self.task == 'classification' ? self.tuning.objective.metric in "
                 f"{_CLASSIFICATION} : self.tuning.objective.metric in {_REGRESSION})",
         "message": "tuning.objective.metric does not fit the task", "fieldPath": ".tuning.objective.metric"},
        {"rule": "self.task != 'classification' || self.estimator.class.endsWith('Classifier') || "
                 "self.estimator.class in ['sklearn.linear_model.LogisticRegression', "
                 "'sklearn.svm.SVC', 'sklearn.naive_bayes.GaussianNB']",
         "message": "estimator.class is not a classifier", "fieldPath": ".estimator.class"},
        {"rule": "self.task != 'regression' || !(self.estimator.class.endsWith('Classifier') || "
                 "self.estimator.class in ['sklearn.linear_model.LogisticRegression', "
                 "'sklearn.svm.SVC', 'sklearn.naive_bayes.GaussianNB'])",
         "message": "estimator.class is not a regressor", "fieldPath": ".estimator.class"},
    ],
}


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with every ``$ref`` inlined and every optional collapsed, recursively."""
    if "$ref" in schema:
        target = copy.deepcopy(defs[schema["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        target.update(extra)
        return _resolve(target, defs)
    if "allOf" in schema and len(schema["allOf"]) == 1:
        inner = copy.deepcopy(schema["allOf"][0])
        outer = {k: v for k, v in schema.items() if k != "allOf"}
        resolved = _resolve(inner, defs)
        resolved.update(outer)
        return _resolve(resolved, defs)
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types structurally: {schema}")
        merged = copy.deepcopy(branches[0])
        for k, v in schema.items():
            if k != "anyOf" and not (k == "default" and v is None):
                merged[k] = v
        return _resolve(merged, defs)

    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _resolve(value, defs)
        else:
            out[key] = copy.deepcopy(value)
    return _normalise(out)


def _normalise(schema: dict[str, Any]) -> dict[str, Any]:
    """Make one resolved node structural: a type everywhere, free-form objects marked as such."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.pop("items", None) if schema.get("type") != "array" else None
        if schema.get("type") == "array":
            schema["items"] = schema.get("items") or {"x-kubernetes-preserve-unknown-fields": True}
        if schema.get("type") == "object" and schema.get("additionalProperties") is True:
            del schema["additionalProperties"]
        return schema
    if schema.get("type") == "object" and "properties" not in schema:
        additional = schema.get("additionalProperties")
        if additional in (None, True, {}):
            schema.pop("additionalProperties", None)
            schema["x-kubernetes-preserve-unknown-fields"] = True
    if schema.get("type") == "object":
        schema.pop("additionalProperties", None) if schema.get("additionalProperties") is False else None
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        items = schema["items"]
        if not items or ("type" not in items and "x-kubernetes-preserve-unknown-fields" in items):
            items.setdefault("x-kubernetes-preserve-unknown-fields", True)
    if "enum" in schema and "type" not in schema:
        schema["type"] = "string"
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), (int, float)) and not isinstance(schema.get(bound), bool):
            schema[plain] = schema.pop(bound)
            schema[bound] = True
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if schema.get("type") == "integer" and "format" not in schema:
        schema["format"] = "int64"
    return schema


class _WithFactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves ``default_factory`` defaults out of JSON Schema; the API server should apply them."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None or "default" in schema:
            return super().default_schema(schema)
        value = factory()  # type: ignore[call-arg]
        json_schema = self.generate_inner(schema["schema"])
        if isinstance(value, BaseModel):
            json_schema["default"] = value.model_dump(by_alias=True, exclude_none=True, mode="json")
        else:
            json_schema["default"] = pydantic_core.to_jsonable_python(value, by_alias=True, exclude_none=True)
        return json_schema


def model_schema(model: type[common.RoostModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one model (no ``$ref``, no ``anyOf``)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    defs = raw.pop("$defs", {})
    return _resolve(raw, defs)


def crd(info: common.KindInfo) -> dict[str, Any]:
    """The full CustomResourceDefinition of one kind.

    Returns:
        A dict ready to dump as YAML, ``apiextensions.k8s.io/v1``.
    """
    spec = model_schema(info.spec)
    spec["description"] = f"{info.description} {spec.get('description', '')}".strip()
    rules = list(SPEC_RULES.get(info.kind, []))
    if info.kind in IMMUTABLE_KINDS:
        rules.append({"rule": "self == oldSelf",
                      "message": f"{info.kind} spec is immutable: create a new {info.kind} instead"})
    if rules:
        spec["x-kubernetes-validations"] = spec.get("x-kubernetes-validations", []) + rules
    status = model_schema(info.status)
    root = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object: roost.dev/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind of this object: {info.kind}."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "roost", "app.kubernetes.io/part-of": "roost"},
        },
        "spec": {
            "group": common.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": list(info.short_names),
                "categories": [common.CATEGORY],
            },
            "versions": [{
                "name": common.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": list(info.printer_columns),
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def render(info: common.KindInfo) -> str:
    """The CRD of one kind as YAML text, exactly as committed under ``crds/``."""
    header = "# Generated by `roost crds` from operator/roost/api; do not edit by hand.\n"
    return header + yaml.safe_dump(crd(info), sort_keys=False, width=120)


def write(directory: Path) -> list[Path]:
    """Write every CRD into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for info in kinds.ALL:
        path = directory / f"{info.crd_name}.yaml"
        path.write_text(render(info))
        paths.append(path)
    return paths


def diff(directory: Path) -> list[str]:
    """Names of CRD files in ``directory`` that differ from (or are missing against) the models."""
    stale = []
    for info in kinds.ALL:
        path = directory / f"{info.crd_name}.yaml"
        if not path.exists() or path.read_text() != render(info):
            stale.append(path.name)
    return stale
