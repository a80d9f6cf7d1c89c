"""Issue 3 acceptance: the suites pass on a healthy cluster and FAIL, precisely, on broken ones.

Each broken cluster is a dedicated offline cluster, broken the way operators see it break.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpu_conformance import binaries
from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT
from gpu_conformance.workloads import PROFILES
from tests.captures import capture_path
from tests.integration.conftest import Suites, attach_args, objects_snapshot

REPO = REPO_ROOT
SEED_LOG = capture_path("seed-tf-mnist-k80.txt")


def passed(result: Suites) -> None:
    assert result.returncode == 0, result.output[-6000:]


def failed_with(result: Suites, *fragments: str) -> None:
    assert result.returncode == 1, result.output[-6000:]
    for fragment in fragments:
        assert fragment in result.output, f"{fragment!r} not in output:\n{result.output[-6000:]}"


def test_attach_passes_and_leaves_the_cluster_as_it_found_it(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=2)
    before = objects_snapshot(kubectl, cluster)
    result = run_suites(*attach_args(cluster), "-v")
    passed(result)
    for name in ("test_plugin_daemonset_counters_agree", "test_plugin_pod_ready_on_every_gpu_node",
                 "test_gpu_capacity_and_allocatable[aks-gpu-00000000]",
                 "test_gpu_capacity_and_allocatable[aks-gpu-00000001]",
                 "test_gpu_job_completes[tf-mnist-aks-gpu-00000000]",
                 "test_gpu_job_completes[tf-mnist-aks-gpu-00000001]",
                 "test_device_line_names_expected_gpu[tf-mnist-aks-gpu-00000000]",
                 "test_device_line_names_expected_gpu[tf-mnist-aks-gpu-00000001]"):
        assert f"{name} PASSED" in result.output
    junit = result.junit_text()
    assert 'name="backend" value="attach"' in junit
    assert f'name="kubernetes_version" value="{binaries.KUBERNETES_VERSION}"' in junit
    assert 'name="gpu_models" value="Tesla-T4"' in junit
    assert 'name="plugin_image" value="nvcr.io/nvidia/k8s-device-plugin:v0.18.0"' in junit
    assert objects_snapshot(kubectl, cluster) == before


def test_user_command_line_finds_the_project_config(
        make_cluster: Callable[..., OfflineCluster]) -> None:
    """`pytest --backend attach --kubeconfig <path>` as a user types it, from the checkout."""
    import subprocess
    import sys

    cluster = make_cluster(gpu_nodes=1)
    result = subprocess.run([sys.executable, "-m", "pytest", "--backend", "attach", "--kubeconfig",
                             str(cluster.kubeconfig), "-k", "capacity", "-p", "no:cacheprovider"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "configfile: pytest.ini" in result.stdout
    assert "1 passed" in result.stdout


def test_unhealthy_gpus_fail_the_capacity_check(make_cluster: Callable[..., OfflineCluster],
                                                kubectl: Callable[..., Any],
                                                run_suites: Callable[..., Suites]) -> None:
    # the device plugin registers only 1 of the node's 2 GPUs as healthy
    cluster = make_cluster(gpu_nodes=2, gpus_per_node=2, unhealthy={"aks-gpu-00000001": 1})
    result = run_suites(*attach_args(cluster), "-k", "capacity", "-v",
                        "--gpu-timeout", "gpu-settle=3")
    failed_with(result,
                "test_gpu_capacity_and_allocatable[aks-gpu-00000000] PASSED",
                "test_gpu_capacity_and_allocatable[aks-gpu-00000001] FAILED",
                "node aks-gpu-00000001: allocatable nvidia.com/gpu 1 < capacity 2: 1 GPU(s) marked "
                "unhealthy by the device plugin",
                "gpu-conformance diagnostics", "aks-gpu-00000001: 2 / 1")


def test_gpu_node_without_plugin_pod_fails_although_daemonset_counts_ready(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites], tmp_path: Path) -> None:
    cluster = make_cluster(gpu_nodes=2)
    kubectl(cluster, "label", "node", "aks-gpu-00000001", "nvidia.com/gpu.present-")
    manifest = (REPO / "manifests" / "current" / "nvidia-device-plugin.yaml").read_text()
    manifest = manifest.replace("      priorityClassName: system-node-critical\n",
                                "      priorityClassName: system-node-critical\n"
                                "      nodeSelector:\n        nvidia.com/gpu.present: \"true\"\n")
    kubectl(cluster, "apply", "-f", "-", input=manifest)
    result = run_suites(*attach_args(cluster), "--plugin", "existing", "-k", "rollout", "-v")
    failed_with(result,
                "test_plugin_daemonset_counters_agree PASSED",
                "test_plugin_pod_ready_on_every_gpu_node FAILED",
                "1 of 2 GPU node(s) have no ready device plugin pod: aks-gpu-00000001 (the "
                "DaemonSet's nodeSelector/affinity excludes it)")
    # --plugin existing: the DaemonSet the cluster had is still there
    kubectl(cluster, "get", "ds", "-n", "gpu-resources", "nvidia-device-plugin-daemonset")


def test_unschedulable_job_ends_the_wait_with_the_reason(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=2)
    for node in ("aks-gpu-00000000", "aks-gpu-00000001"):
        kubectl(cluster, "taint", "node", node, "example.com/reserved=team-a:NoSchedule")
    result = run_suites(*attach_args(cluster), "-k", "workload", "--gpu-timeout",
                        "job-complete=600")
    failed_with(result, "test_gpu_job_completes[tf-mnist-aks-gpu-00000000]", "is Unschedulable",
                "untolerated taint", "likely cause")
    assert "timed out" not in result.output


def test_logs_naming_another_gpu_fail_the_device_check(
        make_cluster: Callable[..., OfflineCluster], run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=1, job_log=SEED_LOG)
    result = run_suites(*attach_args(cluster), "-k", "workload or device", "-v")
    failed_with(result, "test_gpu_job_completes[tf-mnist-aks-gpu-00000000] PASSED",
                "test_device_line_names_expected_gpu[tf-mnist-aks-gpu-00000000] FAILED",
                "expected GPU 'Tesla T4' (from label nvidia.com/gpu.product=Tesla-T4), but the log "
                "names: name: Tesla K80 major: 3")


def test_tainted_gpu_pool_current_manifest_passes_seed_manifest_fails(
        make_cluster: Callable[..., OfflineCluster], run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=2, taint_gpu_nodes=True)
    passed(run_suites(*attach_args(cluster)))
    result = run_suites(*attach_args(cluster), "--plugin-manifest", "seed", "-k", "rollout", "-v")
    failed_with(result, "test_plugin_pod_ready_on_every_gpu_node FAILED",
                "aks-gpu-00000000 (untolerated taint sku=gpu:NoSchedule)",
                "aks-gpu-00000001 (untolerated taint sku=gpu:NoSchedule)")


def test_kwok_backend_with_xdist_and_every_workload_profile(run_suites: Callable[..., Suites]) -> None:
    """The default backend provisions once for both workers and tears down at the end."""
    result = run_suites("-n", "2", "--workload", "all", "--gpu-nodes", "2",
                        f"--cluster-name=it-xdist-{os.getpid()}")
    passed(result)
    # rollout 2, capacity per node 2, workload and device per profile and node, gates per
    # judged (health) profile and node, isolation per node
    judged = len([p for p in PROFILES.values() if p.judge])
    assert f"{2 + 2 + 2 * 2 * len(PROFILES) + 2 * judged + 2} passed" in result.output
    assert f"cluster 'it-xdist-{os.getpid()}' removed" in result.output
    assert not (REPO / ".gpu-conformance" / "clusters" / f"it-xdist-{os.getpid()}").exists()


def test_help_and_collect_only_touch_no_cluster(run_suites: Callable[..., Suites],
                                                tmp_path: Path) -> None:
    env = {"GPU_CONFORMANCE_STATE": str(tmp_path / "state"), "KUBECONFIG": str(tmp_path / "none"),
           "GPU_CONFORMANCE_CACHE": str(tmp_path / "cache")}
    helped = run_suites("--help", env=env)
    assert helped.returncode == 0 and "--backend" in helped.output and "--plugin-manifest" in helped.output
    collected = run_suites("--collect-only", "-q", env=env)
    assert collected.returncode == 0, collected.output
    # the kwok backend names the GPU nodes it will create: per-node ids without a cluster
    assert "test_gpu_capacity_and_allocatable[aks-gpu-00000001]" in collected.output
    assert not (tmp_path / "state").exists() and not (tmp_path / "cache").exists()


def test_busy_node_is_reported_as_busy_not_broken(make_cluster: Callable[..., OfflineCluster],
                                                   kubectl: Callable[..., Any],
                                                   run_suites: Callable[..., Suites]) -> None:
    """A node whose GPUs another team's pod holds is busy (fail or skip), never passed; the
    other node is checked as usual."""
    cluster = make_cluster(gpu_nodes=2, gpus_per_node=1)
    holder = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trainer", "namespace": "default"},
              "spec": {"nodeName": "aks-gpu-00000000", "tolerations": [{"operator": "Exists"}],
                       "containers": [{"name": "c", "image": "example.invalid/train",
                                       "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    kubectl(cluster, "apply", "-f", "-", input=json.dumps(holder))
    kubectl(cluster, "wait", "--for=condition=Ready", "pod/trainer", "--timeout=60s")
    result = run_suites(*attach_args(cluster), "-k", "workload", "-v")
    failed_with(result, "test_gpu_job_completes[tf-mnist-aks-gpu-00000001] PASSED",
                "test_gpu_job_completes[tf-mnist-aks-gpu-00000000] FAILED",
                "node aks-gpu-00000000 is busy: all its GPUs are held by other pods: "
                "default/trainer (1)")
    skipped = run_suites(*attach_args(cluster), "-k", "workload", "--busy", "skip", "-rs")
    passed(skipped)
    assert "1 passed, 1 skipped" in skipped.output
    assert "node aks-gpu-00000000 is busy" in skipped.output


def test_a_job_queued_behind_another_runs_job_waits_for_it(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites]) -> None:
    """GPUs held by another gpu-conformance run's Job: ours waits its turn (not busy, not
    failed after the unschedulable grace), and runs once the GPU is free."""
    cluster = make_cluster(gpu_nodes=1, gpus_per_node=1)
    holder = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "other-run", "namespace": "default",
                           "labels": {"gpu-conformance.io/run": "another-run"}},
              "spec": {"nodeName": "aks-gpu-00000000", "tolerations": [{"operator": "Exists"}],
                       "containers": [{"name": "c", "image": "example.invalid/train",
                                       "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    kubectl(cluster, "apply", "-f", "-", input=json.dumps(holder))
    kubectl(cluster, "wait", "--for=condition=Ready", "pod/other-run", "--timeout=60s")
    import threading
    import time

    def release() -> None:
        time.sleep(8)
        kubectl(cluster, "delete", "pod", "other-run", "-n", "default", "--wait=false")

    releaser = threading.Thread(target=release)
    releaser.start()
    result = run_suites(*attach_args(cluster), "-k", "workload", "--gpu-timeout",
                        "unschedulable-grace=2")
    releaser.join()
    passed(result)


def test_keep_cluster_keeps_it_and_the_next_run_reuses_it(run_suites: Callable[..., Suites]) -> None:
    name = f"it-keep-{os.getpid()}"
    cluster = OfflineCluster(OfflineClusterSpec(name=name))
    try:
        first = run_suites("--keep-cluster", f"--cluster-name={name}", "-k", "capacity")
        passed(first)
        assert cluster.exists() and cluster.pids()
        assert "stays with the kept cluster; the next run uses it" in first.output
        second = run_suites("--keep-cluster", f"--cluster-name={name}", "-k", "capacity")
        passed(second)
        assert f"reusing the offline cluster '{name}'" in second.output
        # the kept cluster's plugin is used, not reinstalled; deletions are not awaited
        assert "sharing the device plugin DaemonSet gpu-resources/nvidia-device-plugin-daemonset" \
            in second.output
        assert "created DaemonSet" not in second.output and "all gone" not in second.output
        # another manifest replaces the kept plugin (no run uses it)
        third = run_suites("--keep-cluster", f"--cluster-name={name}", "-k", "capacity",
                           "--plugin-manifest", "seed")
        passed(third)
        assert "removed the shared device plugin DaemonSet" in third.output
        assert "created DaemonSet gpu-resources/nvidia-device-plugin-daemonset" in third.output
    finally:
        cluster.down(log=lambda _line: None)


def test_capacity_follows_the_plugin_in_the_simulation(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites]) -> None:
    """GPUs appear only where a plugin pod is ready (a node the plugin never reaches fails
    the capacity check, named), and go when the plugin goes: allocatable at once, capacity
    after the grace period, as a kubelet's device manager does."""
    cluster = make_cluster(gpu_nodes=2, plugin_grace=2)
    manifest = (REPO / "manifests" / "current" / "nvidia-device-plugin.yaml").read_text()
    kubectl(cluster, "label", "node", "aks-gpu-00000001", "nvidia.com/gpu.present-")
    manifest = manifest.replace("      priorityClassName: system-node-critical\n",
                                "      priorityClassName: system-node-critical\n"
                                "      nodeSelector:\n        nvidia.com/gpu.present: \"true\"\n")
    kubectl(cluster, "apply", "-f", "-", input=manifest)
    result = run_suites(*attach_args(cluster), "--plugin", "existing", "-k", "capacity", "-v",
                        "--gpu-timeout", "gpu-capacity=10")
    failed_with(result, "test_gpu_capacity_and_allocatable[aks-gpu-00000000] PASSED",
                "test_gpu_capacity_and_allocatable[aks-gpu-00000001] FAILED",
                "node aks-gpu-00000001 (label accelerator=nvidia) reports no nvidia.com/gpu "
                "capacity: the device plugin is not running or not registered on it")
    kubectl(cluster, "delete", "daemonset", "nvidia-device-plugin-daemonset", "-n",
            "gpu-resources", "--wait=true")

    def gpus() -> tuple[str, str]:
        node = json.loads(kubectl(cluster, "get", "node", "aks-gpu-00000000", "-o", "json").stdout)
        return (node["status"]["capacity"].get("nvidia.com/gpu", "0"),
                node["status"]["allocatable"].get("nvidia.com/gpu", "0"))

    import time

    deadline = time.monotonic() + 30
    seen: list[tuple[str, str]] = []
    while time.monotonic() < deadline and (not seen or seen[-1] != ("0", "0")):
        seen.append(gpus())
        time.sleep(0.2)
    assert ("1", "0") in seen and seen[-1] == ("0", "0"), seen


