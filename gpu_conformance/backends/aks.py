"""``--backend aks``: a throwaway AKS cluster with a tainted GPU pool, or an existing one.

The Azure work is in gpu_conformance.aks (provision, janitor, plan); this adapter builds its
settings from the run's options and run id (the same id tags the Azure resources and names the
run's namespaces), prints the plan instead of running on ``--aks-dry-run``, and maps
keep/own to the backend contract. Nothing here imports Azure until ``up``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gpu_conformance.aks.settings import AksSettings, from_values
from gpu_conformance.backends.base import BaseBackend, ClusterHandle, Traits
from gpu_conformance.log import Log
from gpu_conformance.settings import Settings

if TYPE_CHECKING:
    from gpu_conformance.aks.credentials import CredentialFactory
    from gpu_conformance.aks.provision import AksProvisioner


class AksBackend(BaseBackend):
    name = "aks"

    def __init__(self, settings: AksSettings, *,
                 credential_factory: CredentialFactory | None = None,
                 client_kwargs: Mapping[str, Any] | None = None, keep: bool = False) -> None:
        self.settings = settings
        self.keep = keep
        self._credential_factory = credential_factory
        self._client_kwargs = client_kwargs
        self._provisioner: AksProvisioner | None = None

    def preflight(self) -> str | None:
        """``--aks-dry-run``: the plan as JSON; no client, no credential, no request."""
        if not self.settings.dry_run:
            return None
        from gpu_conformance.aks.plan import plan

        return json.dumps(plan(self.settings), indent=2)

    def peek_gpu_nodes(self, touch_cluster: bool) -> list[str] | None:
        """AKS names VMSS nodes when they boot: a new pool's are stand-ins, one per node."""
        if self.settings.existing:
            return None
        return [f"gpu-node-{i}" for i in range(1, self.settings.node_count + 1)]

    def up(self, log: Log) -> ClusterHandle:
        from gpu_conformance.aks.provision import AksProvisioner

        self._provisioner = AksProvisioner(self.settings,
                                           credential_factory=self._credential_factory,
                                           client_kwargs=self._client_kwargs)
        cluster = self._provisioner.up(log)
        created = cluster.mode == "created"
        return ClusterHandle(
            kubeconfig=cluster.kubeconfig, context=None, name=cluster.name,
            traits=Traits(owns_cluster=created,
                          kept=not created or self.settings.keep or self.keep,
                          simulated=False),
            expected_gpu=cluster.expected_gpu, properties=cluster.properties)

    def down(self, log: Log, *, keep: bool) -> None:
        if self._provisioner is not None:
            self._provisioner.down(log, keep=keep)


def create(settings: Settings, run_id: str) -> AksBackend:
    """Validates the --aks-* options now; Azure is contacted only in ``up``."""
    return AksBackend(from_values(settings.values, run_id, settings.timeouts),
                      keep=settings.keep_cluster)
