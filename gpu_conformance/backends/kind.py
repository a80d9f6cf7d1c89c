"""The kind backend: a real kind cluster (through pytest-kind) whose workers pretend to have GPUs.

kind runs real kubelets in Docker containers, so nothing on them is a GPU. The workers get the
labels of an AKS GPU node pool from the generated kind config, and ``nvidia.com/gpu`` capacity and
allocatable by a PATCH of their status subresource. The device plugin DaemonSet and the workload
run small stand-in images (``STAND_IN_IMAGES``): a pause container for the plugin and a shell
that prints the profile's reference log for the workload. What this exercises is the suites'
Kubernetes side (DaemonSet rollout, scheduling against ``nvidia.com/gpu``, Jobs, logs) on real
kubelets; never a GPU, a driver or the real device plugin.

Keeping the fake GPUs: a kubelet keeps extended resources it does not manage, but zeroes them when
it re-registers (a restart after its checkpoint is lost). A background ``FakeGpuKeeper`` re-checks
the GPU workers every ``KEEPER_INTERVAL_S`` and re-advertises what was lost; it stops at
``down`` or after its lifetime (``--kind-gpu-keeper-seconds``), whichever comes first. Polling
with an interruptible sleep rather than a watch makes the stop at teardown immediate.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from gpu_conformance import gpus
from gpu_conformance.backends.base import ClusterHandle, Log
from gpu_conformance.errors import ClusterError, UsageError, WaitTimeout
from gpu_conformance.gpus import GpuSku
from gpu_conformance.kube import call, new_api_client, short
from gpu_conformance.nodes import GPU_TAINT, SIMULATED_LABEL, gpu_node_labels, gpu_resources

if TYPE_CHECKING:
    import pytest
    from kubernetes.client import ApiClient, CoreV1Api

    from gpu_conformance.timeouts import Timeouts
    from gpu_conformance.workloads.base import WorkloadProfile

T = TypeVar("T")

# Named timeouts of this backend, each with the reason for its size.
#: `docker info` answers in well under a second from a running engine; 20 s covers a Docker
#: Desktop VM that is still waking up.
DOCKER_INFO_TIMEOUT_S = 20.0
#: pulling a kindest/node image (~1 GB) and booting a control plane plus a few workers takes
#: 1-3 minutes on a CI runner; 10 minutes covers a slow registry mirror.
KIND_CREATE_TIMEOUT_S = 600.0
#: `kind delete cluster` removes a few containers; 2 minutes matches the project's cleanup bound.
KIND_DELETE_TIMEOUT_S = 120.0
#: `kind create cluster` returns after every worker has joined, so they are registered already;
#: the bound only matters for a reused cluster whose workers are still starting.
WORKERS_REGISTERED_TIMEOUT_S = 120.0
#: a kubelet posts node status every 10 s; checking every 2 s restores a reset GPU count well
#: before the suites' capacity checks, which poll for minutes.
KEEPER_INTERVAL_S = 2.0
#: longest whole run expected: plugin rollout (10 min) + GPU capacity (5) + Job (15) per GPU
#: node on a few nodes, with room to spare. The keeper never outlives this.
KEEPER_LIFETIME_S = 7200.0
#: the keeper's one API round trip per node must end before teardown gives up on it.
KEEPER_STOP_TIMEOUT_S = 15.0
#: per API request made by this backend, so a hung API server cannot stall a run.
API_REQUEST_TIMEOUT_S = 30.0


CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
#: labels the kubelet sets from the real machine; a fake GPU must not overwrite them
_KUBELET_OWNED_LABELS = frozenset({"kubernetes.io/os", "kubernetes.io/arch"})
REFERENCE_LOG_ENV = "GPU_CONFORMANCE_REFERENCE_LOG"
#: used when --cluster-name is left at pytest-kind's default; stable, so --keep-cluster reuses it
DEFAULT_CLUSTER_NAME = "gpu-conformance"
KIND_CONFIG_API_VERSION = "kind.x-k8s.io/v1alpha4"


@dataclass(frozen=True)
class StandInImages:
    """Small images that take the place of the NVIDIA ones on a cluster without GPUs."""

    #: runs forever and has no entrypoint arguments; kind node images preload a pause image
    plugin: str
    #: needs only ``sh`` and ``printf``
    workload: str


STAND_IN_IMAGES = StandInImages(plugin="registry.k8s.io/pause:3.10", workload="busybox:1.36")


class WorkloadOverrides(TypedDict):
    """Container fields (and WorkloadProfile fields of the same names) of the kind stand-in."""

    image: str
    command: list[str]
    args: list[str]
    env: list[dict[str, str]]


# ---------------------------------------------------------------- options and configuration


def add_options(group: pytest.OptionGroup) -> None:
    """kind options of this project (pytest-kind defines cluster name, keep, image, bins)."""
    group.addoption(
        "--kind-gpu-plugin-image", dest="kind_gpu_plugin_image", default=None, metavar="IMAGE",
        help="image that stands in for the NVIDIA device plugin on kind "
             f"(default {STAND_IN_IMAGES.plugin})")
    group.addoption(
        "--kind-gpu-workload-image", dest="kind_gpu_workload_image", default=None,
        metavar="IMAGE",
        help="image with sh and printf that prints the workload's reference log on kind "
             f"(default {STAND_IN_IMAGES.workload})")
    group.addoption(
        "--kind-gpu-keeper-seconds", dest="kind_gpu_keeper_seconds", type=float,
        default=KEEPER_LIFETIME_S, metavar="SECONDS",
        help="how long a background thread keeps re-advertising the fake GPUs if a kubelet "
             f"drops them (default {KEEPER_LIFETIME_S:g}; 0 disables it)")
    group.addoption(
        "--kind-load-image", dest="kind_load_images", action="append", default=[],
        metavar="IMAGE",
        help="a local Docker image to load into the kind nodes (`kind load docker-image`) "
             "before the suites run, e.g. the stand-in images on a runner without a registry; "
             "repeatable")


@dataclass(frozen=True)
class KindSettings:
    """Everything the kind backend needs, read from options once; touching no cluster."""

    cluster_name: str
    keep_cluster: bool = False
    kubeconfig: Path | None = None
    node_image: str | None = None
    kind_bin: Path | None = None
    kubectl_bin: Path | None = None
    gpu_nodes: int = 2
    gpus_per_node: int = 1
    sku: GpuSku = dataclasses.field(default_factory=lambda: _default_sku())
    taint: bool = False
    images: StandInImages = STAND_IN_IMAGES
    keeper_lifetime_s: float = KEEPER_LIFETIME_S
    keeper_interval_s: float = KEEPER_INTERVAL_S
    load_images: tuple[str, ...] = ()
    create_timeout_s: float = KIND_CREATE_TIMEOUT_S
    delete_timeout_s: float = KIND_DELETE_TIMEOUT_S
    workers_timeout_s: float = WORKERS_REGISTERED_TIMEOUT_S


def _default_sku() -> GpuSku:
    sku = gpus.sku_for_vm_size(gpus.DEFAULT_VM_SIZE)
    assert sku is not None, "DEFAULT_VM_SIZE is in the table"
    return sku


def resolve_sku(product: str | None) -> GpuSku:
    """The GPU the fake workers claim: a VM size, a device name or a product label."""
    if not product:
        return _default_sku()
    sku = gpus.sku_for_vm_size(product) or gpus.sku_for_product(product)
    if sku is None:
        raise UsageError(
            f"unknown GPU {product!r} for the kind backend; give a VM size (e.g. "
            f"{gpus.DEFAULT_VM_SIZE}), a device name (e.g. 'Tesla T4') or a product label")
    return sku


def _option(config: pytest.Config | None, name: str, default: T) -> T:
    if config is None:
        return default
    value = config.getoption(name, default)
    return default if value is None else value


def _path(value: object) -> Path | None:
    return Path(str(value)).expanduser() if value else None


def _timeout(timeouts: Timeouts, name: str, default: float) -> float:
    try:
        return timeouts[name]
    except KeyError:  # not (yet) one of the project's named timeouts
        return default


def settings_from_pytest_config(config: pytest.Config) -> KindSettings:
    """The project's shared settings (flag, env, ini) plus pytest-kind's and the kind options."""
    from gpu_conformance.settings import Settings

    shared = Settings.from_config(config)
    if shared.gpu_nodes < 1:
        raise UsageError(f"the kind backend needs at least 1 GPU worker, got --gpu-nodes "
                         f"{shared.gpu_nodes}")
    keeper = float(_option(config, "kind_gpu_keeper_seconds", KEEPER_LIFETIME_S))
    if keeper < 0:
        raise UsageError(f"--kind-gpu-keeper-seconds must be >= 0, got {keeper:g}")
    return KindSettings(
        cluster_name=shared.cluster_name or DEFAULT_CLUSTER_NAME,
        keep_cluster=shared.keep_cluster,
        kubeconfig=shared.kubeconfig,
        node_image=_option(config, "kind_image", "") or None,
        kind_bin=_path(_option(config, "kind_bin", "")),
        kubectl_bin=_path(_option(config, "kind_kubectl_bin", "")),
        gpu_nodes=shared.gpu_nodes,
        gpus_per_node=shared.gpus_per_node,
        sku=resolve_sku(shared.gpu_product),
        taint=shared.taint_gpu_nodes,
        images=stand_in_images(config),
        keeper_lifetime_s=keeper,
        load_images=tuple(_option(config, "kind_load_images", [])),
        create_timeout_s=_timeout(shared.timeouts, "kind-create", KIND_CREATE_TIMEOUT_S),
        delete_timeout_s=_timeout(shared.timeouts, "cleanup", KIND_DELETE_TIMEOUT_S),
        workers_timeout_s=_timeout(shared.timeouts, "nodes-ready", WORKERS_REGISTERED_TIMEOUT_S),
    )


def from_pytest_config(config: pytest.Config) -> KindBackend:
    """The kind backend for this run's options; no cluster, Docker or kind is touched."""
    return KindBackend(settings_from_pytest_config(config))


