"""nvidia-smi: parsed from the output captured on an H200 (reference_logs/h200-nvidia-smi*)."""

from __future__ import annotations

import pytest

from gpu_conformance import gpus
from gpu_conformance.workloads.nvidia_smi import PROFILE, parse, reference_log
from tests.captures import read_capture

LISTING = read_capture("h200-nvidia-smi-L.txt")
TABLE = read_capture("h200-nvidia-smi.txt")
LOG = LISTING + TABLE


def test_h200_capture() -> None:
    report = parse(LOG)
    assert report.devices == ["NVIDIA H200"]
    assert report.device_lines == [LISTING.strip()]
    assert report.properties == {
        "driver_version": "580.159.04",
        "cuda_version": "13.0",
        "nvidia_smi_version": "580.159.04",
        "gpu_memory_mib": "143771",
    }
    assert report.success is True
    assert report.problems == []


@pytest.mark.parametrize(
    "labels",
    [
        {gpus.PRODUCT_LABEL: "NVIDIA-H200"},
        {gpus.PRODUCT_LABEL: "NVIDIA-H200-SHARED"},
        {gpus.INSTANCE_TYPE_LABEL: "Standard_ND96isr_H200_v5"},
        {},
    ],
)
def test_h200_device_matches_the_gpu_table(labels: dict[str, str]) -> None:
    assert gpus.expected_gpu(labels).matches(parse(LOG).devices[0])


def test_h200_is_not_an_h100() -> None:
    expected = gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: "Standard_ND96isr_H100_v5"})
    assert not expected.matches(parse(LOG).devices[0])


def test_several_gpus_need_a_table_row_each() -> None:
    two = LISTING + LISTING.replace("GPU 0:", "GPU 1:").replace("-c94f2e", "-c94f2f")
    assert parse(two + TABLE).success is False
    assert "1 GPU row(s)" in parse(two + TABLE).problems[0]
    row = next(line for line in TABLE.splitlines() if "NVIDIA H200" in line)
    table = TABLE.replace(row, row + "\n" + row.replace("|   0  ", "|   1  "))
    report = parse(two + table)
    assert report.devices == ["NVIDIA H200", "NVIDIA H200"]
    assert report.success is True


def test_listing_only() -> None:
    report = parse(LISTING)
    assert report.devices == ["NVIDIA H200"]
    assert report.success is False
    assert "table is incomplete" in report.problems[0]


@pytest.mark.parametrize(
    ("log", "symptom"),
    [
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make "
         "sure that the latest NVIDIA driver is installed and running.\n", "driver"),
        ("No devices were found\n", "found no GPU"),
        ("/bin/sh: 1: nvidia-smi: not found\n", "not in the container"),
        ("Failed to initialize NVML: Driver/library version mismatch\n", "NVML"),
        ("Unable to determine the device handle for GPU0000:00:06.0: Unknown Error\n",
         "device handle"),
        ("nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.4, please "
         "update your driver to a newer version\n", "older than"),
        ("some other text\n", "nvidia-smi -L"),
    ],
)
def test_failures(log: str, symptom: str) -> None:
    report = parse(log)
    assert report.success is False
    assert report.devices == []
    assert any(symptom in p for p in report.problems), report.problems


def test_reference_log_keeps_the_table_width() -> None:
    for name in ("Tesla T4", "NVIDIA A100 80GB PCIe", "NVIDIA A10-24Q", "X" * 60):
        lines = reference_log(name).splitlines()[1:]
        assert [len(line) for line in lines] == [len(line) for line in TABLE.splitlines()]
    assert "XXX... On  |" in reference_log("X" * 60)
    assert parse(reference_log("X" * 60)).devices == ["X" * 60]


def test_profile() -> None:
    assert PROFILE.command == ["/bin/sh", "-c", "nvidia-smi -L && nvidia-smi"]
    assert PROFILE.image.startswith("nvcr.io/nvidia/cuda:12.")
    assert {"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"} in PROFILE.env
