"""--backend kwok: a fresh offline cluster (real control plane, simulated GPU nodes) per run."""

from __future__ import annotations

import os
from typing import Any

from gpu_conformance.backends.base import ClusterHandle, Log
from gpu_conformance.offline import DEFAULT_NAME, OfflineCluster, OfflineClusterSpec, sweep_orphans


class KwokBackend:
    name = "kwok"

    def __init__(self, spec: OfflineClusterSpec) -> None:
        self.cluster = OfflineCluster(spec)

    def up(self, log: Log) -> ClusterHandle:
        sweep_orphans(log)
        kubeconfig = self.cluster.kubeconfig
        if not self.cluster.exists():
            kubeconfig = self.cluster.up(log)
        else:
            log(f"reusing the offline cluster {self.cluster.spec.name!r} (kept by an earlier run)")
        sku = self.cluster.spec.sku()
        return ClusterHandle(
            kubeconfig=kubeconfig, context=None, backend=self.name, name=self.cluster.spec.name,
            expected_gpu=sku.device_name,
            properties={"simulated_vm_size": sku.vm_size, "simulated": "true"},
        )

    def down(self, log: Log) -> None:
        self.cluster.down(log)


def from_pytest_config(config: Any) -> KwokBackend:
    from gpu_conformance.settings import Settings

    settings = Settings.from_config(config)
    # a kept cluster gets the stable default name: the next run reuses it, and the orphan
    # sweep (which removes gpu-conformance-<pid of a dead run>) leaves it alone
    name = settings.cluster_name or (DEFAULT_NAME if settings.keep_cluster
                                     else f"gpu-conformance-{os.getpid()}")
    return KwokBackend(OfflineClusterSpec(
        name=name, gpu_nodes=settings.gpu_nodes, gpus_per_node=settings.gpus_per_node,
        gpu_product=settings.gpu_product, taint_gpu_nodes=settings.taint_gpu_nodes,
        api_ready_timeout=settings.timeouts["api-ready"],
        nodes_ready_timeout=settings.timeouts["nodes-ready"],
    ))
