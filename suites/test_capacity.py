"""Suite 2: every GPU node offers its GPUs (nvidia.com/gpu capacity == allocatable >= 1)."""

from __future__ import annotations

import pytest

from gpu_conformance.checks import capacity
from gpu_conformance.run import RunInfo

pytestmark = pytest.mark.gpu_suite("capacity")


def test_gpu_capacity_and_allocatable(gpu_node_name: str, gpu_capacity: capacity.Snapshot,
                                      gpu_run: RunInfo) -> None:
    """Capacity and allocatable nvidia.com/gpu >= 1 (or the VM size's count), and equal."""
    outcome = capacity.check(gpu_capacity, gpu_node_name, gpu_run.resolve(gpu_node_name))
    assert outcome.ok, outcome.message
