"""The seed guide's workload: TensorFlow 1.x MNIST (mcr.microsoft.com/azuredocs/samples-tf-mnist-demo:gpu)."""

from __future__ import annotations

import re

from gpu_conformance.workloads.base import LogReport, WorkloadProfile

# "name: Tesla K80 major: 3 minor: 7 memoryClockRate(GHz): 0.8235"
_DEVICE = re.compile(r"^\s*name:\s*(?P<name>.+?)\s+major:\s*\d+", re.MULTILINE)
# "Creating TensorFlow device (/device:GPU:0) -> (device: 0, name: Tesla K80, pci bus id: ..."
_CREATING = re.compile(r"Creating TensorFlow device .*?name:\s*(?P<name>[^,)]+)")
_ACCURACY = re.compile(r"^Accuracy at step (?P<step>\d+):\s*(?P<acc>[0-9]*\.?[0-9]+)\s*$", re.MULTILINE)
_FAILURES = (
    (re.compile(r"CUDA driver version is insufficient for CUDA runtime version"),
     "CUDA driver version is insufficient for CUDA runtime version: the image's CUDA is newer "
     "than the node's driver"),
    (re.compile(r"failed call to cuInit|no CUDA-capable device is detected"),
     "TensorFlow found no usable GPU (cuInit failed): the container did not get a GPU"),
    (re.compile(r"could not load NVML library|libcuda\.so.*cannot open", re.IGNORECASE),
     "the NVIDIA driver libraries are missing in the container (no NVIDIA runtime on the node)"),
    (re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE),
     "the script raised a Python exception"),
)

SEED_LOG_TEMPLATE = """\
2019-05-16 16:08:31.258328: I tensorflow/core/platform/cpu_feature_guard.cc:137] Your CPU supports instructions that this TensorFlow binary was not compiled to use: SSE4.1 SSE4.2 AVX AVX2 FMA
2019-05-16 16:08:31.396846: I tensorflow/core/common_runtime/gpu/gpu_device.cc:1030] Found device 0 with properties: 
name: {device} major: 3 minor: 7 memoryClockRate(GHz): 0.8235
pciBusID: 2fd7:00:00.0
totalMemory: 11.17GiB freeMemory: 11.10GiB
2019-05-16 16:08:31.396886: I tensorflow/core/common_runtime/gpu/gpu_device.cc:1120] Creating TensorFlow device (/device:GPU:0) -> (device: 0, name: {device}, pci bus id: 2fd7:00:00.0, compute capability: 3.7)
2019-05-16 16:08:36.076962: I tensorflow/stream_executor/dso_loader.cc:139] successfully opened CUDA library libcupti.so.8.0 locally
Successfully downloaded train-images-idx3-ubyte.gz 9912422 bytes.
Extracting /tmp/tensorflow/input_data/train-images-idx3-ubyte.gz
Successfully downloaded train-labels-idx1-ubyte.gz 28881 bytes.
Extracting /tmp/tensorflow/input_data/train-labels-idx1-ubyte.gz
Successfully downloaded t10k-images-idx3-ubyte.gz 1648877 bytes.
Extracting /tmp/tensorflow/input_data/t10k-images-idx3-ubyte.gz
Successfully downloaded t10k-labels-idx1-ubyte.gz 4542 bytes.
Extracting /tmp/tensorflow/input_data/t10k-labels-idx1-ubyte.gz
{accuracy}"""

# The seed guide's accuracy curve, steps 0..490 every 10, with "Adding run metadata" every 100.
_SEED_ACCURACY = (
    "0.1081 0.7457 0.8233 0.8644 0.8848 0.8889 0.8898 0.8979 0.9087 0.9099 0.9125 0.9184 0.922 "
    "0.9161 0.9219 0.9151 0.9199 0.9305 0.9251 0.9258 0.9315 0.9361 0.9357 0.9392 0.9387 0.9401 "
    "0.9398 0.9407 0.9434 0.9447 0.9463 0.943 0.9439 0.943 0.9457 0.9497 0.9481 0.9466 0.9514 "
    "0.948 0.9469 0.9489 0.9529 0.9507 0.9504 0.951 0.9512 0.9539 0.9533 0.9494"
).split()


def reference_log(device_name: str) -> str:
    """The seed guide's MNIST log, with its device line naming ``device_name``."""
    lines = []
    for i, acc in enumerate(_SEED_ACCURACY):
        lines.append(f"Accuracy at step {i * 10}: {acc}")
        if i % 10 == 9:
            lines.append(f"Adding run metadata for {i * 10 + 9}")
    return SEED_LOG_TEMPLATE.format(device=device_name, accuracy="\n".join(lines) + "\n")


def parse(log: str) -> LogReport:
    report = LogReport()
    for match in _DEVICE.finditer(log):
        report.devices.append(match.group("name").strip())
        report.device_lines.append(match.group(0).strip())
    if not report.devices:
        for match in _CREATING.finditer(log):
            report.devices.append(match.group("name").strip())
            report.device_lines.append(match.group(0).strip())
    report.accuracy = [(int(m.group("step")), float(m.group("acc"))) for m in _ACCURACY.finditer(log)]
    for pattern, problem in _FAILURES:
        if pattern.search(log):
            report.problems.append(problem)
    if report.devices and not report.accuracy:
        report.problems.append("no 'Accuracy at step N' line: the log ends before training reported")
    return report


PROFILE = WorkloadProfile(
    name="tf-mnist",
    description="the seed guide's TensorFlow MNIST sample (device line 'name: ... major:')",
    image="mcr.microsoft.com/azuredocs/samples-tf-mnist-demo:gpu",
    args=["--max_steps", "500"],
    parse=parse,
    reference_log=reference_log,
    min_accuracy=0.9,
)
