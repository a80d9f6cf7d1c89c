"""A real node joins a real control plane: kubelet + containerd + runc + CNI plugins, all
built from the pinned modules in tools/, images built locally, and a test device plugin that
registers nvidia.com/gpu through the kubelet's device-plugin API.

The control plane is plain processes (gpu_conformance.realnode.controlplane), not kwokctl's:
kwok would manage the real node too unless told to manage only annotated nodes.
Skipped, with the reason, where this host cannot run a kubelet (not root, no overlayfs, no
cgroup controllers, a kubelet already using /var/lib/kubelet). Takes about a minute once the
programs are built (the first run builds them: ~15 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_conformance import binaries
from gpu_conformance.errors import ClusterError
from gpu_conformance.paths import manifests_dir
from gpu_conformance.realnode import host
from gpu_conformance.realnode.controlplane import ControlPlane, ControlPlaneSpec
from gpu_conformance.realnode.node import ControlPlaneAccess, RealNode, RealNodeSpec
from gpu_conformance.workloads import PROFILES
from tests.integration.conftest import wait_until

NODE = "127.0.0.1"
FAKE_GPUS = 2
DEVICE = "Tesla T4"
PLUGIN_MANIFEST = manifests_dir() / "current" / "nvidia-device-plugin.yaml"
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids")


def _why_no_kubelet() -> str | None:
    """Why this host cannot run a kubelet and containers, or None."""
    if os.geteuid() != 0:
        return "a real node needs root (mounts, cgroups, network namespaces)"
    if not (shutil.which("mount") and shutil.which("umount")):
        return "mount(8)/umount(8) are missing; the kubelet mounts volumes with them"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (containerd's snapshotter)"
    if host.socket_listening(Path("/var/lib/kubelet/device-plugins/kubelet.sock")):
        return "another kubelet is using /var/lib/kubelet"
    if host.cgroup_v2():
        controllers = Path("/sys/fs/cgroup/cgroup.controllers").read_text().split()
        missing = [c for c in ("cpu", "cpuset", "memory", "pids") if c not in controllers]
    else:
        mounted = {part for mount in host.v1_hierarchies() for part in mount.name.split(",")}
        missing = [c for c in V1_CONTROLLERS if c not in mounted]
    if missing:
        return f"cgroup controllers the kubelet needs are not available: {', '.join(missing)}"
    return None


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneAccess]:
    """A control plane of plain processes on 127.0.0.1, removed after the module."""
    reason = _why_no_kubelet()
    if reason:
        pytest.skip(reason)
    plane = ControlPlane(ControlPlaneSpec(tmp_path_factory.mktemp("control-plane")))
    try:
        yield plane.up(log=lambda _line: None)
    finally:
        plane.down(log=lambda _line: None)


@pytest.fixture(scope="module")
def node(access: ControlPlaneAccess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    """The real node with FAKE_GPUS fake GPUs (plugin image imported, not yet deployed)."""
    real = RealNode(RealNodeSpec(work_dir=tmp_path_factory.mktemp("real-node"), node_name=NODE,
                                 fake_gpus=FAKE_GPUS, device_name=DEVICE))
    try:
        real.up(access, log=lambda _line: None)
        yield real
    finally:
        real.down(log=lambda _line: None)


@pytest.fixture(scope="module")
def kubectl(access: ControlPlaneAccess, node: RealNode) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the pinned kubectl as the control plane's admin."""
    path = binaries.find("kubectl")
    assert path is not None

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(path), f"--kubeconfig={access.admin_kubeconfig}", *args],
                                capture_output=True, text=True, input=input, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


def node_object(kubectl: Callable[..., Any]) -> dict[str, Any]:
    return dict(json.loads(kubectl("get", "node", NODE, "-o", "json").stdout))


def gpus(kubectl: Callable[..., Any]) -> tuple[str | None, str | None]:
    status = node_object(kubectl)["status"]
    return status["capacity"].get("nvidia.com/gpu"), status["allocatable"].get("nvidia.com/gpu")


def plugin_pod(kubectl: Callable[..., Any]) -> dict[str, Any] | None:
    pods = json.loads(kubectl("get", "pods", "-n", "gpu-resources", "-o", "json").stdout)["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"
               and not p["metadata"].get("deletionTimestamp")]
    return running[0] if running else None


def test_the_real_kubelet_registers_a_ready_node_without_gpus(kubectl: Callable[..., Any]) -> None:
    status = node_object(kubectl)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.36.3"
    assert status["nodeInfo"]["containerRuntimeVersion"] == "containerd://2.4.2"
    assert {"type": "InternalIP", "address": NODE} in status["addresses"]
    assert "nvidia.com/gpu" not in status["capacity"]


