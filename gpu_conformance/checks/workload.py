"""Workload: a GPU Job (limit nvidia.com/gpu, GPU taints tolerated) completes 1/1 on every
GPU node it is pointed at.

Observation: each (node, profile) Job and its pods, with how long each pod has been
unschedulable, and who holds the node's GPUs. Judge: done at completions 1/1; final at once
on a failed Job, a pod that cannot start (image pull, crash loop, bad config) or one the
scheduler has rejected for longer than the unschedulable grace. A node whose GPUs are all held
by other pods is *busy*: a distinct outcome, never a silent pass (``--busy fail|skip``).
Wait: list+watch of each Job, re-looking every 2 s (unschedulable time grows without events).
All Jobs of a process are created together, so they run in parallel on the cluster; each is
waited for, bounded by job-complete, when its test asks. The log is read once and judged by
the device check.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from gpu_conformance import gpus, kapi, sharing
from gpu_conformance.checks import Outcome
from gpu_conformance.diagnostics import gpu_holders, pod_gpus
from gpu_conformance.errors import FinalStateError, WaitTimeout, one_line
from gpu_conformance.gpu_nodes import quantity
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
BUSY_POLICIES = ("fail", "skip")

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
    #: the GPU node the Job was pinned to (None: anywhere the scheduler chose)
    target: str | None = None
    completed: bool = False
    failure: str = ""
    pod_name: str | None = None
    node_name: str | None = None
    node_labels: dict[str, str] = field(default_factory=dict)
    log: str = ""
    report: LogReport | None = None
    #: every GPU of the node was held by other pods: not a verdict on the node
    busy: bool = False
    holders: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.completed, self.failure)

    def verdict(self, busy_policy: str) -> Outcome:
        """The workload suite's outcome; a busy node fails or skips as ``--busy`` says."""
        if self.busy:
            return Outcome(False, self.failure, skip=busy_policy == "skip")
        return self.outcome


def job_name(profile: WorkloadProfile, node: str | None) -> str:
    """``gpu-<profile>[-<node>]``, kept a valid label value (<= 63) with a hash when cut."""
    name = f"gpu-{profile.name}" + (f"-{node}" if node else "")
    if len(name) <= 63:
        return name.rstrip("-.")
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[:56].rstrip('-.')}-{digest}"


def pin_to_node(job: dict[str, Any], node: str) -> None:
    """Required node affinity on the node's name, as the DaemonSet controller pins its pods:
    still scheduled (resources and taints are checked), independent of node labels."""
    spec = job["spec"]["template"]["spec"]
    spec.pop("nodeSelector", None)
    spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}


@dataclass(frozen=True)
class NodeGpus:
    """Who holds a node's GPUs, seen from one of this process's Jobs."""

    #: every allocatable GPU is held by pods that are not gpu-conformance's: not our verdict
    busy: bool
    #: every GPU is held, some by other gpu-conformance workloads: ours runs when they end
    queued: bool
    holders: list[str]
    #: allocatable GPUs no pod on the node holds (this run's own pods included)
    free: int = 0
    #: allocatable GPUs less those held by pods that are not gpu-conformance's (what this run
    #: can have once other gpu-conformance runs' pods are done)
    ours: int = 0


def node_gpus(api: client.ApiClient, node: str, own_namespace: str) -> NodeGpus:
    core = kapi.CoreV1Api(api)
    status = call(core.read_node, node).status
    allocatable = quantity((getattr(status, "allocatable", None) or {}).get(gpus.GPU_RESOURCE))
    pods: list[Any] = call(core.list_pod_for_all_namespaces,
                           field_selector=f"spec.nodeName={node},status.phase!=Succeeded,"
                                          "status.phase!=Failed").items
    others = [p for p in pods if p.metadata.namespace != own_namespace]
    foreign = [p for p in others if RUN_LABEL not in (p.metadata.labels or {})]
    held = gpu_holders(others).get(node, [])
    used = sum(n for _, n in held)
    foreign_used = sum(n for _, n in gpu_holders(foreign).get(node, []))
    busy = allocatable >= 1 and foreign_used >= allocatable
    everyone = sum(n for _, n in gpu_holders(pods).get(node, []))
    return NodeGpus(busy, not busy and allocatable >= 1 and used >= allocatable,
                    [f"{pod} ({n})" for pod, n in held], max(0, allocatable - everyone),
                    max(0, allocatable - foreign_used))


