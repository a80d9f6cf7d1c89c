"""The device plugin simulator on a real offline cluster: GPU capacity follows the plugin pods,
as the kubelet's device manager makes it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from gpu_conformance import binaries, kapi, nodes, simulator
from gpu_conformance.errors import ClusterError
from gpu_conformance.gpus import resolve_product
from gpu_conformance.kube import call, new_api_client
from gpu_conformance.log import silent
from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT
from tests.integration.conftest import wait_until as poll_until

GRACE = 3.0
GPU = "nvidia.com/gpu"
PLUGIN = REPO_ROOT / "manifests" / "current" / "nvidia-device-plugin.yaml"
NODES = ("aks-gpu-00000000", "aks-gpu-00000001")


def kubectl(cluster: OfflineCluster, *args: str) -> str:
    result = subprocess.run([str(binaries.ensure()["kubectl"]), f"--kubeconfig={cluster.kubeconfig}",
                             *args], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def gpus(core: kapi.CoreV1Api, name: str) -> tuple[str | None, str | None]:
    """(capacity, allocatable) of nvidia.com/gpu; None where the key is absent."""
    status: Any = core.read_node_status(name).status
    return (status.capacity or {}).get(GPU), (status.allocatable or {}).get(GPU)


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    return poll_until(check, what, timeout, every=0.05)  # reaction times are measured here


def reshape_nodes(core: kapi.CoreV1Api, healthy: dict[str, int]) -> None:
    """Make `cluster up`'s GPU nodes look like the simulator's: GPUs only in annotations."""
    for name in NODES:
        annotations = {simulator.GPUS_ANNOTATION: "2"}
        if name in healthy:
            annotations[simulator.HEALTHY_ANNOTATION] = str(healthy[name])
        core.patch_node(name, {"metadata": {"annotations": annotations}})
        core.patch_node_status(name, {"status": {"capacity": {GPU: None}, "allocatable": {GPU: None}}},
                               _content_type=simulator.MERGE_PATCH)
        assert gpus(core, name) == (None, None)


@dataclass
class Seen:
    at: float
    rv: int
    node: str
    value: Any


@dataclass
class Recorder:
    """Every pod and node change from a point on, with the time it arrived here."""

    core: kapi.CoreV1Api
    pods: list[Seen] = field(default_factory=list)
    nodes: list[Seen] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for fn, out, reduce in ((self.core.list_pod_for_all_namespaces, self.pods, self._pod),
                                (self.core.list_node, self.nodes, self._node)):
            listed: Any = fn()
            thread = threading.Thread(target=self._run, daemon=True,
                                      args=(fn, listed.metadata.resource_version, out, reduce))
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def _run(self, fn: Any, rv: str, out: list[Seen], reduce: Callable[[Any], tuple[str, Any]]) -> None:
        stream = watch.Watch()
        while not self.stop.is_set():
            try:
                for event in stream.stream(fn, resource_version=rv, timeout_seconds=2):
                    obj = event["object"]
                    rv = obj.metadata.resource_version
                    node, value = reduce(obj) if event["type"] != "DELETED" else ("", None)
                    out.append(Seen(time.monotonic(), int(rv), node, value))
                    if self.stop.is_set():
                        break
            except Exception:  # a dropped watch: the test's own waits say what went wrong
                time.sleep(0.2)

    @staticmethod
    def _pod(pod: Any) -> tuple[str, Any]:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return pod.spec.node_name or "", ready and pod.metadata.deletion_timestamp is None

    @staticmethod
    def _node(node: Any) -> tuple[str, Any]:
        status = node.status
        return node.metadata.name, ((status.capacity or {}).get(GPU),
                                    (status.allocatable or {}).get(GPU))

    def first_pod_ready(self, node: str) -> Seen:
        return next(s for s in self.pods if s.node == node and s.value)

    def first_node(self, node: str, predicate: Callable[[Any], bool]) -> Seen:
        return next(s for s in self.nodes if s.node == node and predicate(s.value))


@contextlib.contextmanager
def simulated_cluster(tag: str, healthy: dict[str, int]) -> Iterator[tuple[OfflineCluster, Path,
                                                                          kapi.CoreV1Api]]:
    """An offline cluster with simulator-shaped GPU nodes and the simulator running."""
    cluster = OfflineCluster(OfflineClusterSpec(name=f"it-sim-{tag}-{os.getpid()}", gpu_nodes=2))
    state = cluster.dir / "simulator"
    api = None
    try:
        cluster.up(log=silent)
        api = new_api_client(cluster.kubeconfig, None)
        core = kapi.CoreV1Api(api)
        reshape_nodes(core, healthy)
        simulator.start(cluster.kubeconfig, state, plugin_grace=GRACE, log=silent)
        assert simulator.running(state)
        yield cluster, state, core
    finally:
        simulator.stop(state, timeout=10)
        if api is not None:
            api.close()
        cluster.down(log=silent)


def test_gpu_capacity_follows_the_device_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    with simulated_cluster("life", {NODES[1]: 1}) as (cluster, state, core):
        pid = int((state / simulator.PID_FILE).read_text())
        assert str(state.resolve()) in Path(f"/proc/{pid}/cmdline").read_text()
        time.sleep(1.0)
        assert [gpus(core, n) for n in NODES] == [(None, None)] * 2, "no plugin, no GPUs"

        recorder = Recorder(core)
        recorder.start()
        try:
            kubectl(cluster, "apply", "-f", str(PLUGIN))
            wait_until(lambda: [gpus(core, n) for n in NODES] == [("2", "2"), ("2", "1")],
                       "capacity 2 on both nodes, allocatable 2 and (1 healthy) 1")
            latencies = []
            for name in NODES:
                ready = recorder.first_pod_ready(name)
                shown = recorder.first_node(name, lambda v: v[0] is not None)
                assert shown.rv > ready.rv, f"{name}: capacity before its plugin pod was Ready"
                latencies.append(shown.at - ready.at)

            # someone else overwrites the GPU status: it is put back
            core.patch_node_status(NODES[0], {"status": {"capacity": {GPU: "8"}, "allocatable": {GPU: "8"}}},
                                   _content_type=simulator.MERGE_PATCH)
            wait_until(lambda: gpus(core, NODES[0]) == ("2", "2"), "the overwritten status restored",
                       timeout=10)

            kubectl(cluster, "delete", "daemonset", "-n", "gpu-resources",
                    "nvidia-device-plugin-daemonset", "--wait=false")
            wait_until(lambda: [gpus(core, n) for n in NODES] == [("0", "0")] * 2,
                       "capacity 0 after the grace period", timeout=GRACE + 30)
            for name in NODES:
                unhealthy = recorder.first_node(name, lambda v: v == ("2", "0"))
                removed = recorder.first_node(name, lambda v: v == ("0", "0"))
                gone = next(s for s in recorder.pods if s.node == name and not s.value)
                assert unhealthy.at - gone.at < 1.0, "allocatable 0 as soon as the plugin stops"
                assert GRACE - 0.2 <= removed.at - unhealthy.at <= GRACE + 2.0
        finally:
            recorder.close()
        log = (state / simulator.LOG_FILE).read_text()
        assert simulator.stop(state) and not simulator.running(state)
        assert "stopped:" in (state / simulator.LOG_FILE).read_text()
        assert "retrying" not in log, log
    with capsys.disabled():
        print(f"\nplugin pod Ready -> capacity visible: {[f'{s * 1000:.0f}ms' for s in latencies]}, "
              f"median {statistics.median(latencies) * 1000:.0f}ms")


def test_the_simulator_survives_an_api_server_restart() -> None:
    with simulated_cluster("restart", {}) as (cluster, state, core):
        kubectl(cluster, "apply", "-f", str(PLUGIN))
        wait_until(lambda: [gpus(core, n) for n in NODES] == [("2", "2")] * 2, "GPUs registered")
        apiserver = int((cluster.kwok_dir / "pids" / "kube-apiserver.pid").read_text())
        argv = Path(f"/proc/{apiserver}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        cwd = os.readlink(f"/proc/{apiserver}/cwd")
        os.kill(apiserver, signal.SIGKILL)
        restarted = None
        try:
            time.sleep(3)  # down long enough for the simulator's watches to fail
            with (state / "apiserver.log").open("ab") as out:
                restarted = subprocess.Popen([a.decode() for a in argv], cwd=cwd, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
            wait_until(lambda: _api_up(core), "the API server back", timeout=60)
            core.patch_node(NODES[0], {"metadata": {"annotations": {simulator.HEALTHY_ANNOTATION: "1"}}})
            wait_until(lambda: gpus(core, NODES[0]) == ("2", "1"), "allocatable 1 after the restart",
                       timeout=30)
            assert simulator.running(state)
            log = (state / simulator.LOG_FILE).read_text()
            assert "retrying" in log and "working again" in log, log
            problems = [line for line in log.splitlines() if "retrying" in line]
            assert len(problems) <= 4, "one line per problem, not one per attempt"
        finally:
            if restarted is not None:
                restarted.kill()
                restarted.wait(timeout=30)


def _api_up(core: kapi.CoreV1Api) -> bool:
    try:
        core.list_node(limit=1, _request_timeout=2)
    except Exception:
        return False
    return True


def test_start_reports_a_simulator_that_cannot_start(tmp_path: Path) -> None:
    """A kubeconfig that does not work: start() fails with the simulator's own last line."""
    bad = tmp_path / "kubeconfig.yaml"
    bad.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "clusters": []}))
    with pytest.raises(ClusterError, match=r"exited at once.*kubeconfig"):
        simulator.start(bad, tmp_path / "state", plugin_grace=GRACE, log=silent, wait=20)
    assert not simulator.running(tmp_path / "state")
    assert not (tmp_path / "state" / simulator.PID_FILE).exists()