def test_daemonset_counters_that_disagree_fail_the_counters_check(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites]) -> None:
    """An OnDelete DaemonSet whose template changed: its pods are never replaced, so
    updatedNumberScheduled stays below desired (a rollout that never happens)."""
    cluster = make_cluster(gpu_nodes=2)
    kubectl(cluster, "apply", "-f", str(REPO / "manifests" / "current" / "nvidia-device-plugin.yaml"))
    ds = ["-n", "gpu-resources", "daemonset/nvidia-device-plugin-daemonset"]
    kubectl(cluster, "rollout", "status", *ds, "--timeout=120s")
    kubectl(cluster, "patch", *ds, "--type=merge",
            "-p", '{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}')
    kubectl(cluster, "patch", *ds, "--type=merge",
            "-p", '{"spec":{"template":{"metadata":{"annotations":{"changed":"yes"}}}}}')
    result = run_suites(*attach_args(cluster), "--plugin", "existing", "-k", "counters_agree", "-v",
                        "--gpu-timeout", "plugin-rollout=8")
    failed_with(result, "test_plugin_daemonset_counters_agree FAILED",
                "DaemonSet counters disagree: desired=3, updated=0", "plugin-rollout timeout")


def test_a_cluster_without_gpu_nodes_fails_rollout_capacity_and_workload(
        make_cluster: Callable[..., OfflineCluster], run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=0)
    result = run_suites(*attach_args(cluster), "-v", "--gpu-timeout", "unschedulable-grace=5")
    failed_with(result, "the cluster has no GPU node at all",
                "test_gpu_capacity_and_allocatable[no-gpu-node-found] FAILED",
                "Insufficient nvidia.com/gpu")
    assert " passed" not in result.output.splitlines()[-1], result.output[-2000:]
