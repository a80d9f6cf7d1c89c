"""Issue 14: offline, each broken health or performance variant fails the health suite with a
message naming the figure, the limit and its source; the healthy reference passes.

The node is a simulated ND96isr_H200_v5 (8 GPUs: the size Azure gates on every figure); the
cluster serves the broken log to the profile's Job as its kubelet would serve a real one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_conformance.offline import OfflineCluster
from gpu_conformance.workloads import bandwidth, gpu_health, nccl_allreduce
from tests.integration.conftest import Suites, attach_args

H200 = "NVIDIA H200"
CASES = [
    ("gpu-health", lambda: gpu_health.broken_reference_log("ecc-errors", H200),
     ["volatile", "source:"]),
    ("gpu-health", lambda: gpu_health.broken_reference_log("hw-slowdown", H200),
     ["hw_slowdown", "source:"]),
    ("bandwidth", lambda: bandwidth.broken_reference_log("low-copy-bandwidth", H200, 8),
     ["host->device", "expected >= 48", "nd96isr_h200_v5.conf"]),
    ("nccl-allreduce", lambda: nccl_allreduce.broken_reference_log("low-bus-bandwidth", H200, 8),
     ["bus bandwidth", "431", "nd96isr_h200_v5.conf"]),
]


@pytest.mark.parametrize(("profile", "log", "fragments"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_broken_variant_fails_naming_figure_limit_and_source(
        profile: str, log: Callable[[], str], fragments: list[str],
        make_cluster: Callable[..., OfflineCluster], run_suites: Callable[..., Suites],
        tmp_path: Path) -> None:
    served = tmp_path / "broken.log"
    served.write_text(log())
    cluster = make_cluster(gpu_nodes=1, gpus_per_node=8,
                           gpu_product="Standard_ND96isr_H200_v5", job_log=served)
    result = run_suites(*attach_args(cluster), "--workload", profile, "-k", "health", "-v")
    assert result.returncode == 1, result.output[-4000:]
    assert f"test_gpu_meets_its_gates[{profile}-aks-gpu-00000000] FAILED" in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output[-4000:])


def test_healthy_h200_passes_every_gate(make_cluster: Callable[..., OfflineCluster],
                                        run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=1, gpus_per_node=8, gpu_product="Standard_ND96isr_H200_v5")
    result = run_suites(*attach_args(cluster), "--workload", "gpu-health,bandwidth,nccl-allreduce",
                        "-v")
    assert result.returncode == 0, result.output[-4000:]
    assert result.output.count("test_gpu_meets_its_gates[") >= 3
