"""Suite 4: on every GPU node, the workload's log names the GPU the node should have."""

from __future__ import annotations

import pytest

from fixtures.workload import Runner
from gpu_conformance.checks import device
from gpu_conformance.run import RunInfo
from gpu_conformance.settings import Settings

pytestmark = pytest.mark.gpu_suite("device")


@pytest.mark.xdist_group("workload")
def test_device_line_names_expected_gpu(workload_node: str, workload_profile: str,
                                        workload_runner: Runner, gpu_settings: Settings,
                                        gpu_run: RunInfo) -> None:
    """The device line matches --expect-gpu, else the node's product label / VM size."""
    outcome = device.check(workload_runner(workload_profile, workload_node), gpu_settings,
                           gpu_run.expected_gpu)
    if outcome.skip:
        pytest.skip(outcome.message)
    assert outcome.ok, outcome.message
