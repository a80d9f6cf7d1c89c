"""Sharing: MIG single/mixed and time-slicing nodes as GFD v0.18 labels them; what each offers,
what its labels promise, every disagreement, and which resource a workload should ask for."""

from __future__ import annotations

import pytest

from gpu_conformance import gpus, sharing
from gpu_conformance.sharing import (
    analyse,
    expected_counts,
    mig_mixed_node,
    mig_single_node,
    offers,
    time_sliced_node,
    workload_resource,
)
from gpu_conformance.workloads.torch_probe import PROFILE as TORCH


def test_plain_node() -> None:
    labels = {gpus.PRODUCT_LABEL: "NVIDIA-H200", gpus.COUNT_LABEL: "8",
              sharing.REPLICAS_LABEL: "1", sharing.SHARING_STRATEGY_LABEL: "none",
              sharing.MIG_STRATEGY_LABEL: "none"}
    node = analyse(labels, {"nvidia.com/gpu": "8", "cpu": "96"}, {"nvidia.com/gpu": "8"})
    assert node.mode == "none" and node.problems == []
    assert node.workload_resource == "nvidia.com/gpu"
    assert set(node.offers) == {"nvidia.com/gpu"}
    assert node.expected["nvidia.com/gpu"].expected == 8


def test_unhealthy_device_names_the_resource_and_the_xid_rule() -> None:
    node = analyse({gpus.COUNT_LABEL: "8"}, {"nvidia.com/gpu": "8"}, {"nvidia.com/gpu": "7"})
    [problem] = node.problems
    assert problem.startswith("nvidia.com/gpu: allocatable 7 < capacity 8: 1 device(s) marked "
                              "unhealthy by the device plugin")
    assert "13, 31, 43, 45, 68, 109" in problem


def test_count_mismatch() -> None:
    node = analyse({gpus.COUNT_LABEL: "8"}, {"nvidia.com/gpu": "4"}, {"nvidia.com/gpu": "4"})
    assert node.problems == ["nvidia.com/gpu: capacity 4, but the labels promise 8 device(s) x 1 "
                             "replica(s) = 8 (nvidia.com/gpu.count=8)"]
    missing = analyse({gpus.COUNT_LABEL: "8"}, {}, {})
    assert missing.problems == ["nvidia.com/gpu: the labels (nvidia.com/gpu.count=8) promise 8, "
                                "but the node offers no nvidia.com/gpu"]
    assert missing.workload_resource is None


def test_mig_single() -> None:
    node = mig_single_node(vm_size="Standard_ND96isr_H100_v5")
    assert node.labels[gpus.PRODUCT_LABEL] == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    assert node.labels["nvidia.com/gpu.memory"] == "9984"
    assert node.labels[sharing.MIG_STRATEGY_LABEL] == "single"
    result = analyse(node.labels, node.capacity, node.allocatable)
    assert result.mode == "mig-single" and result.problems == []
    assert result.workload_resource == "nvidia.com/gpu"
    assert result.expected["nvidia.com/gpu"].expected == 56
    # the device check still recognises the GPU behind the MIG product label
    assert gpus.expected_gpu(node.labels).display == "NVIDIA H100 80GB HBM3"


def test_mig_single_with_an_unhealthy_slice() -> None:
    node = mig_single_node(unhealthy=2)
    [problem] = analyse(node.labels, node.capacity, node.allocatable).problems
    assert problem.startswith("nvidia.com/gpu: allocatable 54 < capacity 56: 2 device(s)")


def test_mig_single_invalid_layout() -> None:
    labels = {sharing.MIG_STRATEGY_LABEL: "single", gpus.PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-"
              "MIG-INVALID", gpus.COUNT_LABEL: "0", sharing.REPLICAS_LABEL: "0",
              "nvidia.com/gpu.memory": "0"}
    node = analyse(labels, {"nvidia.com/gpu": "0"}, {"nvidia.com/gpu": "0"})
    assert node.mode == "mig-invalid"
    assert node.problems == ["gpu-feature-discovery reports an invalid MIG layout for "
                             "mig.strategy=single (nvidia.com/gpu.product=NVIDIA-A100-SXM4-40GB-"
                             "MIG-INVALID): every GPU must be MIG-enabled with one profile only"]
    assert node.workload_resource is None


def test_mig_mixed() -> None:
    node = mig_mixed_node("NVIDIA H200", {"1g.18gb": 16, "3g.71gb": 8})
    assert node.labels["nvidia.com/mig-1g.18gb.count"] == "16"
    assert node.labels["nvidia.com/mig-1g.18gb.product"] == "NVIDIA-H200-MIG-1g.18gb"
    assert node.labels["nvidia.com/mig-3g.71gb.memory"] == "71424"
    assert node.labels[gpus.COUNT_LABEL] == "8" and node.labels[sharing.REPLICAS_LABEL] == "0"
    result = analyse(node.labels, node.capacity, node.allocatable)
    assert result.mode == "mig-mixed" and result.problems == []
    assert set(result.offers) == {"nvidia.com/gpu", "nvidia.com/mig-1g.18gb",
                                  "nvidia.com/mig-3g.71gb"}
    assert result.expected["nvidia.com/gpu"].expected == 0
    assert result.workload_resource == "nvidia.com/mig-3g.71gb"


