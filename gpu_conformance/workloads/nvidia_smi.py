"""``nvidia-smi``: list the GPUs the container got, and the driver behind them.

Runs ``nvidia-smi -L && nvidia-smi`` in a CUDA base image. The NVIDIA container runtime
mounts nvidia-smi and the driver libraries into the container, so this shows what the node's
driver exposes without any CUDA program. Devices come from the ``-L`` lines
(``GPU 0: NVIDIA H200 (UUID: GPU-...)``: the table truncates long names); the table header
gives the driver and CUDA versions, reported as LogReport.properties.
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

# "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |"
_SMI_VERSION = re.compile(r"NVIDIA-SMI (?P<version>[0-9][0-9.]*)")
_DRIVER_VERSION = re.compile(r"Driver Version: (?P<version>[0-9][0-9.]*)")
_CUDA_VERSION = re.compile(r"CUDA Version: (?P<version>[0-9][0-9.]*|N/A)")
# "| N/A   33C    P0             78W /  700W |       0MiB / 143771MiB |      0%      Default |"
_MEMORY = re.compile(r"\|\s+(?P<used>\d+)MiB /\s*(?P<total>\d+)MiB\s+\|")
# "|   0  NVIDIA H200                    On  |   00000000:00:06.0 Off |                    0 |"
_TABLE_ROW = re.compile(
    r"^(?P<lead>\|\s+\d+\s\s)(?P<name>\S.*?)(?P<gap>\s+)(?P<persist>On|Off)(?P<tail>\s+\|)",
    re.MULTILINE,
)
_PROCESSES = re.compile(r"^\|\s*Processes:", re.MULTILINE)
_FAILURES: tuple[Failure, ...] = (
    *CUDA_FAILURES,
    (re.compile(r"No devices were found"),
     "nvidia-smi found no GPU: the container was given none, or the driver sees none"),
    (re.compile(r"nvidia-smi: (?:command )?not found|executable file not found", re.IGNORECASE),
     "nvidia-smi is not in the container: the NVIDIA container runtime did not inject it "
     "(no NVIDIA runtime, or NVIDIA_DRIVER_CAPABILITIES lacks 'utility')"),
    (re.compile(r"Unable to determine the device handle for GPU.*", re.IGNORECASE),
     "nvidia-smi cannot reach a GPU (device handle error): the GPU may have fallen off the bus"),
)

CAPTURED_LIST = "h200-nvidia-smi-L.txt"
CAPTURED_TABLE = "h200-nvidia-smi.txt"
CAPTURED_DEVICE = "NVIDIA H200"


def _rename_in_table(table: str, device_name: str) -> str:
    """Put ``device_name`` in the table's name column, keeping the column width as nvidia-smi
    does (a name longer than the column ends in '...')."""

    def swap(match: re.Match[str]) -> str:
        width = len(match.group("name")) + len(match.group("gap")) - 1
        name = device_name if len(device_name) <= width else device_name[: width - 3] + "..."
        return match.group("lead") + name.ljust(width) + " " + match.group("persist") + (
            match.group("tail")
        )

    return _TABLE_ROW.sub(swap, table)


def reference_log(device_name: str) -> str:
    """The H200's captured ``nvidia-smi -L`` and ``nvidia-smi`` output, naming ``device_name``."""
    listing = reference_text(CAPTURED_LIST).replace(CAPTURED_DEVICE, device_name)
    return listing + _rename_in_table(reference_text(CAPTURED_TABLE), device_name)


def parse(log: str) -> LogReport:
    report = LogReport(problems=empty_log_problem(log))
    add_device_lines(report, SMI_GPU_LINE, log)
    for key, pattern in (("driver_version", _DRIVER_VERSION), ("cuda_version", _CUDA_VERSION),
                         ("nvidia_smi_version", _SMI_VERSION)):
        found = pattern.search(log)
        if found:
            report.properties[key] = found.group("version")
    memory = [m.group("total") for m in _MEMORY.finditer(log)]
    if memory:
        report.properties["gpu_memory_mib"] = ",".join(memory)
    report.problems += find_problems(log, _FAILURES)
    if log.strip() and not report.devices and not report.problems:
        report.problems.append("no 'GPU N: <name> (UUID: ...)' line from nvidia-smi -L")
    rows = len(_TABLE_ROW.findall(log))
    has_driver = "driver_version" in report.properties
    complete = has_driver and rows >= len(report.devices) and _PROCESSES.search(log) is not None
    if report.devices and not complete and not report.problems:
        report.problems.append(
            f"nvidia-smi listed {len(report.devices)} GPU(s) but its table is incomplete "
            f"({rows} GPU row(s), driver version {'found' if has_driver else 'missing'}): "
            "the log is truncated or nvidia-smi failed"
        )
    report.success = bool(report.devices) and complete and not report.problems
    return report


PROFILE = WorkloadProfile(
    name="nvidia-smi",
    description="nvidia-smi -L and nvidia-smi in a CUDA base image (device, driver, CUDA version)",
    image="nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
    command=["/bin/sh", "-c", "nvidia-smi -L && nvidia-smi"],
    parse=parse,
    reference_log=reference_log,
    # nvidia-smi needs only the driver: don't let the image's cuda>=12.4 requirement stop
    # it on a node with an older driver, that is what this profile should show.
    env=[{"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"}],
)
