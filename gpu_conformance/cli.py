"""The ``gpu-conformance`` command: run the suites (one cluster or a fleet), sweep leftovers,
the offline cluster, the toolchain, the AKS janitor. Exit status: gpu_conformance.errors.ExitCode
(0 ok, 1 checks failed, 2 interrupted, 3 internal error, 4 usage error, 5 nothing selected,
6 cluster or cloud unavailable)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from gpu_conformance import binaries
from gpu_conformance.errors import ExitCode, GpuConformanceError, UsageError, exit_code_for, one_line
from gpu_conformance.offline import DEFAULT_NAME, OfflineCluster, OfflineClusterSpec, list_clusters
from gpu_conformance.sharing import SIMULATED_MODES


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _cluster_up(args: argparse.Namespace) -> int:
    spec = OfflineClusterSpec(
        name=args.name, gpus_per_node=args.gpus_per_node, node=args.node, real_gpus=args.real_gpus,
        gpu_nodes=args.gpu_nodes if args.gpu_nodes is not None else (0 if args.node == "real" else 2),
        gpu_product=args.gpu_product, job_log=Path(args.job_log) if args.job_log else None,
        taint_gpu_nodes=args.taint_gpu_nodes, port=args.port, plugin_grace=args.plugin_grace,
        unhealthy=_unhealthy(args.unhealthy or []), gpu_sharing=args.gpu_sharing,
    )
    kubeconfig = OfflineCluster(spec).up(log=_err)
    print(kubeconfig, flush=True)
    return 0


def _unhealthy(items: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in items:
        node, sep, count = item.partition("=")
        if not sep or not node or not count.strip().isdigit():
            raise UsageError(f"--unhealthy {item!r}: expected NODE=HEALTHY_GPUS, e.g. "
                             "aks-gpu-00000001=1")
        found[node] = int(count)
    return found


def _cluster_down(args: argparse.Namespace) -> int:
    if not OfflineCluster(OfflineClusterSpec(name=args.name)).down(log=_err):
        _err(f"no offline cluster named {args.name!r}; nothing to do")
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    """JSON on stdout; a broken cluster (a process not running) also one line on stderr."""
    cluster = OfflineCluster(OfflineClusterSpec(name=args.name))
    info = cluster.status()
    print(json.dumps(info, indent=2))
    broken = cluster.broken()
    if broken:
        _err(f"gpu-conformance: error: cluster {args.name!r} is broken: {', '.join(broken)} not "
             f"running (remove it: gpu-conformance cluster down --name {args.name})")
    return 0 if info["exists"] and not broken else int(ExitCode.CLUSTER_UNAVAILABLE)


def _cluster_list(args: argparse.Namespace) -> int:
    for name in list_clusters():
        info = OfflineCluster(OfflineClusterSpec(name=name)).status()
        print(f"{name}\t{info['processes']} processes\t{info['kubeconfig']}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from gpu_conformance import coordination
    from gpu_conformance.kube import new_api_client, server_version

    api = new_api_client(Path(args.kubeconfig).expanduser() if args.kubeconfig else None,
                         args.context)
    try:
        server_version(api)
        result = coordination.sweep(api, _err)
    finally:
        api.close()
    print(f"swept {len(result.dead_runs)} dead run(s): {len(result.namespaces)} namespace(s), "
          f"{len(result.plugins)} shared plugin(s) updated")
    return 0


def _binaries(args: argparse.Namespace) -> int:
    paths = binaries.ensure(_err)
    for program, path in sorted(paths.items()):
        print(f"{program}\t{path}")
    return 0


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is our one-line usage error, not usage text + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="gpu-conformance",
        description="Offline GPU cluster and helpers for the gpu-conformance pytest suites.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    commands.add_parser("run", add_help=False,
                        help="run the conformance suites: gpu-conformance run [--kube-context "
                             "a,b,c | --fleet FILE] [pytest options, e.g. --backend attach "
                             "--kubeconfig=PATH]")
    sweeper = commands.add_parser("sweep", help="remove what dead gpu-conformance runs left on "
                                  "a cluster (namespaces, places in a shared device plugin)")
    sweeper.add_argument("--kubeconfig", default=None, help="default: KUBECONFIG, ~/.kube/config")
    sweeper.add_argument("--context", default=None)
    sweeper.set_defaults(func=_sweep)

    cluster = commands.add_parser("cluster", help="the offline cluster (real control plane, "
                                  "simulated GPU nodes)")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION",
                                     parser_class=_Parser)
    up = actions.add_parser("up", help="start it; prints the kubeconfig path last")
    up.add_argument("--name", default=DEFAULT_NAME)
    up.add_argument("--gpu-nodes", type=_positive_int, default=None,
                    help="simulated GPU nodes (default 2; 0 with --node real)")
    up.add_argument("--gpus-per-node", type=_positive_int, default=1,
                    help="nvidia.com/gpu per GPU node (default 1)")
    up.add_argument("--gpu-product", default=None,
                    help="device name, GFD product label or Azure VM size (default: the T4 size)")
    up.add_argument("--gpu-sharing", choices=SIMULATED_MODES, default="none",
                    help="how GPU nodes offer their GPUs: whole (none), MIG single or mixed "
                         "strategy (needs an A100/H100/H200 --gpu-product), or time-slicing "
                         "(4 replicas), with the labels GPU feature discovery writes")
    up.add_argument("--job-log", default=None,
                    help="log file served for every workload container (default: each workload "
                         "profile's reference log naming the simulated GPU)")
    up.add_argument("--taint-gpu-nodes", action="store_true",
                    help="taint GPU nodes sku=gpu:NoSchedule as AKS GPU pools are")
    up.add_argument("--port", type=_positive_int, default=None,
                    help="kube-apiserver port on 127.0.0.1 (default: a free one)")
    up.add_argument("--unhealthy", action="append", metavar="NODE=HEALTHY",
                    help="simulate failed GPUs: NODE registers only HEALTHY of its GPUs as "
                         "allocatable (repeatable)")
    up.add_argument("--plugin-grace", type=float, default=300.0, metavar="SECONDS",
                    help="how long a GPU node keeps its capacity after its device plugin went "
                         "away (the kubelet's endpointStopGracePeriod, default 300)")
    up.add_argument("--node", choices=("simulated", "real"), default="simulated",
                    help="real: add a real node on this host (kubelet, containerd, runc, CNI, "
                         "built from pinned Go modules; needs root) that kwok leaves alone")
    up.add_argument("--real-gpus", choices=("fake", "nvidia"), default="fake",
                    help="the real node's GPUs: fake (a test device plugin registering "
                         "--gpus-per-node devices through the kubelet's API) or nvidia (this "
                         "host's GPUs, through CDI)")
    up.set_defaults(func=_cluster_up)
    for action, func, text in (("down", _cluster_down, "stop every process, remove its files"),
                               ("status", _cluster_status, "print what is known of it as JSON")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("--name", default=DEFAULT_NAME)
        sub.set_defaults(func=func)

    listing = actions.add_parser("list", help="list the offline clusters with files here")
    listing.set_defaults(func=_cluster_list)

    build = commands.add_parser("binaries", help="build (or find) the pinned Kubernetes, etcd "
                                "and kwok programs; print their paths")
    build.set_defaults(func=_binaries)

    from gpu_conformance.aks.cli import add_cli

    add_cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["run"]:
            from gpu_conformance import fleet

            return fleet.run(argv[1:])
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
    except GpuConformanceError as exc:
        _err(f"gpu-conformance: error: {exc.one_line()}")
        return int(exit_code_for(exc))
    except KeyboardInterrupt:
        _err("gpu-conformance: interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # a bug, not a user mistake: still one line unless asked
        if os.environ.get("GPU_CONFORMANCE_DEBUG"):
            raise
        _err(f"gpu-conformance: internal error: {type(exc).__name__}: {one_line(exc)} "
             "(GPU_CONFORMANCE_DEBUG=1 shows the traceback)")
        return int(ExitCode.INTERNAL_ERROR)
    return code


if __name__ == "__main__":
    sys.exit(main())