def test_the_plugin_daemonset_registers_nvidia_gpus_with_the_kubelet(
        kubectl: Callable[..., Any], node: RealNode) -> None:
    kubectl("apply", "-f", str(PLUGIN_MANIFEST))
    pod = wait_until(lambda: plugin_pod(kubectl), "the plugin pod Running on the real node")
    assert pod["spec"]["nodeName"] == NODE and pod["status"]["podIP"].startswith("10.213.")
    name = pod["metadata"]["name"]
    log = wait_until(lambda: kubectl("logs", "-n", "gpu-resources", name).stdout
                     if "Registered device plugin" in kubectl("logs", "-n", "gpu-resources", name).stdout
                     else "", "the registration line in the plugin's log")
    assert "Registered device plugin for 'nvidia.com/gpu' with Kubelet" in log
    kubelet_log = (node.layout.logs_dir / "kubelet.log").read_text()
    assert 'Got registration request from device plugin with resource" resourceName="nvidia.com/gpu"' \
        in kubelet_log
    assert wait_until(lambda: gpus(kubectl) == (str(FAKE_GPUS), str(FAKE_GPUS)),
                      f"capacity and allocatable nvidia.com/gpu={FAKE_GPUS}", timeout=60)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_one_gpu_job_completes_and_logs_the_reference_output(
        kubectl: Callable[..., Any], profile: str) -> None:
    workload = PROFILES[profile]
    namespace = "real-node-jobs"
    kubectl("create", "namespace", namespace, check=False)
    objects = [*workload.extra_objects(namespace),
               workload.job_manifest(f"job-{profile}", namespace, node_name=NODE)]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    kubectl("wait", "-n", namespace, "--for=condition=complete", f"job/job-{profile}", "--timeout=120s")
    log = kubectl("logs", "-n", namespace, f"job/job-{profile}").stdout
    report = workload.parse(log)
    assert report.success, report.problems
    assert report.devices and set(report.devices) == {DEVICE}
    assert "allocated NVIDIA_VISIBLE_DEVICES=fake-gpu-" in log


def test_a_pod_asking_for_more_gpus_than_exist_stays_pending(kubectl: Callable[..., Any]) -> None:
    job = PROFILES["nvidia-smi"].job_manifest("too-many", "real-node-jobs", gpus=FAKE_GPUS + 1)
    kubectl("apply", "-f", "-", input=json.dumps(job))

    def unschedulable() -> str:
        pods = json.loads(kubectl("get", "pods", "-n", "real-node-jobs", "-l", "app=too-many",
                                  "-o", "json").stdout)["items"]
        for pod in pods:
            for condition in pod["status"].get("conditions", []):
                if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                    return str(condition.get("message", ""))
        return ""

    message = wait_until(unschedulable, "the pod Unschedulable", timeout=30)
    assert "Insufficient nvidia.com/gpu" in message
    kubectl("delete", "job", "-n", "real-node-jobs", "too-many", "--wait=false")


def test_the_plugin_registers_again_after_a_kubelet_restart(
        kubectl: Callable[..., Any], node: RealNode) -> None:
    pod = plugin_pod(kubectl)
    assert pod is not None
    node.restart_kubelet(log=lambda _line: None)

    def restarted() -> str:
        log = kubectl("logs", "-n", "gpu-resources", pod["metadata"]["name"], check=False).stdout
        return log if log.count("Registered device plugin for 'nvidia.com/gpu' with Kubelet") >= 2 else ""

    log = wait_until(restarted, "a second registration after the kubelet restart", timeout=90)
    assert "restarting." in log
    assert wait_until(lambda: gpus(kubectl) == (str(FAKE_GPUS), str(FAKE_GPUS)),
                      "nvidia.com/gpu back after the restart", timeout=60)


def test_deleting_the_plugin_drops_allocatable_at_once_and_keeps_capacity_for_the_grace_period(
        kubectl: Callable[..., Any]) -> None:
    kubectl("delete", "daemonset", "-n", "gpu-resources", "nvidia-device-plugin-daemonset", "--wait=false")
    # the kubelet marks the devices unhealthy when the plugin's stream ends; capacity stays
    # until the endpoint's 5-minute grace period (devicemanager endpointStopGracePeriod) ends
    assert wait_until(lambda: gpus(kubectl) == (str(FAKE_GPUS), "0"), "allocatable 0, capacity kept",
                      timeout=40)


def test_down_after_a_partial_start_leaves_no_process_mount_cgroup_or_link(
        access: ControlPlaneAccess, kubectl: Callable[..., Any], tmp_path: Path) -> None:
    real = RealNode(RealNodeSpec(work_dir=tmp_path / "second", node_name="127.0.0.2",
                                 kubelet_root=tmp_path / "kubelet-root", bridge="gpuc9",
                                 pod_subnet="10.214.0.0/24", cgroup_root="/gpu-conformance-second",
                                 fake_gpus=0))
    work = real.layout.work_dir
    try:
        # a start that fails half-way (kubelet running, node not Ready yet) is undone too
        real.spec.ready_timeout = 0.1
        with pytest.raises(ClusterError, match="node-ready timeout"):
            real.up(access, log=lambda _line: None)
    finally:
        real.down(log=lambda _line: None)
        kubectl("delete", "node", "127.0.0.2", "--ignore-not-found", check=False)
    assert not host.processes_mentioning([str(work), str(real.layout.run_dir)])
    assert not host.mounts_under([work, tmp_path / "kubelet-root", real.layout.run_dir])
    assert not any(d.exists() for d in host.cgroup_dirs("/gpu-conformance-second"))
    assert not host.link_exists("gpuc9")
    assert not work.exists() and not real.layout.run_dir.exists()
    assert real.down(log=lambda _line: None) is False
