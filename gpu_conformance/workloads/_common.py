"""Patterns and helpers the profiles' log parsers share."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from gpu_conformance.workloads.base import LogReport

# The seed's TensorFlow device line, also printed by the torch probe:
# "name: Tesla K80 major: 3 minor: 7 memoryClockRate(GHz): 0.8235"
DEVICE_LINE = re.compile(r"^\s*name:\s*(?P<name>.+?)\s+major:\s*\d+", re.MULTILINE)
ACCURACY_LINE = re.compile(
    r"^Accuracy at step (?P<step>\d+):\s*(?P<acc>[0-9]*\.?[0-9]+)\s*$", re.MULTILINE
)
# nvidia-smi -L: "GPU 0: NVIDIA H200 (UUID: GPU-53cb4b91-...)"
SMI_GPU_LINE = re.compile(
    r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>[^)\s]+)\)\s*$", re.MULTILINE
)

Failure = tuple[re.Pattern[str], str]

#: symptoms any CUDA workload can show, each with the sentence that explains it
CUDA_FAILURES: tuple[Failure, ...] = (
    (re.compile(r"CUDA driver version is insufficient for CUDA runtime version"),
     "CUDA driver version is insufficient for CUDA runtime version: the image's CUDA is newer "
     "than the node's driver"),
    (re.compile(r"no CUDA-capable device is detected"),
     "no CUDA-capable device is detected: the container did not get a GPU"),
    (re.compile(r"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"),
     "nvidia-smi could not talk to the NVIDIA driver: no driver on the node, or none mounted "
     "into the container"),
    (re.compile(r"Failed to initialize NVML", re.IGNORECASE),
     "NVML failed to initialise: driver/library mismatch or no driver in the container"),
    (re.compile(r"could not load NVML library|libcuda\.so.*cannot open|libnvidia-ml\.so.*cannot "
                r"open", re.IGNORECASE),
     "the NVIDIA driver libraries are missing in the container (no NVIDIA runtime on the node)"),
    (re.compile(r"unsatisfied condition: cuda>=", re.IGNORECASE),
     "the NVIDIA container runtime refused the image: the node's driver is older than the "
     "image's CUDA requirement"),
)

PYTHON_TRACEBACK: Failure = (
    re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE),
    "the script raised a Python exception",
)


def add_device_lines(report: LogReport, pattern: re.Pattern[str], log: str) -> None:
    """Record each match's ``name`` group as a device and its whole line as the evidence."""
    for match in pattern.finditer(log):
        report.devices.append(match.group("name").strip())
        report.device_lines.append(match.group(0).strip())


def find_problems(log: str, failures: tuple[Failure, ...]) -> list[str]:
    """The explanation of every failure pattern found in ``log``, in the order given."""
    return [problem for pattern, problem in failures if pattern.search(log)]


def parse_accuracy(log: str) -> tuple[list[tuple[int, float]], list[str]]:
    """(step, accuracy) pairs in log order, and a problem for any value outside [0, 1]."""
    pairs = [(int(m.group("step")), float(m.group("acc"))) for m in ACCURACY_LINE.finditer(log)]
    problems = [
        f"accuracy {acc} at step {step} is not a fraction between 0 and 1"
        for step, acc in pairs
        if not 0.0 <= acc <= 1.0
    ]
    return pairs, problems


def empty_log_problem(log: str) -> list[str]:
    if log.strip():
        return []
    return ["the log is empty: the container printed nothing (did it start?)"]


@cache
def reference_text(name: str) -> str:
    """A captured log shipped in gpu_conformance/data/reference_logs/."""
    path = resources.files("gpu_conformance").joinpath("data", "reference_logs", name)
    return path.read_text(encoding="utf-8")