# ---------------------------------------------------------------- stand-in images


def stand_in_images(config: pytest.Config | None = None) -> StandInImages:
    return StandInImages(
        plugin=str(_option(config, "kind_gpu_plugin_image", STAND_IN_IMAGES.plugin)),
        workload=str(_option(config, "kind_gpu_workload_image", STAND_IN_IMAGES.workload)),
    )


def plugin_image_override(config: pytest.Config | None = None) -> str:
    """The image for the device plugin DaemonSet's container on kind (it must run, not exit)."""
    return stand_in_images(config).plugin


def workload_overrides(
    profile: WorkloadProfile, device_name: str, config: pytest.Config | None = None
) -> WorkloadOverrides:
    """image/command/args/env that make the profile's Job print its reference log.

    The log travels in an environment variable, not a ConfigMap, so the Job stays one
    self-contained object and several Jobs in one namespace never share a name. Every ``$`` is
    doubled because the kubelet expands ``$(NAME)`` in env values and turns ``$$`` into ``$``.
    """
    log = profile.reference_log(device_name)
    return {
        "image": stand_in_images(config).workload,
        "command": ["sh", "-c", f'printf "%s" "${REFERENCE_LOG_ENV}"'],
        "args": [],
        "env": [*(dict(e) for e in profile.env),
                {"name": REFERENCE_LOG_ENV, "value": log.replace("$", "$$")}],
    }


