"""AKS provisioning: create (or attach to) a cluster with a tainted GPU pool, hand over a
kubeconfig, delete what it made. The ``--backend aks`` adapter is gpu_conformance.backends.aks."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from gpu_conformance.aks import plan
from gpu_conformance.aks.clients import Clients, make_clients
from gpu_conformance.aks.credentials import CredentialFactory, default_factory
from gpu_conformance.aks.errors import AksArmError, AksConflictError, call
from gpu_conformance.aks.janitor import sweep_quietly
from gpu_conformance.aks.settings import AksSettings
from gpu_conformance.errors import (
    ClusterError,
    GpuConformanceError,
    UsageError,
    WaitTimeout,
    is_not_found,
)
from gpu_conformance.gpus import sku_for_vm_size
from gpu_conformance.log import Log
from gpu_conformance.timeouts import DEFAULTS

if TYPE_CHECKING:
    from azure.core.polling import LROPoller


@dataclass
class AksCluster:
    """A cluster ready for the suites: where its kubeconfig is and what is known of it."""

    kubeconfig: Path
    name: str
    #: created (by this run) or existing (attached with --aks-existing)
    mode: str
    expected_gpu: str | None = None
    properties: dict[str, str] = field(default_factory=dict)


class AksProvisioner:
    """Creates a resource group (if absent), a cluster and a tainted GPU pool; or attaches.

    Everything ``up`` creates is recorded before the request that creates it is sent, so
    ``down`` (idempotent, NotFound counts as done) also cleans up after a failed or interrupted
    ``up``. ``up`` calls ``down`` itself when it fails.
    """

    def __init__(self, settings: AksSettings, *,
                 credential_factory: CredentialFactory | None = None,
                 client_kwargs: Mapping[str, Any] | None = None, retry_wait: float | None = None,
                 env: Mapping[str, str] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self._credential_factory = credential_factory or default_factory(
            os.environ if env is None else env)
        self._client_kwargs = dict(client_kwargs or {})
        self._retry_wait = retry_wait
        self._clock = clock
        self._clients: Clients | None = None
        self._owns_group = False
        self._owns_cluster = False
        self._kubeconfig: Path | None = None
        self._sigterm_trapped = False
        #: continuation tokens of started LROs: a second ``down`` (after Ctrl-C during the
        #: first) resumes polling the accepted DELETE instead of sending another
        self.tokens: dict[str, str] = {}

    # -- up -------------------------------------------------------------------------------

    def up(self, log: Log) -> AksCluster:
        s = self.settings
        if s.dry_run:
            raise UsageError("--aks-dry-run only prints the plan; nothing was provisioned")
        if not s.subscription:
            raise UsageError("no Azure subscription given",
                             hint="pass --aks-subscription or set AZURE_SUBSCRIPTION_ID")
        try:
            clients = self._connect()
            if s.existing:
                return self._attach(clients, log)
            if s.sweep:
                sweep_quietly(clients, self._clock(), log, exclude_run_id=s.run_id,
                              retry_wait=self._retry_wait)
            self._trap_sigterm()
            self._ensure_group(clients, log)
            self._create_cluster(clients, log)
            return self._handle(clients, log, s.vm_size, "created")
        except BaseException as exc:
            self._down_after_failed_up(log, exc)
            raise

    def _connect(self) -> Clients:
        if self._clients is None:
            credential = self._credential_factory()
            assert self.settings.subscription
            self._clients = make_clients(credential, self.settings.subscription,
                                         self._client_kwargs)
        return self._clients

    def _call(self, fn: Callable[[], Any], action: str, log: Log) -> Any:
        return call(fn, action=action, log=log, settings=self.settings, wait=self._retry_wait)

    def _lro(self, begin: Callable[[], LROPoller[Any]], action: str, timeout_name: str,
             log: Log) -> Any:
        seconds = self.settings.timeout(timeout_name)

        def once() -> Any:
            poller = begin()
            self.tokens[action] = poller.continuation_token()
            result = poller.result(timeout=seconds)
            if not poller.done():
                raise WaitTimeout(
                    f"expected {action} to finish within {seconds:g}s, got instead: "
                    f"status {poller.status()}",
                    hint=f"{DEFAULTS[timeout_name].reason}; raise it with "
                         f"--gpu-timeout {timeout_name}=SECONDS")
            return result

        return self._call(once, action, log)

    def _ensure_group(self, c: Clients, log: Log) -> None:
        s = self.settings
        group = s.resource_group
        if self._call(lambda: c.resources.resource_groups.check_existence(group),
                      f"check resource group {group}", log):
            existing = self._call(lambda: c.resources.resource_groups.get(group),
                                  f"read resource group {group}", log)
            if (existing.tags or {}).get(plan.RUN_ID_TAG) == s.run_id:
                self._owns_group = True
            else:
                log(f"resource group {group} exists; using it, it will not be deleted")
            self._refuse_foreign_cluster(c, log)
            return
        from azure.mgmt.resource.resources.models import ResourceGroup

        self._owns_group = True
        log(f"creating resource group {group} in {s.location} (expires "
            f"{plan.format_time(s.expires_at)})")
        self._call(lambda: c.resources.resource_groups.create_or_update(
            group, ResourceGroup(plan.resource_group_body(s))), f"create resource group {group}",
            log)

    def _find_cluster(self, c: Clients, log: Log) -> Any:
        """The managed cluster named by the settings, or None if it does not exist."""
        s = self.settings

        def get() -> Any:
            try:
                return c.aks.managed_clusters.get(s.resource_group, s.cluster_name)
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise

        return self._call(get, f"look for cluster {s.cluster_name}", log)

    def _refuse_foreign_cluster(self, c: Clients, log: Log) -> None:
        s = self.settings
        found = self._find_cluster(c, log)
        if found is not None and (found.tags or {}).get(plan.RUN_ID_TAG) != s.run_id:
            raise AksConflictError(
                f"AKS cluster {s.resource_group}/{s.cluster_name} already exists and was not "
                "created by this run",
                hint="pass --aks-existing to attach to it (nothing is deleted) or choose another "
                     "--aks-cluster-name")

    def _create_cluster(self, c: Clients, log: Log) -> None:
        from azure.mgmt.containerservice.models import AgentPool, ManagedCluster

        s = self.settings
        self._owns_cluster = True
        log(f"creating AKS cluster {s.cluster_name} (system pool {s.system_vm_size})")
        self._lro(lambda: c.aks.managed_clusters.begin_create_or_update(
            s.resource_group, s.cluster_name, ManagedCluster(plan.cluster_body(s))),
            f"create cluster {s.cluster_name}", "aks-create", log)
        log(f"adding GPU pool: {s.node_count} x {s.vm_size}, taint {plan.GPU_TAINT}, "
            f"driver {s.gpu_driver}" + (f", MIG {s.mig_profile}" if s.mig_profile else ""))
        self._lro(lambda: c.aks.agent_pools.begin_create_or_update(
            s.resource_group, s.cluster_name, plan.GPU_POOL, AgentPool(plan.gpu_pool_body(s))),
            f"create GPU pool {plan.GPU_POOL}", "aks-gpu-pool", log)

    def _attach(self, c: Clients, log: Log) -> AksCluster:
        s = self.settings
        cluster = self._find_cluster(c, log)
        if cluster is None:
            raise UsageError(f"AKS cluster {s.resource_group}/{s.cluster_name} not found",
                             hint="check --aks-resource-group, --aks-cluster-name and "
                                  "--aks-subscription")
        profiles = cluster.properties.agent_pool_profiles if cluster.properties else None
        sizes = [str(p.vm_size) for p in profiles or [] if p.vm_size]
        gpu_sizes = [size for size in sizes if sku_for_vm_size(size)]
        log(f"attaching to existing AKS cluster {s.resource_group}/{s.cluster_name}; "
            "nothing of it will be deleted")
        return self._handle(c, log, gpu_sizes[0] if gpu_sizes else None, "existing",
                            version=getattr(cluster.properties, "current_kubernetes_version", None))

    def _handle(self, c: Clients, log: Log, vm_size: str | None, mode: str,
                version: str | None = None) -> AksCluster:
        s = self.settings
        creds = self._call(lambda: c.aks.managed_clusters.list_cluster_user_credentials(
            s.resource_group, s.cluster_name), f"fetch credentials of {s.cluster_name}", log)
        configs = [k for k in (creds.kubeconfigs or []) if k.value]
        if not configs:
            raise AksArmError(f"AKS returned no kubeconfig for {s.cluster_name}",
                              hint="check that the cluster finished provisioning")
        content = bytes(configs[0].value)
        if b"kubelogin" in content and shutil.which("kubelogin") is None:
            raise ClusterError(
                f"cluster {s.cluster_name} uses Microsoft Entra ID and its kubeconfig runs "
                "kubelogin, which is not on PATH",
                hint="install kubelogin (`az aks install-cli`) and retry")
        fd, name = tempfile.mkstemp(prefix=f"gpu-conformance-aks-{s.run_id}-",
                                    suffix=".kubeconfig")
        self._kubeconfig = Path(name)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(content)
        log(f"kubeconfig for {s.cluster_name} written to {name} (mode 0600, removed at teardown)")
        sku = sku_for_vm_size(vm_size)
        properties = {
            "aks.mode": mode, "aks.resource_group": s.resource_group,
            "aks.cluster": s.cluster_name, "aks.run_id": s.run_id,
        }
        if mode == "created":
            properties.update({
                "aks.location": s.location, "aks.vm_size": s.vm_size,
                "aks.node_count": str(s.node_count), "aks.gpu_driver": s.gpu_driver,
                "aks.expires_at": plan.format_time(s.expires_at),
            })
            if s.mig_profile:
                properties["aks.mig_profile"] = s.mig_profile
        elif vm_size:
            properties["aks.vm_size"] = vm_size
        if version or s.kubernetes_version:
            properties["aks.kubernetes_version"] = str(version or s.kubernetes_version)
        return AksCluster(kubeconfig=self._kubeconfig, name=s.cluster_name, mode=mode,
                          expected_gpu=sku.device_name if sku else None, properties=properties)

    # -- down -----------------------------------------------------------------------------

    def down(self, log: Log, keep: bool = False) -> None:
        """Delete what ``up`` created, unless ``keep`` (or --aks-keep) says to leave it."""
        s = self.settings
        self._remove_kubeconfig(log)
        self._untrap_sigterm()
        if not (self._owns_cluster or self._owns_group):
            self._close()
            return
        if s.keep or keep:
            log(f"keeping the AKS cluster: leaving {s.resource_group}/{s.cluster_name} in place until "
                f"{plan.format_time(s.expires_at)}; delete it with: {self.manual_cleanup()}")
            self._close()
            return
        clients = self._connect()
        problems: list[str] = []
        if self._owns_cluster:
            try:
                self._delete(f"cluster {s.cluster_name}", lambda token: (
                    clients.aks.managed_clusters.begin_delete(
                        s.resource_group, s.cluster_name, continuation_token=token)), log)
                self._owns_cluster = False
            except GpuConformanceError as exc:
                problems.append(exc.one_line())
        if self._owns_group:
            try:
                self._delete(f"resource group {s.resource_group}", lambda token: (
                    clients.resources.resource_groups.begin_delete(
                        s.resource_group, continuation_token=token)), log)
                self._owns_group = False
            except GpuConformanceError as exc:
                problems.append(exc.one_line())
        self._close()
        if problems:
            raise ClusterError("AKS teardown incomplete: " + "; ".join(problems),
                               hint=f"delete by hand: {self.manual_cleanup()}")

    def _delete(self, what: str, begin: Callable[[str | None], LROPoller[None]], log: Log) -> None:
        seconds = self.settings.timeout("aks-delete")
        action = f"delete {what}"

        def once() -> bool:
            token = self.tokens.pop(action, None)
            try:
                poller = begin(token)
                self.tokens[action] = poller.continuation_token()
                poller.result(timeout=seconds)
            except Exception as exc:
                if is_not_found(exc):
                    return True
                raise
            return poller.done()

        log(f"deleting {what}")
        if self._call(once, action, log):
            self.tokens.pop(action, None)
            log(f"deleted {what}")
        else:
            log(f"{what} is still being deleted after {seconds:g}s; Azure finishes on its own "
                "and the expiry tag lets the janitor catch it")

    def _down_after_failed_up(self, log: Log, cause: BaseException) -> None:
        log(f"AKS setup stopped ({type(cause).__name__}); tearing down what it created")
        try:
            self.down(log)
        except GpuConformanceError as exc:
            log(exc.one_line())

    def manual_cleanup(self) -> str:
        s = self.settings
        if self._owns_group:
            return f"az group delete --name {s.resource_group} --yes --no-wait"
        return f"az aks delete --resource-group {s.resource_group} --name {s.cluster_name} --yes"

    def _remove_kubeconfig(self, log: Log) -> None:
        if self._kubeconfig is not None:
            with contextlib.suppress(FileNotFoundError):
                self._kubeconfig.unlink()
            log(f"removed kubeconfig {self._kubeconfig}")
            self._kubeconfig = None

    def _close(self) -> None:
        if self._clients is not None:
            self._clients.close()
            self._clients = None

    def _trap_sigterm(self) -> None:
        # CI cancellation ends with SIGTERM, which by default kills Python without running
        # finally blocks; as KeyboardInterrupt it reaches pytest's teardown like Ctrl-C does.
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
            self._sigterm_trapped = True

    def _untrap_sigterm(self) -> None:
        if self._sigterm_trapped and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._sigterm_trapped = False


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
