"""The kind cluster config: one control plane and labelled (optionally tainted) GPU workers."""

from __future__ import annotations

from typing import Any

import yaml

from gpu_conformance.errors import UsageError
from gpu_conformance.gpus import GpuSku
from gpu_conformance.nodes import GPU_TAINT, SIMULATED_LABEL, gpu_node_labels

KIND_CONFIG_API_VERSION = "kind.x-k8s.io/v1alpha4"
#: labels the kubelet sets from the real machine; a fake GPU must not overwrite them
_KUBELET_OWNED_LABELS = frozenset({"kubernetes.io/os", "kubernetes.io/arch"})


def fake_gpu_node_labels(sku: GpuSku, gpus_per_node: int) -> dict[str, str]:
    """The GPU pool labels a fake GPU worker carries (os/arch stay the kubelet's)."""
    labels = {k: v for k, v in gpu_node_labels(sku, gpus_per_node).items()
              if k not in _KUBELET_OWNED_LABELS}
    labels[SIMULATED_LABEL] = "true"
    return labels


def kind_config(
    gpu_workers: int, sku: GpuSku, gpus_per_node: int, *, taint: bool = False
) -> dict[str, Any]:
    """A kind Cluster config: one control plane and ``gpu_workers`` labelled GPU workers.

    Labels use kind's per-node ``labels`` (the kubelet registers with them, so no pod lands on
    a worker before it looks like a GPU node). The taint goes through a kubeadm
    JoinConfiguration patch, whose ``nodeRegistration.taints`` has one shape in every kubeadm
    API version kind uses.
    """
    if gpu_workers < 1:
        raise UsageError(f"a kind GPU cluster needs at least 1 worker, got {gpu_workers}")
    labels = fake_gpu_node_labels(sku, gpus_per_node)
    workers: list[dict[str, Any]] = []
    for _ in range(gpu_workers):
        worker: dict[str, Any] = {"role": "worker", "labels": dict(labels)}
        if taint:
            patch = {"kind": "JoinConfiguration",
                     "nodeRegistration": {"taints": [dict(GPU_TAINT)]}}
            worker["kubeadmConfigPatches"] = [yaml.safe_dump(patch, sort_keys=False)]
        workers.append(worker)
    return {
        "kind": "Cluster",
        "apiVersion": KIND_CONFIG_API_VERSION,
        "nodes": [{"role": "control-plane"}, *workers],
    }


def kind_config_yaml(
    gpu_workers: int, sku: GpuSku, gpus_per_node: int, *, taint: bool = False
) -> str:
    return yaml.safe_dump(kind_config(gpu_workers, sku, gpus_per_node, taint=taint),
                          sort_keys=False)
