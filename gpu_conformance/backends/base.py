"""The contract every cluster backend (kwok, attach, aks, kind) implements.

A backend is built from the run's resolved settings and its run id (no cluster touched), may
print a plan instead of running (``preflight``), makes a cluster reachable (``up``), may adapt
the device plugin and the workload Jobs to what its nodes can run, and is always asked to
``down(keep=...)`` at the end: each backend decides what keeping means for it. The generic
code never asks which backend it has: what differs is in its traits and hooks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gpu_conformance import kapi
from gpu_conformance.log import Log

if TYPE_CHECKING:
    from gpu_conformance.workloads.base import WorkloadProfile


@dataclass(frozen=True)
class Traits:
    #: the run created the cluster, so ``down`` may delete it
    owns_cluster: bool
    #: the cluster outlives the run (attach, --keep-cluster, reused): leave it exactly as found
    kept: bool
    #: the GPU nodes are simulated (no GPU, driver or real device plugin behind them)
    simulated: bool
    #: a device plugin the run installed stays for the next run (a kept offline cluster:
    #: the plugin is part of it, as a real cluster's is); the run still leaves its users list
    keeps_plugin: bool = False
    #: cleanup waits until the namespaces the run deleted are gone (a cluster others use is
    #: left exactly as found); False where this tool alone uses the cluster and nothing
    #: depends on the deletion having finished
    await_deletions: bool = True

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)


@dataclass
class ClusterHandle:
    """How to reach a cluster the run may use, and what its provisioner knows about it."""

    kubeconfig: Path | None
    context: str | None
    name: str
    traits: Traits
    #: device name the provisioner knows the GPU nodes have (e.g. from the VM size), if any
    expected_gpu: str | None = None
    #: extra run properties for the reports; never secrets
    properties: dict[str, str] = field(default_factory=dict)


class ClusterBackend(Protocol):
    """Provision (or attach to) a cluster, and remove exactly what ``up`` created."""

    name: str

    def preflight(self) -> str | None:
        """Text to print instead of running (a dry run's plan), or None to run."""
        ...

    def peek_gpu_nodes(self, touch_cluster: bool) -> list[str] | None:
        """The GPU node names the run will find, known before ``up`` (to name per-node tests):
        predicted from what the backend will create, or read from an existing cluster when
        ``touch_cluster`` allows a read-only look; None when they cannot be known yet."""
        ...

    def up(self, log: Log) -> ClusterHandle:
        """Make the cluster reachable; raise a GpuConformanceError with one clear line if not."""
        ...

    def adapt_plugin(self, objects: list[dict[str, Any]]) -> None:
        """Change the device plugin's manifest objects before they are created (in place)."""
        ...

    def adapt_job(self, profile: WorkloadProfile, job: dict[str, Any]) -> None:
        """Change a workload Job before it is created (in place)."""
        ...

    def down(self, log: Log, *, keep: bool) -> None:
        """Always called at the end, also after a failed ``up``; idempotent; ``keep`` asks to
        leave what this run provisioned in place."""
        ...


class BaseBackend:
    """Defaults for the optional parts of the contract: nothing to adapt, nothing to plan."""

    name = "base"

    def preflight(self) -> str | None:
        return None

    def peek_gpu_nodes(self, touch_cluster: bool) -> list[str] | None:
        return None

    def adapt_plugin(self, objects: list[dict[str, Any]]) -> None:
        return None

    def adapt_job(self, profile: WorkloadProfile, job: dict[str, Any]) -> None:
        return None


def read_gpu_node_names(kubeconfig: Path | None, context: str | None) -> list[str] | None:
    """A read-only look at an existing cluster's GPU nodes; None when it cannot be had quickly."""

    from gpu_conformance.gpu_nodes import find_gpu_nodes
    from gpu_conformance.kube import new_api_client

    try:
        api = new_api_client(kubeconfig, context)
    except Exception:
        return None
    try:  # one attempt, no retries: a name for tests is not worth a wait
        nodes = kapi.CoreV1Api(api).list_node(_request_timeout=(3, 10)).items
        return [n.name for n in find_gpu_nodes(nodes)]
    except Exception:
        return None
    finally:
        api.close()
