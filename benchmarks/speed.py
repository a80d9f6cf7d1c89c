"""Benchmarks of issue 13, each measured side by side in one run, written to one JSON file.

    .venv/bin/python benchmarks/speed.py [--rounds 5] [--scale 200,1000,2000] [--trials 50]
                                         [--only walk,runs,scale,reaction,startup]
                                         [--out FILE]

- walk:     the seed guide's manual walk (kubectl: apply the DaemonSet, rollout status, read
            capacity, run the Job, wait, grep the log, delete) against `pytest --backend attach`
            on the same kept offline cluster, rounds alternating; medians and their ratio.
- runs:     a fresh default run (`pytest`: cluster start, suites, teardown) and a run against
            a kept cluster (`pytest --cluster-name bench-kept` after `--keep-cluster`).
- scale:    for each node count: `cluster up` time, time until every node is Ready and
            untainted, the suites' time started right after (they roll the plugin out over
            every node), the plugin's rollout as a platform team deploys it (kubectl), then the
            suites on that settled cluster; the HTTP requests each check sent in both runs
            (counted in the run's own client: benchmarks/count_requests.py).
- reaction: a watch-based wait (gpu_conformance.waits.wait_for) on an object changed by another
            client at a random moment: time from the change to the wait returning.
- startup:  what a run pays before it touches a cluster, each in a fresh interpreter: Python
            alone, `import pytest`, the plugin, the plugin with the model classes a run
            reads, and, for comparison, the kubernetes client's typed API modules a run no
            longer imports (CoreV1Api, AppsV1Api, BatchV1Api, CoordinationV1Api).

Prints and writes JSON (default benchmarks/results.json); the README quotes it. Not a test:
nothing here asserts, and no test is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from gpu_conformance import binaries, kapi
from gpu_conformance.kube import new_api_client
from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

SEED = REPO_ROOT / "manifests" / "seed"
PY = sys.executable


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "n": len(values)}


def _timed(command: list[str], env: dict[str, str] | None = None,
           timeout: float = 900) -> tuple[float, int, str]:
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    return time.monotonic() - started, done.returncode, done.stdout[-2000:] + done.stderr[-2000:]


def _pytest(*args: str) -> list[str]:
    return [PY, "-m", "pytest", "-c", str(REPO_ROOT / "pytest.ini"), f"--rootdir={REPO_ROOT}",
            "-q", "-p", "no:cacheprovider", *args]


def walk(kubectl: Path, kubeconfig: Path) -> float:
    """The seed guide's steps, as a person types them (each waits as kubectl does)."""
    k = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    started = time.monotonic()
    steps = [
        [*k, "apply", "-f", str(SEED / "namespace.yaml"), "-f", str(SEED / "nvidia-device-plugin-ds.yaml")],
        [*k, "-n", "gpu-resources", "rollout", "status", "daemonset/nvidia-device-plugin-daemonset",
         "--timeout=300s"],
        [*k, "get", "nodes", "-o", "jsonpath={.items[*].status.capacity.nvidia\\.com/gpu}"],
        [*k, "apply", "-n", "default", "-f", str(SEED / "samples-tf-mnist-demo.yaml")],
        [*k, "-n", "default", "wait", "--for=condition=complete", "job/samples-tf-mnist-demo",
         "--timeout=300s"],
    ]
    for step in steps:
        subprocess.run(step, check=True, capture_output=True, timeout=320)
    logs = subprocess.run([*k, "-n", "default", "logs", "job/samples-tf-mnist-demo"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    assert "Tesla" in logs, "the walk's log has no device line"
    subprocess.run([*k, "-n", "default", "delete", "job", "samples-tf-mnist-demo",
                    "--cascade=foreground"], check=True, capture_output=True, timeout=120)
    subprocess.run([*k, "delete", "namespace", "gpu-resources"], check=True, capture_output=True,
                   timeout=120)
    return time.monotonic() - started


def bench_walk(rounds: int) -> dict[str, Any]:
    cluster = OfflineCluster(OfflineClusterSpec(name=f"bench-walk-{os.getpid()}", gpu_nodes=2))
    cluster.up(log=lambda _l: None)
    try:
        kubectl = binaries.ensure()["kubectl"]
        walks, suites, codes = [], [], []
        for _ in range(rounds):
            walks.append(walk(kubectl, cluster.kubeconfig))
            seconds, code, _out = _timed(_pytest("--backend", "attach",
                                                 f"--kubeconfig={cluster.kubeconfig}"))
            suites.append(seconds)
            codes.append(code)
        return {"walk_s": _stats(walks), "suite_s": _stats(suites), "suite_exit_codes": codes,
                "suite_over_walk": round(statistics.median(suites) / statistics.median(walks), 2)}
    finally:
        cluster.down(log=lambda _l: None)


def bench_runs(rounds: int) -> dict[str, Any]:
    fresh, kept, codes = [], [], []
    for _ in range(rounds):
        seconds, code, _out = _timed(_pytest())
        fresh.append(seconds)
        codes.append(code)
    name = f"bench-kept-{os.getpid()}"
    _timed(_pytest(f"--cluster-name={name}", "--keep-cluster"))  # start and keep it
    try:
        for _ in range(rounds):
            seconds, code, _out = _timed(_pytest(f"--cluster-name={name}", "--keep-cluster"))
            kept.append(seconds)
            codes.append(code)
    finally:
        OfflineCluster(OfflineClusterSpec(name=name)).down(log=lambda _l: None)
    return {"fresh_default_run_s": _stats(fresh), "kept_cluster_run_s": _stats(kept),
            "exit_codes": codes}


def _count_requests(kubeconfig: Path, *args: str) -> tuple[float, int, dict[str, int]]:
    with tempfile.TemporaryDirectory() as scratch:
        counts = Path(scratch) / "requests.json"
        seconds, code, out = _timed(
            _pytest("-p", "benchmarks.count_requests", "--backend", "attach",
                    f"--kubeconfig={kubeconfig}", *args),
            env={"GPU_CONFORMANCE_REQUEST_COUNTS": str(counts), "PYTHONPATH": str(REPO_ROOT)},
            timeout=1800)
        found = json.loads(counts.read_text()) if counts.exists() else {}
        if code != 0:
            found = {**found, "exit_code": code, "output_tail_chars": len(out)}
        return seconds, code, found


def _settled(kubeconfig: Path, nodes: int, timeout: float) -> float:
    """Seconds until every node is Ready and untainted by the node lifecycle controller."""
    api = new_api_client(kubeconfig, None)
    core = kapi.CoreV1Api(api)
    started = time.monotonic()

    def ok(items: list[Any]) -> Verdict:
        ready = [n for n in items if not any((t.key or "").startswith("node.kubernetes.io/")
                                             for t in (n.spec.taints or []))]
        return Verdict(len(ready) >= nodes + 1, f"{len(ready)} nodes settled")

    wait_for("nodes settled", core.list_node, ok, timeout=timeout, timeout_name="bench")
    api.close()
    return time.monotonic() - started


def _plugin_rollout(kubeconfig: Path) -> float:
    """The seed guide's plugin applied as a platform team deploys it; seconds until rolled out."""
    k = [str(binaries.ensure()["kubectl"]), f"--kubeconfig={kubeconfig}"]
    started = time.monotonic()
    subprocess.run([*k, "apply", "-f", str(SEED / "namespace.yaml"), "-f",
                    str(SEED / "nvidia-device-plugin-ds.yaml")], check=True, capture_output=True,
                   timeout=120)
    subprocess.run([*k, "-n", "gpu-resources", "rollout", "status",
                    "daemonset/nvidia-device-plugin-daemonset", "--timeout=900s"], check=True,
                   capture_output=True, timeout=960)
    return time.monotonic() - started


def bench_scale(counts: list[int]) -> dict[str, Any]:
    """Per node count: the suites started right after `cluster up` (they install the plugin,
    wait for its rollout, check, remove it), then on the settled cluster (the plugin deployed
    and rolled out beforehand, as on a cluster in service)."""
    results: dict[str, Any] = {}
    for nodes in counts:
        cluster = OfflineCluster(OfflineClusterSpec(name=f"bench-scale-{os.getpid()}", gpu_nodes=nodes))
        started = time.monotonic()
        cluster.up(log=lambda _l: None)
        up = time.monotonic() - started
        try:
            settle = _settled(cluster.kubeconfig, nodes, timeout=600)
            # the suites right after; one workload Job (the Jobs scale with --workload-nodes)
            seconds, code, requests = _count_requests(cluster.kubeconfig, "--workload-nodes", "one")
            rollout = _plugin_rollout(cluster.kubeconfig)
            settled_s, settled_code, settled_requests = _count_requests(
                cluster.kubeconfig, "--workload-nodes", "one")
            results[str(nodes)] = {
                "cluster_up_s": round(up, 1), "settle_s": round(settle, 1),
                "suite_right_after_up_s": round(seconds, 1), "suite_exit_code": code,
                "requests": requests, "plugin_rollout_s": round(rollout, 1),
                "suite_settled_s": round(settled_s, 1), "suite_settled_exit_code": settled_code,
                "requests_settled": settled_requests}
        finally:
            cluster.down(log=lambda _l: None)
        print(json.dumps({str(nodes): results[str(nodes)]}), flush=True)
    return results


def bench_reaction(trials: int) -> dict[str, Any]:
    cluster = OfflineCluster(OfflineClusterSpec(name=f"bench-react-{os.getpid()}", gpu_nodes=0))
    cluster.up(log=lambda _l: None)
    try:
        api = new_api_client(cluster.kubeconfig, None)
        writer_api = new_api_client(cluster.kubeconfig, None)
        core, writer = kapi.CoreV1Api(api), kapi.CoreV1Api(writer_api)
        reactions = []
        for trial in range(trials):
            name = f"trial-{trial}"
            writer.create_namespaced_config_map("default", client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=name), data={"done": "no"}))
            changed: list[float] = []

            def change(name: str = name, changed: list[float] = changed) -> None:
                time.sleep(random.uniform(0.05, 0.3))
                changed.append(time.monotonic())
                writer.patch_namespaced_config_map(name, "default", {"data": {"done": "yes"}})

            def done(items: list[Any], name: str = name) -> Verdict:
                found = [c for c in items if c.metadata.name == name and (c.data or {}).get("done") == "yes"]
                return Verdict(bool(found), "changed" if found else "waiting")

            thread = threading.Thread(target=change)
            thread.start()
            wait_for("the change", core.list_namespaced_config_map, done, timeout=30,
                     timeout_name="bench", namespace="default")
            returned = time.monotonic()
            thread.join()
            reactions.append(returned - changed[0])
            writer.delete_namespaced_config_map(name, "default")
        api.close()
        writer_api.close()
        return {"reaction_s": {"median": round(statistics.median(reactions), 3),
                               "worst": round(max(reactions), 3), "trials": trials}}
    finally:
        cluster.down(log=lambda _l: None)


