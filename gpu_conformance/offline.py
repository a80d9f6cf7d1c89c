"""The offline GPU cluster: a real control plane run by kwokctl, with simulated GPU nodes.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as plain processes
bound to 127.0.0.1; kwok plays the kubelet of every node, marks pods Running and Job pods
Succeeded, and serves container logs (the workload profiles' reference logs) through the
API server exactly as a kubelet would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from gpu_conformance import binaries, gpus, kapi, nodes, sharing, simulator
from gpu_conformance.errors import ClusterError, UsageError, one_line
from gpu_conformance.kube import call, is_conflict, new_api_client
from gpu_conformance.log import Log
from gpu_conformance.namespaces import wait_for_default_service_account
from gpu_conformance.paths import REPO_ROOT, in_checkout
from gpu_conformance.timeouts import Timeouts
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for
from gpu_conformance.workloads import PROFILES, isolation

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
DEFAULT_NAME = "gpu-conformance"
SEED_JOB_CONTAINER = "samples-tf-mnist-demo"
PLUGIN_CONTAINERS = ("nvidia-device-plugin-ctr", "nvidia-device-plugin")


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass
class OfflineClusterSpec:
    name: str = DEFAULT_NAME
    gpu_nodes: int = 2
    gpus_per_node: int = 1
    #: a device name ("Tesla T4"), product label ("Tesla-T4") or VM size
    gpu_product: str | None = None
    #: serve this CRI or plain log file for every workload container instead of the profiles'
    job_log: Path | None = None
    #: taint GPU nodes sku=gpu:NoSchedule, as AKS GPU pools are
    taint_gpu_nodes: bool = False
    port: int | None = None
    extra_node_labels: dict[str, str] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    #: seconds a GPU node keeps its capacity after its device plugin went away (the kubelet's
    #: endpointStopGracePeriod); allocatable drops to 0 at once
    plugin_grace: float = simulator.DEFAULT_PLUGIN_GRACE
    #: GPU node -> how many of its GPUs are healthy (the others simulate failed GPUs)
    unhealthy: dict[str, int] = field(default_factory=dict)
    #: "real": one more node, a real kubelet + containerd + runc on this host (needs root);
    #: kwok then manages only the simulated nodes
    node: str = "simulated"
    #: the real node's GPUs: "fake" (a test device plugin, gpus_per_node devices named after
    #: gpu_product) or "nvidia" (this host's GPUs through CDI and NVIDIA's plugin image)
    real_gpus: str = "fake"
    #: how the simulated GPU nodes offer their GPUs: none (whole GPUs), mig-single, mig-mixed
    #: (a MIG-capable --gpu-product), time-slicing (gpu_conformance.sharing)
    gpu_sharing: str = "none"

    def sku(self) -> gpus.GpuSku:
        return gpus.resolve_product(self.gpu_product)

    def shared_node(self) -> sharing.SimulatedNode | None:
        """The labels and GPU resources of a simulated GPU node under ``gpu_sharing`` (None:
        whole GPUs). Raises ValueError for an unknown mode or MIG on a GPU without it."""
        sku = self.sku()
        return sharing.simulated_node(self.gpu_sharing, sku.device_name, self.gpus_per_node,
                                      vm_size=sku.vm_size, memory_mib=sku.memory_mib)

    def gpu_node_names(self) -> list[str]:
        return [gpu_node_name(i) for i in range(self.gpu_nodes)]

    def validate(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise UsageError(
                f"bad cluster name {self.name!r}: use lowercase letters, digits and '-' (max 40)"
            )
        if self.gpu_nodes < 0 or self.gpu_nodes > MAX_GPU_NODES:
            raise UsageError(f"--gpu-nodes must be between 0 and {MAX_GPU_NODES}, "
                             f"got {self.gpu_nodes}")
        if self.gpus_per_node < 1 or self.gpus_per_node > 64:
            raise UsageError(f"--gpus-per-node must be between 1 and 64, got {self.gpus_per_node}")
        if self.job_log is not None and not self.job_log.is_file():
            raise UsageError(f"--job-log {self.job_log} does not exist")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise UsageError(f"--port must be between 1 and 65535, got {self.port}")
        if self.node not in ("simulated", "real"):
            raise UsageError(f"--node must be 'simulated' or 'real', got {self.node!r}")
        if self.real_gpus not in ("fake", "nvidia"):
            raise UsageError(f"--real-gpus must be 'fake' or 'nvidia', got {self.real_gpus!r}")
        if self.plugin_grace < 0:
            raise UsageError(f"--plugin-grace must be >= 0, got {self.plugin_grace:g}")
        try:
            self.shared_node()
        except ValueError as exc:
            raise UsageError(f"--gpu-sharing: {exc}") from None
        if self.unhealthy and self.gpu_sharing != "none":
            raise UsageError("--unhealthy works with whole GPUs only (--gpu-sharing none); on a "
                             f"shared node lower the healthy count in its {nodes.DEVICES_ANNOTATION}"
                             " annotation (RESOURCE=TOTAL/HEALTHY)")
        names = self.gpu_node_names()
        for node, healthy in self.unhealthy.items():
            if node not in names:
                raise UsageError(f"--unhealthy {node}={healthy}: no GPU node {node!r} (the GPU "
                                 f"nodes are {names[0] if names else 'none'} ...)")
            if not 0 <= healthy <= self.gpus_per_node:
                raise UsageError(f"--unhealthy {node}={healthy}: healthy GPUs must be between 0 "
                                 f"and {self.gpus_per_node}")


#: simulated GPU nodes one cluster may have (2,000 measured on 2 cores: benchmarks/speed.py)
MAX_GPU_NODES = 5000
#: Node creations in flight at once (the API server admits them in parallel)
CREATE_PARALLEL = 8
API_READY_POLL = 0.05  # seconds between two /readyz questions while the API server starts

#: what kwokctl starts (its pid files are named after them)
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
              "kwok-controller")


#: kwok-controller readies about this many simulated nodes per nodes-ready bound on 2 cores
#: (2,000 nodes: 1,647 Ready after 60 s)
NODES_PER_READY_BOUND = 500


def nodes_ready_bound(seconds: float, nodes: int) -> float:
    """The nodes-ready bound for ``nodes`` new simulated nodes: the bound per
    ``NODES_PER_READY_BOUND`` nodes, never less than the bound itself."""
    return seconds * max(1.0, nodes / NODES_PER_READY_BOUND)


def gpu_node_name(index: int) -> str:
    """GPU nodes are named like an AKS pool's: aks-gpu-00000000, aks-gpu-00000001, ..."""
    return f"aks-gpu-{index:08d}"


