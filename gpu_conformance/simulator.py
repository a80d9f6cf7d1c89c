"""The kubelet's device manager for simulated GPU nodes: GPU capacity appears only while a
device plugin pod serves the node, as on a real node.

What a real kubelet does (k8s.io/kubernetes v1.36, pkg/kubelet/cm/devicemanager):

* Registration: the plugin registers on the kubelet's socket; ``plugin/v1beta1/handler.go``
  ``server.RegisterPlugin`` -> ``connectClient`` -> ``ManagerImpl.PluginConnected`` (manager.go)
  creates the resource's endpoint. Each ``ListAndWatch`` response goes to
  ``ManagerImpl.genericDeviceUpdateCallback``, which files every device under
  ``healthyDevices`` or ``unhealthyDevices`` by its ``Health``.
* ``ManagerImpl.GetCapacity`` (manager.go), called at every node status update: for each
  resource whose endpoint is not stopped past its grace period, capacity = healthy +
  unhealthy devices and allocatable = healthy devices. Resources whose endpoint has been
  stopped for longer than ``endpointStopGracePeriod`` (types.go: ``5 * time.Minute``; checked
  by ``endpointImpl.stopGracePeriodExpired`` in endpoint.go) are deleted and returned as
  "removed".
* The plugin going away: its ``ListAndWatch`` stream ends (``client.Run`` returns, then
  ``server.runClient`` calls ``disconnectClient``) or its socket is removed
  (``server.DeRegisterPlugin``); either way ``client.Disconnect`` -> ``ManagerImpl.
  PluginDisconnected``, which calls ``markResourceUnhealthy`` (every device moves to
  unhealthy: allocatable 0 at once, capacity unchanged) and ``setStopTime(time.Now())``.
* ``nodestatus.MachineInfo`` (pkg/kubelet/nodestatus/setters.go) writes the device plugin
  capacity into ``node.Status.Capacity``, and for each removed resource "Set capacity for
  removed resource to 0 on device removal": the key stays, with 0, so that it is still known
  as a device plugin resource. Allocatable starts as a copy of capacity (so a removed
  resource is 0 there too), then device plugin allocatable overrides it. The kubelet syncs
  node status every ``nodeStatusUpdateFrequency`` (10 s by default, apis/config/v1beta1/
  defaults.go), so on a real node each change shows within about 10 s; here it shows as
  soon as the pod event arrives. (A kubelet restart, ``ManagerImpl.readCheckpoint``, reports
  checkpointed resources as 0 until the plugin registers again; this simulator restarting is
  not a kubelet restart and tries to be invisible, see ``DeviceManagers.patches``.)

So, per simulated node and resource, with one plugin pod per node registering all of the
node's resources:

* a device plugin pod serves the node: capacity = all devices, allocatable = healthy ones;
* the last one stopped serving less than the grace period ago: capacity = all devices,
  allocatable 0;
* longer ago: capacity 0, allocatable 0 (the key stays, as the kubelet leaves it);
* never registered: the simulator leaves the resource out of the node's status.

A pod serves its node when it is bound to it, Ready, not being deleted, owned by a
DaemonSet and looks like the NVIDIA device plugin (see ``is_device_plugin_pod``). Nodes are
simulated when labelled ``gpu-conformance.io/simulated=true`` and annotated with their GPUs
(``GPUS_ANNOTATION``, optionally ``HEALTHY_ANNOTATION`` and ``RESOURCE_ANNOTATION``; or
``DEVICES_ANNOTATION`` for several resources: MIG profiles, time-sliced replicas).

kwok v0.8's node stages do not fight this: ``node-initialize`` (only while a node is not
Ready) echoes the node's own capacity/allocatable back, and ``node-heartbeat-with-lease``
touches conditions, addresses and daemonEndpoints only (kwok kustomize/stage/node/), both
as strategic merge patches (pkg/utils/lifecycle/next.go ``computePatch``) that keep other
keys. Should anything else overwrite the GPU resources, the node watch sees it and the
status is applied again.

The controller runs as one process per offline cluster (``start``/``stop``/``running``;
``python -m gpu_conformance.simulator``): one list+watch of scheduled pods, one of simulated
nodes, state in memory, a merge patch of the node's status subresource (GPU resources only)
only when the status differs from what it should be.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpu_conformance import gpus, kapi
from gpu_conformance.errors import ClusterError, GpuConformanceError, exit_code_for, is_not_found, one_line
from gpu_conformance.gpu_nodes import quantity
from gpu_conformance.kube import call, describe_unreachable, is_transient, new_api_client
from gpu_conformance.log import Log
from gpu_conformance.nodes import (
    DEVICES_ANNOTATION,
    GPUS_ANNOTATION,
    HEALTHY_ANNOTATION,
    RESOURCE_ANNOTATION,
    SIMULATED_LABEL,
)

__all__ = ["DEVICES_ANNOTATION", "GPUS_ANNOTATION", "HEALTHY_ANNOTATION", "RESOURCE_ANNOTATION"]
#: the kubelet's endpointStopGracePeriod
DEFAULT_PLUGIN_GRACE = 300.0

PID_FILE = "simulator.pid"
LOG_FILE = "simulator.log"
MODULE = "gpu_conformance.simulator"
#: the line the process logs once it has listed pods and nodes (``start`` waits for it)
SYNCED_MARKER = "watching "

POD_FIELD_SELECTOR = "spec.nodeName!="
NODE_LABEL_SELECTOR = f"{SIMULATED_LABEL}=true"
LIST_PAGE = 500
WATCH_SECONDS = (300, 600)  # the server ends each watch after a random time in this range
#: a watch silent this long is dead (a frozen server): the server sends a bookmark every minute
WATCH_SILENCE = 150
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 10.0
PATCH_WORKERS = 8
PATCH_BUDGET = 2.0  # seconds one patch may spend retrying before it is deferred
MERGE_PATCH = "application/merge-patch+json"
SKIPPED = "not tried: the API server is unavailable"


# --- the pure core -------------------------------------------------------------------------

@dataclass(frozen=True)
class Devices:
    """One resource's devices on a node, as its plugin would report them."""

    total: int
    healthy: int


