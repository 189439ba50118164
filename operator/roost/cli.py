"""The ``roost`` command: CRDs, the local control plane, the operator, workers and servers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roost import errors


def _crds(args: argparse.Namespace) -> int:
    from roost.api import crdgen

    directory = Path(args.dir)
    if args.check:
        stale = crdgen.diff(directory)
        if stale:
            print(f"crds/ is out of date with the API models: {', '.join(stale)}; run `roost crds`",
                  file=sys.stderr)
            return 1
        print(f"{directory}: up to date")
        return 0
    for path in crdgen.write(directory):
        print(f"wrote {path}")
    return 0


def _dev(args: argparse.Namespace) -> int:
    from roost.devcluster import cluster

    c = cluster.Cluster(Path(args.state_dir) if args.state_dir else None)
    if args.action == "up":
        status = c.up()
        print(f"control plane ready at {status.server}")
        print(c.env())
    elif args.action == "down":
        stopped = c.down()
        print("stopped " + (", ".join(stopped) if stopped else "nothing (not running)"))
    elif args.action == "status":
        st = c.status()
        print(f"state dir:  {st.state_dir}")
        print(f"server:     {st.server or '-'}")
        for name, pid in st.running.items():
            print(f"{name + ':':<25} {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
        print(f"healthy:    {st.healthy}")
        return 0 if st.healthy else 1
    elif args.action == "env":
        print(c.env())
    return 0


def _run(args: argparse.Namespace) -> int:
    from roost.controllers import operator

    return operator.main(
        executor=args.executor, namespaces=args.namespace, all_namespaces=args.all_namespaces,
        store=args.store, standalone=True, verbose=args.verbose, liveness=args.liveness,
        metrics_port=args.metrics_port,
    )


def _worker(args: argparse.Namespace) -> int:
    from roost.workers import runner

    return runner.main(args.name, args.input, args.output, args.store)


def _serve(args: argparse.Namespace) -> int:
    from roost.serving import server

    code: int = server.main(args.config)
    return code


def _router(args: argparse.Namespace) -> int:
    from roost.serving import router

    code: int = router.main(args.config)
    return code


def _demo(args: argparse.Namespace) -> int:
    from roost import demo

    return demo.main(stop=args.down, scenario=args.scenario)


def _report(args: argparse.Namespace) -> int:
    from roost import reports

    return reports.drift(args.policy, args.namespace, args.out, args.kubeconfig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roost", description="GitOps for the life of machine-learning models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("crds", help="write the CRDs generated from the API models")
    p.add_argument("--dir", default="crds", help="output folder (default: crds)")
    p.add_argument("--check", action="store_true", help="exit 1 when the folder differs from the models")
    p.set_defaults(func=_crds)

    p = sub.add_parser("dev", help="the local control plane (etcd, kube-apiserver, kube-controller-manager)")
    p.add_argument("action", choices=["up", "down", "status", "env"])
    p.add_argument("--state-dir", help="default: ~/.local/state/roost/dev or $ROOST_DEV_STATE_DIR")
    p.set_defaults(func=_dev)

    p = sub.add_parser("run", help="run the operator")
    p.add_argument("--executor", choices=["local", "kubernetes"], default="local")
    p.add_argument("--namespace", "-n", action="append", default=[], help="namespace to watch (repeatable)")
    p.add_argument("--all-namespaces", "-A", action="store_true")
    p.add_argument("--store", help="artifact store root URI (default: $ROOST_STORE or a local folder)")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--liveness", help="serve kopf's liveness probe at this URL, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--metrics-port", type=int, help="serve the operator's Prometheus metrics on this port")
    p.set_defaults(func=_run)

    p = sub.add_parser("demo", help="run the quickstart on the local control plane (make demo)")
    p.add_argument("scenario", nargs="?", default="quickstart", choices=["quickstart", "canary", "drift"])
    p.add_argument("--down", action="store_true", help="stop the operator, servers and control plane")
    p.set_defaults(func=_demo)

    p = sub.add_parser("report", help="fetch a report, e.g. `roost report drift <policy> -n <ns>`")
    p.add_argument("kind", choices=["drift"])
    p.add_argument("policy")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--out", help="file to write (default: <policy>-drift-report.html)")
    p.add_argument("--kubeconfig")
    p.set_defaults(func=_report)

    p = sub.add_parser("worker", help="run one unit of work (used by executors)")
    p.add_argument("name")
    p.add_argument("--input", required=True, help="URI of the job's input.json")
    p.add_argument("--output", required=True, help="URI prefix for results")
    p.add_argument("--store", help="artifact store root URI")
    p.set_defaults(func=_worker)

    p = sub.add_parser("serve", help="run a model server (KServe V1 + Open Inference Protocol V2)")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_serve)

    p = sub.add_parser("router", help="run the traffic router in front of model servers")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_router)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except errors.RoostError as e:
        print(f"roost: {e.message} ({e.reason})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