# ---------------------------------------------------------------- kind config


def fake_gpu_node_labels(sku: GpuSku, gpus_per_node: int) -> dict[str, str]:
    """The GPU pool labels a fake GPU worker carries (os/arch stay the kubelet's)."""
    labels = {k: v for k, v in gpu_node_labels(sku, gpus_per_node).items()
              if k not in _KUBELET_OWNED_LABELS}
    labels[SIMULATED_LABEL] = "true"
    return labels


def kind_config(
    gpu_workers: int, sku: GpuSku, gpus_per_node: int, *, taint: bool = False
) -> dict[str, Any]:
    """A kind Cluster config: one control plane and ``gpu_workers`` labelled GPU workers.

    Labels use kind's per-node ``labels`` (the kubelet registers with them, so no pod lands on
    a worker before it looks like a GPU node). The taint goes through a kubeadm
    JoinConfiguration patch, whose ``nodeRegistration.taints`` has one shape in every kubeadm
    API version kind uses.
    """
    if gpu_workers < 1:
        raise UsageError(f"a kind GPU cluster needs at least 1 worker, got {gpu_workers}")
    labels = fake_gpu_node_labels(sku, gpus_per_node)
    workers: list[dict[str, Any]] = []
    for _ in range(gpu_workers):
        worker: dict[str, Any] = {"role": "worker", "labels": dict(labels)}
        if taint:
            patch = {"kind": "JoinConfiguration",
                     "nodeRegistration": {"taints": [dict(GPU_TAINT)]}}
            worker["kubeadmConfigPatches"] = [yaml.safe_dump(patch, sort_keys=False)]
        workers.append(worker)
    return {
        "kind": "Cluster",
        "apiVersion": KIND_CONFIG_API_VERSION,
        "nodes": [{"role": "control-plane"}, *workers],
    }