@dataclass(frozen=True)
class NodeOffer:
    """What a pod on a GPU node asks for: the resource the node offers (nvidia.com/gpu; on a
    MIG or time-sliced node what sharing.workload_resource picks), its allocatable count, and
    the node's VM size."""

    resource: str
    allocatable: int
    size: str | None


def node_offer(api: client.ApiClient, node: str) -> NodeOffer:
    found: Any = call(kapi.CoreV1Api(api).read_node, node)
    labels = dict(found.metadata.labels or {})
    status = found.status
    offers = sharing.analyse(labels, (status.capacity if status else None) or {},
                             (status.allocatable if status else None) or {})
    resource = offers.workload_resource or gpus.GPU_RESOURCE
    offer = offers.offers.get(resource)
    return NodeOffer(resource, (offer.allocatable or 0) if offer else 0,
                     labels.get(gpus.INSTANCE_TYPE_LABEL)
                     or labels.get(gpus.LEGACY_INSTANCE_TYPE_LABEL))


def stale_rejection(pod: Any, message: str, free: int) -> bool:
    """The scheduler rejected ``pod`` for want of GPUs that its node has free now: it decided
    before they were released and retries on the release event (or, if it missed that event,
    within its 5-minute flush of unschedulable pods); not a verdict on the node."""
    wanted = pod_gpus(pod)
    return f"Insufficient {gpus.GPU_RESOURCE}" in message and 1 <= wanted <= free


