"""The kind backend: a real kind cluster (through pytest-kind) whose workers pretend to have GPUs.

kind runs real kubelets in Docker containers, so nothing on them is a GPU. The workers get the
labels of an AKS GPU node pool from the generated kind config (``config``) and fake
``nvidia.com/gpu`` from ``fakegpus``; the device plugin DaemonSet and the workloads run small
stand-in images (``standins``). What this exercises is the suites' Kubernetes side (DaemonSet
rollout, scheduling against ``nvidia.com/gpu``, Jobs, logs) on real kubelets; never a GPU, a
driver or the real device plugin. A Docker engine is required (``docker``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gpu_conformance import gpus
from gpu_conformance.backends.base import BaseBackend, ClusterHandle, Traits
from gpu_conformance.backends.kind.config import kind_config_yaml
from gpu_conformance.backends.kind.docker import require_container_engine
from gpu_conformance.backends.kind.fakegpus import (
    FakeGpuKeeper,
    advertise_fake_gpus,
    wait_for_workers,
)
from gpu_conformance.backends.kind.standins import (
    STAND_IN_IMAGES,
    StandInImages,
    replace_plugin_image,
    workload_overrides,
)
from gpu_conformance.errors import ClusterError, UsageError, WaitTimeout, one_line
from gpu_conformance.gpus import GpuSku
from gpu_conformance.kube import new_api_client
from gpu_conformance.log import Log
from gpu_conformance.settings import Settings
from gpu_conformance.timeouts import Timeouts

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from gpu_conformance.workloads.base import WorkloadProfile

T = TypeVar("T")

#: used when --cluster-name is not given; stable, so --keep-cluster reuses it
DEFAULT_CLUSTER_NAME = "gpu-conformance"


def _default_sku() -> GpuSku:
    sku = gpus.sku_for_vm_size(gpus.DEFAULT_VM_SIZE)
    assert sku is not None, "DEFAULT_VM_SIZE is in the table"
    return sku


@dataclass(frozen=True)
class KindSettings:
    """Everything the kind backend needs, read from options once; touching no cluster."""

    cluster_name: str
    kubeconfig: Path | None = None
    node_image: str | None = None
    kind_bin: Path | None = None
    kubectl_bin: Path | None = None
    gpu_nodes: int = 2
    gpus_per_node: int = 1
    sku: GpuSku = field(default_factory=_default_sku)
    taint: bool = False
    images: StandInImages = STAND_IN_IMAGES
    keeper_lifetime_s: float = 7200.0
    keeper_interval_s: float = 2.0
    load_images: tuple[str, ...] = ()
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: --keep-cluster: the cluster outlives the run
    keep: bool = False


def _path(value: object) -> Path | None:
    return Path(str(value)).expanduser() if value else None


def settings_from(settings: Settings) -> KindSettings:
    """The kind part of the run's settings (pytest-kind's options included)."""
    v = settings.values
    if settings.gpu_nodes < 1:
        raise UsageError(f"the kind backend needs at least 1 GPU worker, got "
                         f"{v.source('gpu_nodes')} {settings.gpu_nodes}")
    keeper = v["kind_gpu_keeper_seconds"]
    if keeper < 0:
        raise UsageError(f"{v.source('kind_gpu_keeper_seconds')} must be >= 0, got {keeper:g}")
    return KindSettings(
        cluster_name=settings.cluster_name or DEFAULT_CLUSTER_NAME,
        kubeconfig=settings.kubeconfig,
        node_image=v["kind_image"] or None,
        kind_bin=_path(v["kind_bin"]),
        kubectl_bin=_path(v["kind_kubectl_bin"]),
        gpu_nodes=settings.gpu_nodes,
        gpus_per_node=settings.gpus_per_node,
        sku=gpus.resolve_product(settings.gpu_product),
        taint=settings.taint_gpu_nodes,
        images=StandInImages(plugin=v["kind_gpu_plugin_image"],
                             workload=v["kind_gpu_workload_image"]),
        keeper_lifetime_s=keeper,
        load_images=tuple(v["kind_load_images"] or ()),
        timeouts=settings.timeouts,
        keep=settings.keep_cluster,
    )


def _bounded(what: str, blocking: Callable[[], T], timeout_s: float) -> T:
    """Run a blocking call that has no timeout of its own (pytest-kind's) under a bound."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(blocking())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name=f"kind-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise WaitTimeout(f"expected {what} to finish within {timeout_s:g}s, got instead: "
                          "still running")
    if failure:
        raise failure[0]
    return result[0]


