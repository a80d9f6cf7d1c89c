"""Workload: a GPU Job (limit nvidia.com/gpu, GPU taints tolerated) completes 1/1.

Observation: the Job and its pods, with how long each pod has been unschedulable. Judge: done
at completions 1/1; final at once on a failed Job, a pod that cannot start (image pull, crash
loop, bad config) or one the scheduler has rejected for longer than the unschedulable grace.
Wait: list+watch of the Job, re-looking every 2 s (unschedulable time grows without events).
The Job runs once per profile and run; the log is read once and judged by the device check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from gpu_conformance.checks import Outcome
from gpu_conformance.errors import FinalStateError, WaitTimeout, one_line
from gpu_conformance.kube import call
from gpu_conformance.log import Log
from gpu_conformance.objects import RUN_LABEL, Objects
from gpu_conformance.timeouts import Timeouts
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for
from gpu_conformance.workloads import WorkloadProfile
from gpu_conformance.workloads.base import LogReport

FINAL_WAITING_REASONS = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
RECHECK_SECONDS = 2
LOG_READ_TIMEOUT = 30

#: a backend's hook that adapts a profile's Job before it is created (kind's stand-ins)
AdaptJob = Callable[[WorkloadProfile, dict[str, Any]], None]


@dataclass(frozen=True)
class JobObservation:
    job: Any | None
    pods: Sequence[Any]
    #: seconds the pod has been unschedulable, per pod name
    unschedulable_for: Mapping[str, float]
    unschedulable_grace: float


def _unschedulable(pod: Any) -> Any | None:
    status = getattr(pod, "status", None)
    for cond in getattr(status, "conditions", None) or []:
        if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
            return cond
    return None


def judge(obs: JobObservation) -> Verdict:
    """Done at completions 1/1; final at once on a failed Job or a pod that cannot start."""
    job = obs.job
    if job is None:
        return Verdict(False, "Job not created yet")
    status = getattr(job, "status", None)
    succeeded = int(getattr(status, "succeeded", None) or 0)
    completions = int(getattr(getattr(job, "spec", None), "completions", None) or 1)
    summary = f"completions {succeeded}/{completions}"
    for cond in getattr(status, "conditions", None) or []:
        if cond.type == "Failed" and cond.status == "True":
            return Verdict(False, summary, final=f"the Job failed ({cond.reason}: {cond.message})")
    if succeeded >= completions:
        return Verdict(True, summary)
    details = []
    for pod in obs.pods:
        name = pod.metadata.name
        pod_status = getattr(pod, "status", None)
        details.append(f"pod {name} {getattr(pod_status, 'phase', None) or '?'}")
        for cs in getattr(pod_status, "container_statuses", None) or []:
            waiting = cs.state.waiting if cs.state else None
            if waiting and waiting.reason in FINAL_WAITING_REASONS:
                return Verdict(False, summary, final=(
                    f"pod {name} container {cs.name} is {waiting.reason}: {waiting.message or ''}"
                ).strip())
            terminated = cs.state.terminated if cs.state else None
            if terminated and terminated.exit_code not in (0, None):
                details.append(f"{cs.name} exited {terminated.exit_code} ({terminated.reason})")
        cond = _unschedulable(pod)
        if cond is not None:
            message = f"pod {name} is Unschedulable: {cond.message}"
            if obs.unschedulable_for.get(name, 0.0) >= obs.unschedulable_grace:
                return Verdict(False, summary, final=message)
            details.append(message)
    return Verdict(False, summary + ("; " + "; ".join(details) if details else ""))


@dataclass
class WorkloadResult:
    profile: WorkloadProfile
    job_name: str
    completed: bool = False
    failure: str = ""
    pod_name: str | None = None
    node_name: str | None = None
    node_labels: dict[str, str] = field(default_factory=dict)
    log: str = ""
    report: LogReport | None = None

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.completed, self.failure)


def run(profile: WorkloadProfile, namespace: str, api: client.ApiClient, timeouts: Timeouts, *,
        run_id: str, progress: Log | None = None, adapt: AdaptJob | None = None) -> WorkloadResult:
    """Create the profile's Job, wait (bounded) for 1/1 or a final failure, read its log."""
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    name = f"gpu-{profile.name}"
    result = WorkloadResult(profile, name)
    store = Objects(api)
    for obj in profile.extra_objects(namespace):
        obj["metadata"].setdefault("labels", {})[RUN_LABEL] = run_id
        store.create(obj)
    job = profile.job_manifest(name, namespace, labels={RUN_LABEL: run_id})
    if adapt is not None:
        adapt(profile, job)
    store.create(job)
    first_unschedulable: dict[str, float] = {}
    pods: list[Any] = []

    def evaluate(jobs: list[Any]) -> Verdict:
        nonlocal pods
        pods = list(call(core.list_namespaced_pod, namespace, label_selector=f"job-name={name}").items)
        now = time.monotonic()
        waited: dict[str, float] = {}
        for pod in pods:
            if _unschedulable(pod) is not None:
                first_unschedulable.setdefault(pod.metadata.name, now)
                waited[pod.metadata.name] = now - first_unschedulable[pod.metadata.name]
        return judge(JobObservation(jobs[0] if jobs else None, pods, waited,
                                    timeouts["unschedulable-grace"]))

    try:
        wait_for(f"Job {namespace}/{name} to complete 1/1", batch.list_namespaced_job, evaluate,
                 timeout=timeouts["job-complete"], timeout_name="job-complete",
                 progress=progress, recheck_every=RECHECK_SECONDS, namespace=namespace,
                 field_selector=f"metadata.name={name}")
        result.completed = True
    except (WaitTimeout, FinalStateError) as exc:
        result.failure = str(exc)
    done = [p for p in pods if p.status and p.status.phase == "Succeeded"] or pods
    if done:
        _read_log(core, done[0], namespace, job, result)
    return result


def _read_log(core: client.CoreV1Api, pod: Any, namespace: str, job: dict[str, Any],
              result: WorkloadResult) -> None:
    result.pod_name, result.node_name = pod.metadata.name, pod.spec.node_name if pod.spec else None
    if result.node_name:
        node: Any = call(core.read_node, result.node_name)
        result.node_labels = dict(node.metadata.labels or {})
    container = job["spec"]["template"]["spec"]["containers"][0]["name"]
    try:
        text = call(core.read_namespaced_pod_log, pod.metadata.name, namespace,
                    container=container, _request_timeout=LOG_READ_TIMEOUT)
    except Exception as exc:
        text = ""
        result.failure = result.failure or f"cannot read the log of {pod.metadata.name}: {one_line(exc)}"
    result.log = text if isinstance(text, str) else ""
    result.report = result.profile.parse(result.log)
