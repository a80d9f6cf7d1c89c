"""--backend kwok: a fresh offline cluster (real control plane, simulated GPU nodes) per run."""

from __future__ import annotations

import os

from gpu_conformance.backends.base import BaseBackend, ClusterHandle, Traits, read_gpu_node_names
from gpu_conformance.errors import ClusterError
from gpu_conformance.log import Log
from gpu_conformance.offline import DEFAULT_NAME, OfflineCluster, OfflineClusterSpec, sweep_orphans
from gpu_conformance.settings import Settings


class KwokBackend(BaseBackend):
    name = "kwok"

    def __init__(self, spec: OfflineClusterSpec, keep: bool = False) -> None:
        self.cluster = OfflineCluster(spec)
        self.keep = keep
        self._created = False

    def up(self, log: Log) -> ClusterHandle:
        sweep_orphans(log)
        kubeconfig = self.cluster.kubeconfig
        if not self.cluster.exists():
            self._created = True
            kubeconfig = self.cluster.up(log)
        else:
            broken = self.cluster.broken()
            if broken:
                name = self.cluster.spec.name
                raise ClusterError(
                    f"the offline cluster {name!r} is broken: {', '.join(broken)} not running",
                    hint=f"see {self.cluster.kwok_dir / 'logs'}; remove it with: gpu-conformance "
                         f"cluster down --name {name}")
            log(f"reusing the offline cluster {self.cluster.spec.name!r} (kept by an earlier run)")
        sku = self.cluster.spec.sku()
        real = self.cluster.spec.node == "real"
        properties = {"simulated_vm_size": sku.vm_size, "simulated": "false" if real else "true"}
        if real:
            properties.update(real_node=self.cluster.real_node_name,
                              real_gpus=self.cluster.spec.real_gpus)
        return ClusterHandle(
            kubeconfig=kubeconfig, context=None, name=self.cluster.spec.name,
            traits=Traits(owns_cluster=self._created, kept=self.keep or not self._created,
                          simulated=not real,
                          # a kept offline cluster is this tool's: its plugin stays installed
                          # and deletions finish behind the run (the next run's namespaces
                          # have their own names; a plugin namespace still terminating is
                          # awaited by the run that recreates it)
                          keeps_plugin=self.keep or not self._created, await_deletions=False),
            # nvidia GPUs: each node pool's expected GPU comes from its labels (from NVML)
            expected_gpu=None if real and self.cluster.spec.real_gpus == "nvidia"
            else sku.device_name,
            properties=properties,
        )

    def peek_gpu_nodes(self, touch_cluster: bool) -> list[str] | None:
        """A fresh cluster's GPU nodes are named by the spec; a kept one's are read from it."""
        if self.cluster.spec.node == "real" and not self.cluster.exists():
            return [*self.cluster.spec.gpu_node_names(), self.cluster.real_node_name]
        if self.cluster.exists():
            return read_gpu_node_names(self.cluster.kubeconfig, None) if touch_cluster else None
        return self.cluster.spec.gpu_node_names()

    def down(self, log: Log, *, keep: bool) -> None:
        """Remove the cluster this run started, unless kept; a reused one is never removed."""
        if not self._created:
            return
        if keep:
            log(f"keeping the offline cluster {self.cluster.spec.name!r} (--keep-cluster); the "
                f"next run with this name reuses it; remove it with: gpu-conformance cluster "
                f"down --name {self.cluster.spec.name}")
            return
        self.cluster.down(log)


def create(settings: Settings, run_id: str) -> KwokBackend:
    # a kept cluster gets the stable default name: the next run reuses it, and the orphan
    # sweep (which removes gpu-conformance-<pid of a dead run>) leaves it alone
    name = settings.cluster_name or (DEFAULT_NAME if settings.keep_cluster
                                     else f"gpu-conformance-{os.getpid()}")
    node = settings.values["kwok_node"]
    gpu_nodes = settings.gpu_nodes
    if node == "real" and settings.values.source("gpu_nodes") == "default":
        gpu_nodes = 0  # the real node alone, unless simulated ones are asked for too
    return KwokBackend(OfflineClusterSpec(
        name=name, gpu_nodes=gpu_nodes, gpus_per_node=settings.gpus_per_node,
        gpu_product=settings.gpu_product, taint_gpu_nodes=settings.taint_gpu_nodes,
        timeouts=settings.timeouts, node=node, real_gpus=settings.values["kwok_real_gpus"],
        gpu_sharing=settings.values["kwok_gpu_sharing"],
    ), keep=settings.keep_cluster)