def state_dir() -> Path:
    """Where clusters live: ``$GPU_CONFORMANCE_STATE``, else ``.gpu-conformance/`` in the checkout.

    Inside the checkout on purpose: pytest looks for its ini file upward from path-like
    arguments, so ``pytest --kubeconfig <this cluster's kubeconfig>`` finds the project's
    pytest.ini. (Binaries stay in the shared cache: they are big and reused.)
    """
    explicit = os.environ.get("GPU_CONFORMANCE_STATE")
    if explicit:
        return Path(explicit)
    if in_checkout():
        return REPO_ROOT / ".gpu-conformance"
    return binaries.cache_dir()


RUN_CLUSTER_PATTERN = re.compile(r"^gpu-conformance-(?P<pid>\d+)$")


def list_clusters() -> list[str]:
    """Names of the offline clusters that have files here."""
    names = {p.name for root in (clusters_root(), kwok_workdir() / "clusters") if root.is_dir()
             for p in root.iterdir() if p.is_dir()}
    return sorted(names)


def sweep_orphans(log: Log) -> list[str]:
    """Remove clusters a killed pytest run left behind (named after a process that is gone)."""
    removed = []
    for name in list_clusters():
        match = RUN_CLUSTER_PATTERN.match(name)
        if match and not Path(f"/proc/{match.group('pid')}").exists():
            log(f"removing offline cluster {name!r}, left by a run that no longer exists")
            OfflineCluster(OfflineClusterSpec(name=name)).down(log=lambda _line: None)
            removed.append(name)
    return removed


