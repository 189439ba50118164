"""Install Roost's CRDs on a cluster and wait until each is Established."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from roost import errors
from roost.api import crdgen, kinds


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body)["message"])
    except (ValueError, KeyError, TypeError):
        return str(e.body)


def apply(api_client: client.ApiClient, bodies: list[dict[str, Any]], timeout: float = 60.0) -> None:
    """Create or replace each CustomResourceDefinition in ``bodies``, then wait until all are ``Established``.

    Raises:
        roost.errors.PermanentError: a CRD was refused (``CRDInvalid``) or never established.
    """
    api = client.ApiextensionsV1Api(api_client)
    for body in bodies:
        name = body["metadata"]["name"]
        try:
            current = api.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            api.replace_custom_resource_definition(name, body)
        except ApiException as e:
            if e.status != 404:
                raise errors.PermanentError("CRDInvalid", f"{name}: {_message(e)}") from e
            try:
                api.create_custom_resource_definition(body)
            except ApiException as e2:
                raise errors.PermanentError("CRDInvalid", f"{name}: {_message(e2)}") from e2
    deadline = time.monotonic() + timeout
    pending = {b["metadata"]["name"] for b in bodies}
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            crd = api.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") == "True":
                pending.discard(name)
        if pending:
            time.sleep(0.2)
    if pending:
        raise errors.PermanentError("CRDNotEstablished", f"not established: {', '.join(sorted(pending))}")


def install(kubeconfig: Path, timeout: float = 60.0) -> None:
    """Create or update every CRD generated from Roost's models (see :func:`apply`)."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        apply(api_client, [crdgen.crd(info) for info in kinds.ALL], timeout)
    finally:
        api_client.close()
