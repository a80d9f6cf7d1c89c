"""Health: the health and performance profiles' logs judged against the gates of the node's
VM size (gpu_conformance.gates: each figure, its limit and the source of the limit).

Observation: the workload check's result (the log, the node's labels). Judge: the profile's
own judge (ECC, row remapping, clock events, PCIe link for gpu-health; copy bandwidths for
bandwidth; all_reduce bus bandwidth for nccl-allreduce), with ``--gpu-gate`` overrides. A
size without a gate is reported "not gated" in the run's properties, never passed silently.
No wait: it judges the Job the workload check already ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gpu_conformance import gpus
from gpu_conformance.checks import Outcome
from gpu_conformance.gates import Status

if TYPE_CHECKING:  # the judge runs on GPU hosts without the Kubernetes client
    from gpu_conformance.checks.workload import WorkloadResult
    from gpu_conformance.settings import Settings


def vm_size(labels: dict[str, str]) -> str | None:
    return labels.get(gpus.INSTANCE_TYPE_LABEL) or labels.get(gpus.LEGACY_INSTANCE_TYPE_LABEL)


def check(result: WorkloadResult, settings: Settings,
          record: Callable[[str, str], None] | None = None) -> Outcome:
    """The gates' verdict on one (profile, node) run; ``record`` gets one line per figure."""
    judge = result.profile.judge
    if judge is None:
        return Outcome(True)
    if result.busy:
        return result.verdict(settings.busy)
    if not result.log:
        return Outcome(False, f"no log to judge: {result.failure or 'the Job produced no pod'}")
    size = vm_size(result.node_labels)
    judgement = judge(result.log, size, settings.gate_overrides)
    if record is not None:
        where = result.node_name or result.target or "?"
        ungated = judgement.by_status(Status.NOT_GATED)
        record(f"{result.profile.name}.{where}", "; ".join(r.short() for r in judgement.results))
        if ungated:
            record(f"{result.profile.name}.{where}.not_gated",
                   f"{len(ungated)} figure(s) measured, not gated for {size or 'an unknown size'}")
    prefix = f"{result.profile.name} on node {result.node_name} ({size or 'unknown VM size'}): "
    return Outcome.from_problems(judgement.problems, prefix)