def clusters_root() -> Path:
    return state_dir() / "clusters"


def kwok_workdir() -> Path:
    return state_dir() / "kwok"


def _to_cri(text: str) -> str:
    """Plain text to the CRI log format kwok serves; CRI-format input is kept as it is."""
    lines = text.splitlines()
    if lines and re.match(r"^\S+Z (stdout|stderr) [FP] ", lines[0]):
        return text if text.endswith("\n") else text + "\n"
    return "".join(f"2026-01-01T00:00:00.000000000Z stdout F {line}\n" for line in lines)


PLUGIN_LOG = """\
I0101 00:00:00.000000       1 main.go:178] Starting FS watcher.
I0101 00:00:00.000000       1 main.go:185] Starting OS watcher.
I0101 00:00:00.000000       1 main.go:200] Starting Plugins.
I0101 00:00:00.000000       1 main.go:257] Loading configuration.
I0101 00:00:00.000000       1 main.go:340] Retrieving plugins.
I0101 00:00:00.000000       1 server.go:176] Starting GRPC server for 'nvidia.com/gpu'
I0101 00:00:00.000000       1 server.go:117] Starting to serve 'nvidia.com/gpu' on nvidia-gpu.sock
I0101 00:00:00.000000       1 server.go:125] Registered device plugin for 'nvidia.com/gpu' with Kubelet
"""


