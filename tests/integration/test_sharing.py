"""Issue 14: GPU nodes split by MIG (single and mixed strategies) or shared by time-slicing,
labelled as GPU feature discovery labels them, pass the suites; a MIG node that loses a
device fails naming the MIG resource.

On a mixed-strategy node nvidia.com/gpu is 0: its workload Job completes only because it asks
for the MIG profile the node offers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpu_conformance.nodes import DEVICES_ANNOTATION
from gpu_conformance.offline import OfflineCluster
from tests.integration.conftest import Suites, attach_args

H100 = "Standard_ND96isr_H100_v5"


@pytest.mark.parametrize("mode", ["mig-single", "mig-mixed", "time-slicing"])
def test_shared_gpu_nodes_pass_and_report_what_they_offer(
        mode: str, make_cluster: Callable[..., OfflineCluster],
        run_suites: Callable[..., Suites], tmp_path: Path) -> None:
    cluster = make_cluster(gpu_nodes=2, gpus_per_node=2, gpu_product=H100, gpu_sharing=mode)
    result = run_suites(*attach_args(cluster), f"--gpu-report-dir={tmp_path}")
    assert result.returncode == 0, result.output[-4000:]
    assert "8 passed" in result.output, result.output[-2000:]
    shared = cluster.spec.shared_node()
    assert shared is not None
    rows = json.loads((tmp_path / "summary.json").read_text())["clusters"][0]["nodes"]
    assert [r["verdict"] for r in rows] == ["passed", "passed"]
    assert rows[0]["gpu_resources"] == {
        r: f"{v} / {shared.allocatable[r]}" for r, v in sorted(shared.capacity.items())}
    assert rows[0]["device_line"].startswith("name: NVIDIA H100 80GB HBM3")


def test_a_mig_node_losing_a_device_fails_naming_the_mig_resource(
        make_cluster: Callable[..., OfflineCluster], kubectl: Callable[..., Any],
        run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=2, gpus_per_node=2, gpu_product=H100,
                           gpu_sharing="mig-mixed")
    # the device plugin reports one of the node's two 2g.20gb devices unhealthy
    kubectl(cluster, "annotate", "--overwrite", "node", "aks-gpu-00000001",
            f"{DEVICES_ANNOTATION}=nvidia.com/gpu=0,nvidia.com/mig-1g.10gb=4,"
            "nvidia.com/mig-2g.20gb=2/1,nvidia.com/mig-3g.40gb=2")
    result = run_suites(*attach_args(cluster), "-k", "capacity", "-v",
                        "--gpu-timeout", "gpu-settle=5")
    assert result.returncode == 1, result.output[-4000:]
    for text in ("test_gpu_capacity_and_allocatable[aks-gpu-00000000] PASSED",
                 "test_gpu_capacity_and_allocatable[aks-gpu-00000001] FAILED",
                 "node aks-gpu-00000001 (mig-mixed): nvidia.com/mig-2g.20gb: allocatable 1 < "
                 "capacity 2: 1 device(s) marked unhealthy by the device plugin"):
        assert text in result.output, result.output[-4000:]
