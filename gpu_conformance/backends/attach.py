"""--backend attach: use a cluster someone else runs; never delete anything of theirs."""

from __future__ import annotations

import os
from pathlib import Path

from gpu_conformance.backends.base import BaseBackend, ClusterHandle, Traits
from gpu_conformance.errors import UsageError
from gpu_conformance.kube import check_kubeconfig, new_api_client, server_version
from gpu_conformance.log import Log
from gpu_conformance.settings import Settings
from gpu_conformance.timeouts import Timeouts


class AttachBackend(BaseBackend):
    name = "attach"

    def __init__(self, kubeconfig: Path | None, context: str | None,
                 timeouts: Timeouts | None = None) -> None:
        self.kubeconfig, self.context = kubeconfig, context
        self.timeouts = timeouts or Timeouts()

    def up(self, log: Log) -> ClusterHandle:
        api = new_api_client(self.kubeconfig, self.context)
        try:
            budget = min(self.timeouts["api-ready"], self.timeouts["api-connect"])
            version = server_version(api, budget=budget)
            host = api.configuration.host
        finally:
            api.close()
        log(f"attached to {host} (Kubernetes {version})")
        kubeconfig = self.kubeconfig
        if kubeconfig is None and os.environ.get("KUBECONFIG"):
            kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
        return ClusterHandle(kubeconfig=kubeconfig, context=self.context, name=self.context or host,
                             traits=Traits(owns_cluster=False, kept=True, simulated=False))

    def down(self, log: Log, *, keep: bool) -> None:
        """Nothing: the cluster is not ours. What the run created is removed by the run."""


def create(settings: Settings, run_id: str) -> AttachBackend:
    kubeconfig = settings.kubeconfig
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and not (
            Path.home() / ".kube" / "config").is_file():
        raise UsageError("--backend attach needs a cluster: pass --kubeconfig, set KUBECONFIG, "
                         "or have ~/.kube/config")
    check_kubeconfig(kubeconfig)
    return AttachBackend(kubeconfig, settings.kube_context, settings.timeouts)
