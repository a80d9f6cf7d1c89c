"""Suite 4: the workload's log names the GPU the node should have."""

from __future__ import annotations

import pytest

from fixtures.workload import Runner
from gpu_conformance import checks, gpus
from gpu_conformance.run import RunInfo
from gpu_conformance.settings import Settings
from gpu_conformance.workloads import get_profile

pytestmark = pytest.mark.gpu_suite("device")


@pytest.mark.xdist_group("workload")
def test_device_line_names_expected_gpu(workload_profile: str, workload_runner: Runner,
                                        gpu_settings: Settings, gpu_run: RunInfo) -> None:
    """The device line matches --expect-gpu, else the node's product label / VM size."""
    result = workload_runner(workload_profile)
    if not result.report:
        pytest.fail(f"no log to judge: {result.failure or 'the Job produced no pod'}",
                    pytrace=False)
    expected = gpus.expected_gpu(result.node_labels, gpu_settings.expect_gpu)
    if expected.source == "default" and gpu_run.expected_gpu:
        expected = gpus.expected_gpu({gpus.PRODUCT_LABEL: gpu_run.expected_gpu})
    profile = get_profile(workload_profile)
    min_accuracy = gpu_settings.min_accuracy if gpu_settings.min_accuracy is not None \
        else profile.min_accuracy
    problems = checks.device_problems(result.report, expected, min_accuracy,
                                      needs_device=profile.requires_device_line
                                      or bool(result.report.devices))
    assert not problems, (f"pod {result.pod_name} on node {result.node_name}: "
                          + "; ".join(problems))
