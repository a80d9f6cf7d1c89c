"""Simulated GPU nodes: the labels and resources a real AKS GPU node carries.

Shared by the offline (kwok) cluster and the kind backend's fake GPU workers.
"""

from __future__ import annotations

from typing import Any

from gpu_conformance import gpus
from gpu_conformance.gpus import GpuSku
from gpu_conformance.sharing import SimulatedNode

GPU_POOL = "gpu"
SYSTEM_POOL = "system"
SIMULATED_LABEL = "gpu-conformance.io/simulated"
#: a simulated node's GPUs, which the offline cluster's device-plugin simulator advertises
#: once a device plugin pod is ready on it (gpu_conformance.simulator)
GPUS_ANNOTATION = "gpu-conformance.io/gpus"
#: how many of them are healthy (default: all); fewer simulates failed GPUs
HEALTHY_ANNOTATION = "gpu-conformance.io/healthy-gpus"
#: the extended resource the plugin registers them as (default nvidia.com/gpu)
RESOURCE_ANNOTATION = "gpu-conformance.io/gpu-resource"
#: several resources (MIG profiles, time-sliced replicas), ``RESOURCE=TOTAL[/HEALTHY],...``;
#: takes the place of the three above
DEVICES_ANNOTATION = "gpu-conformance.io/devices"


def devices_annotation(capacity: dict[str, str], allocatable: dict[str, str]) -> str:
    """``DEVICES_ANNOTATION``'s value for a node offering ``capacity`` (``allocatable``
    healthy)."""
    return ",".join(f"{r}={capacity[r]}" + (f"/{allocatable[r]}" if allocatable.get(r, capacity[r])
                                             != capacity[r] else "")
                    for r in sorted(capacity))


def gpu_node_labels(sku: GpuSku, gpus_per_node: int, pool: str = GPU_POOL) -> dict[str, str]:
    """The labels AKS and GPU feature discovery put on a node of this VM size."""
    return {
        gpus.INSTANCE_TYPE_LABEL: sku.vm_size,
        gpus.LEGACY_INSTANCE_TYPE_LABEL: sku.vm_size,
        gpus.AKS_AGENTPOOL_LABEL: pool,
        "agentpool": pool,
        gpus.AKS_ACCELERATOR_LABEL: "nvidia",
        gpus.ACCELERATOR_LABEL: "nvidia",
        gpus.PRODUCT_LABEL: sku.product_label,
        gpus.COUNT_LABEL: str(gpus_per_node),
        gpus.MEMORY_LABEL: str(sku.memory_mib),
        gpus.PRESENT_LABEL: "true",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.azure.com/mode": "user",
    }


def gpu_resources(gpus_per_node: int, healthy: int | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable) of a GPU node; ``healthy`` < count simulates unhealthy GPUs."""
    capacity = {"cpu": "8", "memory": "56Gi", "pods": "110", gpus.GPU_RESOURCE: str(gpus_per_node)}
    allocatable = {"cpu": "7800m", "memory": "50Gi", "pods": "110",
                   gpus.GPU_RESOURCE: str(gpus_per_node if healthy is None else healthy)}
    return capacity, allocatable


def node_manifest(
    name: str,
    labels: dict[str, str],
    capacity: dict[str, str],
    allocatable: dict[str, str],
    taints: list[dict[str, str]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Node object that kwok manages (its annotation) and that carries the given status."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "type": "kwok", SIMULATED_LABEL: "true",
                       **labels},
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0",
                            **(annotations or {})},
        },
        "spec": {"taints": taints or []},
        "status": {"capacity": capacity, "allocatable": allocatable},
    }


def gpu_node(name: str, sku: GpuSku, gpus_per_node: int, *, healthy: int | None = None,
             taints: list[dict[str, str]] | None = None, pool: str = GPU_POOL,
             plugin_managed: bool = False, shared: SimulatedNode | None = None
             ) -> dict[str, Any]:
    """A GPU node; ``plugin_managed``: no GPU in its status until a device plugin registers
    them (the offline cluster's simulator does what the kubelet's device manager does);
    ``shared``: its GPUs split by MIG or time-slicing, with the labels GFD gives them."""
    capacity, allocatable = gpu_resources(gpus_per_node, healthy)
    labels = gpu_node_labels(sku, gpus_per_node, pool)
    annotations: dict[str, str] = {}
    if shared is not None:
        labels.update(shared.labels)
        for status in (capacity, allocatable):
            status.pop(gpus.GPU_RESOURCE)
        if plugin_managed:
            annotations[DEVICES_ANNOTATION] = devices_annotation(shared.capacity,
                                                                 shared.allocatable)
        else:
            capacity.update(shared.capacity)
            allocatable.update(shared.allocatable)
    elif plugin_managed:
        capacity.pop(gpus.GPU_RESOURCE)
        allocatable.pop(gpus.GPU_RESOURCE)
        annotations[GPUS_ANNOTATION] = str(gpus_per_node)
        if healthy is not None:
            annotations[HEALTHY_ANNOTATION] = str(healthy)
    return node_manifest(name, labels, capacity, allocatable, taints, annotations)


def system_node(name: str) -> dict[str, Any]:
    labels = {gpus.INSTANCE_TYPE_LABEL: "Standard_D4s_v5", gpus.AKS_AGENTPOOL_LABEL: SYSTEM_POOL,
              "agentpool": SYSTEM_POOL, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "kubernetes.azure.com/mode": "system"}
    capacity = {"cpu": "4", "memory": "16Gi", "pods": "110"}
    allocatable = {"cpu": "3860m", "memory": "12Gi", "pods": "110"}
    return node_manifest(name, labels, capacity, allocatable)


GPU_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}