@dataclass(frozen=True)
class Allocation:
    """What the kubelet would write for one resource."""

    capacity: int
    allocatable: int


@dataclass(frozen=True)
class SimNode:
    """A simulated GPU node: its devices, and its status for those resources as last seen."""

    name: str
    devices: Mapping[str, Devices]
    capacity: Mapping[str, str] = field(default_factory=dict)
    allocatable: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""


@dataclass(frozen=True)
class PluginPod:
    """A device plugin pod, reduced to what decides whether it serves its node."""

    key: str
    node: str
    ready: bool
    deleting: bool

    @property
    def serving(self) -> bool:
        return bool(self.node) and self.ready and not self.deleting


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _count(text: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{what} must be a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


def devices_from_annotations(annotations: Mapping[str, str]) -> dict[str, Devices] | None:
    """The node's devices per resource from its annotations; None when it declares none.

    Raises ValueError (one line) for a value that is not a count.
    """
    if DEVICES_ANNOTATION in annotations:
        return _devices(annotations[DEVICES_ANNOTATION])
    if GPUS_ANNOTATION not in annotations:
        return None
    total = _count(annotations[GPUS_ANNOTATION], GPUS_ANNOTATION)
    healthy = total
    if HEALTHY_ANNOTATION in annotations:
        healthy = min(total, _count(annotations[HEALTHY_ANNOTATION], HEALTHY_ANNOTATION))
    resource = (annotations.get(RESOURCE_ANNOTATION) or gpus.GPU_RESOURCE).strip()
    if "/" not in resource:
        raise ValueError(f"{RESOURCE_ANNOTATION} must be an extended resource name "
                         f"(domain/name), got {resource!r}")
    return {resource: Devices(total, healthy)}


def _devices(text: str) -> dict[str, Devices]:
    """``RESOURCE=TOTAL[/HEALTHY],...`` (``DEVICES_ANNOTATION``)."""
    found: dict[str, Devices] = {}
    for item in (i.strip() for i in text.split(",")):
        resource, sep, counts = item.partition("=")
        if not sep or "/" not in resource:
            raise ValueError(f"{DEVICES_ANNOTATION} must be RESOURCE=TOTAL[/HEALTHY],... with "
                             f"extended resource names (domain/name), got {item!r}")
        total_text, _, healthy_text = counts.partition("/")
        total = _count(total_text, f"{DEVICES_ANNOTATION} {resource}")
        healthy = _count(healthy_text, f"{DEVICES_ANNOTATION} {resource}") if healthy_text \
            else total
        found[resource.strip()] = Devices(total, min(total, healthy))
    return found


def sim_node(node: Mapping[str, Any]) -> SimNode | None:
    """A Node (its JSON) as a SimNode; None when it is not a simulated GPU node.

    Raises ValueError when its GPU annotations are malformed.
    """
    meta = _meta(node)
    name = meta.get("name")
    labels = meta.get("labels") or {}
    if not name or labels.get(SIMULATED_LABEL) != "true":
        return None
    devices = devices_from_annotations(meta.get("annotations") or {})
    if devices is None:
        return None
    status = node.get("status") or {}
    capacity, allocatable = status.get("capacity") or {}, status.get("allocatable") or {}
    return SimNode(
        name=str(name), devices=devices,
        capacity={r: str(capacity[r]) for r in devices if r in capacity},
        allocatable={r: str(allocatable[r]) for r in devices if r in allocatable},
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def is_device_plugin_pod(pod: Mapping[str, Any]) -> bool:
    """Does this pod look like the NVIDIA device plugin (``device_plugin.is_nvidia_device_plugin``
    for pods): owned by a DaemonSet, and its image, its DaemonSet's or a container's name or its
    labels say so."""
    meta = _meta(pod)
    owners = [ref for ref in meta.get("ownerReferences") or [] if ref.get("kind") == "DaemonSet"]
    if not owners:
        return False
    labels = meta.get("labels") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    return (
        any("k8s-device-plugin" in (c.get("image") or "") for c in containers)
        or any("nvidia-device-plugin" in (ref.get("name") or "") for ref in owners)
        or any("nvidia-device-plugin" in (c.get("name") or "") for c in containers)
        or labels.get("app.kubernetes.io/name") == "nvidia-device-plugin"
        or labels.get("name") == "nvidia-device-plugin-ds"
    )


def plugin_pod(pod: Mapping[str, Any]) -> PluginPod | None:
    """The pod as a PluginPod, or None when it is no device plugin pod."""
    if not is_device_plugin_pod(pod):
        return None
    meta = _meta(pod)
    status = pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])
    return PluginPod(
        key=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        ready=ready, deleting=bool(meta.get("deletionTimestamp")),
    )


