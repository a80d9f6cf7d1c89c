"""cuda-vectoradd: NVIDIA's vectorAdd sample, wrapped to print nvidia-smi -L first."""

from __future__ import annotations

import pytest

from gpu_conformance import gpus
from gpu_conformance.workloads.cuda_vectoradd import NO_SMI_NOTE, PROFILE, parse, reference_log
from tests.captures import read_capture

LISTING = read_capture("h200-nvidia-smi-L.txt")
SAMPLE = """\
[Vector addition of 50000 elements]
Copy input data from the host memory to the CUDA device
CUDA kernel launch with 196 blocks of 256 threads
Copy output data from the CUDA device to the host memory
Test PASSED
Done
"""


def test_reference_log() -> None:
    assert reference_log("NVIDIA H200") == LISTING + SAMPLE
    report = parse(LISTING + SAMPLE)
    assert report.devices == ["NVIDIA H200"]
    assert report.success is True
    assert report.properties == {"vector_elements": "50000"}
    expected = gpus.expected_gpu({gpus.PRODUCT_LABEL: "NVIDIA-H200"})
    assert expected.matches(report.devices[0])


def test_without_nvidia_smi_the_device_is_unknown_but_the_run_passes() -> None:
    report = parse(NO_SMI_NOTE + "\n" + SAMPLE)
    assert report.devices == []
    assert report.success is True
    assert report.problems == []
    assert "device_name_source" in report.properties
    assert PROFILE.requires_device_line is False


def test_the_plain_sample_log_passes() -> None:
    report = parse(SAMPLE)
    assert (report.devices, report.success, report.problems) == ([], True, [])


@pytest.mark.parametrize(
    ("tail", "symptom"),
    [
        ("Failed to allocate device vector A (error code no CUDA-capable device is detected)!\n",
         "no CUDA-capable device"),
        ("Failed to allocate device vector A (error code CUDA driver version is insufficient "
         "for CUDA runtime version)!\n", "driver version is insufficient"),
        ("Failed to launch vectorAdd kernel (error code the provided PTX was compiled with an "
         "unsupported toolchain.)!\n", "'Failed to ...'"),
        ("Copy input data from the host memory to the CUDA device\n"
         "CUDA kernel launch with 196 blocks of 256 threads\n"
         "Copy output data from the CUDA device to the host memory\n"
         "Result verification failed at element 0!\n", "wrong sum"),
        ("Copy input data from the host memory to the CUDA device\n", "ends before vectorAdd"),
    ],
)
def test_failures(tail: str, symptom: str) -> None:
    report = parse(LISTING + "[Vector addition of 50000 elements]\n" + tail)
    assert report.success is False
    assert any(symptom in p for p in report.problems), report.problems


def test_failed_marker_wins_over_passed() -> None:
    report = parse(SAMPLE + "Test FAILED\n")
    assert report.success is False
    assert "vectorAdd reported 'Test FAILED'" in report.problems


def test_sample_never_ran() -> None:
    report = parse(LISTING + "/bin/sh: 1: exec: /cuda-samples/vectorAdd: not found\n")
    assert report.success is False
    assert any("banner" in p for p in report.problems)


def test_profile_wraps_the_sample_in_a_shell() -> None:
    assert PROFILE.image.startswith("nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12")
    assert PROFILE.command is not None and PROFILE.command[:2] == ["/bin/sh", "-c"]
    script = PROFILE.command[2]
    assert script.startswith("nvidia-smi -L ||")
    assert script.endswith("exec /cuda-samples/vectorAdd")
