"""Issue 2 acceptance: the offline cluster is real Kubernetes with simulated GPU nodes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpu_conformance import binaries
from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT
from tests.integration.conftest import wait_until

REPO = REPO_ROOT
SEED = REPO / "manifests" / "seed"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpu_conformance.cli", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_cluster_up_cli_nodes_version_and_down_leaves_nothing(kubectl: Callable[..., Any]) -> None:
    name = f"it-cli-{os.getpid()}"
    up = cli("cluster", "up", "--name", name, "--gpu-nodes", "3", "--gpus-per-node", "2")
    assert up.returncode == 0, up.stderr
    kubeconfig = Path(up.stdout.strip().splitlines()[-1])
    cluster = OfflineCluster(OfflineClusterSpec(name=name))
    try:
        assert kubeconfig == cluster.kubeconfig and kubeconfig.is_file()
        nodes = json.loads(kubectl(cluster, "get", "nodes", "-o", "json").stdout)["items"]
        ready = [n for n in nodes if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in n["status"]["conditions"])]
        assert len(nodes) == 4 and len(ready) == 4
        gpu = [n for n in nodes if "nvidia.com/gpu.product" in n["metadata"]["labels"]]
        assert len(gpu) == 3
        # as on AKS: no nvidia.com/gpu until a device plugin registers on the node
        assert not any("nvidia.com/gpu" in n["status"]["capacity"] for n in gpu)
        kubectl(cluster, "apply", "-f", str(REPO / "manifests" / "current" / "nvidia-device-plugin.yaml"))

        def advertised() -> int:
            found = json.loads(kubectl(cluster, "get", "nodes", "-o", "json").stdout)["items"]
            return len([n for n in found if n["status"]["capacity"].get("nvidia.com/gpu") == "2"
                        and n["status"]["allocatable"].get("nvidia.com/gpu") == "2"])

        wait_until(lambda: advertised() == 3, "3 GPU nodes at capacity and allocatable 2")
        labels = gpu[0]["metadata"]["labels"]
        assert labels["nvidia.com/gpu.product"] == "Tesla-T4"
        assert labels["node.kubernetes.io/instance-type"] == "Standard_NC4as_T4_v3"
        assert labels["kubernetes.azure.com/accelerator"] == "nvidia"
        version = json.loads(kubectl(cluster, "version", "-o", "json").stdout)
        assert version["serverVersion"]["gitVersion"] == binaries.KUBERNETES_VERSION
        server = kubectl(cluster, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
        assert server.stdout.startswith("https://127.0.0.1:")
        pids = cluster.pids()
        assert len(pids) >= 5, "etcd, apiserver, controller-manager, scheduler, kwok"
    finally:
        down = cli("cluster", "down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert not cluster.exists() and not cluster.dir.exists() and not cluster.kwok_dir.exists()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()
             and ") Z " not in Path(f"/proc/{pid}/stat").read_text()]
    assert alive == []
    status = cli("cluster", "status", "--name", name)
    assert status.returncode == 6 and json.loads(status.stdout)["exists"] is False


def test_seed_manifests_unchanged_roll_out_and_complete(offline_cluster: OfflineCluster,
                                                        kubectl: Callable[..., Any]) -> None:
    kubectl(offline_cluster, "apply", "-f", str(SEED / "namespace.yaml"),
            "-f", str(SEED / "nvidia-device-plugin-ds.yaml"))
    ns = f"seed-job-{os.getpid()}"
    kubectl(offline_cluster, "create", "namespace", ns)
    try:
        def ds_ready() -> Any:
            ds = json.loads(kubectl(offline_cluster, "get", "ds", "-n", "gpu-resources",
                                    "nvidia-device-plugin-daemonset", "-o", "json").stdout)
            status = ds["status"]
            return status.get("desiredNumberScheduled") == status.get("numberReady") == 3 and status

        wait_until(ds_ready, "the seed DaemonSet ready on all 3 nodes")
        kubectl(offline_cluster, "apply", "-n", ns, "-f", str(SEED / "samples-tf-mnist-demo.yaml"))
        kubectl(offline_cluster, "wait", "-n", ns, "--for=condition=complete", "--timeout=60s",
                "job/samples-tf-mnist-demo")
        job = json.loads(kubectl(offline_cluster, "get", "-n", ns, "job/samples-tf-mnist-demo",
                                 "-o", "json").stdout)
        assert job["status"]["succeeded"] == 1
        logs = kubectl(offline_cluster, "logs", "-n", ns, "job/samples-tf-mnist-demo").stdout
        assert "name: Tesla T4 major: 3 minor: 7" in logs
        assert "Accuracy at step 490: 0.9494" in logs
    finally:
        kubectl(offline_cluster, "delete", "namespace", ns, "gpu-resources", "--wait=true")


def test_pod_asking_for_too_many_gpus_stays_pending(offline_cluster: OfflineCluster,
                                                    kubectl: Callable[..., Any]) -> None:
    ns = f"too-many-{os.getpid()}"
    kubectl(offline_cluster, "create", "namespace", ns)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "greedy", "namespace": ns},
           "spec": {"containers": [{"name": "c", "image": "example.invalid/none",
                                    "resources": {"limits": {"nvidia.com/gpu": "3"}}}]}}
    try:
        kubectl(offline_cluster, "apply", "-f", "-", input=json.dumps(pod))

        def failed_scheduling() -> Any:
            events = json.loads(kubectl(offline_cluster, "get", "events", "-n", ns,
                                        "-o", "json").stdout)["items"]
            return [e["message"] for e in events if e["reason"] == "FailedScheduling"]

        messages = wait_until(failed_scheduling, "a FailedScheduling event")
        assert any("Insufficient nvidia.com/gpu" in m for m in messages), messages
        phase = kubectl(offline_cluster, "get", "pod", "-n", ns, "greedy", "-o",
                        "jsonpath={.status.phase}").stdout
        assert phase == "Pending"
    finally:
        kubectl(offline_cluster, "delete", "namespace", ns, "--wait=true")


def test_name_taken_and_port_in_use_are_one_line_errors(offline_cluster: OfflineCluster) -> None:
    taken = cli("cluster", "up", "--name", offline_cluster.spec.name)
    assert taken.returncode == 4  # a usage error: the name is the user's choice
    assert taken.stderr.strip().splitlines() == [
        f"gpu-conformance: error: an offline cluster named {offline_cluster.spec.name!r} already "
        f"exists (use it, or remove it: gpu-conformance cluster down --name "
        f"{offline_cluster.spec.name})"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("cluster", "up", "--name", f"it-port-{os.getpid()}", "--port", str(port))
    assert result.returncode == 6  # the machine cannot give the cluster what it needs
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_killed_runs_cluster_is_swept_by_the_next_run() -> None:
    from gpu_conformance.offline import list_clusters, sweep_orphans

    dead = subprocess.Popen(["true"])  # its pid names the "killed run"
    dead.wait()
    orphan = OfflineCluster(OfflineClusterSpec(name=f"gpu-conformance-{dead.pid}", gpu_nodes=1))
    alive = OfflineCluster(OfflineClusterSpec(name=f"gpu-conformance-{os.getpid()}", gpu_nodes=1))
    try:
        orphan.up(log=lambda _line: None)
        alive.up(log=lambda _line: None)
        pids = orphan.pids()
        said: list[str] = []
        assert sweep_orphans(said.append) == [orphan.spec.name]
        assert said == [f"removing offline cluster {orphan.spec.name!r}, left by a run that no "
                        "longer exists"]
        assert orphan.spec.name not in list_clusters() and alive.spec.name in list_clusters()
        assert [p for p in pids if Path(f"/proc/{p}").exists()
                and ") Z " not in Path(f"/proc/{p}/stat").read_text()] == []
    finally:
        orphan.down(log=lambda _line: None)
        alive.down(log=lambda _line: None)
