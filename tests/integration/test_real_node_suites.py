"""The conformance suites against a real node: `gpu-conformance cluster up --node real` (the
offline control plane, kwok keeping to simulated nodes, plus a real kubelet, containerd and runc
on this host with a test device plugin registering fake GPUs through the kubelet's API).

What the simulated nodes cannot show is exercised here for real: the DaemonSet controller
rolls the plugin out onto a kubelet, the plugin registers, the kubelet reports capacity, the
scheduler places the Job, runc runs the stand-in image and the kubelet serves its log.
Skipped where this host cannot run a kubelet (see test_real_node's reasons).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from tests.integration.conftest import REPO, Suites, attach_args
from tests.integration.test_real_node import _why_no_kubelet

NODE = "127.0.0.1"
GPUS = 2


@pytest.fixture(scope="module")
def real_cluster() -> Iterator[OfflineCluster]:
    """Made by the CLI, as a user would: `cluster up --node real`; removed by `cluster down`."""
    reason = _why_no_kubelet()
    if reason:
        pytest.skip(reason)
    name = f"it-real-{os.getpid()}"
    cli = [sys.executable, "-m", "gpu_conformance.cli"]
    try:
        up = subprocess.run([*cli, "cluster", "up", "--name", name, "--node", "real",
                             "--gpus-per-node", str(GPUS)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip().endswith("kubeconfig.yaml")
        yield OfflineCluster(OfflineClusterSpec(name=name))
    finally:
        down = subprocess.run([*cli, "cluster", "down", "--name", name], capture_output=True,
                              text=True, timeout=300, cwd=REPO)
        assert down.returncode == 0, down.stderr
        assert not Path("/var/lib/kubelet/device-plugins/kubelet.sock").exists()


def node(kubectl: Callable[..., Any], cluster: OfflineCluster, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(cluster, "get", "node", name, "-o", "json").stdout))


def test_the_real_node_joins_with_its_gpu_labels_and_kwok_leaves_it_alone(
        real_cluster: OfflineCluster, kubectl: Callable[..., Any]) -> None:
    found = node(kubectl, real_cluster, NODE)
    info = found["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"].startswith("containerd://")
    labels = found["metadata"]["labels"]
    # AKS labels of the T4 size the fake GPUs are named after (from the product, as from NVML)
    assert labels["nvidia.com/gpu.product"] == "Tesla-T4"
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC4as_T4_v3"
    assert "kwok.x-k8s.io/node" not in found["metadata"].get("annotations", {})
    ready = next(c for c in found["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "KubeletReady"  # kwok's would say otherwise
    status = json.loads(subprocess.run(
        [sys.executable, "-m", "gpu_conformance.cli", "cluster", "status", "--name",
         real_cluster.spec.name], capture_output=True, text=True, timeout=60, cwd=REPO).stdout)
    assert status["node"] == "real" and status["gpu_nodes"] == 0


def test_every_suite_passes_on_the_real_node(
        real_cluster: OfflineCluster, run_suites: Callable[..., Suites],
        kubectl: Callable[..., Any]) -> None:
    """Plugin rollout by the real DaemonSet controller, capacity from the plugin's
    registration, Jobs run by runc, device lines from the kubelet's log endpoint."""
    result = run_suites(*attach_args(real_cluster), "--workload", "tf-mnist,nvidia-smi,torch",
                        "--plugin", "install", "-v")
    assert result.returncode == 0, result.output[-4000:]
    junit = result.junit_text()
    for test in ("test_plugin_pod_ready_on_every_gpu_node", f"test_gpu_capacity_and_allocatable[{NODE}]",
                 f"test_gpu_job_completes[nvidia-smi-{NODE}]",
                 f"test_device_line_names_expected_gpu[torch-{NODE}]"):
        assert test in junit
    assert 'failures="0"' in junit and 'errors="0"' in junit
    capacity = node(kubectl, real_cluster, NODE)["status"]["capacity"]
    assert capacity["nvidia.com/gpu"] == str(GPUS)


def test_the_device_check_fails_naming_the_gpu_the_node_reports(
        real_cluster: OfflineCluster, run_suites: Callable[..., Suites]) -> None:
    result = run_suites(*attach_args(real_cluster), "--workload", "nvidia-smi",
                        "-k", "device", "--expect-gpu", "NVIDIA H200")
    assert result.returncode == 1, result.output[-3000:]
    assert "Tesla T4" in result.output and "NVIDIA H200" in result.output


def test_a_job_asking_more_gpus_than_the_node_has_is_reported_unschedulable(
        real_cluster: OfflineCluster, run_suites: Callable[..., Suites]) -> None:
    result = run_suites(*attach_args(real_cluster), "--workload", "nvidia-smi", "-k", "workload",
                        "--gpus-per-job", str(GPUS + 1), "--gpu-timeout", "unschedulable-grace=10")
    assert result.returncode == 1, result.output[-3000:]
    assert "Insufficient nvidia.com/gpu" in result.output


def test_the_seed_daemonset_on_the_tainted_real_node_fails_rollout_and_capacity_naming_it(
        real_cluster: OfflineCluster, run_suites: Callable[..., Suites],
        kubectl: Callable[..., Any]) -> None:
    """AKS taints GPU pools sku=gpu:NoSchedule; the guide's DaemonSet does not tolerate it."""
    kubectl(real_cluster, "delete", "namespace", "gpu-resources", "--ignore-not-found", "--wait=true",
            "--timeout=120s")
    kubectl(real_cluster, "taint", "node", NODE, "sku=gpu:NoSchedule")
    try:
        result = run_suites(*attach_args(real_cluster), "--plugin", "install", "--plugin-manifest",
                            "seed", "-k", "rollout or capacity", "--gpu-timeout", "gpu-capacity=15",
                            "--gpu-timeout", "plugin-rollout=120", timeout=300)
    finally:
        kubectl(real_cluster, "taint", "node", NODE, "sku=gpu:NoSchedule-", check=False)
    assert result.returncode == 1, result.output[-3000:]
    junit = result.junit_text()
    # the DaemonSet's counters agree (its pod runs on the untainted system node, as on AKS's
    # system pool); the GPU node has no plugin pod, so no allocatable GPU
    assert 'failures="2"' in junit, result.output[-3000:]
    assert f"{NODE} (untolerated taint sku=gpu:NoSchedule)" in junit
    # capacity 0, or kept for the kubelet's 5-minute grace after the previous test's plugin
    assert (f"node {NODE} (" in junit and "reports no nvidia.com/gpu capacity" in junit) or \
        f"node {NODE}: allocatable nvidia.com/gpu 0 of capacity {GPUS}" in junit
    assert "plugin-rollout timeout" not in junit  # judged final, not waited out
