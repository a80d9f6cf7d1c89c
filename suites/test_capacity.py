"""Suite 2: every GPU node offers its GPUs (nvidia.com/gpu capacity == allocatable >= 1)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kubernetes import client

from gpu_conformance import checks, gpus
from gpu_conformance.errors import WaitTimeout
from gpu_conformance.kube import call
from gpu_conformance.pytest_plugin import NO_GPU_NODE, NOT_STARTED, progress
from gpu_conformance.settings import Settings
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

pytestmark = pytest.mark.gpu_suite("capacity")


def test_gpu_capacity_and_allocatable(gpu_node_name: str, core_v1: client.CoreV1Api,
                                      gpu_settings: Settings) -> None:
    """Capacity and allocatable nvidia.com/gpu >= 1 (or the VM size's count), and equal."""
    if gpu_node_name == NOT_STARTED:
        pytest.fail("no cluster: GPU nodes are discovered when the run starts", pytrace=False)
    if gpu_node_name == NO_GPU_NODE:
        nodes = call(core_v1.list_node).items
        pytest.fail(
            f"no GPU node found among {len(nodes)} node(s): none has a GPU label (accelerator, "
            f"{gpus.AKS_ACCELERATOR_LABEL}, {gpus.PRESENT_LABEL}), a known GPU VM size, or "
            f"{gpus.GPU_RESOURCE} capacity", pytrace=False)
    last: list[checks.GpuNode] = []

    def evaluate(items: list[Any]) -> Verdict:
        last[:] = checks.find_gpu_nodes(items)
        if not last:
            return Verdict(False, f"node {gpu_node_name} is gone", final="the node was removed")
        node = last[0]
        return Verdict(node.capacity >= 1,
                       f"capacity {node.capacity}, allocatable {node.allocatable}")

    with contextlib.suppress(WaitTimeout):  # judged below, with the precise reason
        wait_for(f"node {gpu_node_name} to report {gpus.GPU_RESOURCE} capacity", core_v1.list_node,
                 evaluate, timeout=gpu_settings.timeouts["gpu-capacity"],
                 timeout_name="gpu-capacity", recheck_every=5, progress=progress(gpu_node_name),
                 field_selector=f"metadata.name={gpu_node_name}")
    problems = checks.capacity_problems(last[0]) if last else [f"node {gpu_node_name} not found"]
    assert not problems, "; ".join(problems)
