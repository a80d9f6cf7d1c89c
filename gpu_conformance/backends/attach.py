"""--backend attach: use a cluster someone else runs; never delete anything of theirs."""

from __future__ import annotations

import os
from pathlib import Path

from gpu_conformance.backends.base import BaseBackend, ClusterHandle, Traits, read_gpu_node_names
from gpu_conformance.errors import GpuConformanceError, UsageError
from gpu_conformance.kube import check_kubeconfig, in_cluster, new_api_client, server_version
from gpu_conformance.log import Log
from gpu_conformance.settings import Settings
from gpu_conformance.timeouts import Timeouts


class AttachBackend(BaseBackend):
    name = "attach"

    def __init__(self, kubeconfig: Path | None, context: str | None,
                 timeouts: Timeouts | None = None) -> None:
        self.kubeconfig, self.context = kubeconfig, context
        self.timeouts = timeouts or Timeouts()
        #: what the first contact found: the version, or why the cluster cannot be used
        self._contact: str | Exception | None = None

    def _probe(self) -> str:
        """The first contact (once): the server's version, bounded by api-probe."""
        if self._contact is None:
            api = new_api_client(self.kubeconfig, self.context)
            try:
                budget = min(self.timeouts["api-ready"], self.timeouts["api-probe"])
                self._contact = server_version(api, budget=budget)
            except GpuConformanceError as exc:
                self._contact = exc
            finally:
                api.close()
        if isinstance(self._contact, Exception):
            raise self._contact
        return self._contact

    def up(self, log: Log) -> ClusterHandle:
        version = self._probe()
        api = new_api_client(self.kubeconfig, self.context)
        host = api.configuration.host
        api.close()
        log(f"attached to {host} (Kubernetes {version})")
        kubeconfig = self.kubeconfig
        if kubeconfig is None and os.environ.get("KUBECONFIG"):
            kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
        return ClusterHandle(kubeconfig=kubeconfig, context=self.context, name=self.context or host,
                             traits=Traits(owns_cluster=False, kept=True, simulated=False))

    def peek_gpu_nodes(self, touch_cluster: bool) -> list[str] | None:
        if not touch_cluster:
            return None
        try:
            self._probe()
        except GpuConformanceError:
            return None  # ``up`` reports why, without a second wait
        return read_gpu_node_names(self.kubeconfig, self.context)

    def down(self, log: Log, *, keep: bool) -> None:
        """Nothing: the cluster is not ours. What the run created is removed by the run."""


def create(settings: Settings, run_id: str) -> AttachBackend:
    kubeconfig = settings.kubeconfig
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and not (
            Path.home() / ".kube" / "config").is_file() and not in_cluster(None):
        raise UsageError("--backend attach needs a cluster: pass --kubeconfig, set KUBECONFIG, "
                         "or have ~/.kube/config")
    check_kubeconfig(kubeconfig)
    return AttachBackend(kubeconfig, settings.kube_context, settings.timeouts)
