"""The one protocol every cluster backend (kwok, attach, aks, kind) implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

Log = Callable[[str], None]


@dataclass
class ClusterHandle:
    """How to reach a cluster the run may use, and what its provisioner knows about it."""

    kubeconfig: Path | None
    context: str | None
    backend: str
    name: str
    #: device name the provisioner knows the GPU nodes have (e.g. from the VM size), if any
    expected_gpu: str | None = None
    #: extra run properties for the JUnit report; never secrets
    properties: dict[str, str] = field(default_factory=dict)


class ClusterBackend(Protocol):
    """Provision (or attach to) a cluster, and remove exactly what ``up`` created."""

    name: str

    def up(self, log: Log) -> ClusterHandle:
        """Make the cluster reachable; raise a GpuConformanceError with one clear line if not."""
        ...

    def down(self, log: Log) -> None:
        """Idempotent; deletes only what ``up`` created (nothing, for attach)."""
        ...
