"""The judgements behind each suite, as pure functions of API objects.

Suites fetch objects and call these; unit tests feed them objects of broken clusters.
Objects are kubernetes client models (attribute access); ``None`` fields are tolerated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpu_conformance import gpus
from gpu_conformance.gpus import ExpectedGpu
from gpu_conformance.verdict import Verdict
from gpu_conformance.workloads.base import LogReport

FINAL_WAITING_REASONS = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})


@dataclass(frozen=True)
class GpuNode:
    name: str
    why: str
    labels: Mapping[str, str]
    capacity: int
    allocatable: int
    taints: tuple[tuple[str, str, str], ...]
    unschedulable: bool
    ready: bool


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def find_gpu_nodes(nodes: Iterable[Any]) -> list[GpuNode]:
    """GPU nodes by label (accelerator, AKS accelerator, GFD present, GPU VM size) or capacity."""
    found = []
    for node in nodes:
        labels = dict(node.metadata.labels or {})
        capacity = dict(node.status.capacity or {}) if node.status else {}
        why = gpus.looks_like_gpu_node(labels, capacity)
        if why is None:
            continue
        allocatable = dict(node.status.allocatable or {}) if node.status else {}
        taints = tuple((t.key or "", t.value or "", t.effect or "") for t in (node.spec.taints or []))
        ready = any(c.type == "Ready" and c.status == "True"
                    for c in ((node.status.conditions if node.status else None) or []))
        found.append(GpuNode(
            name=node.metadata.name, why=why, labels=labels,
            capacity=_quantity(capacity.get(gpus.GPU_RESOURCE)),
            allocatable=_quantity(allocatable.get(gpus.GPU_RESOURCE)),
            taints=taints, unschedulable=bool(node.spec.unschedulable), ready=ready,
        ))
    return sorted(found, key=lambda n: n.name)


# --- capacity ------------------------------------------------------------------------------

def capacity_problems(node: GpuNode) -> list[str]:
    """Why this GPU node does not offer its GPUs to the scheduler (empty when it does)."""
    problems = []
    expected = gpus.expected_gpu_count(node.labels)
    if node.capacity < 1:
        problems.append(
            f"node {node.name} ({node.why}) reports no {gpus.GPU_RESOURCE} capacity: the device "
            "plugin is not running or not registered on it"
        )
    elif node.allocatable < node.capacity:
        problems.append(
            f"node {node.name}: allocatable {gpus.GPU_RESOURCE} {node.allocatable} < capacity "
            f"{node.capacity}: {node.capacity - node.allocatable} GPU(s) marked unhealthy by the "
            "device plugin (XID errors or a failed health check)"
        )
    if node.capacity >= 1 and expected is not None and node.capacity != expected:
        problems.append(
            f"node {node.name}: capacity {gpus.GPU_RESOURCE} {node.capacity}, but its "
            f"{'GFD count label' if gpus.COUNT_LABEL in node.labels else 'VM size'} implies "
            f"{expected}"
        )
    if not node.ready:
        problems.append(f"node {node.name} is not Ready")
    return problems


# --- rollout -------------------------------------------------------------------------------

def _tolerates(tolerations: Sequence[Any], taint: tuple[str, str, str]) -> bool:
    key, value, effect = taint
    for tol in tolerations:
        if tol.effect and tol.effect != effect:
            continue
        if tol.operator == "Exists":
            if not tol.key or tol.key == key:
                return True
        elif tol.key == key and (tol.value or "") == value:
            return True
    return False


def untolerated_taints(tolerations: Sequence[Any], node: GpuNode) -> list[str]:
    return [f"{k}={v}:{e}" if v else f"{k}:{e}" for k, v, e in node.taints
            if e in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, (k, v, e))]


def _selector_matches(pod_spec: Any, labels: Mapping[str, str]) -> bool:
    selector = pod_spec.node_selector or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    affinity = pod_spec.affinity.node_affinity if pod_spec.affinity else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    if not required:
        return True
    return any(_term_matches(term, labels) for term in required.node_selector_terms or [])


def _term_matches(term: Any, labels: Mapping[str, str]) -> bool:
    for expr in term.match_expressions or []:
        value = labels.get(expr.key)
        values = expr.values or []
        ok = {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": expr.key in labels,
            "DoesNotExist": expr.key not in labels,
        }.get(expr.operator, True)
        if not ok:
            return False
    return True


def _pod_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return pod.status is not None and pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in conditions)


@dataclass
class RolloutReport:
    counters: dict[str, int]
    problems: list[str] = field(default_factory=list)
    ready_nodes: list[str] = field(default_factory=list)
    covered: int = 0
    #: GPU nodes the DaemonSet cannot target at all (taint, selector): waiting will not help
    unreachable: list[str] = field(default_factory=list)
    #: GPU nodes it targets whose plugin pod is missing or not ready yet
    pending: list[str] = field(default_factory=list)

    @property
    def counters_settled(self) -> bool:
        return not any(p.startswith(("DaemonSet counters", "DaemonSet controller"))
                       for p in self.problems)

    @property
    def summary(self) -> str:
        c = self.counters
        return (f"{len(self.ready_nodes)}/{self.covered} plugin pods ready on GPU nodes; "
                f"DaemonSet desired={c['desired']} current={c['current']} "
                f"updated={c['updated']} ready={c['ready']} available={c['available']}")


def rollout_report(daemonset: Any, pods: Iterable[Any], gpu_nodes: Sequence[GpuNode]) -> RolloutReport:
    """The DaemonSet's counters must agree, and every GPU node must have a ready plugin pod."""
    status = daemonset.status
    counters = {
        "desired": status.desired_number_scheduled or 0,
        "current": status.current_number_scheduled or 0,
        "updated": status.updated_number_scheduled or 0,
        "ready": status.number_ready or 0,
        "available": status.number_available or 0,
        "misscheduled": status.number_misscheduled or 0,
    }
    report = RolloutReport(counters)
    desired = counters["desired"]
    lagging = [k for k in ("current", "updated", "ready", "available") if counters[k] != desired]
    if lagging:
        report.problems.append(
            "DaemonSet counters disagree: desired=" + str(desired) + ", "
            + ", ".join(f"{k}={counters[k]}" for k in lagging))
    if desired == 0 and gpu_nodes:
        report.problems.append("DaemonSet schedules no pod at all (desired=0)")
    generation = daemonset.metadata.generation or 0
    if (status.observed_generation or 0) < generation:
        report.problems.append(f"DaemonSet controller has not observed generation {generation} yet")
    spec = daemonset.spec.template.spec
    live = [p for p in pods if p.metadata.deletion_timestamp is None]
    ready_on = {p.spec.node_name for p in live if _pod_ready(p)}
    any_on = {p.spec.node_name for p in live}
    missing = []
    for node in gpu_nodes:
        if not _selector_matches(spec, node.labels):
            report.unreachable.append(node.name)
            missing.append(f"{node.name} (the DaemonSet's nodeSelector/affinity excludes it)")
            continue
        blocked = untolerated_taints(spec.tolerations or [], node)
        if blocked:
            report.unreachable.append(node.name)
            missing.append(f"{node.name} (untolerated taint {', '.join(blocked)})")
            continue
        if node.name in ready_on:
            report.ready_nodes.append(node.name)
        else:
            report.pending.append(node.name)
            state = "plugin pod not ready" if node.name in any_on else "no plugin pod"
            missing.append(f"{node.name} ({state})")
    report.covered = len(gpu_nodes)
    if missing:
        report.problems.append(
            f"{len(missing)} of {len(gpu_nodes)} GPU node(s) have no ready device plugin pod: "
            + "; ".join(missing))
    return report


