"""``cuda-vectoradd``: NVIDIA's CUDA sample that adds two vectors on the GPU.

The image (nvcr.io/nvidia/k8s/cuda-sample) runs ``/cuda-samples/vectorAdd``, which prints
``[Vector addition of 50000 elements]`` ... ``Test PASSED`` and names no device. The image is
Ubuntu-based and has a shell, so the profile wraps the sample: ``nvidia-smi -L`` first (the
NVIDIA runtime injects it, the CUDA images ask for the 'utility' capability), which adds the
``GPU 0: <name> (UUID: ...)`` line the device check compares. Where nvidia-smi is missing the
wrapper says so and runs the sample anyway: LogReport.devices stays empty, and since the
profile sets ``requires_device_line=False`` the device check accepts that when ``Test PASSED``
was seen. ``exec`` keeps the sample's exit status as the container's.
"""

from __future__ import annotations

import re

from gpu_conformance.workloads._common import (
    CUDA_FAILURES,
    SMI_GPU_LINE,
    Failure,
    add_device_lines,
    empty_log_problem,
    find_problems,
    reference_text,
)
from gpu_conformance.workloads.base import LogReport, WorkloadProfile

SAMPLE = "/cuda-samples/vectorAdd"
NO_SMI_NOTE = "gpu-conformance: nvidia-smi is not available in this container"
WRAPPER = f"nvidia-smi -L || echo '{NO_SMI_NOTE}'; exec {SAMPLE}"

_BANNER = re.compile(r"^\[Vector addition of (?P<n>\d+) elements\]", re.MULTILINE)
_PASSED = re.compile(r"^Test PASSED\s*$", re.MULTILINE)
_FAILURES: tuple[Failure, ...] = (
    *CUDA_FAILURES,
    (re.compile(r"^Result verification failed at element (\d+)", re.MULTILINE),
     "the GPU computed a wrong sum (result verification failed)"),
    (re.compile(r"^Failed to (?!.*no CUDA-capable)(?!.*CUDA driver version).+", re.MULTILINE),
     "a CUDA call in vectorAdd failed (see the 'Failed to ...' line)"),
    (re.compile(r"^Test FAILED", re.MULTILINE), "vectorAdd reported 'Test FAILED'"),
)

#: NVIDIA's documented output of the sample (it is the same on every GPU)
SAMPLE_LOG = "cuda-vectoradd.txt"
LIST_LOG = "h200-nvidia-smi-L.txt"
LIST_DEVICE = "NVIDIA H200"


def reference_log(device_name: str) -> str:
    """The H200's captured ``nvidia-smi -L`` line naming ``device_name``, then the sample."""
    return reference_text(LIST_LOG).replace(LIST_DEVICE, device_name) + reference_text(SAMPLE_LOG)


def parse(log: str) -> LogReport:
    report = LogReport(problems=empty_log_problem(log))
    add_device_lines(report, SMI_GPU_LINE, log)
    banner = _BANNER.search(log)
    if banner:
        report.properties["vector_elements"] = banner.group("n")
    if NO_SMI_NOTE in log:
        report.properties["device_name_source"] = "none (nvidia-smi missing in the image)"
    report.problems += find_problems(log, _FAILURES)
    passed = _PASSED.search(log) is not None
    if log.strip() and not passed and not report.problems:
        report.problems.append(
            "no 'Test PASSED' line: the log ends before vectorAdd finished (truncated, or the "
            "container was killed)" if banner else "vectorAdd did not run: its banner "
            "'[Vector addition of N elements]' is missing"
        )
    report.success = passed and not report.problems
    return report


PROFILE = WorkloadProfile(
    name="cuda-vectoradd",
    description="NVIDIA's CUDA vectorAdd sample ('Test PASSED'), after nvidia-smi -L",
    image="nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04",
    command=["/bin/sh", "-c", WRAPPER],
    parse=parse,
    reference_log=reference_log,
    requires_device_line=False,
)
