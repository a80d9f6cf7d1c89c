"""Suite 5: on every GPU node, the health and performance profiles pass their VM size's gates
(ECC, row remapping, clock events, PCIe link; copy and all_reduce bandwidth)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fixtures.workload import Runner
from gpu_conformance.checks import health
from gpu_conformance.settings import Settings

pytestmark = pytest.mark.gpu_suite("health")


@pytest.mark.xdist_group("workload")
def test_gpu_meets_its_gates(workload_node: str, health_profile: str, workload_runner: Runner,
                             gpu_settings: Settings,
                             gpu_run_property: Callable[[str, str], None]) -> None:
    """Every gated figure within its limit (a size without a gate: reported, not passed)."""
    outcome = health.check(workload_runner(health_profile, workload_node), gpu_settings,
                           gpu_run_property)
    if outcome.skip:
        pytest.skip(outcome.message)
    assert outcome.ok, outcome.message
