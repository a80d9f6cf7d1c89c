"""``torch``: the project's own GPU probe (gpu_conformance/data/gpu_probe.py) in a PyTorch image.

The script travels in a ConfigMap mounted at /opt/gpu-conformance. It prints the seed's device
line ``name: <device> major: X minor: Y ...`` for each visible GPU, checks a matmul against the
CPU, trains a small classifier on data it generates (no downloads), prints
``Accuracy at step N: 0.xxxx`` and ends with ``gpu-probe: PASSED: ...`` (exit 0) or
``gpu-probe: FAILED: <reason>`` (exit 1 wrong result, 2 no usable GPU, 3 no PyTorch).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from gpu_conformance.workloads._common import (
    CUDA_FAILURES,
    DEVICE_LINE,
    PYTHON_TRACEBACK,
    Failure,
    add_device_lines,
    empty_log_problem,
    find_problems,
    parse_accuracy,
    reference_text,
)
from gpu_conformance.workloads.base import WORKLOAD_LABEL, LogReport, WorkloadProfile

NAME = "torch"
SCRIPT = "gpu_probe.py"
CONFIGMAP = "gpu-conformance-gpu-probe"
MOUNT_PATH = "/opt/gpu-conformance"
VOLUME = "gpu-probe"

_HEADER = re.compile(
    r"^gpu-probe: torch (?P<torch>\S+), built for CUDA (?P<cuda>[^,\s]+)", re.MULTILINE
)
_PASSED = re.compile(
    r"^gpu-probe: PASSED: .*?\(training (?P<train>[0-9.]+) s, total (?P<total>[0-9.]+) s\)",
    re.MULTILINE,
)
_PASSED_ANY = re.compile(r"^gpu-probe: PASSED\b", re.MULTILINE)
_FAILED = re.compile(r"^gpu-probe: FAILED: (?P<reason>.+)$", re.MULTILINE)
_FAILURES: tuple[Failure, ...] = (*CUDA_FAILURES, PYTHON_TRACEBACK)

CAPTURED_LOG = "h200-torch.txt"
CAPTURED_DEVICE = "NVIDIA H200"


@cache
def probe_script() -> str:
    """The probe's source, as shipped in the ConfigMap."""
    return resources.files("gpu_conformance").joinpath("data", SCRIPT).read_text(encoding="utf-8")


def extra_objects(namespace: str) -> list[dict[str, Any]]:
    """The ConfigMap holding the probe script, created before the Job."""
    return [{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": namespace, "labels": {WORKLOAD_LABEL: NAME}},
        "data": {SCRIPT: probe_script()},
    }]


def reference_log(device_name: str) -> str:
    """The probe's log captured on an H200, naming ``device_name``."""
    return reference_text(CAPTURED_LOG).replace(CAPTURED_DEVICE, device_name)


def parse(log: str) -> LogReport:
    report = LogReport(problems=empty_log_problem(log))
    add_device_lines(report, DEVICE_LINE, log)
    header = _HEADER.search(log)
    if header:
        report.properties["torch_version"] = header.group("torch")
        report.properties["torch_cuda_version"] = header.group("cuda")
    passed = _PASSED.search(log)
    if passed:
        report.properties["train_seconds"] = passed.group("train")
        report.properties["probe_seconds"] = passed.group("total")
    report.accuracy, bad_values = parse_accuracy(log)
    failed = _FAILED.search(log)
    if failed:
        report.problems.append(f"the GPU probe failed: {failed.group('reason').strip()}")
    report.problems += find_problems(log, _FAILURES) + bad_values
    succeeded = _PASSED_ANY.search(log) is not None
    if log.strip() and not succeeded and not report.problems:
        report.problems.append(
            "no 'gpu-probe: PASSED' or 'gpu-probe: FAILED' line: the log ends before the probe "
            "finished (truncated, or the container was killed)"
        )
    report.success = succeeded and not report.problems
    return report


PROFILE = WorkloadProfile(
    name=NAME,
    description="the project's PyTorch GPU probe (device line, matmul check, small training run)",
    image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
    command=["python", f"{MOUNT_PATH}/{SCRIPT}"],
    parse=parse,
    reference_log=reference_log,
    min_accuracy=0.9,
    extra_objects=extra_objects,
    volumes=[{"name": VOLUME, "configMap": {"name": CONFIGMAP}}],
    volume_mounts=[{"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True}],
    env=[{"name": "PYTHONUNBUFFERED", "value": "1"}],
)
