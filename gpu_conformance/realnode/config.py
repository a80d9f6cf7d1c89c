"""The real node's configuration files: containerd (TOML), CNI (JSON), kubelet and kubeconfig
(JSON, which both the kubelet and kubectl read as YAML). Pure functions of a layout, so the
choices are testable without starting anything."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_conformance.errors import UsageError

#: the kubelet refuses a loopback --node-ip (validateNodeIP) but takes an IP given as the
#: hostname override as the node's InternalIP and Hostname address unchecked: with that the
#: API server reaches the kubelet (logs, exec) on loopback and never resolves a name
DEFAULT_NODE_NAME = "127.0.0.1"
PAUSE_IMAGE = "localhost/gpu-conformance/pause:3.10"
CNI_NETWORK = "gpu-conformance"
DEFAULT_POD_SUBNET = "10.213.0.0/24"
DEFAULT_BRIDGE = "gpuc0"
DEFAULT_CGROUP_ROOT = "/gpu-conformance"
NODE_CERT_ORG = "system:nodes"


def check_node_name(name: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(name)
    except ValueError:
        raise UsageError(
            f"real node name {name!r} must be a loopback IPv4 address such as 127.0.0.1: the "
            "API server reaches a kubelet at its node name, and only an IP keeps that on loopback"
        ) from None
    if not address.is_loopback:
        raise UsageError(f"real node name {name!r} is not in 127.0.0.0/8")
    return address


@dataclass(frozen=True)
class Layout:
    """Where everything of one real node lives."""

    work_dir: Path
    #: the kubelet's --root-dir; /var/lib/kubelet lets manifests mount device-plugins by hostPath
    kubelet_root: Path = Path("/var/lib/kubelet")

    @property
    def containerd_dir(self) -> Path:
        return self.work_dir / "containerd"

    @property
    def run_dir(self) -> Path:
        """Sockets live here: a unix socket path has at most 107 bytes, a work dir can be deep."""
        digest = hashlib.sha256(str(self.work_dir.resolve()).encode()).hexdigest()[:10]
        return Path("/run/gpu-conformance") / digest

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def shim_socket_dir(self) -> Path:
        return self.run_dir / "s"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.work_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.work_dir / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.work_dir / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.kubelet_dir / "config.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.kubelet_dir / "kubeconfig.yaml"

    @property
    def pki_dir(self) -> Path:
        return self.work_dir / "pki"

    @property
    def pod_logs_dir(self) -> Path:
        return self.work_dir / "pod-logs"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def images_dir(self) -> Path:
        return self.work_dir / "images"

    @property
    def runc_root(self) -> Path:
        return self.containerd_dir / "runc"

    @property
    def device_plugins_dir(self) -> Path:
        return self.kubelet_root / "device-plugins"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_tables(tables: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, values in tables.items():
        if name:
            lines += ["", f"[{name}]"]
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


@dataclass(frozen=True)
class ContainerdSettings:
    runc: Path
    cni_bin_dir: Path
    cdi_spec_dirs: tuple[Path, ...] = ()
    sandbox_image: str = PAUSE_IMAGE
    snapshotter: str = "overlayfs"
    #: a runc-compatible wrapper (nvidia-container-runtime in CDI mode) to run instead of runc
    runtime_binary: Path | None = None
    #: without CAP_SYS_RESOURCE runc cannot lower oom_score_adj (the sandbox asks for -998):
    #: containerd then clamps every container's score to its own
    restrict_oom_score_adj: bool = False
    debug: bool = False


def containerd_config(layout: Layout, settings: ContainerdSettings) -> str:
    """containerd 2.4 (config version 4): state under the work dir, sockets under the short
    runtime dir, CRI with CDI, no NRI, no host conf.d imports, pod network namespaces under
    the state dir, streaming on 127.0.0.1."""
    root = layout.containerd_dir
    runtime = "io.containerd.cri.v1.runtime"
    tables: dict[str, dict[str, Any]] = {
        "": {
            "version": 4,
            "root": str(root / "root"),
            "state": str(root / "state"),
            "temp": str(root / "tmp"),
            "imports": [],
        },
        "debug": {"level": "debug" if settings.debug else "info"},
        'plugins."io.containerd.server.v1.grpc"': {"address": str(layout.containerd_socket)},
        'plugins."io.containerd.server.v1.ttrpc"': {"address": str(layout.containerd_socket) + ".ttrpc"},
        # the shims' sockets (default /run/containerd/s): unix socket paths are short
        'plugins."io.containerd.shim.v1.manager"': {"socket_dir": str(layout.shim_socket_dir)},
        'plugins."io.containerd.nri.v1.nri"': {"disable": True},
        'plugins."io.containerd.internal.v1.opt"': {"path": str(root / "opt")},
        'plugins."io.containerd.image-verifier.v1.bindir"': {"bin_dir": str(root / "opt" / "verifiers")},
        'plugins."io.containerd.grpc.v1.cri"': {
            "stream_server_address": "127.0.0.1",
            "stream_server_port": "0",
        },
        'plugins."io.containerd.cri.v1.images"': {"snapshotter": settings.snapshotter},
        'plugins."io.containerd.cri.v1.images".pinned_images': {"sandbox": settings.sandbox_image},
        'plugins."io.containerd.cri.v1.images".registry': {"config_path": ""},
        f'plugins."{runtime}"': {
            "cdi_spec_dirs": [str(p) for p in settings.cdi_spec_dirs] or [str(layout.work_dir / "cdi")],
            "netns_mounts_under_state_dir": True,
            "enable_selinux": False,
            "restrict_oom_score_adj": settings.restrict_oom_score_adj,
        },
        f'plugins."{runtime}".containerd': {"default_runtime_name": "runc"},
        f'plugins."{runtime}".containerd.runtimes.runc': {
            "runtime_type": "io.containerd.runc.v2",
            "snapshotter": settings.snapshotter,
        },
        f'plugins."{runtime}".containerd.runtimes.runc.options': {
            "BinaryName": str(settings.runtime_binary or settings.runc),
            "Root": str(layout.runc_root),
            "SystemdCgroup": False,
        },
        f'plugins."{runtime}".cni': {
            "bin_dirs": [str(settings.cni_bin_dir)],
            "conf_dir": str(layout.cni_conf_dir),
            "max_conf_num": 1,
        },
    }
    return _toml_tables(tables)


def cni_conflist(layout: Layout, *, subnet: str = DEFAULT_POD_SUBNET, bridge: str = DEFAULT_BRIDGE) -> str:
    """One bridge on a private subnet with host-local IPAM. No gateway, no masquerade, no
    port mapping: pods get an address and nothing on the host needs iptables or forwarding."""
    network = ipaddress.IPv4Network(subnet)
    if not network.is_private:
        raise UsageError(f"pod subnet {subnet} is not a private range")
    if len(bridge) > 15:
        raise UsageError(f"bridge name {bridge!r} is longer than 15 characters")
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": False,
            "isDefaultGateway": False,
            "ipMasq": False,
            "hairpinMode": False,
            "promiscMode": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": str(network)}]],
                "dataDir": str(layout.cni_ipam_dir),
            },
        }],
    }, indent=2) + "\n"


@dataclass(frozen=True)
class KubeletSettings:
    node_name: str
    port: int
    healthz_port: int
    ca_file: Path
    serving_cert: Path
    serving_key: Path
    cgroup_v1: bool
    cgroup_root: str = DEFAULT_CGROUP_ROOT
    #: let the API server in without a client certificate (kwokctl's kube-apiserver has no
    #: --kubelet-client-certificate); the kubelet still listens on loopback only
    anonymous_api: bool = False
    max_pods: int = 32
    extra: dict[str, Any] = field(default_factory=dict)


def kubelet_config(layout: Layout, settings: KubeletSettings) -> str:
    auth: dict[str, Any]
    if settings.anonymous_api:
        auth = {"authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False},
                                   "x509": {"clientCAFile": str(settings.ca_file)}},
                "authorization": {"mode": "AlwaysAllow"}}
    else:
        auth = {"authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                                   "x509": {"clientCAFile": str(settings.ca_file)}},
                "authorization": {"mode": "Webhook"}}
    config: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": settings.node_name,
        "port": settings.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": settings.healthz_port,
        **auth,
        "tlsCertFile": str(settings.serving_cert),
        "tlsPrivateKeyFile": str(settings.serving_key),
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "imageServiceEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": settings.cgroup_root,
        "cgroupsPerQOS": True,
        "failSwapOn": False,
        "podLogsDir": str(layout.pod_logs_dir),
        "registerNode": True,
        "maxPods": settings.max_pods,
        # pods resolve nothing: no cluster DNS here, and the host's resolvers are not theirs
        "clusterDomain": "cluster.local",
        "clusterDNS": ["127.0.0.1"],
        "resolvConf": "",
        # test images are imported, not pulled: they must never be collected
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # a small or busy disk must not taint the node (evictions are not under test)
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
        "shutdownGracePeriod": "0s",
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusUpdateFrequency": "10s",
        "nodeStatusReportFrequency": "1m",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "staticPodPath": "",
        "protectKernelDefaults": False,
    }
    if settings.cgroup_v1:
        # kubelet >= 1.35 refuses cgroup v1 unless told otherwise (KEP-5573)
        config["failCgroupV1"] = False
    config.update(settings.extra)
    return json.dumps(config, indent=2) + "\n"


def kubeconfig(server: str, ca_file: Path, cert_file: Path, key_file: Path, user: str) -> str:
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {"server": server,
                                                     "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert_file),
                                          "client-key": str(key_file)}}],
        "contexts": [{"name": "default", "context": {"cluster": "cluster", "user": user}}],
        "current-context": "default",
    }, indent=2) + "\n"


def nvidia_runtime_config(runc: Path, cdi_spec_dirs: tuple[Path, ...], log_file: Path) -> str:
    """nvidia-container-runtime in CDI mode: it turns NVIDIA_VISIBLE_DEVICES (what NVIDIA's
    plugin answers Allocate with by default) and cdi.k8s.io/ annotations into CDI devices
    of kind nvidia.com/gpu, adds them to the OCI spec and runs runc. Pure Go: no
    libnvidia-container, no nvidia-container-cli (the legacy mode needs both)."""
    tables: dict[str, dict[str, Any]] = {
        "": {"accept-nvidia-visible-devices-envvar-when-unprivileged": True,
             "accept-nvidia-visible-devices-as-volume-mounts": False},
        "nvidia-container-runtime": {"debug": str(log_file), "log-level": "info",
                                     "runtimes": [str(runc)], "mode": "cdi"},
        "nvidia-container-runtime.modes.cdi": {
            "default-kind": "nvidia.com/gpu",
            "annotation-prefixes": ["cdi.k8s.io/"],
            "spec-dirs": [str(p) for p in cdi_spec_dirs],
        },
    }
    return _toml_tables(tables)
