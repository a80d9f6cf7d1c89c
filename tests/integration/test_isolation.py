"""Issue 14: the isolation suite offline: isolated GPUs pass on whole-GPU and MIG nodes; a
node that hands every GPU to a pod that asked for none, or one GPU to two pods, fails naming
it. The broken variants are served to every probe container as its kubelet would serve them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gpu_conformance.offline import OfflineCluster
from gpu_conformance.workloads import isolation
from tests.integration.conftest import Suites, attach_args


@pytest.mark.parametrize("spec", [{"gpus_per_node": 2},
                                  {"gpus_per_node": 2, "gpu_sharing": "mig-mixed",
                                   "gpu_product": "Standard_ND96isr_H100_v5"}],
                         ids=["whole-gpus", "mig-mixed"])
def test_isolated_gpus_pass_every_check(spec: dict[str, object],
                                        make_cluster: Callable[..., OfflineCluster],
                                        run_suites: Callable[..., Suites]) -> None:
    cluster = make_cluster(gpu_nodes=1, **spec)
    result = run_suites(*attach_args(cluster), "--workload", "isolation", "-v")
    assert result.returncode == 0, result.output[-4000:]
    assert "test_pods_see_only_their_gpus[isolation-aks-gpu-00000000] PASSED" in result.output
    # every phase ran: the concurrent pods and the holder of every GPU included
    assert ("isolation: aks-gpu-00000000: passed in" in result.output
            and "(1 GPU asked -> 1 seen, none asked -> none seen, only the requesting container "
                "sees it, concurrent pods get different GPUs, a full node leaves the next pod "
                "Pending)" in result.output), result.output[-3000:]
    assert "skipped" not in result.output.splitlines()[-1]


@pytest.mark.parametrize(("kind", "fragments"), [
    ("gpu-without-request", ["container no-request asked for no GPU but sees 2 GPU(s)",
                             "NVIDIA_VISIBLE_DEVICES=all comes from the image's environment"]),
    ("shared-gpu", ["were given the same GPU GPU-53cb4b91",
                    "the node hands one GPU to two pods"]),
])
def test_broken_isolation_fails_naming_the_cause(kind: str, fragments: list[str],
                                                 make_cluster: Callable[..., OfflineCluster],
                                                 run_suites: Callable[..., Suites],
                                                 tmp_path: Path) -> None:
    served = tmp_path / "probe.log"
    served.write_text(isolation.broken_output(kind, "probe", "Tesla T4", gpus=2))
    cluster = make_cluster(gpu_nodes=1, gpus_per_node=2, job_log=served)
    result = run_suites(*attach_args(cluster), "--workload", "isolation", "-v")
    assert result.returncode == 1, result.output[-4000:]
    assert "test_pods_see_only_their_gpus[isolation-aks-gpu-00000000] FAILED" in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output[-4000:])