def test_mig_mixed_problems_name_the_mig_resource() -> None:
    node = mig_mixed_node(unhealthy={"2g.20gb": 1})
    capacity = {**node.capacity, "nvidia.com/mig-3g.40gb": "6"}
    allocatable = {**node.allocatable, "nvidia.com/mig-3g.40gb": "6"}
    problems = analyse(node.labels, capacity, allocatable).problems
    assert problems[0].startswith("nvidia.com/mig-2g.20gb: allocatable 7 < capacity 8")
    assert problems[1] == ("nvidia.com/mig-3g.40gb: capacity 6, but the labels promise 8 device(s) "
                           "x 1 replica(s) = 8 (nvidia.com/mig-3g.40gb.count=8, "
                           "nvidia.com/mig-3g.40gb.replicas=1)")
    full = {**node.capacity, "nvidia.com/gpu": "2"}
    assert any("say it is not offered" in p for p in analyse(node.labels, full, full).problems)


def test_all_mig_slices_taken_falls_back_to_the_next_profile() -> None:
    node = mig_mixed_node()
    allocatable = {**node.allocatable, "nvidia.com/mig-3g.40gb": "0"}
    assert workload_resource(offers(node.capacity, allocatable)) == "nvidia.com/mig-2g.20gb"


@pytest.mark.parametrize("rename", [False, True])
def test_time_slicing(rename: bool) -> None:
    node = time_sliced_node(gpus=2, replicas=4, rename=rename)
    resource = "nvidia.com/gpu.shared" if rename else "nvidia.com/gpu"
    assert node.capacity == {resource: "8"}
    assert node.labels[gpus.PRODUCT_LABEL] == ("Tesla-T4" if rename else "Tesla-T4-SHARED")
    assert node.labels[sharing.REPLICAS_LABEL] == "4"
    result = analyse(node.labels, node.capacity, node.allocatable)
    assert result.mode == "time-slicing" and result.problems == []
    assert result.expected[resource].expected == 8 and result.expected[resource].replicas == 4
    assert result.workload_resource == resource
    assert gpus.expected_gpu(node.labels).matches("Tesla T4")


def test_time_slicing_capacity_must_be_gpus_times_replicas() -> None:
    node = time_sliced_node(gpus=1, replicas=4)
    [problem] = analyse(node.labels, {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "1"}).problems
    assert problem == ("nvidia.com/gpu: capacity 1, but the labels promise 1 device(s) x 4 "
                       "replica(s) = 4 (nvidia.com/gpu.count=1, nvidia.com/gpu.replicas=4)")


def test_mps_and_mig_single_with_sharing() -> None:
    node = time_sliced_node("NVIDIA A100-SXM4-40GB", gpus=8, replicas=2, strategy="mps",
                            memory_mib=None)
    assert analyse(node.labels, node.capacity, node.allocatable).mode == "mps"
    labels = {**mig_single_node().labels, sharing.REPLICAS_LABEL: "2",
              sharing.SHARING_STRATEGY_LABEL: "time-slicing",
              gpus.PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb-SHARED"}
    result = analyse(labels, {"nvidia.com/gpu": "112"}, {"nvidia.com/gpu": "112"})
    assert result.mode == "mig-single+time-slicing" and result.problems == []


@pytest.mark.parametrize(("name", "ok"), [
    ("nvidia.com/gpu", True), ("nvidia.com/gpu.shared", True), ("nvidia.com/mig-1g.10gb", True),
    ("nvidia.com/mig-1c.3g.71gb", True), ("nvidia.com/mig-1g.10gb+me", True),
    ("nvidia.com/mig-2g.20gb.shared", True), ("nvidia.com/mig-1g.10gb.count", False),
    ("nvidia.com/gpu.count", False), ("amd.com/gpu", False), ("cpu", False),
])
def test_resource_names(name: str, ok: bool) -> None:
    assert sharing.is_gpu_resource(name) is ok


@pytest.mark.parametrize("junk", [
    ({gpus.COUNT_LABEL: "lots"}, {"nvidia.com/gpu": "1k"}, {"nvidia.com/gpu": ""}),
    ({}, {}, {}), (None, None, None),
    ({"nvidia.com/mig-1g.10gb.count": "-1"}, {"nvidia.com/mig-1g.10gb": "x"}, {}),
])
def test_garbage_never_raises(junk: tuple[dict[str, str] | None, ...]) -> None:
    labels, capacity, allocatable = junk
    analyse(labels, capacity, allocatable)
    expected_counts(labels)


def test_set_job_resource() -> None:
    job = TORCH.job_manifest("gc-torch", "gc-ns")
    sharing.set_job_resource(job, "nvidia.com/mig-1g.10gb")
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/mig-1g.10gb": "1"}