# --- workload ------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobObservation:
    job: Any | None
    pods: Sequence[Any]
    #: seconds the pod has been unschedulable, per pod name
    unschedulable_for: Mapping[str, float]
    unschedulable_grace: float


def job_verdict(obs: JobObservation) -> Verdict:
    """Done at completions 1/1; final at once on a failed Job or a pod that cannot start."""
    job = obs.job
    if job is None:
        return Verdict(False, "Job not created yet")
    status = job.status
    succeeded = (status.succeeded or 0) if status else 0
    completions = job.spec.completions or 1
    summary = f"completions {succeeded}/{completions}"
    for cond in (status.conditions if status else None) or []:
        if cond.type == "Failed" and cond.status == "True":
            return Verdict(False, summary, final=f"the Job failed ({cond.reason}: {cond.message})")
    if succeeded >= completions:
        return Verdict(True, summary)
    details = []
    for pod in obs.pods:
        name = pod.metadata.name
        phase = pod.status.phase if pod.status else "?"
        details.append(f"pod {name} {phase}")
        for cs in ((pod.status.container_statuses if pod.status else None) or []):
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason in FINAL_WAITING_REASONS:
                return Verdict(False, summary, final=(
                    f"pod {name} container {cs.name} is {waiting.reason}: {waiting.message or ''}"
                ).strip())
            terminated = cs.state.terminated if cs.state else None
            if terminated and terminated.exit_code not in (0, None):
                details.append(f"{cs.name} exited {terminated.exit_code} ({terminated.reason})")
        for cond in ((pod.status.conditions if pod.status else None) or []):
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                waited = obs.unschedulable_for.get(name, 0.0)
                message = f"pod {name} is Unschedulable: {cond.message}"
                if waited >= obs.unschedulable_grace:
                    return Verdict(False, summary, final=message)
                details.append(message)
    return Verdict(False, summary + ("; " + "; ".join(details) if details else ""))


# --- device --------------------------------------------------------------------------------

def device_problems(report: LogReport, expected: ExpectedGpu, min_accuracy: float | None,
                    needs_device: bool = True) -> list[str]:
    """Does the log name the expected GPU (and, for training logs, reach the accuracy)?"""
    problems = list(report.problems)
    if needs_device:
        if not report.devices:
            problems.insert(0, f"no GPU device line in the log (expected {expected.display}, "
                               f"from {expected.source})")
        else:
            wrong = [d for d in report.devices if not expected.matches(d)]
            if wrong:
                lines = "; ".join(report.device_lines) or ", ".join(report.devices)
                problems.insert(0, f"expected GPU {expected.display!r} (from {expected.source}), "
                                   f"but the log names: {lines}")
    if report.success is False:
        problems.append("the workload's success marker is missing from its log")
    final = report.final_accuracy
    if min_accuracy is not None and final is not None and final < min_accuracy:
        step = report.accuracy[-1][0]
        problems.append(f"accuracy at step {step} is {final:.4f}, below the threshold {min_accuracy}")
    return problems