def kind_config_yaml(
    gpu_workers: int, sku: GpuSku, gpus_per_node: int, *, taint: bool = False
) -> str:
    return yaml.safe_dump(kind_config(gpu_workers, sku, gpus_per_node, taint=taint),
                          sort_keys=False)


# ---------------------------------------------------------------- Docker


def require_container_engine(
    program: str | None = None, *, timeout_s: float = DOCKER_INFO_TIMEOUT_S
) -> str:
    """Fail with one line unless a container engine answers; return its server version.

    kind runs nodes as containers of the engine `docker` (or KIND_EXPERIMENTAL_PROVIDER) talks
    to, so a docker CLI without a reachable engine is no better than none.
    """
    program = program or os.environ.get("KIND_EXPERIMENTAL_PROVIDER") or "docker"
    hint = "start a Docker engine, or use --backend kwok for the offline cluster"
    found = shutil.which(program)
    if found is None:
        raise ClusterError(f"kind needs a Docker engine: no `{program}` program on PATH",
                           hint=hint)
    try:
        run = subprocess.run([found, "info", "--format", "{{.ServerVersion}}"],
                             capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"kind needs a Docker engine: `{program} info` did not answer within "
                           f"{timeout_s:g}s", hint=hint) from None
    except OSError as error:
        raise ClusterError(f"kind needs a Docker engine: could not run `{program} info`: {error}",
                           hint=hint) from None
    if run.returncode != 0:
        detail = _first_line(run.stderr) or _first_line(run.stdout) or f"exit {run.returncode}"
        raise ClusterError(f"kind needs a Docker engine: `{program} info` failed: {detail}",
                           hint=hint)
    return run.stdout.strip() or "unknown"


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


# ---------------------------------------------------------------- fake GPUs


def _api(what: str, request: Callable[[], T]) -> T:
    """One API call, retried on transient errors only (kube.call); a final error is one line."""
    try:
        return call(request)
    except (ApiException, urllib3.exceptions.HTTPError, ConnectionError) as error:
        raise ClusterError(f"{what}: {short(error)}") from None


def advertise_fake_gpus(
    core_v1_api: CoreV1Api,
    node_names: Sequence[str],
    gpus_per_node: int,
    sku: GpuSku,
) -> None:
    """Make these nodes look like GPU nodes of ``sku`` to the scheduler and the suites.

    Labels go on the node object; ``nvidia.com/gpu`` capacity and allocatable go through the
    status subresource (the only way to change node status). Both are strategic merge patches
    that touch only these keys, so the kubelet's own cpu/memory/pods stay real.
    """
    capacity, allocatable = gpu_resources(gpus_per_node)
    gpu_status = {"status": {
        "capacity": {gpus.GPU_RESOURCE: capacity[gpus.GPU_RESOURCE]},
        "allocatable": {gpus.GPU_RESOURCE: allocatable[gpus.GPU_RESOURCE]},
    }}
    labels = {"metadata": {"labels": fake_gpu_node_labels(sku, gpus_per_node)}}
    for name in node_names:
        _api(f"labelling node {name} as a fake {sku.device_name} node",
             partial(core_v1_api.patch_node, name, labels,
                     _request_timeout=API_REQUEST_TIMEOUT_S))
        _api(f"advertising {gpus_per_node} fake {gpus.GPU_RESOURCE} on node {name}",
             partial(core_v1_api.patch_node_status, name, gpu_status,
                     _request_timeout=API_REQUEST_TIMEOUT_S))


