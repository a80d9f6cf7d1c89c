"""Suite 6 (`--workload isolation`, part of `all`): on every GPU node, a pod sees the GPUs it
asked for and no others: 1 asked -> 1 seen, none asked -> none seen, in a two-container pod
only the requesting container, two concurrent pods different GPUs, and with every GPU taken
one more pod stays Pending (gpu_conformance.checks.isolation)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from gpu_conformance.checks import isolation
from gpu_conformance.log import Log
from gpu_conformance.run import RunInfo
from gpu_conformance.settings import Settings

pytestmark = pytest.mark.gpu_suite("isolation")


@pytest.mark.xdist_group("workload")
def test_pods_see_only_their_gpus(workload_node: str, isolation_profile: str,
                                  kube_api: client.ApiClient, run_namespace: str,
                                  gpu_settings: Settings, gpu_run: RunInfo,
                                  gpu_progress: Callable[[str], Log]) -> None:
    nodes = gpu_run.resolve(workload_node)
    if not nodes:
        pytest.fail(f"{workload_node}: no GPU node to check isolation on", pytrace=False)
    outcome = isolation.check(kube_api, run_namespace, nodes[0], gpu_settings.timeouts,
                              run_id=gpu_run.run_id, progress=gpu_progress("isolation"),
                              busy_policy=gpu_settings.busy)
    if outcome.skip:
        pytest.skip(outcome.message)
    assert outcome.ok, outcome.message
