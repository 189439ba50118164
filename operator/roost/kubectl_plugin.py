"""``kubectl roost promote|abort deployment/<name>``: manual rollout control that stays GitOps-friendly.

It sets an annotation on the roost.dev Deployment (``roost.dev/promote`` or ``roost.dev/abort``) whose
value says who asked and when; the operator acts on it only for the rollout that was running then, and
records it in status. The spec (git's) is never touched.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import sys

from roost import errors
from roost.controllers import kube as kube_mod

ANNOTATIONS = {"promote": "roost.dev/promote", "abort": "roost.dev/abort"}


def request_value(now: datetime.datetime | None = None) -> str:
    """``<user>@<RFC 3339 time>``."""
    moment = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{getpass.getuser()}@{moment}"


def requested_at(value: str | None) -> datetime.datetime | None:
    """The time part of an annotation value written by :func:`request_value`."""
    if not value or "@" not in value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.rsplit("@", 1)[1].replace("Z", "+00:00"))
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubectl roost", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=sorted(ANNOTATIONS))
    parser.add_argument("target", help="deployment/<name> (a roost.dev Deployment)")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(argv)
    kind, _, name = args.target.partition("/")
    if kind not in ("deployment", "deployments", "deployments.roost.dev", "rdeploy") or not name:
        parser.error("target must be deployment/<name>")
    try:
        k = kube_mod.Kube(kubeconfig=args.kubeconfig)
        value = request_value()
        k.annotate("Deployment", args.namespace, name, {ANNOTATIONS[args.action]: value})
    except errors.RoostError as e:
        print(f"kubectl roost: {e.message}", file=sys.stderr)
        return 1
    print(f"deployment.roost.dev/{name} {args.action} requested ({value})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
