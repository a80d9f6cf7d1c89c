"""Isolation on one GPU node: pods see the GPUs they asked for and no others.

Runs the probe pods of ``gpu_conformance.workloads.isolation`` in phases, each phase's pods
deleted (and gone, so their GPUs are free again) before the next starts, then judges their
output with that module's judges:

1. ``single`` (1 GPU) and ``no-request`` (none, pinned to the node);
2. ``two-containers``: only the container that asked for the GPU sees it;
3. ``concurrent`` (a node with 2+ GPUs): two 1-GPU pods held running at the same time get
   different GPUs;
4. ``exhausted``: a holder takes every allocatable GPU, one more 1-GPU pod stays Pending as
   Unschedulable for lack of GPUs.

Every wait is bounded (job-complete for a pod's output, unschedulable-grace for the scheduler's
verdict, namespace-delete for a phase's pods to go). The pods carry the run's label and live
in the run's namespace, so an interrupted run's sweep removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from gpu_conformance import gpus, kapi
from gpu_conformance.checks import Outcome
from gpu_conformance.checks.workload import FINAL_WAITING_REASONS, node_gpus, node_offer
from gpu_conformance.errors import FinalStateError, WaitTimeout, is_not_found
from gpu_conformance.kube import call
from gpu_conformance.log import Log
from gpu_conformance.objects import RUN_LABEL
from gpu_conformance.timeouts import Timeouts
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for
from gpu_conformance.workloads import isolation as probe
from gpu_conformance.workloads.base import WORKLOAD_LABEL

#: how long the concurrent pods keep running after their probe, so that they overlap
CONCURRENT_HOLD = 20
#: the holder of every GPU in the exhausted check keeps them this long (deleted before)
HOLDER_HOLD = 600
RECHECK_SECONDS = 2


@dataclass
class IsolationResult:
    node: str
    problems: list[str] = field(default_factory=list)
    #: checks run, and those not applicable (with why)
    ran: list[str] = field(default_factory=list)
    not_applicable: list[str] = field(default_factory=list)
    #: every GPU of the node held by other pods: not a verdict on isolation
    busy: bool = False

    def outcome(self, busy_policy: str = "fail") -> Outcome:
        if self.busy:
            return Outcome(False, "; ".join(self.problems), skip=busy_policy == "skip")
        if self.problems:
            return Outcome(False, f"node {self.node}: " + "; ".join(self.problems))
        note = (f" (not applicable: {'; '.join(self.not_applicable)})"
                if self.not_applicable else "")
        return Outcome(True, f"node {self.node}: {', '.join(self.ran)} passed{note}")


def _suffix(node: str) -> str:
    return hashlib.sha256(node.encode()).hexdigest()[:8]


class NodeIsolation:
    """The isolation checks of one node, in the run's namespace."""

    def __init__(self, api: client.ApiClient, namespace: str, node: str, timeouts: Timeouts, *,
                 run_id: str, progress: Log | None = None) -> None:
        self.api, self.namespace, self.node, self.timeouts = api, namespace, node, timeouts
        self.core = kapi.CoreV1Api(api)
        self.labels = {RUN_LABEL: run_id}
        self.progress = progress
        self.suffix = _suffix(node)

    # --- the node -------------------------------------------------------------------------
    def offer(self, *, ours: bool = False) -> tuple[str, int, list[str]]:
        """The GPU resource a pod asks for on this node, how many of it no pod holds (``ours``:
        how many no pod outside gpu-conformance holds, which other runs' probes and Jobs give
        back when they end), and the pods holding the others."""
        offer = node_offer(self.api, self.node)
        resource, allocatable = offer.resource, offer.allocatable
        holders: list[str] = []
        if resource == gpus.GPU_RESOURCE:
            held = node_gpus(self.api, self.node, self.namespace)
            allocatable = min(allocatable, held.ours if ours else held.free)
            holders = held.holders
        return resource, allocatable, holders

    # --- pods -----------------------------------------------------------------------------
    def name(self, kind: str) -> str:
        return f"iso-{kind}-{self.suffix}"

    def create(self, manifest: dict[str, Any]) -> None:
        call(self.core.create_namespaced_pod, self.namespace, manifest)

    def delete(self, names: Sequence[str]) -> None:
        """Delete ``names`` at once and wait until they are gone (their GPUs free again)."""
        for name in names:
            try:
                call(self.core.delete_namespaced_pod, name, self.namespace,
                     body={"gracePeriodSeconds": 0})
            except Exception as exc:
                if not is_not_found(exc):
                    raise
        wanted = set(names)

        def gone(items: list[Any]) -> Verdict:
            left = sorted({p.metadata.name for p in items} & wanted)
            return Verdict(not left, f"waiting for {', '.join(left)} to go" if left else "gone")

        wait_for(f"isolation pods on {self.node} deleted", self.core.list_namespaced_pod, gone,
                 timeout=self.timeouts["namespace-delete"], timeout_name="namespace-delete",
                 namespace=self.namespace, label_selector=f"{WORKLOAD_LABEL}={probe.NAME}")

    def outputs(self, pods: dict[str, list[str]]) -> dict[tuple[str, str], str]:
        """Each (pod, container)'s probe output once it has printed its END line (or the pod
        ended), bounded by job-complete; a pod that cannot start ends the wait at once."""
        logs: dict[tuple[str, str], str] = {}

        def read(items: list[Any]) -> Verdict:
            waiting = []
            for pod in items:
                name = pod.metadata.name
                if name not in pods:
                    continue
                phase = pod.status.phase if pod.status else None
                for cs in (pod.status.container_statuses or []) if pod.status else []:
                    waiting_state = cs.state.waiting if cs.state else None
                    if waiting_state and waiting_state.reason in FINAL_WAITING_REASONS:
                        return Verdict(False, "", final=(
                            f"pod {name} container {cs.name} is {waiting_state.reason}: "
                            f"{waiting_state.message or ''}").strip())
                for container in pods[name]:
                    key = (name, container)
                    if probe.END in logs.get(key, ""):
                        continue
                    if phase in ("Running", "Succeeded", "Failed"):
                        logs[key] = _log(self.core, name, self.namespace, container)
                    if probe.END not in logs.get(key, "") and phase not in ("Succeeded",
                                                                            "Failed"):
                        waiting.append(f"{name}/{container} ({phase or 'not created'})")
            missing = [p for p in pods if p not in {i.metadata.name for i in items}]
            waiting += [f"{p} (not created)" for p in missing]
            return Verdict(not waiting, "probe output from " + (
                ", ".join(waiting) if waiting else "every container"))

        wait_for(f"isolation probes on {self.node} to print their output",
                 self.core.list_namespaced_pod, read, timeout=self.timeouts["job-complete"],
                 timeout_name="job-complete", progress=self.progress,
                 recheck_every=RECHECK_SECONDS, namespace=self.namespace,
                 label_selector=f"{WORKLOAD_LABEL}={probe.NAME}")
        return logs

    def view(self, logs: dict[tuple[str, str], str], pod: str, container: str
             ) -> probe.ContainerView:
        return probe.parse_container(pod, container, logs.get((pod, container), ""))

    # --- the checks -----------------------------------------------------------------------
    def run(self) -> IsolationResult:
        result = IsolationResult(self.node)
        # GPUs that another gpu-conformance run's probes or Jobs hold come back when those end
        # (each bounded): the probes wait for them; only pods outside gpu-conformance make
        # the node busy
        resource, allocatable, holders = self.offer(ours=True)
        if allocatable < 1 and holders:
            result.busy = True
            result.problems.append(f"node {self.node} is busy: all its GPUs are held by other "
                                   f"pods: {', '.join(holders)}")
            return result
        if allocatable < 1:
            result.problems.append(f"no allocatable {resource}: nothing to check isolation with")
            return result
        phases: list[Callable[[str, int, IsolationResult], None]] = [
            self._single_and_none, self._two_containers, self._concurrent, self._exhausted]
        for phase in phases:
            phase(resource, allocatable, result)
        return result

    def _phase(self, manifests: list[dict[str, Any]], containers: dict[str, list[str]]
               ) -> dict[tuple[str, str], str]:
        names = [str(m["metadata"]["name"]) for m in manifests]
        try:
            for manifest in manifests:
                self.create(manifest)
            return self.outputs(containers)
        finally:
            self.delete(names)

    def _single_and_none(self, resource: str, allocatable: int, result: IsolationResult) -> None:
        single, none = self.name("single"), self.name("none")
        logs = self._phase(
            [probe.gpu_pod(single, self.namespace, self.node, resource=resource,
                           labels=self.labels, container="probe"),
             probe.no_request_pod(none, self.namespace, self.node, labels=self.labels)],
            {single: ["probe"], none: ["no-request"]})
        result.problems += probe.judge_single(self.view(logs, single, "probe"))
        result.problems += probe.judge_none(self.view(logs, none, "no-request"))
        result.ran += ["1 GPU asked -> 1 seen", "none asked -> none seen"]

    def _two_containers(self, resource: str, allocatable: int, result: IsolationResult) -> None:
        two = self.name("two")
        logs = self._phase([probe.two_container_pod(two, self.namespace, self.node,
                                                    resource=resource, labels=self.labels)],
                           {two: ["with-gpu", "without-gpu"]})
        result.problems += probe.judge_two_containers(self.view(logs, two, "with-gpu"),
                                                      self.view(logs, two, "without-gpu"))
        result.ran.append("only the requesting container sees it")

    def _concurrent(self, resource: str, allocatable: int, result: IsolationResult) -> None:
        if allocatable < 2:
            result.not_applicable.append(f"two concurrent pods need 2 {resource}, the node "
                                         f"has {allocatable}")
            return
        first, second = self.name("concurrent-a"), self.name("concurrent-b")
        manifests = [probe.gpu_pod(name, self.namespace, self.node, resource=resource,
                                   hold_seconds=CONCURRENT_HOLD, labels=self.labels,
                                   container=container)
                     for name, container in ((first, "concurrent-a"), (second, "concurrent-b"))]
        logs = self._phase(manifests, {first: ["concurrent-a"], second: ["concurrent-b"]})
        # both printed their END line while holding their GPU: they ran at the same time
        result.problems += probe.judge_concurrent(self.view(logs, first, "concurrent-a"),
                                                  self.view(logs, second, "concurrent-b"))
        result.ran.append("concurrent pods get different GPUs")

    def _exhausted(self, resource: str, allocatable: int, result: IsolationResult) -> None:
        holder, extra = self.name("holder"), self.name("extra")
        names = [holder, extra]
        # every GPU not held outside gpu-conformance: a concurrent run's probes are waited for,
        # so that none it gives back meanwhile lets the extra pod in
        resource, allocatable, _ = self.offer(ours=True)
        try:
            self.create(probe.holder_pod(holder, self.namespace, self.node, allocatable,
                                         hold_seconds=HOLDER_HOLD, resource=resource,
                                         labels=self.labels))
            self.outputs({holder: ["probe"]})  # it holds them: the extra pod comes after
            self.create(probe.gpu_pod(extra, self.namespace, self.node, resource=resource,
                                      labels=self.labels, container="extra"))
            state = self._scheduler_verdict(extra)
            result.problems += probe.judge_exhausted(state, self.node, allocatable, [holder],
                                                     resource=resource)
        finally:
            self.delete(names)
        result.ran.append("a full node leaves the next pod Pending")

    def _scheduler_verdict(self, name: str) -> probe.PodState:
        """The extra pod once the scheduler has placed or rejected it (bounded)."""
        found: list[probe.PodState] = []

        def decided(items: list[Any]) -> Verdict:
            pods = [p for p in items if p.metadata.name == name]
            if not pods:
                return Verdict(False, f"{name} not created yet")
            state = probe.pod_state(self.api.sanitize_for_serialization(pods[0]))
            found[:] = [state]
            done = bool(state.node_name) or state.scheduled == "False"
            return Verdict(done, f"{name} {state.phase}, PodScheduled={state.scheduled}")

        # past the bound it is judged as last seen: Pending without the scheduler's word
        with contextlib.suppress(WaitTimeout, FinalStateError):
            wait_for(f"the scheduler's verdict on {name}", self.core.list_namespaced_pod, decided,
                     timeout=self.timeouts["unschedulable-grace"],
                     timeout_name="unschedulable-grace", namespace=self.namespace,
                     field_selector=f"metadata.name={name}")
        return found[0] if found else probe.PodState(name, "Unknown")


def _log(core: kapi.CoreV1Api, pod: str, namespace: str, container: str) -> str:
    try:
        text = call(core.read_namespaced_pod_log, pod, namespace, container=container,
                    _request_timeout=10)
    except Exception:
        return ""  # not readable yet (the container is starting): read again on the next event
    return text if isinstance(text, str) else ""


def check(api: client.ApiClient, namespace: str, node: str, timeouts: Timeouts, *,
          run_id: str, progress: Log | None = None, busy_policy: str = "fail") -> Outcome:
    """Every isolation check on ``node``: the outcome names each failure; a node whose GPUs
    are all held by other pods fails or skips as ``--busy`` says."""
    started = time.monotonic()
    result = NodeIsolation(api, namespace, node, timeouts, run_id=run_id, progress=progress).run()
    outcome = result.outcome(busy_policy)
    if progress is not None:
        checked = ", ".join(result.ran) + (f"; not applicable: {'; '.join(result.not_applicable)}"
                                            if result.not_applicable else "")
        progress(f"{node}: {'passed' if outcome.ok else 'failed'} in "
                 f"{time.monotonic() - started:.1f}s ({checked})")
    return outcome
