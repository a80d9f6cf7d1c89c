"""Issue 10: runs share a cluster safely. Two runs started together both pass and use one
device plugin, removed exactly once, by the last; a run with four xdist workers passes; the
cluster is left as it was found."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from gpu_conformance.offline import OfflineCluster
from gpu_conformance.paths import REPO_ROOT
from tests.integration.conftest import objects_snapshot
from tests.integration.test_interruptions import leftovers


def _start(cluster: OfflineCluster, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-c", str(REPO_ROOT / "pytest.ini"),
         f"--rootdir={REPO_ROOT}", "--junitxml=/dev/null", "-p", "no:cacheprovider",
         "--backend", "attach", f"--kubeconfig={cluster.kubeconfig}", "--workload", "all",
         *extra, str(REPO_ROOT / "suites")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_concurrent_runs_and_four_workers(make_cluster: Callable[..., OfflineCluster],
                                              kubectl: Callable[..., Any]) -> None:
    cluster = make_cluster(gpu_nodes=2)
    before = objects_snapshot(kubectl, cluster)
    first = _start(cluster)
    time.sleep(0.3)
    second = _start(cluster)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    for proc, output in zip((first, second), outputs, strict=True):
        assert proc.returncode == 0, output[-4000:]
    joined = "".join(outputs)
    assert joined.count("created DaemonSet gpu-resources/nvidia-device-plugin-daemonset") == 1
    assert "sharing the device plugin DaemonSet" in joined
    assert joined.count("removed the shared device plugin DaemonSet") == 1
    assert leftovers(cluster, kubectl) == []
    workers = _start(cluster, "-n", "4")
    output = workers.communicate(timeout=600)[0]
    assert workers.returncode == 0, output[-4000:]
    assert output.count("removed the shared device plugin DaemonSet") == 1
    deadline = time.monotonic() + 60
    while objects_snapshot(kubectl, cluster) != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert objects_snapshot(kubectl, cluster) == before