STARTUP_IMPORTS = {
    "python": "pass",
    "pytest": "import pytest",
    "plugin": "import gpu_conformance.pytest_plugin",
    # the plugin plus the model classes a run deserializes (what a run imports now)
    "plugin_and_models": ("import gpu_conformance.pytest_plugin; from kubernetes.client import "
                          "V1NodeList, V1PodList, V1DaemonSetList, V1JobList, V1NamespaceList"),
    # what a run no longer imports (gpu_conformance.kapi sends the same requests)
    "kubernetes_typed_apis": ("import kubernetes.client.api.core_v1_api, "
                              "kubernetes.client.api.apps_v1_api, "
                              "kubernetes.client.api.batch_v1_api, "
                              "kubernetes.client.api.coordination_v1_api"),
}


def bench_startup(rounds: int) -> dict[str, Any]:
    """Seconds for each import in a fresh interpreter (median of ``rounds``)."""
    out: dict[str, Any] = {}
    for name, statement in STARTUP_IMPORTS.items():
        out[f"{name}_s"] = _stats([_timed([PY, "-c", statement])[0] for _ in range(rounds)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", default="200,1000,2000")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--only", default="walk,runs,scale,reaction,startup")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results.json")
    args = parser.parse_args()
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    benches: dict[str, Callable[[], dict[str, Any]]] = {
        "walk": lambda: bench_walk(args.rounds),
        "runs": lambda: bench_runs(args.rounds),
        "scale": lambda: bench_scale([int(n) for n in args.scale.split(",") if n.strip()]),
        "reaction": lambda: bench_reaction(args.trials),
        "startup": lambda: bench_startup(args.rounds),
    }
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result["cpus"] = os.cpu_count()
    for name in chosen:
        started = time.monotonic()
        result[name] = benches[name]()
        result[name]["bench_s"] = round(time.monotonic() - started, 1)
        print(json.dumps({name: result[name]}, indent=2), flush=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
