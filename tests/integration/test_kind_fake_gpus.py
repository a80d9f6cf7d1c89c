"""kind's fake-GPU advertising against a real API server (the offline cluster's).

The nodes here are created by the test, tainted so nothing is scheduled on them, and deleted
afterwards; the offline cluster's own GPU nodes are never touched.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from kubernetes import client, watch

from gpu_conformance import gpus, kapi
from gpu_conformance.backends.kind import fakegpus as kind
from gpu_conformance.errors import ClusterError, WaitTimeout
from gpu_conformance.kube import is_not_found, new_api_client
from gpu_conformance.nodes import SIMULATED_LABEL
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

pytestmark = pytest.mark.integration

H100 = gpus.VM_SIZES["standard_nc40ads_h100_v5"]
TEST_TAINT = client.V1Taint(key="gpu-conformance.io/kind-test", value="true", effect="NoSchedule")
#: a watch on one node sees a patch within milliseconds; 20 s covers a loaded CI machine
RESTORE_TIMEOUT_S = 20


@pytest.fixture
def core(offline_cluster: Any) -> Iterator[kapi.CoreV1Api]:
    """A CoreV1Api on the offline cluster."""
    api_client = new_api_client(offline_cluster.kubeconfig, None)
    yield kapi.CoreV1Api(api_client)
    api_client.close()


@pytest.fixture
def plain_nodes(core: kapi.CoreV1Api, request: pytest.FixtureRequest) -> list[str]:
    """Two fresh nodes without GPUs, as a kind worker registers; deleted after the test."""
    suffix = secrets.token_hex(3)
    names = [f"kind-fake-gpu-{suffix}-{i}" for i in (1, 2)]

    for name in names:  # finalizers run last-in-first-out: nodes go in reverse order
        request.addfinalizer(partial(_delete_if_there, core, name))
    for name in names:
        resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        core.create_node(client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels={
                "kubernetes.io/hostname": name, "kubernetes.io/arch": "arm64",
                "kubernetes.io/os": "linux"}),
            spec=client.V1NodeSpec(taints=[TEST_TAINT]),
            status=client.V1NodeStatus(capacity=resources, allocatable=dict(resources)),
        ), _request_timeout=30)
    # kwok initializes a new node's status from its own cache; wait for that, or its late
    # write can undo a status patch the test makes (as no real kubelet would)
    wait_for("the fresh nodes Ready", core.list_node, partial(_all_ready, names), timeout=60,
             timeout_name="nodes-ready")
    return names


def _all_ready(names: list[str], items: list[Any]) -> Verdict:
    ready = {n.metadata.name for n in items
             if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}
    return Verdict(set(names) <= ready, f"{len(set(names) & ready)}/{len(names)} Ready")


def _status(core: kapi.CoreV1Api, name: str) -> client.V1Node:
    node: client.V1Node = core.read_node_status(name, _request_timeout=30)
    return node


def test_nodes_advertise_gpus_and_carry_gpu_pool_labels(core: kapi.CoreV1Api,
                                                        plain_nodes: list[str]) -> None:
    kind.advertise_fake_gpus(core, plain_nodes, 2, H100)
    for name in plain_nodes:
        node = _status(core, name)
        assert node.status and node.metadata
        capacity, allocatable = node.status.capacity or {}, node.status.allocatable or {}
        labels = node.metadata.labels or {}
        assert capacity[gpus.GPU_RESOURCE] == "2"
        assert allocatable[gpus.GPU_RESOURCE] == "2"
        assert capacity["cpu"] == "4", "the kubelet's own resources stay as they were"
        assert labels["kubernetes.io/arch"] == "arm64", "the kubelet's own labels stay"
        assert labels[gpus.PRODUCT_LABEL] == "NVIDIA-H100-NVL"
        assert labels[gpus.INSTANCE_TYPE_LABEL] == H100.vm_size
        assert labels[SIMULATED_LABEL] == "true"
        assert gpus.expected_gpu(labels).display == H100.device_name
        assert gpus.expected_gpu_count(labels) == 2
        assert kind.missing_fake_gpus(node, 2, H100) == []


def test_advertising_twice_changes_nothing(core: kapi.CoreV1Api,
                                           plain_nodes: list[str]) -> None:
    kind.advertise_fake_gpus(core, plain_nodes[:1], 1, H100)
    first = _status(core, plain_nodes[0])
    kind.advertise_fake_gpus(core, plain_nodes[:1], 1, H100)
    again = _status(core, plain_nodes[0])
    assert again.metadata and first.metadata and again.status and first.status
    assert again.metadata.labels == first.metadata.labels
    assert again.status.capacity == first.status.capacity
    assert again.status.allocatable == first.status.allocatable


def _kubelet_reset(core: kapi.CoreV1Api, name: str) -> None:
    """What a re-registering kubelet does to an extended resource it has no plugin for."""
    core.patch_node_status(name, {"status": {"capacity": {gpus.GPU_RESOURCE: "0"},
                                             "allocatable": {gpus.GPU_RESOURCE: None}}},
                           _request_timeout=30)


def test_keeper_puts_back_what_a_kubelet_reset(core: kapi.CoreV1Api,
                                               plain_nodes: list[str]) -> None:
    kind.advertise_fake_gpus(core, plain_nodes, 1, H100)
    _kubelet_reset(core, plain_nodes[1])
    assert kind.missing_fake_gpus(_status(core, plain_nodes[1]), 1, H100) == [
        f"capacity {gpus.GPU_RESOURCE}=0", f"allocatable {gpus.GPU_RESOURCE}=none"]
    logged: list[str] = []
    keeper = kind.FakeGpuKeeper(core, plain_nodes, 1, H100, log=logged.append, interval_s=0.2)
    assert keeper.ensure() == [plain_nodes[1]]
    assert kind.missing_fake_gpus(_status(core, plain_nodes[1]), 1, H100) == []

    keeper.start()
    try:
        _kubelet_reset(core, plain_nodes[0])
        stream: Any = watch.Watch()
        last = None
        for event in stream.stream(core.list_node, field_selector=f"metadata.name={plain_nodes[0]}",
                                   timeout_seconds=RESTORE_TIMEOUT_S):
            last = event["object"]
            if not kind.missing_fake_gpus(last, 1, H100):
                stream.stop()
                break
        else:
            pytest.fail(f"expected the keeper to restore {gpus.GPU_RESOURCE} on {plain_nodes[0]} "
                        f"within {RESTORE_TIMEOUT_S}s, got instead: "
                        f"{kind.missing_fake_gpus(last, 1, H100) if last else 'no event'}")
    finally:
        assert keeper.stop(15)
    assert not keeper.running
    assert [name for name, _ in keeper.restored] == [plain_nodes[1], plain_nodes[0]]
    assert keeper.errors == 0


def test_a_missing_node_is_one_clear_line(core: kapi.CoreV1Api) -> None:
    with pytest.raises(ClusterError) as error:
        kind.advertise_fake_gpus(core, ["no-such-node-" + secrets.token_hex(3)], 1, H100)
    line = error.value.one_line()
    assert line.startswith("labelling node no-such-node-")
    assert "404" in line


def test_wait_for_workers_wakes_on_a_registration(core: kapi.CoreV1Api,
                                                  request: pytest.FixtureRequest) -> None:
    before = kind.worker_node_names(core)
    name = f"kind-late-worker-{secrets.token_hex(3)}"
    request.addfinalizer(lambda: _delete_if_there(core, name))
    timer = threading.Timer(0.5, lambda: core.create_node(client.V1Node(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1NodeSpec(taints=[TEST_TAINT])),
        _request_timeout=30))
    timer.start()
    try:
        started = time.monotonic()
        workers = kind.wait_for_workers(core, len(before) + 1, timeout_s=RESTORE_TIMEOUT_S)
    finally:
        timer.join()
    assert name in workers
    assert time.monotonic() - started < RESTORE_TIMEOUT_S / 2


def test_wait_for_workers_reports_what_it_saw(core: kapi.CoreV1Api) -> None:
    before = kind.worker_node_names(core)
    with pytest.raises(WaitTimeout) as error:
        kind.wait_for_workers(core, len(before) + 50, timeout_s=2)
    assert error.value.one_line().startswith(
        f"timed out after 2s (nodes-ready timeout): expected {len(before) + 50} kind worker "
        f"nodes registered, got instead: {len(before)} kind worker node(s) registered")


def _delete_if_there(core: kapi.CoreV1Api, name: str) -> None:
    try:
        core.delete_node(name, _request_timeout=30)
    except client.exceptions.ApiException as exc:
        if not is_not_found(exc):
            raise
