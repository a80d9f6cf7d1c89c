"""Rollout: the device plugin DaemonSet runs a ready pod on every GPU node.

Observation: the DaemonSet, its pods (by its selector) and the GPU nodes. Judge: its own
counters must agree, and every GPU node must have a ready plugin pod, taint- and
selector-aware. Wait: list+watch of the DaemonSet, re-looking every few seconds. Final
state: once the controller has settled and the only nodes still missing a pod are ones the
DaemonSet can never target (a permanent taint it does not tolerate, a selector that excludes
them), waiting cannot help. Taints the node lifecycle controller sets and lifts by itself
(``node.kubernetes.io/*``) are never final.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from gpu_conformance import kapi
from gpu_conformance.checks import Outcome
from gpu_conformance.device_plugin import PluginRef
from gpu_conformance.errors import FinalStateError, WaitTimeout
from gpu_conformance.gpu_nodes import (
    GpuNode,
    find_gpu_nodes,
    format_taint,
    is_transient_taint,
    selector_matches,
    untolerated_taints,
)
from gpu_conformance.kube import call
from gpu_conformance.log import Log
from gpu_conformance.timeouts import Timeouts
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

#: every pod or node change that matters moves the DaemonSet's status (an event), so the
#: watch resumes from where it was, never re-listing; each watch still ends this often, so a
#: signal that reached another thread is acted on within it (Ctrl-C stays prompt)
WATCH_SECONDS = 30
NAMES_SHOWN = 5  # failure messages name this many nodes, then "and N more"


@dataclass(frozen=True)
class NodeGap:
    """A GPU node without a ready plugin pod, and why."""

    node: str
    reason: str
    #: False when the DaemonSet can never place a pod there (permanent taint, selector)
    reachable: bool


@dataclass
class RolloutReport:
    counters: dict[str, int]
    #: the DaemonSet's own problems: counters disagree, nothing scheduled, generation lag
    daemonset_problems: list[str] = field(default_factory=list)
    gaps: list[NodeGap] = field(default_factory=list)
    ready_nodes: list[str] = field(default_factory=list)
    gpu_nodes: int = 0
    #: the controller has caught up: generation observed, counters agree (desired may be 0)
    caught_up: bool = True

    @property
    def settled(self) -> bool:
        return self.caught_up

    @property
    def unreachable(self) -> list[NodeGap]:
        return [g for g in self.gaps if not g.reachable]

    @property
    def pending(self) -> list[NodeGap]:
        return [g for g in self.gaps if g.reachable]

    @property
    def counters_line(self) -> str:
        c = self.counters
        return (f"DaemonSet desired={c['desired']} current={c['current']} "
                f"updated={c['updated']} ready={c['ready']} available={c['available']}")

    @property
    def summary(self) -> str:
        return f"{len(self.ready_nodes)}/{self.gpu_nodes} plugin pods ready on GPU nodes; " \
            f"{self.counters_line}"

    def gaps_line(self) -> str:
        """The missing nodes, summarized: count, the first few with reasons."""
        if not self.gaps:
            return ""
        shown = [f"{g.node} ({g.reason})" for g in self.gaps[:NAMES_SHOWN]]
        more = len(self.gaps) - len(shown)
        tail = f" and {more} more (every node is listed in the diagnostics)" if more else ""
        return (f"{len(self.gaps)} of {self.gpu_nodes} GPU node(s) have no ready device plugin "
                f"pod: {'; '.join(shown)}{tail}")

    def problems(self, per_node: bool) -> list[str]:
        found = list(self.daemonset_problems)
        # desired=0 alone explains nothing: the gaps say which taint or selector keeps them out
        if self.gaps and (per_node or self.counters["desired"] == 0):
            found.append(self.gaps_line())
        return found

    def final(self, per_node: bool) -> bool:
        """Waiting cannot help: the controller caught up (even at desired=0: a DaemonSet
        whose pods no GPU node admits), and only never-reachable nodes are missing."""
        del per_node  # the same for both checks: the gaps explain desired=0 too
        return self.settled and bool(self.unreachable) and not self.pending


def _pod_ready(pod: Any) -> bool:
    status = getattr(pod, "status", None)
    conditions = getattr(status, "conditions", None) or []
    return status is not None and status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in conditions)


def judge(daemonset: Any, pods: Iterable[Any], gpu_nodes: Sequence[GpuNode]) -> RolloutReport:
    """The DaemonSet's counters must agree, and every GPU node must have a ready plugin pod."""
    status = getattr(daemonset, "status", None)

    def counter(name: str) -> int:
        return int(getattr(status, name, None) or 0)

    counters = {
        "desired": counter("desired_number_scheduled"),
        "current": counter("current_number_scheduled"),
        "updated": counter("updated_number_scheduled"),
        "ready": counter("number_ready"),
        "available": counter("number_available"),
        "misscheduled": counter("number_misscheduled"),
    }
    report = RolloutReport(counters, gpu_nodes=len(gpu_nodes))
    desired = counters["desired"]
    lagging = [k for k in ("current", "updated", "ready", "available") if counters[k] != desired]
    if lagging:
        report.caught_up = False
        report.daemonset_problems.append(
            f"DaemonSet counters disagree: desired={desired}, "
            + ", ".join(f"{k}={counters[k]}" for k in lagging))
    if desired == 0 and gpu_nodes:
        report.daemonset_problems.append("DaemonSet schedules no pod at all (desired=0)")
    meta = getattr(daemonset, "metadata", None)
    generation = int(getattr(meta, "generation", None) or 0)
    if int(getattr(status, "observed_generation", None) or 0) < generation:
        report.caught_up = False
        report.daemonset_problems.append(
            f"DaemonSet controller has not observed generation {generation} yet")
    template = getattr(getattr(daemonset, "spec", None), "template", None)
    spec = getattr(template, "spec", None)
    live = [p for p in pods if getattr(p.metadata, "deletion_timestamp", None) is None]
    ready_on = {p.spec.node_name for p in live if p.spec and _pod_ready(p)}
    any_on = {p.spec.node_name for p in live if p.spec}
    for node in gpu_nodes:
        if not selector_matches(spec, node.labels):
            report.gaps.append(NodeGap(node.name, "the DaemonSet's nodeSelector/affinity "
                                       "excludes it", reachable=False))
            continue
        blocked = untolerated_taints(getattr(spec, "tolerations", None) or [], node)
        if blocked:
            permanent = [t for t in blocked if not is_transient_taint(t)]
            report.gaps.append(NodeGap(
                node.name, f"untolerated taint {', '.join(format_taint(t) for t in blocked)}",
                reachable=not permanent))
            continue
        if node.name in ready_on:
            report.ready_nodes.append(node.name)
        else:
            state = "plugin pod not ready" if node.name in any_on else "no plugin pod"
            report.gaps.append(NodeGap(node.name, state, reachable=True))
    return report


