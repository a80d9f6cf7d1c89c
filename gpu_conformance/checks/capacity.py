"""Capacity: every GPU node offers its GPUs to the scheduler.

Observation: the node list, read once per run for all GPU nodes (one list+watch, whatever the
node count). Judge, per node: ``nvidia.com/gpu`` capacity >= 1 and equal to what the VM size or
GFD count label implies, allocatable == capacity (less means GPUs marked unhealthy), Ready.
Wait: until every GPU node reports capacity and allocatable equal to it, bounded by
gpu-capacity; a node whose allocatable stays below its capacity for gpu-settle (a plugin that
re-registers catches up within one kubelet status sync) is judged as it is: unhealthy GPUs.
A node that never reports capacity is judged on what it last showed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from gpu_conformance import gpus, kapi, sharing
from gpu_conformance.checks import Outcome
from gpu_conformance.errors import WaitTimeout
from gpu_conformance.gpu_nodes import GpuNode, find_gpu_nodes, summarize_names
from gpu_conformance.log import Log
from gpu_conformance.timeouts import Timeouts
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

#: parameter ids of the per-node test when there is nothing to parametrize with
NO_GPU_NODE = "no-gpu-node-found"
NOT_STARTED = "run-not-started"
RECHECK_SECONDS = 5


def judge(node: GpuNode) -> list[str]:
    """Why this GPU node does not offer its GPUs to the scheduler (empty when it does)."""
    if node.shared:
        return _judge_shared(node)
    problems = []
    expected = gpus.expected_gpu_count(node.labels)
    if node.capacity < 1:
        problems.append(
            f"node {node.name} ({node.why}) reports no {gpus.GPU_RESOURCE} capacity: the device "
            "plugin is not running or not registered on it"
        )
    elif node.allocatable == 0:
        problems.append(
            f"node {node.name}: allocatable {gpus.GPU_RESOURCE} 0 of capacity {node.capacity}: "
            "no healthy GPU is offered: the device plugin stopped (a kubelet keeps the capacity "
            "for 5 minutes after its plugin goes) or every GPU failed its health check"
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


def _judge_shared(node: GpuNode) -> list[str]:
    """A node whose GPUs are split (MIG) or shared (time-slicing): every GPU resource it offers
    against what GPU feature discovery's labels promise (gpu_conformance.sharing)."""
    found = sharing.analyse(node.labels, node.gpu_capacity, node.gpu_allocatable)
    problems = []
    if node.offered < 1:
        problems.append(
            f"node {node.name} ({node.why}, {found.mode}) reports no GPU resource capacity "
            f"({gpus.GPU_RESOURCE}, nvidia.com/mig-*): the device plugin is not running or not "
            "registered on it")
    else:
        problems += [f"node {node.name} ({found.mode}): {p}" for p in found.problems]
        if found.workload_resource is None:
            problems.append(f"node {node.name} ({found.mode}): no GPU resource has a device "
                            "allocatable: every device failed its health check")
    if not node.ready:
        problems.append(f"node {node.name} is not Ready")
    return problems


@dataclass
class Snapshot:
    """The GPU nodes as last seen by the run's one capacity wait."""

    nodes: dict[str, GpuNode] = field(default_factory=dict)
    total_nodes: int = 0
    #: set when the wait ran out: the nodes still without capacity, and the timeout's text
    timed_out: str = ""


def observe(api: client.ApiClient, names: Sequence[str], timeouts: Timeouts,
            progress: Log | None) -> Snapshot:
    """Wait (bounded by gpu-capacity) until every named GPU node reports capacity; whatever
    happens, the last state of every node."""
    core = kapi.CoreV1Api(api)
    wanted = set(names)
    snapshot = Snapshot()
    below_since: dict[str, float] = {}
    settle = timeouts["gpu-settle"]

    def settled(node: GpuNode, now: float) -> bool:
        if node.offered < 1:
            return False
        if node.settled():
            below_since.pop(node.name, None)
            return True
        return now - below_since.setdefault(node.name, now) >= settle

    def evaluate(items: list[Any]) -> Verdict:
        now = time.monotonic()
        snapshot.total_nodes = len(items)
        snapshot.nodes = {n.name: n for n in find_gpu_nodes(items) if n.name in wanted}
        waiting = sorted(n for n in wanted if n not in snapshot.nodes
                         or not settled(snapshot.nodes[n], now))
        summary = f"{len(wanted) - len(waiting)}/{len(wanted)} GPU node(s) report capacity"
        if waiting:
            summary += f"; waiting for {summarize_names(waiting)}"
        return Verdict(not waiting, summary)

    try:
        wait_for(f"every GPU node to report {gpus.GPU_RESOURCE} capacity", core.list_node,
                 evaluate, timeout=timeouts["gpu-capacity"], timeout_name="gpu-capacity",
                 recheck_every=RECHECK_SECONDS, progress=progress)
    except WaitTimeout as exc:
        snapshot.timed_out = str(exc)
    return snapshot


def check(snapshot: Snapshot, name: str, nodes: Sequence[str] | None = None) -> Outcome:
    """The verdict of the per-node test ``name``, which stands for ``nodes`` (default: itself)
    and is judged from the run's snapshot."""
    if name == NOT_STARTED and nodes is None:
        return Outcome(False, "no cluster: GPU nodes are discovered when the run starts")
    targets = [name] if nodes is None else list(nodes)
    if name == NO_GPU_NODE or (not targets and not snapshot.nodes):
        return Outcome(False, (
            f"no GPU node found among {snapshot.total_nodes} node(s): none has a GPU label "
            f"(accelerator, {gpus.AKS_ACCELERATOR_LABEL}, {gpus.PRESENT_LABEL}), a known GPU VM "
            f"size, or {gpus.GPU_RESOURCE} capacity"))
    if not targets:
        return Outcome(False, f"{name} stands for a GPU node the cluster does not have: it has "
                              f"{len(snapshot.nodes)} ({', '.join(sorted(snapshot.nodes))})")
    problems = []
    for target in targets:
        node = snapshot.nodes.get(target)
        if node is None:
            problems.append(f"node {target} is gone (it was a GPU node when the run started)")
        else:
            problems += judge(node)
    return Outcome.from_problems(problems)
