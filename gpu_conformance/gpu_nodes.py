"""GPU nodes as the checks see them: which nodes have GPUs, what they offer, what they repel.

Pure functions of kubernetes client models (attribute access); ``None`` anywhere is tolerated,
as the API leaves fields out of partial objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpu_conformance import gpus, sharing

#: taints the node lifecycle controller puts on nodes that are starting or unhealthy and
#: removes by itself; a node carrying one is not (yet) out of reach for good
TRANSIENT_TAINT_PREFIX = "node.kubernetes.io/"

Taint = tuple[str, str, str]


@dataclass(frozen=True)
class GpuNode:
    name: str
    why: str
    labels: Mapping[str, str]
    capacity: int
    allocatable: int
    taints: tuple[Taint, ...]
    unschedulable: bool
    ready: bool
    #: every GPU resource in the node's status (nvidia.com/gpu, nvidia.com/gpu.shared,
    #: nvidia.com/mig-<profile>): capacity and allocatable as the API writes them
    gpu_capacity: Mapping[str, str] = field(default_factory=dict)
    gpu_allocatable: Mapping[str, str] = field(default_factory=dict)

    @property
    def shared(self) -> bool:
        """MIG or time-slicing (labels), or a GPU resource other than nvidia.com/gpu."""
        return sharing.mode(self.labels) != "none" or any(
            r != gpus.GPU_RESOURCE for r in (*self.gpu_capacity, *self.gpu_allocatable))

    @property
    def offered(self) -> int:
        """Devices of every GPU resource in capacity (MIG devices, replicas count one each)."""
        return sum(quantity(v) for v in self.gpu_capacity.values())

    def settled(self) -> bool:
        """Every GPU resource's allocatable has caught up with its capacity."""
        return all(quantity(self.gpu_allocatable.get(r)) >= quantity(v)
                   for r, v in self.gpu_capacity.items())


def quantity(value: Any) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return 0


def _status(node: Any) -> Any:
    return getattr(node, "status", None)


def node_ready(node: Any) -> bool:
    status = _status(node)
    return any(getattr(c, "type", None) == "Ready" and getattr(c, "status", None) == "True"
               for c in (getattr(status, "conditions", None) or []))


def as_gpu_node(node: Any) -> GpuNode | None:
    """The node as a GpuNode, or None when nothing says it has GPUs."""
    meta = getattr(node, "metadata", None)
    name = getattr(meta, "name", None)
    if not name:
        return None
    labels = dict(getattr(meta, "labels", None) or {})
    status, spec = _status(node), getattr(node, "spec", None)
    capacity = dict(getattr(status, "capacity", None) or {})
    why = gpus.looks_like_gpu_node(labels, capacity)
    if why is None:
        return None
    allocatable = dict(getattr(status, "allocatable", None) or {})
    taints = tuple((t.key or "", t.value or "", t.effect or "")
                   for t in (getattr(spec, "taints", None) or []))
    return GpuNode(
        name=name, why=why, labels=labels,
        capacity=quantity(capacity.get(gpus.GPU_RESOURCE)),
        allocatable=quantity(allocatable.get(gpus.GPU_RESOURCE)),
        taints=taints, unschedulable=bool(getattr(spec, "unschedulable", None)),
        ready=node_ready(node),
        gpu_capacity={r: str(v) for r, v in capacity.items() if sharing.is_gpu_resource(r)},
        gpu_allocatable={r: str(v) for r, v in allocatable.items()
                         if sharing.is_gpu_resource(r)},
    )


def find_gpu_nodes(nodes: Iterable[Any]) -> list[GpuNode]:
    """GPU nodes by label (accelerator, AKS accelerator, GFD present, GPU VM size) or capacity."""
    found = [g for g in (as_gpu_node(n) for n in nodes) if g is not None]
    return sorted(found, key=lambda n: n.name)


def format_taint(taint: Taint) -> str:
    key, value, effect = taint
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


def tolerates(tolerations: Sequence[Any], taint: Taint) -> bool:
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


def untolerated_taints(tolerations: Sequence[Any], node: GpuNode) -> list[Taint]:
    """The node's NoSchedule/NoExecute taints none of ``tolerations`` tolerates."""
    return [t for t in node.taints
            if t[2] in ("NoSchedule", "NoExecute") and not tolerates(tolerations, t)]


def is_transient_taint(taint: Taint) -> bool:
    return taint[0].startswith(TRANSIENT_TAINT_PREFIX)


def selector_matches(pod_spec: Any, labels: Mapping[str, str]) -> bool:
    """Does a pod spec's nodeSelector and required node affinity admit a node with ``labels``?"""
    selector = getattr(pod_spec, "node_selector", None) or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    affinity = getattr(getattr(pod_spec, "affinity", None), "node_affinity", None)
    required = getattr(affinity, "required_during_scheduling_ignored_during_execution", None)
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


def summarize_names(names: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 115 more``: long node lists stay one short line."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more"
