"""The CRD generator: structural schemas, descriptions everywhere, committed files up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roost.api import crdgen, kinds

REPO = Path(__file__).resolve().parents[2]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, child in (node.get("properties") or {}).items():
            out.extend(_walk(child, f"{path}.{key}"))
        if isinstance(node.get("items"), dict):
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


@pytest.mark.parametrize("info", kinds.ALL, ids=lambda k: k.kind)
def test_schema_is_structural(info: Any) -> None:
    schema = crdgen.crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "$defs", "title"} & set(node), path
        if path.endswith("[]") and node.get("x-kubernetes-preserve-unknown-fields"):
            continue
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path


@pytest.mark.parametrize("info", kinds.ALL, ids=lambda k: k.kind)
def test_every_field_has_a_description(info: Any) -> None:
    schema = crdgen.crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        if path in ("", ".metadata") or path.endswith(("[]", "{}")):
            continue
        assert node.get("description"), f"{info.kind}{path} has no description"


def test_lists_declare_a_list_type_and_bounds() -> None:
    for info in kinds.ALL:
        schema = crdgen.crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema["properties"]["spec"]):
            if node.get("type") == "array":
                assert "x-kubernetes-list-type" in node, f"{info.kind}.spec{path}"
                assert "maxItems" in node, f"{info.kind}.spec{path}"


def test_immutable_kinds_carry_the_self_equals_old_self_rule() -> None:
    for info in kinds.ALL:
        spec = crdgen.crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        rules = [r["rule"] for r in spec.get("x-kubernetes-validations", [])]
        assert ("self == oldSelf" in rules) == (info.kind in ("TrainingRun", "ModelVersion")), info.kind


def test_short_names_do_not_collide_with_built_in_resources() -> None:
    built_in = {"deploy", "ds", "po", "svc", "cm", "ns", "no", "pv", "pvc", "rs", "sts", "sa", "ep", "ev", "ing",
                "hpa", "cj", "csr", "crd", "pdb", "pc", "sc", "rc", "quota", "limits", "netpol", "psp"}
    names = [n for k in kinds.ALL for n in k.short_names]
    assert not built_in & set(names)
    assert len(names) == len(set(names))


def test_committed_crds_match_the_models() -> None:
    assert crdgen.diff(REPO / "crds") == [], "run `roost crds` and commit crds/"


def test_factory_defaults_reach_the_schema() -> None:
    spec = crdgen.model_schema(kinds.BY_KIND["TrainingRun"].spec)
    assert spec["properties"]["metrics"]["default"] == ["accuracy"]
    assert spec["properties"]["preprocessing"]["default"] == {"numeric": "none", "categorical": "onehot"}
