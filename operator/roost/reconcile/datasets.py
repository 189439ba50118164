"""Resolve which Dataset version a run or an evaluation uses (current, or pinned by digest)."""

from __future__ import annotations

from typing import Any

from roost.reconcile import conditions


def resolve_version(dataset_status: dict[str, Any] | None, digest: str | None) -> dict[str, Any] | None:
    """The Dataset version to use, with what a worker needs to read it; None when not available (yet).

    Returns:
        ``{"digest", "snapshotURI", "snapshotDigest", "splitURI", "splitDigest", "schema", "target"}``.
    """
    if not dataset_status:
        return None
    if digest is None and not conditions.is_true(dataset_status.get("conditions", []), "Ready"):
        return None
    if digest is None:
        version = dataset_status.get("current")
    else:
        version = next((h for h in dataset_status.get("history", []) if h.get("digest") == digest), None)
    if not version:
        return None
    target = dataset_status.get("target") or {}
    return {
        "digest": version["digest"],
        "snapshotURI": version["snapshotURI"], "snapshotDigest": version.get("snapshotDigest"),
        "splitURI": version["splitURI"], "splitDigest": version.get("splitDigest"),
        "profileURI": version.get("profileURI"),
        "schema": dataset_status.get("schema") or [],
        "target": target.get("name") if isinstance(target, dict) else target,
    }
