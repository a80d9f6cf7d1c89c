"""Fake GPUs on kind workers, and the keeper that holds them there.

Workers get ``nvidia.com/gpu`` capacity and allocatable by a PATCH of their status subresource.
A kubelet keeps extended resources it does not manage, but zeroes them when it re-registers (a
restart after its checkpoint is lost): a background ``FakeGpuKeeper`` re-checks the GPU workers
every few seconds and re-advertises what was lost; it stops at ``down`` or after its lifetime,
whichever comes first. Polling with an interruptible sleep rather than a watch makes the stop
at teardown immediate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from gpu_conformance import gpus
from gpu_conformance.backends.kind.config import fake_gpu_node_labels
from gpu_conformance.errors import ClusterError, GpuConformanceError, one_line
from gpu_conformance.gpus import GpuSku
from gpu_conformance.kube import call
from gpu_conformance.log import Log
from gpu_conformance.nodes import gpu_resources
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

if TYPE_CHECKING:
    from gpu_conformance.kapi import CoreV1Api

T = TypeVar("T")

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
#: a kubelet posts node status every 10 s; checking every 2 s restores a reset GPU count well
#: before the suites' capacity checks, which poll for minutes.
KEEPER_INTERVAL_S = 2.0


def _api(what: str, request: Callable[[], T]) -> T:
    """One API call, retried on transient errors only (kube.call); a final error is one line."""
    try:
        return call(request)
    except GpuConformanceError:
        raise
    except Exception as error:
        raise ClusterError(f"{what}: {one_line(error)}") from None


def advertise_fake_gpus(core_v1_api: CoreV1Api, node_names: Sequence[str], gpus_per_node: int,
                        sku: GpuSku) -> None:
    """Make these nodes look like GPU nodes of ``sku`` to the scheduler and the suites.

    Labels go on the node object; ``nvidia.com/gpu`` capacity and allocatable go through the
    status subresource (the only way to change node status). Both are strategic merge patches
    that touch only these keys, so the kubelet's own cpu/memory/pods stay real.
    """
    capacity, allocatable = gpu_resources(gpus_per_node)
    gpu_status = {"status": {
        "capacity": {gpus.GPU_RESOURCE: capacity[gpus.GPU_RESOURCE]},
        "allocatable": {gpus.GPU_RESOURCE: allocatable[gpus.GPU_RESOURCE]},
    }}
    labels = {"metadata": {"labels": fake_gpu_node_labels(sku, gpus_per_node)}}
    for name in node_names:
        _api(f"labelling node {name} as a fake {sku.device_name} node",
             partial(core_v1_api.patch_node, name, labels))
        _api(f"advertising {gpus_per_node} fake {gpus.GPU_RESOURCE} on node {name}",
             partial(core_v1_api.patch_node_status, name, gpu_status))


def missing_fake_gpus(node: Any, gpus_per_node: int, sku: GpuSku) -> list[str]:
    """What a node lacks of its fake GPU advertisement (empty when it is all there)."""
    want = str(gpus_per_node)
    status = getattr(node, "status", None)
    capacity = getattr(status, "capacity", None) or {}
    allocatable = getattr(status, "allocatable", None) or {}
    labels = getattr(node.metadata, "labels", None) or {}
    missing = [f"{kind} {gpus.GPU_RESOURCE}={have.get(gpus.GPU_RESOURCE, 'none')}"
               for kind, have in (("capacity", capacity), ("allocatable", allocatable))
               if have.get(gpus.GPU_RESOURCE) != want]
    missing += [f"label {key}" for key, value in fake_gpu_node_labels(sku, gpus_per_node).items()
                if labels.get(key) != value]
    return missing


def _workers(items: Sequence[Any]) -> list[str]:
    names = []
    for node in items:
        meta = getattr(node, "metadata", None)
        if meta is None or not meta.name:
            continue
        if not any(key in (meta.labels or {}) for key in CONTROL_PLANE_LABELS):
            names.append(meta.name)
    return sorted(names)


def worker_node_names(core_v1_api: CoreV1Api) -> list[str]:
    """Names of the nodes that are not control planes, sorted."""
    return _workers(_api("listing nodes", core_v1_api.list_node).items)


def wait_for_workers(core_v1_api: CoreV1Api, count: int, timeout_s: float,
                     progress: Log | None = None) -> list[str]:
    """The first ``count`` worker nodes by name, once that many are registered."""

    def evaluate(items: list[Any]) -> Verdict:
        found = _workers(items)
        return Verdict(len(found) >= count,
                       f"{len(found)} kind worker node(s) registered ({', '.join(found) or 'none'})")

    items = wait_for(f"{count} kind worker nodes registered", core_v1_api.list_node, evaluate,
                     timeout=timeout_s, timeout_name="nodes-ready", progress=progress)
    return _workers(items)[:count]


class FakeGpuKeeper:
    """Re-advertises fake GPUs that a kubelet dropped, until stopped or its lifetime ends."""

    def __init__(self, core_v1_api: CoreV1Api, node_names: Sequence[str], gpus_per_node: int,
                 sku: GpuSku, *, log: Log, interval_s: float = KEEPER_INTERVAL_S,
                 lifetime_s: float = 7200.0) -> None:
        self._api = core_v1_api
        self._nodes = tuple(node_names)
        self._gpus_per_node = gpus_per_node
        self._sku = sku
        self._log = log
        self._interval_s = interval_s
        self._lifetime_s = lifetime_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: (node, what it had lost) per re-advertisement, in order
        self.restored: list[tuple[str, str]] = []
        self.errors = 0

    def ensure(self) -> list[str]:
        """Re-advertise on every node that lost part of it; the names of those nodes."""
        restored = []
        for name in self._nodes:
            node = _api(f"reading node {name}", partial(self._api.read_node_status, name))
            missing = missing_fake_gpus(node, self._gpus_per_node, self._sku)
            if missing:
                advertise_fake_gpus(self._api, [name], self._gpus_per_node, self._sku)
                what = ", ".join(missing)
                self.restored.append((name, what))
                self._log(f"kind: node {name} had lost its fake GPUs ({what}); re-advertised")
                restored.append(name)
        return restored

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="kind-fake-gpu-keeper",
                                        daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float) -> bool:
        """Stop the thread; False if it did not end within ``timeout_s`` (it is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def _run(self) -> None:
        deadline = time.monotonic() + self._lifetime_s
        while not self._stop.wait(self._interval_s):
            if time.monotonic() >= deadline:
                self._log(f"kind: fake-GPU keeper stopped after its lifetime of "
                          f"{self._lifetime_s:g}s; GPUs a kubelet drops now stay dropped")
                return
            try:
                self.ensure()
            # A background thread must not die of one failed round; it logs and tries again
            # next round, and stays bounded by its lifetime.
            except Exception as error:
                self.errors += 1
                self._log(f"kind: fake-GPU keeper round failed: {one_line(error)}")