def desired(node: SimNode, serving: bool, last_ready: float | None, now: float,
            grace: float) -> dict[str, Allocation] | None:
    """What the kubelet would report for the node's resources (None: leave them alone).

    ``last_ready``: when a plugin pod last served the node (None: never, as far as known).
    The resources are removed once ``grace`` has passed (the kubelet: once more than it has).
    """
    if serving:
        return {r: Allocation(d.total, d.healthy) for r, d in node.devices.items()}
    if last_ready is None:
        return None
    if now - last_ready < grace:
        return {r: Allocation(d.total, 0) for r, d in node.devices.items()}
    return {r: Allocation(0, 0) for r in node.devices}


def status_patch(node: SimNode, want: Mapping[str, Allocation] | None) -> dict[str, Any] | None:
    """The merge patch of the node's status that makes it ``want`` (None: nothing to change)."""
    if not want:
        return None
    same = all(
        r in node.capacity and r in node.allocatable
        and quantity(node.capacity[r]) == a.capacity and quantity(node.allocatable[r]) == a.allocatable
        for r, a in want.items()
    )
    if same:
        return None
    return {"status": {"capacity": {r: str(a.capacity) for r, a in want.items()},
                       "allocatable": {r: str(a.allocatable) for r, a in want.items()}}}


def plan(nodes: Iterable[SimNode], pods: Iterable[PluginPod], last_ready: Mapping[str, float],
         now: float, grace: float) -> dict[str, dict[str, Any]]:
    """The status patch each node needs, by node name (nodes that need none are left out)."""
    serving = {p.node for p in pods if p.serving}
    patches = {}
    for node in nodes:
        patch = status_patch(node, desired(node, node.name in serving, last_ready.get(node.name),
                                           now, grace))
        if patch is not None:
            patches[node.name] = patch
    return patches