def missing_fake_gpus(node: Any, gpus_per_node: int, sku: GpuSku) -> list[str]:
    """What a node lacks of its fake GPU advertisement (empty when it is all there)."""
    want = str(gpus_per_node)
    status = node.status
    capacity = (status.capacity if status else None) or {}
    allocatable = (status.allocatable if status else None) or {}
    labels = node.metadata.labels or {}
    missing = [f"{kind} {gpus.GPU_RESOURCE}={have.get(gpus.GPU_RESOURCE, 'none')}"
               for kind, have in (("capacity", capacity), ("allocatable", allocatable))
               if have.get(gpus.GPU_RESOURCE) != want]
    missing += [f"label {key}" for key, value in fake_gpu_node_labels(sku, gpus_per_node).items()
                if labels.get(key) != value]
    return missing


class FakeGpuKeeper:
    """Re-advertises fake GPUs that a kubelet dropped, until stopped or its lifetime ends."""

    def __init__(
        self,
        core_v1_api: CoreV1Api,
        node_names: Sequence[str],
        gpus_per_node: int,
        sku: GpuSku,
        *,
        log: Log,
        interval_s: float = KEEPER_INTERVAL_S,
        lifetime_s: float = KEEPER_LIFETIME_S,
    ) -> None:
        self._api = core_v1_api
        self._nodes = tuple(node_names)
        self._gpus_per_node = gpus_per_node
        self._sku = sku
        self._log = log
        self._interval_s = interval_s
        self._lifetime_s = lifetime_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: (node, what it had lost) per re-advertisement, in order
        self.restored: list[tuple[str, str]] = []
        self.errors = 0

    def ensure(self) -> list[str]:
        """Re-advertise on every node that lost part of it; the names of those nodes."""
        restored = []
        for name in self._nodes:
            node = _api(f"reading node {name}", partial(
                self._api.read_node_status, name, _request_timeout=API_REQUEST_TIMEOUT_S))
            missing = missing_fake_gpus(node, self._gpus_per_node, self._sku)
            if missing:
                advertise_fake_gpus(self._api, [name], self._gpus_per_node, self._sku)
                what = ", ".join(missing)
                self.restored.append((name, what))
                self._log(f"kind: node {name} had lost its fake GPUs ({what}); re-advertised")
                restored.append(name)
        return restored

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="kind-fake-gpu-keeper",
                                        daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = KEEPER_STOP_TIMEOUT_S) -> bool:
        """Stop the thread; False if it did not end within ``timeout_s`` (it is a daemon)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        return not self.running

    def _run(self) -> None:
        deadline = time.monotonic() + self._lifetime_s
        while not self._stop.wait(self._interval_s):
            if time.monotonic() >= deadline:
                self._log(f"kind: fake-GPU keeper stopped after its lifetime of "
                          f"{self._lifetime_s:g}s; GPUs a kubelet drops now stay dropped")
                return
            try:
                self.ensure()
            # A background thread must not die of one failed round; it logs and tries again
            # next round, and stays bounded by its lifetime.
            except Exception as error:
                self.errors += 1
                self._log(f"kind: fake-GPU keeper round failed: {_one_line(error)}")


def _one_line(error: BaseException) -> str:
    one_line = getattr(error, "one_line", None)
    if callable(one_line):
        return str(one_line())
    return " ".join(str(error).split()) or type(error).__name__


# ---------------------------------------------------------------- the backend


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


def _list_workers(core_v1_api: CoreV1Api) -> tuple[list[str], str | None]:
    nodes = _api("listing nodes", partial(core_v1_api.list_node,
                                          _request_timeout=API_REQUEST_TIMEOUT_S))
    names = []
    for node in nodes.items:
        meta = node.metadata
        if meta is None or not meta.name:
            continue
        if not any(key in (meta.labels or {}) for key in CONTROL_PLANE_LABELS):
            names.append(meta.name)
    return sorted(names), nodes.metadata.resource_version if nodes.metadata else None


def worker_node_names(core_v1_api: CoreV1Api) -> list[str]:
    """Names of the nodes that are not control planes, sorted."""
    return _list_workers(core_v1_api)[0]


def wait_for_workers(core_v1_api: CoreV1Api, count: int, timeout_s: float) -> list[str]:
    """The first ``count`` worker nodes by name, once that many are registered."""
    from kubernetes import watch

    deadline = time.monotonic() + timeout_s
    while True:
        workers, resource_version = _list_workers(core_v1_api)
        if len(workers) >= count:
            return workers[:count]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"expected {count} kind worker nodes registered, got instead: "
                f"{len(workers)} ({', '.join(workers) or 'none'})",
                hint="a reused cluster keeps its old shape; delete it or choose another "
                     "--cluster-name")
        stream: Any = watch.Watch()
        for _event in stream.stream(core_v1_api.list_node, resource_version=resource_version,
                                    timeout_seconds=max(1, int(remaining))):
            stream.stop()  # a change after the list: list again
            break


class KindBackend:
    """A kind cluster from pytest-kind, with fake GPU workers; deletes only a cluster it made."""

    name = "kind"

    def __init__(
        self,
        settings: KindSettings,
        *,
        check_engine: Callable[[], str] = require_container_engine,
        cluster_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.settings = settings
        self._check_engine = check_engine
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

    def up(self, log: Log) -> ClusterHandle:
        """Create (or reuse) the kind cluster and advertise fake GPUs on its workers.

        ``down`` is safe to call after this fails at any point.
        """
        engine_version = self._check_engine()
        kubeconfig = self.provision(log)
        self.advertise(kubeconfig, log)
        s = self.settings
        return ClusterHandle(
            kubeconfig=kubeconfig,
            context=self.context,
            backend=self.name,
            name=s.cluster_name,
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
            from pytest_kind import KindCluster

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

        try:
            _bounded("kind create cluster", create, s.create_timeout_s)
            for image in s.load_images:
                log(f"kind: loading image {image} into cluster {s.cluster_name}")
                _bounded(f"kind load docker-image {image}",
                         partial(cluster.load_docker_image, image), s.create_timeout_s)
        except subprocess.CalledProcessError as error:
            detail = _first_line(error.stderr) or "its output is above"
            raise ClusterError(f"`{' '.join(map(str, error.cmd))}` failed with exit "
                               f"{error.returncode}: {detail}") from None
        except OSError as error:
            raise ClusterError(f"could not run kind: {error}") from None

        return Path(cluster.kubeconfig_path).resolve()

    def advertise(self, kubeconfig: Path, log: Log) -> None:
        """Fake GPUs on the first ``gpu_nodes`` workers, and the keeper that holds them there."""
        from kubernetes import client

        s = self.settings
        self._api_client = new_api_client(kubeconfig, self.context)
        api = client.CoreV1Api(self._api_client)
        self.gpu_workers = wait_for_workers(api, s.gpu_nodes, s.workers_timeout_s)
        advertise_fake_gpus(api, self.gpu_workers, s.gpus_per_node, s.sku)
        log(f"kind: advertised {s.gpus_per_node} fake {gpus.GPU_RESOURCE} "
            f"({s.sku.device_name}) on {', '.join(self.gpu_workers)}")
        if s.keeper_lifetime_s > 0:
            # Its own client: the keeper thread never shares a connection pool with the suites.
            self._keeper_client = new_api_client(kubeconfig, self.context)
            keeper_api = client.CoreV1Api(self._keeper_client)
            self._keeper = FakeGpuKeeper(keeper_api, self.gpu_workers, s.gpus_per_node, s.sku,
                                         log=log, interval_s=s.keeper_interval_s,
                                         lifetime_s=s.keeper_lifetime_s)
            self._keeper.start()

    def down(self, log: Log) -> None:
        """Stop the keeper; delete the cluster only if this run created it and may delete it."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            if not keeper.stop():
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
        if self.settings.keep_cluster:
            log(f"kind: keeping cluster {name} (--keep-cluster); remove it with: "
                f"{self._kind_command()}")
            self._cluster = None
            return
        command = self._kind_command()
        try:
            _bounded("kind delete cluster", cluster.delete, self.settings.delete_timeout_s)
        except (subprocess.CalledProcessError, OSError, WaitTimeout) as error:
            raise ClusterError(f"could not delete kind cluster {name}: {_one_line(error)}",
                               hint=f"delete it by hand: {command}") from None
        self._cluster = None
        log(f"kind: deleted cluster {name}")
