"""The seed guide's workload: TensorFlow 1.x MNIST.

Image mcr.microsoft.com/azuredocs/samples-tf-mnist-demo:gpu. It prints the device line
``name: <device> major: X minor: Y ...`` and ``Accuracy at step N: 0.xxxx`` every 10 steps.
It has no success line; its last line, ``Adding run metadata for 499`` (with ``--max_steps
500``), stands for one, so a log cut short is not judged on a partial accuracy curve.
"""

from __future__ import annotations

import re

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
from gpu_conformance.workloads.base import LogReport, WorkloadProfile

MAX_STEPS = 500
_METADATA = re.compile(r"^Adding run metadata for (?P<step>\d+)\s*$", re.MULTILINE)
# "Creating TensorFlow device (/device:GPU:0) -> (device: 0, name: Tesla K80, pci bus id: ..."
_CREATING = re.compile(r"Creating TensorFlow device .*?name:\s*(?P<name>[^,)]+)")
_FAILURES: tuple[Failure, ...] = (
    *CUDA_FAILURES,
    (re.compile(r"failed call to cuInit"),
     "TensorFlow found no usable GPU (cuInit failed): the container did not get a GPU"),
    PYTHON_TRACEBACK,
)

#: the seed guide's `kubectl logs` output (tests/data/captures/seed-tf-mnist-k80.txt)
SEED_LOG = "seed-tf-mnist-k80.txt"
SEED_DEVICE = "Tesla K80"


def reference_log(device_name: str) -> str:
    """The seed guide's MNIST log, with its device lines naming ``device_name``."""
    return reference_text(SEED_LOG).replace(SEED_DEVICE, device_name)


def parse(log: str) -> LogReport:
    report = LogReport(problems=empty_log_problem(log))
    add_device_lines(report, DEVICE_LINE, log)
    if not report.devices:
        add_device_lines(report, _CREATING, log)
    report.accuracy, bad_values = parse_accuracy(log)
    report.problems += find_problems(log, _FAILURES) + bad_values
    if log.strip() and not report.accuracy:
        report.problems.append(
            "no 'Accuracy at step N' line: the log ends before training reported"
        )
    finished = any(int(m.group("step")) == MAX_STEPS - 1 for m in _METADATA.finditer(log))
    if report.accuracy and not finished and not report.problems:
        report.problems.append(
            f"the log ends at step {report.accuracy[-1][0]}, before training's last line "
            f"'Adding run metadata for {MAX_STEPS - 1}' (truncated, or the container was killed)"
        )
    report.success = finished and not report.problems
    return report


PROFILE = WorkloadProfile(
    name="tf-mnist",
    description="the seed guide's TensorFlow MNIST sample (device line 'name: ... major:')",
    image="mcr.microsoft.com/azuredocs/samples-tf-mnist-demo:gpu",
    args=["--max_steps", str(MAX_STEPS)],
    parse=parse,
    reference_log=reference_log,
    min_accuracy=0.9,
)
