"""Device: the workload's log names the GPU the node should have.

Observation: the workload's parsed log (``LogReport``) and the labels of the node its pod ran
on. Expected GPU, in order: ``--expect-gpu``; the node's ``nvidia.com/gpu.product`` label or
VM size; the device the run's backend knows it simulates; else any ``Tesla|NVIDIA`` name.
Judge: every device line matches; no success marker missing; accuracy at its threshold.
No wait: it judges the Job the workload check already ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gpu_conformance import gpus
from gpu_conformance.checks import Outcome
from gpu_conformance.gpus import ExpectedGpu
from gpu_conformance.workloads.base import LogReport

if TYPE_CHECKING:  # the judge runs on GPU hosts without the Kubernetes client
    from gpu_conformance.checks.workload import WorkloadResult
    from gpu_conformance.settings import Settings


def expected(node_labels: Mapping[str, str] | None, override: str | None,
             backend_device: str | None) -> ExpectedGpu:
    """The GPU the log must name, and where that expectation came from."""
    found = gpus.expected_gpu(node_labels, override)
    if found.source == "default" and backend_device:
        return gpus.expected_gpu({gpus.PRODUCT_LABEL: backend_device})
    return found


def judge(report: LogReport, expected_gpu: ExpectedGpu, min_accuracy: float | None,
          needs_device: bool = True) -> list[str]:
    """Does the log name the expected GPU (and, for training logs, reach the accuracy)?"""
    problems = list(report.problems)
    if needs_device:
        if not report.devices:
            problems.insert(0, f"no GPU device line in the log (expected {expected_gpu.display}, "
                               f"from {expected_gpu.source})")
        else:
            wrong = [d for d in report.devices if not expected_gpu.matches(d)]
            if wrong:
                lines = "; ".join(report.device_lines) or ", ".join(report.devices)
                problems.insert(0, f"expected GPU {expected_gpu.display!r} (from "
                                   f"{expected_gpu.source}), but the log names: {lines}")
    if report.success is False:
        problems.append("the workload's success marker is missing from its log")
    final = report.final_accuracy
    if min_accuracy is not None and final is not None and final < min_accuracy:
        step = report.accuracy[-1][0]
        problems.append(f"accuracy at step {step} is {final:.4f}, below the threshold {min_accuracy}")
    return problems


def check(result: WorkloadResult, settings: Settings, backend_device: str | None) -> Outcome:
    """The device verdict of one workload run (a busy node: as --busy says)."""
    override, min_accuracy = settings.expect_gpu, settings.min_accuracy
    if result.busy:
        return result.verdict(settings.busy)
    if not result.report:
        return Outcome(False, f"no log to judge: {result.failure or 'the Job produced no pod'}")
    profile = result.profile
    threshold = min_accuracy if min_accuracy is not None else profile.min_accuracy
    problems = judge(result.report, expected(result.node_labels, override, backend_device),
                     threshold, needs_device=profile.requires_device_line
                     or bool(result.report.devices))
    return Outcome.from_problems(problems, f"pod {result.pod_name} on node {result.node_name}: ")
