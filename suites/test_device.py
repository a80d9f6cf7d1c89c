"""Suite 4: the workload's log names the GPU the node should have."""

from __future__ import annotations

import pytest

from fixtures.workload import Runner
from gpu_conformance.checks import device
from gpu_conformance.run import RunInfo
from gpu_conformance.settings import Settings

pytestmark = pytest.mark.gpu_suite("device")


@pytest.mark.xdist_group("workload")
def test_device_line_names_expected_gpu(workload_profile: str, workload_runner: Runner,
                                        gpu_settings: Settings, gpu_run: RunInfo) -> None:
    """The device line matches --expect-gpu, else the node's product label / VM size."""
    outcome = device.check(workload_runner(workload_profile), gpu_settings.expect_gpu,
                           gpu_run.expected_gpu, gpu_settings.min_accuracy)
    assert outcome.ok, outcome.message