SCALE_ENV = "GPU_CONFORMANCE_SIMULATOR_SCALE"


def simulated_gpu_node(name: str) -> dict[str, Any]:
    """nodes.gpu_node()'s manifest in the simulator's shape: GPUs in annotations, not in status."""
    manifest = nodes.gpu_node(name, resolve_product(None), 1)
    manifest["metadata"]["annotations"][simulator.GPUS_ANNOTATION] = "1"
    for key in ("capacity", "allocatable"):
        del manifest["status"][key][GPU]
    return manifest


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _gpu_counts(core: kapi.CoreV1Api) -> tuple[int, int, int]:
    """Simulated nodes with capacity 1 and allocatable 1, allocatable 0, capacity 0."""
    resp: Any = core.list_node(label_selector=simulator.NODE_LABEL_SELECTOR, _preload_content=False)
    counts = [0, 0, 0]
    for item in json.loads(resp.data)["items"]:
        status = item["status"]
        value = ((status.get("capacity") or {}).get(GPU), (status.get("allocatable") or {}).get(GPU))
        for i, wanted in enumerate((("1", "1"), ("1", "0"), ("0", "0"))):
            counts[i] += value == wanted
    return counts[0], counts[1], counts[2]


@pytest.mark.skipif(not os.environ.get(SCALE_ENV), reason=f"set {SCALE_ENV}=2000 to measure")
def test_simulator_cost_at_scale() -> None:
    """The simulator's CPU, memory and requests while N nodes' plugins come and go."""
    count = int(os.environ[SCALE_ENV])
    grace = 20.0
    cluster = OfflineCluster(OfflineClusterSpec(name=f"it-sim-scale-{os.getpid()}", gpu_nodes=0))
    state = cluster.dir / "simulator"
    api = None
    report: list[str] = []
    try:
        cluster.up(log=silent)
        api = new_api_client(cluster.kubeconfig, None)
        core = kapi.CoreV1Api(api)
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: call(core.create_node, simulated_gpu_node(f"sim-gpu-{i:05d}")),
                          range(count)))
        report.append(f"{count} nodes created in {time.monotonic() - started:.0f}s")
        pid = simulator.start(cluster.kubeconfig, state, plugin_grace=grace, log=silent, wait=120)
        phases: list[tuple[str, float]] = [("synced", _cpu_seconds(pid))]

        started = time.monotonic()
        kubectl(cluster, "apply", "-f", str(PLUGIN))
        wait_until(lambda: _gpu_counts(core)[0] == count, f"{count} nodes registered",
                   timeout=1800)
        report.append(f"rollout to {count} registered nodes: {time.monotonic() - started:.0f}s")
        phases.append(("rollout", _cpu_seconds(pid)))
        time.sleep(60)
        phases.append(("60s idle", _cpu_seconds(pid)))
        rss = _rss_mib(pid)

        started = time.monotonic()
        kubectl(cluster, "delete", "daemonset", "-n", "gpu-resources",
                "nvidia-device-plugin-daemonset", "--wait=false")
        wait_until(lambda: _gpu_counts(core)[2] == count, f"{count} nodes at capacity 0",
                   timeout=1800)
        report.append(f"DaemonSet deleted -> capacity 0 everywhere: {time.monotonic() - started:.0f}s "
                      f"(grace {grace:g}s)")
        phases.append(("plugin removal", _cpu_seconds(pid)))
        previous = 0.0
        for name, total in phases:
            report.append(f"CPU {name}: {total - previous:.1f}s")
            previous = total
        report.append(f"RSS after rollout: {rss:.0f} MiB")
        assert simulator.stop(state)
        report.append([line for line in (state / simulator.LOG_FILE).read_text().splitlines()
                       if "stopped:" in line][-1])
    finally:
        simulator.stop(state, timeout=10)
        if api is not None:
            api.close()
        cluster.down(log=silent)
    print("\n" + "\n".join(report))
