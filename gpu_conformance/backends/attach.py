"""--backend attach: use a cluster someone else runs; never delete anything of theirs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gpu_conformance.backends.base import ClusterHandle, Log
from gpu_conformance.errors import UsageError
from gpu_conformance.kube import new_api_client, server_version


class AttachBackend:
    name = "attach"

    def __init__(self, kubeconfig: Path | None, context: str | None) -> None:
        self.kubeconfig, self.context = kubeconfig, context

    def up(self, log: Log) -> ClusterHandle:
        api = new_api_client(self.kubeconfig, self.context)
        try:
            version = server_version(api)
            host = api.configuration.host
        finally:
            api.close()
        log(f"attached to {host} (Kubernetes {version})")
        kubeconfig = self.kubeconfig
        if kubeconfig is None and os.environ.get("KUBECONFIG"):
            kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
        return ClusterHandle(kubeconfig=kubeconfig, context=self.context, backend=self.name,
                             name=self.context or host)

    def down(self, log: Log) -> None:
        """Nothing: the cluster is not ours. What the run created is removed by the run."""


def from_pytest_config(config: Any) -> AttachBackend:
    from gpu_conformance.settings import Settings

    settings = Settings.from_config(config)
    kubeconfig = settings.kubeconfig
    if kubeconfig is None and not os.environ.get("KUBECONFIG") and not (
            Path.home() / ".kube" / "config").is_file():
        raise UsageError("--backend attach needs a cluster: pass --kubeconfig, set KUBECONFIG, "
                         "or have ~/.kube/config")
    return AttachBackend(kubeconfig, settings.kube_context)