class Workloads:
    """The Jobs of one process: created together, each awaited when its test asks."""

    def __init__(self, api: client.ApiClient, namespace: str, timeouts: Timeouts, *,
                 run_id: str, progress: Callable[[str], Log] | None = None,
                 adapt: AdaptJob | None = None, gate_overrides: Sequence[str] = (),
                 gpus_per_job: int = 1) -> None:
        self.api, self.namespace, self.timeouts, self.run_id = api, namespace, timeouts, run_id
        self.progress, self.adapt, self.gate_overrides = progress, adapt, tuple(gate_overrides)
        self.gpus_per_job = gpus_per_job
        self._store = Objects(api)
        self._extras: set[str] = set()
        self._jobs: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._results: dict[tuple[str, str | None], WorkloadResult] = {}

    def start(self, targets: Sequence[tuple[WorkloadProfile, str | None]]) -> None:
        """Create the Job of every (profile, node) not created yet (busy nodes get none)."""
        for profile, node in targets:
            key = (profile.name, node)
            if key in self._jobs or key in self._results:
                continue
            if node is not None:
                held = node_gpus(self.api, node, self.namespace)
                if held.busy:
                    self._results[key] = WorkloadResult(
                        profile, job_name(profile, node), target=node, busy=True,
                        holders=held.holders,
                        failure=f"node {node} is busy: all its GPUs are held by other pods: "
                                f"{', '.join(held.holders)}")
                    continue
            if profile.name not in self._extras:
                for obj in profile.extra_objects(self.namespace):
                    obj["metadata"].setdefault("labels", {})[RUN_LABEL] = self.run_id
                    self._store.create(obj)
                self._extras.add(profile.name)
            count, size, resource = self._gpus_for(profile, node)
            job = profile.job_manifest(job_name(profile, node), self.namespace, gpus=count,
                                       labels={RUN_LABEL: self.run_id})
            if resource != gpus.GPU_RESOURCE:
                # a MIG (mixed strategy) or renamed time-sliced node: ask for what it offers
                sharing.set_job_resource(job, resource, count)
            if profile.gate_args is not None:
                container = job["spec"]["template"]["spec"]["containers"][0]
                container["args"] = profile.gate_args(size, count, self.gate_overrides)
            if node is not None:
                pin_to_node(job, node)
            if self.adapt is not None:
                self.adapt(profile, job)
            self._store.create(job)
            self._jobs[key] = job

    def _gpus_for(self, profile: WorkloadProfile, node: str | None
                  ) -> tuple[int, str | None, str]:
        """GPUs the profile's Job asks for on ``node`` (all allocatable ones for an all-GPU
        profile such as NCCL all_reduce), the node's VM size, and the resource to ask for
        (nvidia.com/gpu; on a MIG or time-sliced node what it offers, gpu_conformance.sharing)."""
        if node is None:
            return self.gpus_per_job, None, gpus.GPU_RESOURCE
        offer = node_offer(self.api, node)
        if offer.resource != gpus.GPU_RESOURCE:
            return 1, offer.size, offer.resource  # one MIG device or one replica: all a pod uses
        count = max(1, offer.allocatable) if profile.all_gpus else self.gpus_per_job
        return count, offer.size, offer.resource

    def result(self, profile: WorkloadProfile, node: str | None) -> WorkloadResult:
        """The (profile, node) Job's result, waiting for it (bounded) the first time."""
        key = (profile.name, node)
        if key not in self._results:
            self.start([(profile, node)])
        if key not in self._results:
            self._results[key] = self._wait(profile, node, self._jobs[key])
        return self._results[key]

    def results(self) -> list[WorkloadResult]:
        return list(self._results.values())

    def _wait(self, profile: WorkloadProfile, node: str | None, job: dict[str, Any]
              ) -> WorkloadResult:
        core, batch = kapi.CoreV1Api(self.api), kapi.BatchV1Api(self.api)
        name = job["metadata"]["name"]
        result = WorkloadResult(profile, name, target=node)
        first_unschedulable: dict[str, float] = {}
        pods: list[Any] = []

        def evaluate(jobs: list[Any]) -> Verdict:
            nonlocal pods
            pods = list(call(core.list_namespaced_pod, self.namespace,
                             label_selector=f"job-name={name}").items)
            now = time.monotonic()
            waited: dict[str, float] = {}
            for pod in pods:
                cond = _unschedulable(pod)
                if cond is not None:
                    first = first_unschedulable.setdefault(pod.metadata.name, now)
                    if node is not None and now - first >= self.timeouts["unschedulable-grace"]:
                        held = node_gpus(self.api, node, self.namespace)
                        if held.queued or stale_rejection(pod, cond.message or "", held.free):
                            # the node's GPUs are busy with other gpu-conformance Jobs (this
                            # run's other profiles, a concurrent run): ours runs when they end;
                            # or they were, and the scheduler has not retried since
                            first_unschedulable[pod.metadata.name] = first = now
                    waited[pod.metadata.name] = now - first
            return judge(JobObservation(jobs[0] if jobs else None, pods, waited,
                                        self.timeouts["unschedulable-grace"]))

        try:
            wait_for(f"Job {self.namespace}/{name} to complete 1/1", batch.list_namespaced_job,
                     evaluate, timeout=self.timeouts["job-complete"], timeout_name="job-complete",
                     progress=self.progress(f"job {name}") if self.progress else None,
                     recheck_every=RECHECK_SECONDS, namespace=self.namespace,
                     field_selector=f"metadata.name={name}")
            result.completed = True
        except (WaitTimeout, FinalStateError) as exc:
            result.failure = str(exc)
            if node is not None and "Unschedulable" in result.failure:
                held = node_gpus(self.api, node, self.namespace)
                if held.busy:
                    result.busy, result.holders = True, held.holders
                    result.failure = (f"node {node} is busy: all its GPUs are held by other "
                                      f"pods: {', '.join(held.holders)} ({result.failure})")
        done = [p for p in pods if p.status and p.status.phase == "Succeeded"] or pods
        if done:
            _read_log(core, done[0], self.namespace, job, result)
        return result


def run(profile: WorkloadProfile, namespace: str, api: client.ApiClient, timeouts: Timeouts, *,
        run_id: str, progress: Log | None = None, adapt: AdaptJob | None = None,
        node: str | None = None) -> WorkloadResult:
    """One profile's Job (on ``node``, if given): create it, wait, read its log."""
    batch = Workloads(api, namespace, timeouts, run_id=run_id,
                      progress=(lambda _topic: progress) if progress else None, adapt=adapt)
    return batch.result(profile, node)


def _read_log(core: kapi.CoreV1Api, pod: Any, namespace: str, job: dict[str, Any],
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
