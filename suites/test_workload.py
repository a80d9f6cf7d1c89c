"""Suite 3: on every GPU node, a GPU Job (limit nvidia.com/gpu: 1, GPU taints tolerated)
completes 1/1; a node busy with other pods' work is reported as busy, not passed."""

from __future__ import annotations

import pytest

from fixtures.workload import Runner
from gpu_conformance.settings import Settings

pytestmark = pytest.mark.gpu_suite("workload")


@pytest.mark.xdist_group("workload")
def test_gpu_job_completes(workload_node: str, workload_profile: str, workload_runner: Runner,
                           gpu_settings: Settings) -> None:
    """The profile's Job on this node reaches completions 1/1 within job-complete."""
    outcome = workload_runner(workload_profile, workload_node).verdict(gpu_settings.busy)
    if outcome.skip:
        pytest.skip(outcome.message)
    assert outcome.ok, outcome.message