def _newer_or_same(incoming: str, known: str) -> bool:
    """Is ``incoming`` not older than ``known``? (etcd's resourceVersions are integers; anything
    else is taken as new.)"""
    if incoming.isdigit() and known.isdigit():
        return int(incoming) >= int(known)
    return True


class DeviceManagers:
    """Every simulated node's device manager, in memory, fed with pod and node changes.

    No I/O: the caller passes the time and applies the patches ``patches`` returns.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.nodes: dict[str, SimNode] = {}
        self.pods: dict[str, PluginPod] = {}
        self.pods_on: dict[str, set[str]] = {}
        #: node -> when its last plugin pod stopped serving it (absent while one serves it)
        self.last_ready: dict[str, float] = {}
        self.expiring: dict[str, float] = {}  # node -> when its grace period ends
        self.deferred: dict[str, float] = {}  # node -> not before (a failed patch)
        self.dirty: set[str] = set()
        self.evaluated: set[str] = set()

    def serving(self, name: str) -> bool:
        return any(self.pods[key].serving for key in self.pods_on.get(name, ()))

    # pods
    def set_pod(self, uid: str, pod: PluginPod | None, now: float) -> None:
        """A pod was added, changed or (``pod`` None) deleted or found to be no plugin pod."""
        old = self.pods.get(uid)
        if old == pod:
            return
        touched = {p.node for p in (old, pod) if p is not None and p.node}
        before = {n: self.serving(n) for n in touched}
        if old is not None:
            self._unindex(uid, old)
        if pod is not None:
            self.pods[uid] = pod
            self.pods_on.setdefault(pod.node, set()).add(uid)
        self._transitions(before, now)

    def replace_pods(self, pods: Mapping[str, PluginPod], now: float) -> None:
        """A fresh list of every plugin pod (after a relist)."""
        touched = {p.node for p in (*self.pods.values(), *pods.values()) if p.node}
        before = {n: self.serving(n) for n in touched}
        self.pods, self.pods_on = {}, {}
        for uid, pod in pods.items():
            self.pods[uid] = pod
            self.pods_on.setdefault(pod.node, set()).add(uid)
        self._transitions(before, now)

    def _unindex(self, uid: str, pod: PluginPod) -> None:
        del self.pods[uid]
        keys = self.pods_on.get(pod.node)
        if keys is not None:
            keys.discard(uid)
            if not keys:
                del self.pods_on[pod.node]

    def _transitions(self, before: Mapping[str, bool], now: float) -> None:
        for name, was in before.items():
            now_serving = self.serving(name)
            if was and not now_serving:
                self.last_ready[name] = now
                self.expiring[name] = now + self.grace
            elif now_serving:
                self.last_ready.pop(name, None)
                self.expiring.pop(name, None)
            if was != now_serving:
                self.dirty.add(name)

    # nodes
    def set_node(self, name: str, node: SimNode | None) -> None:
        """A node was added or changed; None: deleted, or no longer a simulated GPU node."""
        if node is None:
            self.remove_node(name)
            return
        known = self.nodes.get(name)
        if known is not None and not _newer_or_same(node.resource_version, known.resource_version):
            return  # an event older than our own patch's answer
        self.nodes[name] = node
        self.dirty.add(name)

    def replace_nodes(self, nodes: Mapping[str, SimNode]) -> None:
        for name in [n for n in self.nodes if n not in nodes]:
            self.remove_node(name)
        for name, node in nodes.items():
            self.set_node(name, node)

    def remove_node(self, name: str) -> None:
        self.nodes.pop(name, None)
        for table in (self.last_ready, self.expiring, self.deferred):
            table.pop(name, None)
        self.dirty.discard(name)
        self.evaluated.discard(name)

    def defer(self, name: str, until: float) -> None:
        """A patch failed: try the node again at ``until``."""
        self.deferred[name] = until
        self.dirty.add(name)

    # decisions
    def next_deadline(self) -> float | None:
        times = [*self.expiring.values(), *self.deferred.values()]
        return min(times) if times else None

    def patches(self, now: float) -> dict[str, dict[str, Any]]:
        """The patches due now: changed nodes, ended grace periods, deferred retries."""
        for name, ends in list(self.expiring.items()):
            if ends <= now:
                del self.expiring[name]
                self.dirty.add(name)
        for name, until in list(self.deferred.items()):
            if until <= now:
                del self.deferred[name]
        out = {}
        for name in [n for n in self.dirty if n not in self.deferred]:
            self.dirty.discard(name)
            node = self.nodes.get(name)
            if node is None:
                continue
            serving = self.serving(name)
            if name not in self.evaluated:
                self.evaluated.add(name)
                # first sight of a node that shows devices no plugin serves now: a plugin
                # registered before we were watching (we restarted); start its grace now
                if not serving and name not in self.last_ready and any(
                        quantity(node.capacity.get(r)) > 0 for r in node.devices):
                    self.last_ready[name] = now
                    self.expiring[name] = now + self.grace
            patch = status_patch(node, desired(node, serving, self.last_ready.get(name), now,
                                               self.grace))
            if patch is not None:
                out[name] = patch
        return out


# --- the loop ------------------------------------------------------------------------------

@dataclass
class Stats:
    events: int = 0
    lists: int = 0
    watches: int = 0
    patches: int = 0
    failures: int = 0

    def line(self) -> str:
        return (f"{self.events} events, {self.lists} lists, {self.watches} watches, "
                f"{self.patches} patches, {self.failures} failed requests")


@dataclass(frozen=True)
class _Listed:
    kind: str
    items: dict[str, Any]


@dataclass(frozen=True)
class _Event:
    kind: str
    key: str
    value: Any


class _Problems:
    """One log line per problem: repeats of the same one are counted, not logged."""

    def __init__(self, log: Log, what: str) -> None:
        self.log, self.what = log, what
        self.current: str | None = None
        self.repeats = 0

    def failed(self, text: str) -> None:
        if text != self.current:
            self.log(f"{self.what}: {text}")
            self.current, self.repeats = text, 0
        else:
            self.repeats += 1

    def recovered(self) -> None:
        if self.current is not None:
            more = f" ({self.repeats} more failures)" if self.repeats else ""
            self.log(f"{self.what}: working again{more}")
            self.current, self.repeats = None, 0


def _backoff(failures: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


class _Stream(threading.Thread):
    """List, then watch one kind of object forever, handing them over already reduced."""

    def __init__(self, kind: str, list_fn: Callable[..., Any], selector: dict[str, Any],
                 key: Callable[[Mapping[str, Any]], str], reduce: Callable[[Mapping[str, Any]], Any],
                 out: queue.Queue[_Listed | _Event | str], stop: threading.Event, stats: Stats,
                 log: Log, gone: Callable[[], bool], host: str) -> None:
        super().__init__(name=f"watch-{kind}", daemon=True)
        self.kind, self.list_fn, self.selector = kind, list_fn, selector
        self.key, self.reduce, self.out, self.stop = key, reduce, out, stop
        self.stats, self.gone, self.host = stats, gone, host
        self.problems = _Problems(log, kind)
        self.failures = 0
        self.gone_reported = False

    def run(self) -> None:
        resource_version: str | None = None
        while not self.stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
                self.failures = 0
            except _Expired:
                resource_version = None
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                    continue
                self._failed(exc)
            except Exception as exc:
                self._failed(exc)
            if self.gone_reported:
                return

    def _failed(self, exc: BaseException) -> None:
        self.stats.failures += 1
        self.failures += 1
        if self.gone():
            self.out.put("gone")
            self.gone_reported = True
            return
        self.problems.failed(f"{_problem(exc, self.host)}; retrying"
                             + ("" if is_transient(exc) else " (not a transient error)"))
        self.stop.wait(_backoff(self.failures))

    def _list(self) -> str:
        items: dict[str, Any] = {}
        token: str | None = None
        resource_version = ""
        while True:
            resp = call(self.list_fn, limit=LIST_PAGE, _continue=token, _preload_content=False,
                        **self.selector)
            page = json.loads(resp.data)
            for item in page.get("items") or []:
                items[self.key(item)] = self.reduce(item)
            meta = page.get("metadata") or {}
            resource_version = str(meta.get("resourceVersion") or resource_version)
            token = meta.get("continue") or None
            if token is None:
                break
        self.stats.lists += 1
        self.out.put(_Listed(self.kind, items))
        self.problems.recovered()
        return resource_version

    def _watch(self, resource_version: str) -> str:
        seconds = random.randint(*WATCH_SECONDS)
        resp = call(self.list_fn, watch=True, resource_version=resource_version,
                    allow_watch_bookmarks=True, timeout_seconds=seconds, _preload_content=False,
                    _request_timeout=(10, WATCH_SILENCE), **self.selector)
        self.stats.watches += 1
        try:
            for line in _lines(resp):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Expired()
                    raise ClusterError(f"watch error {obj.get('code')}: {obj.get('message')}")
                resource_version = str(_meta(obj).get("resourceVersion") or resource_version)
                self.problems.recovered()
                if kind == "BOOKMARK":
                    continue
                self.stats.events += 1
                value = None if kind == "DELETED" else self.reduce(obj)
                self.out.put(_Event(self.kind, self.key(obj), value))
                if self.stop.is_set():
                    break
        finally:
            resp.close()
            resp.release_conn()
        return resource_version


def _problem(exc: BaseException, host: str) -> str:
    """A failed request in one line that reads the same each time the same problem recurs
    (urllib3's own text names the URL, which differs from request to request)."""
    if isinstance(exc, ApiException | GpuConformanceError | ValueError):
        return one_line(exc)
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return f"the connection to {host} was cut ({one_line(exc)})"
    return describe_unreachable(exc, host)


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def _lines(resp: Any) -> Iterator[str]:
    """The newline-separated JSON documents of a watch response, as they arrive."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode("utf-8", errors="replace")


def _reduce_node(node: Mapping[str, Any]) -> SimNode | str | None:
    try:
        return sim_node(node)
    except ValueError as exc:
        return str(exc)


def _uid(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("uid") or "")


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


class Simulator:
    """The controller: two streams feed one loop that keeps every node's GPU status right."""

    def __init__(self, api: client.ApiClient, *, grace: float, log: Log,
                 gone: Callable[[], bool] = lambda: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api, self.log, self.gone, self.clock = api, log, gone, clock
        self.core = kapi.CoreV1Api(api)
        self.host = str(getattr(getattr(api, "configuration", None), "host", "") or "")
        self.state = DeviceManagers(grace)
        self.stats = Stats()
        self.queue: queue.Queue[_Listed | _Event | str] = queue.Queue()
        self.problems: dict[str, str] = {}  # node -> its annotation problem, as logged
        self.patch_problems = _Problems(log, "patch node status")
        self.patch_failures = 0
        self.synced = False

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set (or the cluster's kubeconfig is gone)."""
        streams = [
            _Stream("pods", self.core.list_pod_for_all_namespaces,
                    {"field_selector": POD_FIELD_SELECTOR}, _uid, plugin_pod, self.queue, stop,
                    self.stats, self.log, self.gone, self.host),
            _Stream("nodes", self.core.list_node, {"label_selector": NODE_LABEL_SELECTOR},
                    _name, _reduce_node, self.queue, stop, self.stats, self.log, self.gone,
                    self.host),
        ]
        for stream in streams:
            stream.start()
        listed: set[str] = set()  # kinds listed at least once
        with ThreadPoolExecutor(PATCH_WORKERS, thread_name_prefix="patch") as pool:
            while not stop.is_set():
                batch = self._next_batch()
                for item in batch:
                    if item == "gone":
                        self.log("the cluster's kubeconfig is gone (cluster removed); exiting")
                        stop.set()
                        break
                    self._apply(item, listed)
                if len(listed) < 2 or stop.is_set():
                    continue
                if not self.synced:
                    self.synced = True
                    self.log(f"{SYNCED_MARKER}{len(self.state.nodes)} simulated GPU node(s) and "
                             f"{len(self.state.pods)} device plugin pod(s); plugin grace "
                             f"{self.state.grace:g}s")
                patches = self.state.patches(self.clock())
                if patches:
                    self._patch_all(pool, patches)
        stop.set()
        self.log(f"stopped: {self.stats.line()}")

    def _next_batch(self) -> list[_Listed | _Event | str]:
        deadline = self.state.next_deadline()
        wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - self.clock()))
        batch: list[_Listed | _Event | str] = []
        try:
            batch.append(self.queue.get(timeout=wait))
        except queue.Empty:
            return batch
        with contextlib.suppress(queue.Empty):
            while len(batch) < 10_000:
                batch.append(self.queue.get_nowait())
        return batch

    def _apply(self, item: _Listed | _Event | str, listed: set[str]) -> None:
        if isinstance(item, str):
            return
        now = self.clock()
        if isinstance(item, _Listed):
            listed.add(item.kind)
            if item.kind == "pods":
                self.state.replace_pods({k: v for k, v in item.items.items() if v is not None}, now)
            else:
                self.state.replace_nodes({k: v for k, v in item.items.items()
                                          if self._usable(k, v)})
            return
        if item.kind == "pods":
            self.state.set_pod(item.key, item.value, now)
        else:
            self.state.set_node(item.key, item.value if self._usable(item.key, item.value) else None)

    def _usable(self, name: str, value: SimNode | str | None) -> bool:
        """A SimNode; a problem string is logged once per node and new problem."""
        if isinstance(value, str):
            if self.problems.get(name) != value:
                self.problems[name] = value
                self.log(f"node {name}: {value}; not simulating its GPUs")
            return False
        self.problems.pop(name, None)
        return value is not None

    def _patch_all(self, pool: ThreadPoolExecutor, patches: Mapping[str, dict[str, Any]]) -> None:
        api_down = threading.Event()
        results = list(pool.map(lambda item: self._patch(item[0], item[1], api_down),
                                patches.items()))
        failed = []
        for name, outcome in results:
            if isinstance(outcome, SimNode):
                self.state.set_node(name, outcome)
            elif outcome == "gone" or outcome is None:
                self.state.remove_node(name)
            else:
                failed.append((name, outcome))
        if failed:
            self.stats.failures += len(failed)
            self.patch_failures += 1
            until = self.clock() + _backoff(self.patch_failures)
            for name, _why in failed:
                self.state.defer(name, until)
            # the same outage reads the same each time, whichever nodes it hit
            why = next((w for _n, w in failed if w != SKIPPED), failed[0][1])
            self.patch_problems.failed(f"{why}; retrying")
        else:
            self.patch_failures = 0
            self.patch_problems.recovered()

    def _patch(self, name: str, body: dict[str, Any],
               api_down: threading.Event) -> tuple[str, SimNode | str | None]:
        """(name, the node as patched | "gone" | why it failed)."""
        if api_down.is_set():
            return name, SKIPPED
        try:
            resp: Any = call(self.core.patch_node_status, name, body, _content_type=MERGE_PATCH,
                             _preload_content=False, deadline=time.monotonic() + PATCH_BUDGET)
            node = json.loads(resp.data)
        except Exception as exc:
            if is_not_found(exc):
                return name, "gone"
            if is_transient(exc):
                api_down.set()
            return name, _problem(exc, self.host)
        self.stats.patches += 1
        reduced = _reduce_node(node)
        return name, reduced if isinstance(reduced, SimNode) else None


# --- the process ---------------------------------------------------------------------------

def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _ours(pid: int, state_dir: Path) -> bool:
    """Alive and this cluster's simulator (a recycled pid belongs to someone else)."""
    cmdline = _cmdline(pid)
    return (_alive(pid) and MODULE.encode() in cmdline
            and str(state_dir.resolve()).encode() in cmdline)


def _pid(state_dir: Path) -> int | None:
    try:
        return int((state_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (a test started it)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def running(state_dir: Path) -> bool:
    """Does this cluster's simulator run?"""
    pid = _pid(state_dir)
    if pid is not None:
        _reap(pid)
    return pid is not None and _ours(pid, state_dir)


def start(kubeconfig: Path, state_dir: Path, *, plugin_grace: float = DEFAULT_PLUGIN_GRACE,
          log: Log, wait: float = 30.0) -> int:
    """Start the cluster's simulator, detached; return its pid once it watches the cluster.

    Its output goes to ``state_dir/simulator.log``, its pid to ``state_dir/simulator.pid``;
    its command line names ``state_dir``. One already running is kept.
    """
    return spawn(kubeconfig, state_dir, plugin_grace=plugin_grace, log=log).synced(wait)


@dataclass
class Spawned:
    """A simulator started by ``spawn``; ``synced`` waits until it watches the cluster."""

    state_dir: Path
    process: subprocess.Popen[bytes] | None  # None: one was already running
    pid: int
    offset: int
    log: Log

    def synced(self, wait: float) -> int:
        if self.process is None:
            return self.pid
        log_path = self.state_dir / LOG_FILE
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with contextlib.suppress(OSError):
                    (self.state_dir / PID_FILE).unlink()
                raise ClusterError("the device plugin simulator exited at once: "
                                   f"{_last_line(log_path, self.offset)}", hint=f"see {log_path}")
            if SYNCED_MARKER.encode() in _tail(log_path, self.offset):
                self.log(f"device plugin simulator running (pid {self.pid}, log {log_path})")
                return self.pid
            time.sleep(0.05)
        last = _last_line(log_path, self.offset)
        stop(self.state_dir, timeout=5.0)
        raise ClusterError(f"the device plugin simulator did not sync within {wait:g}s: {last}",
                           hint=f"see {log_path}")


def spawn(kubeconfig: Path, state_dir: Path, *, plugin_grace: float = DEFAULT_PLUGIN_GRACE,
          log: Log) -> Spawned:
    """Start the simulator and return at once: it keeps trying to reach the API server, so it
    may start with the control plane (its 0.5 s of imports then overlap the server's start)."""
    state_dir = state_dir.resolve()
    pid = _pid(state_dir)
    if pid is not None and running(state_dir):
        log(f"device plugin simulator already running (pid {pid})")
        return Spawned(state_dir, None, pid, 0, log)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / LOG_FILE
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
    with log_path.open("ab") as out:
        offset = out.tell()
        process = subprocess.Popen(
            [sys.executable, "-m", MODULE, "--kubeconfig", str(kubeconfig.resolve()),
             "--plugin-grace", f"{plugin_grace:g}", "--state-dir", str(state_dir)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, close_fds=True,
        )
    (state_dir / PID_FILE).write_text(f"{process.pid}\n")
    return Spawned(state_dir, process, process.pid, offset, log)


def _tail(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return b""


def _last_line(path: Path, offset: int) -> str:
    lines = [line for line in _tail(path, offset).decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "no output"


def stop(state_dir: Path, timeout: float = 10.0) -> bool:
    """SIGTERM the cluster's simulator, wait (bounded), then SIGKILL; False if none ran."""
    state_dir = state_dir.resolve()
    pid = _pid(state_dir)
    stopped = False
    if pid is not None and _ours(pid, state_dir):
        stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not _ours(pid, state_dir):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
    with contextlib.suppress(OSError):
        (state_dir / PID_FILE).unlink()
    return stopped


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _say(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gpu_conformance.simulator --kubeconfig PATH [--plugin-grace SECONDS]``."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}",
                                     description="Simulate the kubelet device manager of "
                                                 "simulated GPU nodes.")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--plugin-grace", type=_grace, default=DEFAULT_PLUGIN_GRACE,
                        metavar="SECONDS", help="how long GPUs stay in capacity after their "
                        f"plugin stops (default: the kubelet's {DEFAULT_PLUGIN_GRACE:g})")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="the cluster's state folder (names the process as its own)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    kubeconfig: Path = args.kubeconfig
    try:
        api = new_api_client(kubeconfig, None)
    except GpuConformanceError as exc:
        _say(f"error: {exc.one_line()}")
        return int(exit_code_for(exc))
    stop_event = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        # no output here: the main thread may be inside print() on the same stream
        stop_event.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    _say(f"device plugin simulator for {kubeconfig} (pid {os.getpid()})")
    try:
        Simulator(api, grace=args.plugin_grace, log=_say,
                  gone=lambda: not kubeconfig.exists()).run(stop_event)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        api.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