class OfflineCluster:
    """One named offline cluster: its files live under ``clusters_root()/<name>``."""

    def __init__(self, spec: OfflineClusterSpec) -> None:
        self.spec = spec
        #: processes this object killed itself: still ours while they exit
        self._exiting: set[int] = set()
        self.dir = clusters_root() / spec.name
        self.kwok_dir = kwok_workdir() / "clusters" / spec.name

    @property
    def kubeconfig(self) -> Path:
        return self.kwok_dir / "kubeconfig.yaml"

    def exists(self) -> bool:
        return self.kwok_dir.exists() or self.dir.exists()

    # --- up -------------------------------------------------------------------------------
    def up(self, log: Log = _say) -> Path:
        """Start the cluster and its nodes; return the kubeconfig path."""
        self.spec.validate()
        sku = self.spec.sku()
        if self.exists():
            raise UsageError(
                f"an offline cluster named {self.spec.name!r} already exists",
                hint=f"use it, or remove it: gpu-conformance cluster down --name {self.spec.name}",
            )
        port = self._port()
        paths = binaries.ensure(log)
        started = time.monotonic()
        self.dir.mkdir(parents=True)
        try:
            config_file = self._write_config(paths, sku)
            # kwokctl picks etcd's and the controllers' ports by scanning down from 32765 in
            # each process: two clusters created at once would share one etcd
            with binaries.machine_lock("kwokctl-create"):
                self._kwokctl(paths, "create", "cluster", "--name", self.spec.name,
                              "--config", str(config_file), "--kubeconfig", "",
                              "--kube-apiserver-port", str(port),
                              # kwokctl's own wait polls /healthz once a second through a
                              # kubectl process: up to a second lost on every start
                              "--wait", "0s",
                              timeout=self.spec.timeouts["kwokctl"], log=log)
            self._protect_secrets()
            # the simulator's start (its imports) overlaps the API server's; the nodes wait
            # for the server: thousands of creates during its bootstrap can delay its
            # /healthz past the 10 s the controller manager waits for it before exiting
            spawned = simulator.spawn(self.kubeconfig, self.dir,
                                      plugin_grace=self.spec.plugin_grace, log=log)
            self._wait_api_ready(self.spec.timeouts["api-ready"])
            self._require_components()
            log(f"control plane up on https://127.0.0.1:{port} "
                f"({time.monotonic() - started:.1f}s)")
            self._create_nodes(sku, log)
            spawned.synced(self.spec.timeouts["api-ready"])
            self._require_components()
            if self.spec.node == "real":
                self._real_node_up(sku, log)
        except BaseException:
            log("start failed; removing the partial cluster")
            self.down(log=lambda _line: None)
            raise
        real = (f" + real node {self.real_node_name} ({self.spec.real_gpus} GPUs)"
                if self.spec.node == "real" else "")
        shared = ("" if self.spec.gpu_sharing == "none"
                  else f", shared by {self.spec.gpu_sharing}")
        log(f"cluster {self.spec.name!r} ready in {time.monotonic() - started:.1f}s: "
            f"1 system node, {self.spec.gpu_nodes} GPU node(s) x {self.spec.gpus_per_node} "
            f"{sku.device_name} ({sku.vm_size}){shared}{real}")
        return self.kubeconfig

    # --- the real node ----------------------------------------------------------------------
    @property
    def real_node_dir(self) -> Path:
        return self.dir / "real-node"

    @property
    def real_node_name(self) -> str:
        from gpu_conformance.realnode import config as realnode_config

        return realnode_config.DEFAULT_NODE_NAME

    def _nvidia_node_inputs(self, log: Log) -> tuple[tuple[Path, ...], tuple[Path, ...]]:
        """This host's GPUs for the real node, as scripts/real_node_gpu_host.sh prepares them:
        a CDI spec from nvidia-ctk (driver root /usr/local/nvidia) and the images built here
        (NVIDIA's plugin, nvidia-smi, cuda-vectoradd when nvcc is there)."""
        from gpu_conformance.realnode import gpu_images, programs

        driver_root = Path(os.environ.get("GPU_CONFORMANCE_DRIVER_ROOT", "/usr/local/nvidia"))
        if not Path("/dev/nvidiactl").exists() or not driver_root.is_dir():
            raise ClusterError("--real-gpus nvidia needs an NVIDIA GPU host: /dev/nvidiactl and the "
                               f"driver under {driver_root} (GPU_CONFORMANCE_DRIVER_ROOT)",
                               hint="on a host without GPUs use --real-gpus fake")
        paths = programs.ensure(programs.NVIDIA_FAMILIES, log)
        cdi_dir = self.dir / "cdi"
        cdi_dir.mkdir(exist_ok=True)
        generate = [str(paths["nvidia-ctk"]), "cdi", "generate", "--driver-root", str(driver_root),
                    "--dev-root", "/", "--nvidia-cdi-hook-path", str(paths["nvidia-cdi-hook"]),
                    "--device-name-strategy", "index", "--device-name-strategy", "uuid",
                    "--output", str(cdi_dir / "nvidia.yaml")]
        done = subprocess.run(generate, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ClusterError(f"nvidia-ctk cdi generate failed: {_last_error(done.stderr)}")
        nvcc = Path(os.environ.get("NVCC", "/usr/local/cuda/bin/nvcc"))
        archives = gpu_images.build_gpu_host_images(
            paths, self.dir / "images", driver_root=driver_root,
            nvcc=nvcc if nvcc.is_file() else None, python=None, log=log)
        return (cdi_dir,), tuple(archives)

    def component_args(self) -> dict[str, list[tuple[str, str]]]:
        """Flags added to kwokctl's components, as its configuration's componentsPatches (its
        --extra-args mis-indexes a component named again after another: kwokctl v0.8.0
        mutationComponentPatches panics with "index out of range")."""
        args: dict[str, list[tuple[str, str]]] = {
            "kube-apiserver": [("advertise-address", "127.0.0.1")],
            # one instance each: losing a lease to an API server restart must not make them
            # exit (with leader election they do); client rate limits of a production control
            # plane, not a laptop's (defaults 20/30 and 50/100 QPS): a DaemonSet over 2,000
            # nodes rolls out in seconds, as on a large cluster
            "kube-controller-manager": [("leader-elect", "false"), ("kube-api-qps", "200"),
                                        ("kube-api-burst", "400")],
            "kube-scheduler": [("leader-elect", "false"), ("kube-api-qps", "200"),
                               ("kube-api-burst", "400")],
        }
        if self.spec.node == "real":
            # kwok keeps to the simulated nodes (annotated kwok.x-k8s.io/node=fake) and leaves
            # the real node, its pods and their status to the real kubelet
            args["kwok-controller"] = [
                ("manage-all-nodes", "false"),
                ("manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake")]
        return args

    def _real_node(self, sku: gpus.GpuSku | None = None) -> Any:
        from gpu_conformance.realnode.labels import gpu_labels
        from gpu_conformance.realnode.node import RealNode, RealNodeSpec

        labels: dict[str, str] = {}
        if sku is not None:
            labels = gpu_labels(self.spec.real_gpus, self.spec.gpus_per_node, sku.device_name)
            labels.update(self.spec.extra_node_labels)
        return RealNode(RealNodeSpec(
            work_dir=self.real_node_dir, node_name=self.real_node_name,
            gpu_mode="nvidia" if self.spec.real_gpus == "nvidia" else "fake",
            fake_gpus=self.spec.gpus_per_node, device_name=sku.device_name if sku else "",
            labels=labels,
            # kwokctl's API server reaches kubelets without a client certificate
            anonymous_kubelet_api=True,
            container_runtime="nvidia-cdi",
        ))

    def _real_node_up(self, sku: gpus.GpuSku, log: Log) -> None:
        from gpu_conformance.realnode.node import ControlPlaneAccess

        node = self._real_node(sku)
        if self.spec.real_gpus == "nvidia":
            node.spec.cdi_spec_dirs, node.spec.image_archives = self._nvidia_node_inputs(log)
        node.up(ControlPlaneAccess.from_kwok_cluster(self.kubeconfig), log)
        if self.spec.taint_gpu_nodes:
            core = kapi.CoreV1Api(new_api_client(self.kubeconfig, None))
            call(core.patch_node, self.real_node_name, {"spec": {"taints": [dict(nodes.GPU_TAINT)]}})

    def _protect_secrets(self) -> None:
        """Private keys and the kubeconfig readable by their owner alone (kwokctl leaves the
        keys world-readable)."""
        for path in [*(self.kwok_dir / "pki").glob("*.key"), self.kubeconfig]:
            if path.is_file():
                path.chmod(0o600)
        for folder in (state_dir(), kwok_workdir(), self.kwok_dir, self.dir):
            if folder.is_dir():
                folder.chmod(0o700)

    def _port(self) -> int:
        if self.spec.port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                return int(probe.getsockname()[1])
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", self.spec.port))
            except OSError:
                raise ClusterError(f"port {self.spec.port} on 127.0.0.1 is already in use",
                                   hint="pick another with --port, or leave it out") from None
        return self.spec.port

    def _write_config(self, paths: dict[str, Path], sku: gpus.GpuSku) -> Path:
        logs_dir = self.dir / "logs"
        logs_dir.mkdir()
        log_entries: list[dict[str, Any]] = []
        default_file = logs_dir / "default.log"
        if self.spec.job_log is not None:
            default_file.write_text(_to_cri(self.spec.job_log.read_text()))
        else:
            default_file.write_text(_to_cri(PROFILES["tf-mnist"].reference_log(sku.device_name)))
            for profile in PROFILES.values():
                target = logs_dir / f"{profile.name}.log"
                text = (profile.reference_log(sku.device_name, self.spec.gpus_per_node)
                        if profile.all_gpus else profile.reference_log(sku.device_name))
                target.write_text(_to_cri(text))
                containers = [profile.name]
                if profile.name == "tf-mnist":
                    containers.append(SEED_JOB_CONTAINER)
                log_entries.append({"containers": containers, "logsFile": str(target)})
        if self.spec.job_log is None:
            log_entries += self._isolation_logs(logs_dir, sku.device_name)
        plugin_file = logs_dir / "device-plugin.log"
        plugin_file.write_text(_to_cri(PLUGIN_LOG))
        log_entries.append({"containers": list(PLUGIN_CONTAINERS), "logsFile": str(plugin_file)})
        log_entries.append({"logsFile": str(default_file)})
        kwokctl_config = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": {
                "runtime": "binary",
                "bindAddress": "127.0.0.1",
                "kubeVersion": binaries.KUBERNETES_VERSION,
                "kubeApiserverBinary": str(paths["kube-apiserver"]),
                "kubeControllerManagerBinary": str(paths["kube-controller-manager"]),
                "kubeSchedulerBinary": str(paths["kube-scheduler"]),
                "kubectlBinary": str(paths["kubectl"]),
                "etcdBinary": str(paths["etcd"]),
                "kwokControllerBinary": str(paths["kwok"]),
            },
            "componentsPatches": [
                {"name": component, "extraArgs": [{"key": k, "value": v} for k, v in flags]}
                for component, flags in self.component_args().items()
            ],
        }
        cluster_logs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "gpu-conformance-workloads"},
            "spec": {"logs": log_entries},
        }
        target = self.dir / "kwokctl.yaml"
        target.write_text(yaml.safe_dump_all([kwokctl_config, cluster_logs], sort_keys=False))
        (self.dir / "spec.json").write_text(json.dumps({
            "gpu_nodes": self.spec.gpu_nodes, "gpus_per_node": self.spec.gpus_per_node,
            "vm_size": sku.vm_size, "device_name": sku.device_name,
            "plugin_grace": self.spec.plugin_grace, "unhealthy": self.spec.unhealthy,
            "node": self.spec.node, "real_gpus": self.spec.real_gpus,
            "gpu_sharing": self.spec.gpu_sharing,
        }))
        return target

    @staticmethod
    def _isolation_logs(logs_dir: Path, device_name: str) -> list[dict[str, Any]]:
        """What the isolation probe prints in each role's container on a node whose GPUs are
        isolated: the GPU asked for (the concurrent pods different ones), or none."""
        outputs = {
            ("probe", "with-gpu", "concurrent-a"): isolation.reference_output("gpu", device_name),
            ("concurrent-b",): isolation.reference_output(
                "gpu", device_name, uuid=isolation.REFERENCE_UUID[:-1] + "6", minor=1),
            ("no-request", "without-gpu", "extra"): isolation.reference_output("none", None),
        }
        entries = []
        for containers, text in outputs.items():
            target = logs_dir / f"isolation-{containers[0]}.log"
            target.write_text(_to_cri(text))
            entries.append({"containers": list(containers), "logsFile": str(target)})
        return entries

    def _require_components(self, names: tuple[str, ...] = COMPONENTS) -> None:
        """Each of ``names`` still runs (one that gave up at its start, e.g. the controller
        manager after 10 s without a healthy API server, says so here, by name)."""
        running = self.components()
        dead = [name for name in names if not running.get(name)]
        if dead:
            log_file = self.kwok_dir / "logs" / f"{dead[0]}.log"
            raise ClusterError(f"{', '.join(dead)} exited while the offline cluster started: "
                               f"{_last_error(_read_tail(log_file))}", hint=f"see {log_file}")

    def _wait_api_ready(self, timeout: float) -> None:
        """Until the API server answers /readyz "ok" (its post-start hooks done: RBAC roles,
        priority classes), asking every 50 ms; a component that died says so at once."""
        api = new_api_client(self.kubeconfig, None)
        url = api.configuration.host + "/readyz"
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        try:
            while True:
                try:
                    answer = api.rest_client.request("GET", url, _request_timeout=(1, 2))
                    answer.read()
                    if answer.status == 200 and (answer.data or b"").strip() == b"ok":
                        return
                    last = f"HTTP {answer.status}"
                except Exception as exc:  # refused while it starts: ask again
                    last = one_line(exc)
                self._require_components(("etcd", "kube-apiserver"))
                if time.monotonic() >= deadline:
                    raise ClusterError(
                        f"the offline cluster's API server was not ready within {timeout:g}s "
                        f"(api-ready timeout): {last}",
                        hint=f"see {self.kwok_dir / 'logs' / 'kube-apiserver.log'}")
                time.sleep(API_READY_POLL)
        finally:
            api.close()

    def _create_nodes(self, sku: gpus.GpuSku, log: Log) -> None:
        api = new_api_client(self.kubeconfig, None)
        core = kapi.CoreV1Api(api)
        taints = [dict(nodes.GPU_TAINT)] if self.spec.taint_gpu_nodes else None
        manifests = [nodes.system_node("aks-system-00000000")]
        shared = self.spec.shared_node()
        manifests += [
            nodes.gpu_node(gpu_node_name(i), sku, self.spec.gpus_per_node, taints=taints,
                           healthy=self.spec.unhealthy.get(gpu_node_name(i)),
                           plugin_managed=True, shared=shared)
            for i in range(self.spec.gpu_nodes)
        ]
        def create(manifest: dict[str, Any]) -> None:
            manifest["metadata"]["labels"].update(self.spec.extra_node_labels)
            try:
                call(core.create_node, manifest)
            except client.exceptions.ApiException as exc:
                if not is_conflict(exc):
                    raise ClusterError(f"cannot create node {manifest['metadata']['name']}: "
                                       f"{one_line(exc)}") from None

        with ThreadPoolExecutor(max_workers=CREATE_PARALLEL) as pool:
            for _ in pool.map(create, manifests):  # re-raises the first failure
                pass
        wanted = {m["metadata"]["name"] for m in manifests}

        def ready(items: list[Any]) -> Verdict:
            ok = {n.metadata.name for n in items if _node_ready(n)} & wanted
            return Verdict(ok == wanted, f"{len(ok)}/{len(wanted)} nodes Ready")

        wait_for(f"{len(wanted)} nodes Ready", core.list_node, ready,
                 timeout=nodes_ready_bound(self.spec.timeouts["nodes-ready"], len(wanted)),
                 timeout_name="nodes-ready", progress=log)
        # ready for workloads: pods in "default" need its ServiceAccount (controller-made)
        wait_for_default_service_account(api, "default", self.spec.timeouts["namespace-ready"])
        api.close()

    # --- down -----------------------------------------------------------------------------
    def down(self, log: Log = _say) -> bool:
        """Stop every process and remove the cluster's files; False if there was nothing."""
        existed = self.exists()
        if (self.real_node_dir / "node.json").is_file():
            try:
                self._real_node().down(log, delete_node=False)
            except Exception as exc:  # the control plane goes next: never leave it running
                log(f"stopping the real node failed: {one_line(exc)}")
        simulator.stop(self.dir, self.spec.timeouts["process-stop"])
        # read before kwokctl removes its pid files: its delete returns before the processes
        # have exited, and "down" must mean no process is left
        started = self.pids()
        if self.kwok_dir.exists():
            try:
                paths = {p: binaries.find(p) for p in ("kwokctl",)}
                kwokctl = paths["kwokctl"]
                if kwokctl is not None:
                    # kwokctl delete refuses an empty --kubeconfig; give it a scratch file so
                    # it never edits the user's ~/.kube/config
                    scratch = self.kwok_dir / "scratch-kubeconfig.yaml"
                    self._kwokctl({"kwokctl": kwokctl}, "delete", "cluster", "--name",
                                  self.spec.name, "--kubeconfig", str(scratch),
                                  timeout=self.spec.timeouts["kwokctl"], log=log)
            except ClusterError as exc:
                log(f"kwokctl delete failed ({exc}); stopping the processes directly")
        self._stop(started, log, known=True)
        shutil.rmtree(self.kwok_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        if existed:
            log(f"cluster {self.spec.name!r} removed")
        return existed

    def pids(self) -> list[int]:
        """Processes this cluster started that are still alive (from kwokctl's pid files)."""
        found = []
        for pid_file in (self.kwok_dir / "pids").glob("*.pid") if self.kwok_dir.exists() else []:
            try:
                pid = int(pid_file.read_text().strip())
            except ValueError:
                continue
            if self._ours(pid):
                found.append(pid)
        return found

    def _ours(self, pid: int) -> bool:
        """Alive and still this cluster's (a recycled pid belongs to someone else)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return _alive(pid) and str(self.kwok_dir).encode() in cmdline

    def _stop(self, pids: list[int], log: Log, *, known: bool = False) -> None:
        """SIGTERM what is still running, wait (bounded) for it to exit, then SIGKILL and wait
        until it is gone. Which pids are ours is decided once, before any signal: an exiting
        process's command line reads empty while it still holds its sockets."""
        targets = [p for p in pids if ((known or p in self._exiting) and _alive(p))
                   or self._ours(p)]
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        grace = self.spec.timeouts["process-stop"]
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in targets) and time.monotonic() < deadline:
            time.sleep(0.05)  # mostly not our children: there is nothing to wait() on
        for pid in [p for p in targets if _alive(p)]:
            log(f"process {pid} ignored SIGTERM for {grace:g}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in targets) and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- status and supervision -----------------------------------------------------------
    def components(self) -> dict[str, bool]:
        """Each process kwokctl started, and whether it still runs."""
        found: dict[str, bool] = {}
        folder = self.kwok_dir / "pids"
        for name in COMPONENTS:
            pid_file = folder / f"{name}.pid"
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                found[name] = False
                continue
            found[name] = self._ours(pid)
        found["device-plugin-simulator"] = simulator.running(self.dir)
        return found

    def broken(self) -> list[str]:
        """The components that are not running (empty: healthy, or no cluster)."""
        if not self.kwok_dir.exists():
            return []
        return [name for name, alive in self.components().items() if not alive]

    def restart_component(self, name: str, log: Log = _say, *, crash: bool = False) -> int:
        """Stop one process (bounded, SIGTERM then SIGKILL; ``crash``: SIGKILL at once) and
        start it again with the same command line, output appended to its log; the new pid.
        Tests use it to restart the API server in the middle of a run."""
        pid_file = self.kwok_dir / "pids" / f"{name}.pid"
        pid = int(pid_file.read_text().strip())
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if crash:
            self._exiting.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._stop([pid], log)
        with (self.kwok_dir / "logs" / f"{name}.log").open("ab") as out:
            process = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        pid_file.write_text(str(process.pid))
        log(f"restarted {name} of cluster {self.spec.name!r} (pid {process.pid})")
        return process.pid

    def status(self) -> dict[str, Any]:
        components = self.components() if self.kwok_dir.exists() else {}
        info: dict[str, Any] = {"name": self.spec.name, "exists": self.exists(),
                                "kubeconfig": str(self.kubeconfig), "processes": len(self.pids()),
                                "components": components,
                                "healthy": bool(components) and all(components.values())}
        spec_file = self.dir / "spec.json"
        if spec_file.is_file():
            info.update(json.loads(spec_file.read_text()))
        return info

    # --- helpers --------------------------------------------------------------------------
    def _kwokctl(self, paths: dict[str, Path], *args: str, timeout: float, log: Log) -> None:
        env = {**os.environ, "KWOK_WORKDIR": str(kwok_workdir())}
        # kwokctl looks for helpers (kubectl) on PATH too: the pinned ones must come first
        env["PATH"] = os.pathsep.join([str(p.parent) for p in paths.values()] + [env.get("PATH", "")])
        log_file = self.dir / "kwokctl.log" if self.dir.exists() else None
        try:
            run = subprocess.run([str(paths["kwokctl"]), *args], env=env, capture_output=True,
                                 text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"kwokctl {args[0]} {args[1]} did not finish within {timeout:g}s"
                               ) from None
        if log_file is not None:
            with log_file.open("a") as handle:
                handle.write(run.stdout + run.stderr)
        if run.returncode != 0:
            raise ClusterError(f"kwokctl {args[0]} {args[1]} failed: {_last_error(run.stderr)}",
                               hint=f"see {log_file}" if log_file else "")


def _read_tail(path: Path, size: int = 8192) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower() or "fail" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def _alive(pid: int) -> bool:
    """Running, or exiting (a killed process's leader turns zombie while its other threads
    still close its files and sockets: only when they are gone is it dead)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # our own child (a restarted component): reap it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False
    return ") Z " not in stat or threads > 1


def _node_ready(node: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