class KindBackend(BaseBackend):
    """A kind cluster from pytest-kind, with fake GPU workers; deletes only a cluster it made."""

    name = "kind"

    def __init__(self, settings: KindSettings, *,
                 check_engine: Callable[[], str] | None = None,
                 cluster_factory: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self._check_engine = check_engine or partial(
            require_container_engine, timeout_s=settings.timeouts["docker-info"])
        self._cluster_factory = cluster_factory
        self._cluster: Any = None
        self._created = False
        self._api_client: ApiClient | None = None
        self._keeper_client: ApiClient | None = None
        self._keeper: FakeGpuKeeper | None = None
        self.gpu_workers: list[str] = []

    @property
    def context(self) -> str:
        return f"kind-{self.settings.cluster_name}"

    def _kind_command(self) -> str:
        kind = self._cluster.kind_path if self._cluster is not None else "kind"
        return f"{kind} delete cluster --name {self.settings.cluster_name}"

    def peek_gpu_nodes(self, touch_cluster: bool) -> list[str] | None:
        """kind names workers <name>-worker, <name>-worker2, ...; the first ones by name are
        the GPU workers (a reused cluster of another shape is caught when it is up)."""
        s = self.settings
        names = [f"{s.cluster_name}-worker" + (str(i) if i > 1 else "")
                 for i in range(1, s.gpu_nodes + 1)]
        return sorted(names)

    # --- hooks: the stand-ins ---------------------------------------------------------------
    def adapt_plugin(self, objects: list[dict[str, Any]]) -> None:
        """The plugin's container runs a pause image: kind workers have no GPU to serve."""
        replace_plugin_image(objects, self.settings.images.plugin)

    def adapt_job(self, profile: WorkloadProfile, job: dict[str, Any]) -> None:
        """The workload prints its profile's reference log naming the simulated GPU."""
        container = job["spec"]["template"]["spec"]["containers"][0]
        container.update(workload_overrides(profile, self.settings.sku.device_name,
                                            self.settings.images))

    # --- up ---------------------------------------------------------------------------------
    def up(self, log: Log) -> ClusterHandle:
        """Create (or reuse) the kind cluster and advertise fake GPUs on its workers.

        ``down`` is safe to call after this fails at any point.
        """
        engine_version = self._check_engine()
        kubeconfig = self.provision(log)
        self.advertise(kubeconfig, log)
        s = self.settings
        return ClusterHandle(
            kubeconfig=kubeconfig, context=self.context, name=s.cluster_name,
            traits=Traits(owns_cluster=self._created, kept=s.keep or not self._created,
                          simulated=True),
            expected_gpu=s.sku.device_name,
            properties={
                "simulated": "true",
                "simulated_vm_size": s.sku.vm_size,
                "kind_cluster_reused": str(not self._created).lower(),
                "kind_node_image": s.node_image or "kind default",
                "kind_gpu_workers": ",".join(self.gpu_workers),
                "kind_gpus_per_node": str(s.gpus_per_node),
                "kind_plugin_image": s.images.plugin,
                "kind_workload_image": s.images.workload,
                "docker_server_version": engine_version,
            },
        )

    def provision(self, log: Log) -> Path:
        """Create (or reuse) the kind cluster through pytest-kind; its kubeconfig path."""
        s = self.settings
        kind_bin = s.kind_bin
        if kind_bin is not None and not (kind_bin.is_file() and os.access(kind_bin, os.X_OK)):
            raise UsageError(f"--kind-bin {kind_bin} is not an executable file")
        if kind_bin is None:
            found = shutil.which("kind")
            kind_bin = Path(found) if found else None
        if kind_bin is None:
            log("kind: no --kind-bin and no kind on PATH; pytest-kind will download its pinned "
                "kind")
        factory = self._cluster_factory
        if factory is None:
            try:
                from pytest_kind import KindCluster
            except ImportError:
                raise UsageError("--backend kind needs pytest-kind",
                                 hint="pip install 'gpu-conformance[kind]'") from None
            factory = KindCluster
        cluster = factory(s.cluster_name, s.kubeconfig, image=s.node_image, kind_path=kind_bin,
                          kubectl_path=s.kubectl_bin)
        config_file = Path(cluster.path) / "kind-config.yaml"
        config_file.write_text(kind_config_yaml(s.gpu_nodes, s.sku, s.gpus_per_node,
                                                taint=s.taint))

        def create() -> bool:
            cluster.ensure_kind()
            existing = subprocess.run([str(cluster.kind_path), "get", "clusters"],
                                      capture_output=True, text=True, check=True).stdout
            existed = s.cluster_name in existing.split()
            # Registered before creating, so down() removes a half-made cluster too.
            self._cluster, self._created = cluster, not existed
            if existed:
                log(f"kind: reusing cluster {s.cluster_name}, which existed before this run; "
                    "it keeps its shape and is not deleted")
                # pytest-kind reads the kubeconfig it wrote last time; the cluster may come
                # from elsewhere (another path, or plain `kind create cluster`).
                subprocess.run([str(cluster.kind_path), "export", "kubeconfig",
                                f"--name={s.cluster_name}",
                                f"--kubeconfig={cluster.kubeconfig_path}"],
                               capture_output=True, text=True, check=True)
            else:
                log(f"kind: creating cluster {s.cluster_name} (1 control plane, {s.gpu_nodes} "
                    f"fake {s.sku.device_name} workers) from {config_file}")
            cluster.create(config_file=config_file)
            return existed

        create_timeout = s.timeouts["kind-create"]
        try:
            _bounded("kind create cluster", create, create_timeout)
            for image in s.load_images:
                log(f"kind: loading image {image} into cluster {s.cluster_name}")
                _bounded(f"kind load docker-image {image}",
                         partial(cluster.load_docker_image, image), create_timeout)
        except subprocess.CalledProcessError as error:
            detail = one_line(Exception(error.stderr)) if error.stderr else "its output is above"
            raise ClusterError(f"`{' '.join(map(str, error.cmd))}` failed with exit "
                               f"{error.returncode}: {detail}") from None
        except OSError as error:
            raise ClusterError(f"could not run kind: {error}") from None
        return Path(cluster.kubeconfig_path).resolve()

    def advertise(self, kubeconfig: Path, log: Log) -> None:
        """Fake GPUs on the first ``gpu_nodes`` workers, and the keeper that holds them there."""
        from gpu_conformance import kapi

        s = self.settings
        self._api_client = new_api_client(kubeconfig, self.context)
        api = kapi.CoreV1Api(self._api_client)
        self.gpu_workers = wait_for_workers(api, s.gpu_nodes, s.timeouts["nodes-ready"])
        advertise_fake_gpus(api, self.gpu_workers, s.gpus_per_node, s.sku)
        log(f"kind: advertised {s.gpus_per_node} fake {gpus.GPU_RESOURCE} "
            f"({s.sku.device_name}) on {', '.join(self.gpu_workers)}")
        if s.keeper_lifetime_s > 0:
            # Its own client: the keeper thread never shares a connection pool with the suites.
            self._keeper_client = new_api_client(kubeconfig, self.context)
            keeper_api = kapi.CoreV1Api(self._keeper_client)
            self._keeper = FakeGpuKeeper(keeper_api, self.gpu_workers, s.gpus_per_node, s.sku,
                                         log=log, interval_s=s.keeper_interval_s,
                                         lifetime_s=s.keeper_lifetime_s)
            self._keeper.start()

    # --- down -------------------------------------------------------------------------------
    def down(self, log: Log, *, keep: bool) -> None:
        """Stop the keeper; delete the cluster only if this run created it and may delete it."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            if not keeper.stop(self.settings.timeouts["kind-keeper-stop"]):
                log("kind: fake-GPU keeper did not stop in time; it is a daemon thread and "
                    "ends with the process")
            if keeper.restored or keeper.errors:
                log(f"kind: fake-GPU keeper re-advertised {len(keeper.restored)} time(s), "
                    f"{keeper.errors} failed round(s)")
        for api_client in (self._api_client, self._keeper_client):
            if api_client is not None:
                api_client.close()
        self._api_client = self._keeper_client = None
        cluster = self._cluster
        if cluster is None:
            return
        name = self.settings.cluster_name
        if not self._created:
            log(f"kind: leaving cluster {name} in place: it existed before this run")
            self._cluster = None
            return
        if keep:
            log(f"kind: keeping cluster {name} (--keep-cluster); remove it with: "
                f"{self._kind_command()}")
            self._cluster = None
            return
        command = self._kind_command()
        try:
            _bounded("kind delete cluster", cluster.delete, self.settings.timeouts["kind-delete"])
        except (subprocess.CalledProcessError, OSError, WaitTimeout) as error:
            raise ClusterError(f"could not delete kind cluster {name}: {one_line(error)}",
                               hint=f"delete it by hand: {command}") from None
        self._cluster = None
        log(f"kind: deleted cluster {name}")


def create(settings: Settings, run_id: str) -> KindBackend:
    """The kind backend for this run's options; no cluster, Docker or kind is touched."""
    return KindBackend(settings_from(settings))