def observe(api: client.ApiClient, plugin: PluginRef) -> tuple[Any | None, list[Any], list[GpuNode]]:
    """The plugin DaemonSet (None if absent), its pods and the GPU nodes, as they are now."""
    apps, core = kapi.AppsV1Api(api), kapi.CoreV1Api(api)
    found = call(apps.list_namespaced_daemon_set, plugin.namespace,
                 field_selector=f"metadata.name={plugin.name}").items
    ds = found[0] if found else None
    return ds, _pods(core, plugin, ds), find_gpu_nodes(call(core.list_node).items)


def _pods(core: kapi.CoreV1Api, plugin: PluginRef, ds: Any) -> list[Any]:
    if ds is None:
        return []
    labels = (ds.spec.selector.match_labels or {}) if ds.spec and ds.spec.selector else {}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    items: list[Any] = call(core.list_namespaced_pod, plugin.namespace,
                            label_selector=selector).items
    return items


def check(api: client.ApiClient, plugin: PluginRef, timeouts: Timeouts, progress: Log | None,
          *, per_node: bool) -> Outcome:
    """Wait (bounded by plugin-rollout) for the rollout; the outcome says what is missing."""
    apps, core = kapi.AppsV1Api(api), kapi.CoreV1Api(api)
    where = f"{plugin.namespace}/{plugin.name}"
    last: list[RolloutReport] = []

    def evaluate(items: list[Any]) -> Verdict:
        if not items:
            return Verdict(False, f"DaemonSet {where} not found",
                           final=f"DaemonSet {where} does not exist")
        ds = items[0]
        counters = judge(ds, [], [])
        if not counters.caught_up:
            # the controller is still creating pods or they are not all ready: its status
            # changes (an event) as they do; pods and nodes are read once it caught up, so a
            # rollout over 2,000 nodes costs the requests one over 2 does
            last[:] = [counters]
            return Verdict(False, counters.counters_line)
        nodes = find_gpu_nodes(call(core.list_node).items)
        if not nodes:
            return Verdict(False, "no GPU node", final="the cluster has no GPU node at all")
        report = judge(ds, _pods(core, plugin, ds), nodes)
        last[:] = [report]
        problems = report.problems(per_node)
        if not problems:
            return Verdict(True, report.summary)
        final = "; ".join(problems) if report.final(per_node) else None
        return Verdict(False, report.summary, final=final)

    description = ("a ready device plugin pod on every GPU node" if per_node
                   else "DaemonSet counters desired == current == updated == ready == available")
    try:
        wait_for(description, apps.list_namespaced_daemon_set, evaluate,
                 timeout=timeouts["plugin-rollout"], timeout_name="plugin-rollout",
                 progress=progress, watch_seconds=WATCH_SECONDS, namespace=plugin.namespace,
                 field_selector=f"metadata.name={plugin.name}")
    except FinalStateError as exc:
        return Outcome(False, str(exc))
    except WaitTimeout as exc:
        problems = last[0].problems(per_node) if last else []
        return Outcome(False, str(exc) + (": " + "; ".join(problems) if problems else ""))
    return Outcome(True)

