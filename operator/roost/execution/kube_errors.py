"""One mapping of the Kubernetes client's exceptions to :mod:`roost.errors`, for every adapter that
talks to the API server (``controllers.kube``, ``execution.serving_kube``): none of the client's
exceptions leaves an adapter."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import urllib3
from kubernetes.client.rest import ApiException

from roost import errors


@contextlib.contextmanager
def mapped_errors(what: str) -> Iterator[None]:
    """Map ``ApiException`` (404 NotFound, 409 Conflict, 422 Invalid, others APIError) and connection
    failures (APIUnreachable); ``what`` names the call in the message."""
    try:
        yield
    except ApiException as e:
        try:
            message = json.loads(e.body or "{}").get("message", e.reason)
        except (ValueError, AttributeError):
            message = e.reason
        if e.status == 404:
            raise errors.PermanentError("NotFound", f"{what}: {message}") from e
        if e.status == 409:
            raise errors.TemporaryError("Conflict", f"{what}: {message}", delay=0.5) from e
        if e.status == 422:
            raise errors.PermanentError("Invalid", f"{what}: {message}") from e
        raise errors.ExternalError("APIError", f"{what}: {e.status} {message}") from e
    except urllib3.exceptions.HTTPError as e:
        raise errors.ExternalError("APIUnreachable", f"{what}: the API server is unreachable ({e})") from e
