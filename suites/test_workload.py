"""Suite 3: a GPU Job (limit nvidia.com/gpu: 1, GPU taints tolerated) completes 1/1."""

from __future__ import annotations

import pytest

from fixtures.workload import Runner

pytestmark = pytest.mark.gpu_suite("workload")


@pytest.mark.xdist_group("workload")
def test_gpu_job_completes(workload_profile: str, workload_runner: Runner) -> None:
    """The profile's Job reaches completions 1/1 within the job-complete timeout."""
    outcome = workload_runner(workload_profile).outcome
    assert outcome.ok, outcome.message
