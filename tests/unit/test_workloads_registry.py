"""Every workload profile: registry, Job manifest, reference logs judged against the GPU table."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_conformance import gpus
from gpu_conformance.errors import UsageError
from gpu_conformance.workloads import DEFAULT_PROFILE, PROFILES, WorkloadProfile, get_profile
from gpu_conformance.workloads.base import WORKLOAD_LABEL
from tests.captures import read_capture

ALL = sorted(PROFILES)
DEVICE_NAMES = sorted({sku.device_name for sku in gpus.VM_SIZES.values()})




def test_registry_names() -> None:
    assert ALL == ["bandwidth", "cuda-vectoradd", "gpu-health", "nccl-allreduce", "nvidia-smi",
                   "tf-mnist", "torch"]
    assert DEFAULT_PROFILE == "tf-mnist"
    assert get_profile("torch") is PROFILES["torch"]


def test_unknown_profile_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown workload 'tensorflow'; choose one of"):
        get_profile("tensorflow")


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("count", [1, 8])
def test_job_manifest_asks_for_gpus_and_tolerates_gpu_taints(name: str, count: int) -> None:
    profile = PROFILES[name]
    job = profile.job_manifest("gc-job", "gc-ns", gpus=count, node_name="aks-gpu-0")
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "gc-ns"
    assert job["metadata"]["labels"][WORKLOAD_LABEL] == name
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "aks-gpu-0"}
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in (
        pod["tolerations"]
    )
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        pod["tolerations"]
    )
    container = container_of(job)
    assert container["name"] == name
    assert container["image"] == profile.image and ":" in profile.image
    # quantities are strings in the API (the typed client rejects ints)
    assert container["resources"]["limits"] == {"nvidia.com/gpu": str(count)}
    assert profile.command or profile.args or name == "tf-mnist"
    mounted = {m["name"] for m in container.get("volumeMounts", [])}
    assert mounted == {v["name"] for v in pod.get("volumes", [])}


@pytest.mark.parametrize("name", ALL)
def test_manifests_are_independent_copies(name: str) -> None:
    profile = PROFILES[name]
    first = profile.job_manifest("a", "ns")
    first["spec"]["template"]["spec"]["tolerations"].clear()
    container_of(first).get("volumeMounts", [{}])[0].clear()
    second = profile.job_manifest("a", "ns")
    assert len(second["spec"]["template"]["spec"]["tolerations"]) == 2
    assert all(m for m in container_of(second).get("volumeMounts", []))


@pytest.mark.parametrize("name", ALL)
def test_extra_objects_are_namespaced(name: str) -> None:
    for obj in PROFILES[name].extra_objects("gc-ns"):
        assert obj["metadata"]["namespace"] == "gc-ns"
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("device", DEVICE_NAMES)
def test_reference_log_passes_for_every_gpu_in_the_table(name: str, device: str) -> None:
    profile: WorkloadProfile = PROFILES[name]
    report = profile.parse(profile.reference_log(device))
    assert report.problems == []
    assert report.devices == [device]
    assert report.success is True
    if profile.min_accuracy is not None:
        assert report.final_accuracy is not None
        assert report.final_accuracy >= profile.min_accuracy
    sku = gpus.sku_for_product(device)
    assert sku is not None
    by_size = gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: sku.vm_size})
    by_label = gpus.expected_gpu({gpus.PRODUCT_LABEL: sku.product_label})
    shared = gpus.expected_gpu({gpus.PRODUCT_LABEL: sku.product_label + "-SHARED"})
    generic = gpus.expected_gpu({})
    for expected in (by_size, by_label, shared, generic):
        assert all(expected.matches(d) for d in report.devices), expected


@pytest.mark.parametrize("name", ALL)
def test_reference_log_of_another_gpu_fails_the_device_check(name: str) -> None:
    profile = PROFILES[name]
    report = profile.parse(profile.reference_log("Tesla T4"))
    expected = gpus.expected_gpu({gpus.PRODUCT_LABEL: "NVIDIA-H200"})
    assert expected.display == "NVIDIA H200"
    assert report.devices == ["Tesla T4"]
    assert not expected.matches(report.devices[0])


@pytest.mark.parametrize(
    ("name", "device", "captures"),
    [
        ("tf-mnist", "Tesla K80", ["seed-tf-mnist-k80.txt"]),
        ("nvidia-smi", "NVIDIA H200", ["h200-nvidia-smi-L.txt", "h200-nvidia-smi.txt"]),
        ("torch", "NVIDIA H200", ["h200-torch.txt"]),
    ],
)
def test_reference_log_is_the_real_capture(name: str, device: str, captures: list[str]) -> None:
    assert PROFILES[name].reference_log(device) == "".join(read_capture(c) for c in captures)


def test_vectoradd_reference_log_is_the_captured_listing_plus_the_sample() -> None:
    log = PROFILES["cuda-vectoradd"].reference_log("NVIDIA H200")
    assert log.startswith(read_capture("h200-nvidia-smi-L.txt"))
    assert log.rstrip().endswith("Test PASSED\nDone")


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "junk",
    ["", "\n\n", "\x00\xff garbage \ufffd", "name:  major: x", "GPU 0:  (UUID: )",
     "Accuracy at step x: y", "Accuracy at step 3: 1e9", "gpu-probe: FAILED:",
     "| NVIDIA-SMI  Driver Version:  CUDA Version: |", "a" * 100_000],
)
def test_parsers_never_raise_and_never_pass_junk(name: str, junk: str) -> None:
    report = PROFILES[name].parse(junk)
    assert report.success is not True
    assert report.problems, junk[:40]


#: the line a complete log of each profile must reach
LAST_NEEDED = {
    "tf-mnist": "Adding run metadata for 499",
    "cuda-vectoradd": "Test PASSED",
    "nvidia-smi": "| Processes:",
    "torch": "gpu-probe: PASSED",
    "gpu-health": "</nvidia_smi_log>",
    "bandwidth": "bandwidth-probe: DONE",
    "nccl-allreduce": "nccl-allreduce: DONE",
}


@pytest.mark.parametrize("name", ALL)
def test_every_truncation_of_the_reference_log_is_caught(name: str) -> None:
    profile = PROFILES[name]
    lines = profile.reference_log("NVIDIA H200").splitlines(keepends=True)
    last_needed = next(i for i, line in enumerate(lines) if line.startswith(LAST_NEEDED[name]))
    for cut in range(last_needed + 1):
        report = profile.parse("".join(lines[:cut]))
        assert report.success is False, f"{name}: a log cut after {cut} lines still passes"
        assert report.problems, f"{name}: a log cut after {cut} lines shows no problem"
    assert profile.parse("".join(lines[: last_needed + 1])).success is True


def test_all_workloads_include_the_isolation_probes() -> None:
    from gpu_conformance.settings import Settings

    assert Settings.from_mapping({"workload": "all"}).workloads == (*PROFILES, "isolation")
    assert Settings.from_mapping({"workload": "isolation"}).workloads == ("isolation",)
    with pytest.raises(UsageError, match=r"unknown workload 'isolate'; choose one of .*, isolation"):
        Settings.from_mapping({"workload": "tf-mnist,isolate"})
