"""One real Kubernetes node on this host: containerd + runc + CNI + kubelet, joined to a
control plane as ``system:node:<name>``.

``RealNode(spec).up(access)`` writes the configs, starts containerd, imports the images,
starts the kubelet and waits (bounded) for the Node to be Ready. ``down()`` stops every
process it started, unmounts what the kubelet and containerd mounted, removes the cgroups,
the pod bridge, the work dir and the kubelet root, and restores the sysctls the kubelet
changed. It is idempotent and works after a partial start or from another process: what
``up`` did is recorded in ``<work_dir>/node.json`` before it is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gpu_conformance.errors import ClusterError, ToolchainError, UsageError
from gpu_conformance.realnode import config as cfg
from gpu_conformance.realnode import host, images
from gpu_conformance.timeouts import Timeout

Log = Callable[[str], None]
GpuMode = Literal["fake", "nvidia"]

TIMEOUTS: dict[str, Timeout] = {t.name: t for t in (
    Timeout("containerd-ready", 60, "containerd opens its socket within a second or two; a large "
            "content store (the GPU host's torch image) takes longer to load", "realnode"),
    Timeout("image-import", 900, "importing and unpacking an archive takes seconds for the "
            "stand-ins and minutes for a multi-GB torch image", "realnode"),
    Timeout("node-ready", 180, "the kubelet registers within seconds; Ready needs the runtime's "
            "network config and a first status update (~20 s here on 2 cores)", "realnode"),
    Timeout("node-process-stop", 15, "kubelet and containerd exit within a second or two on "
            "SIGTERM; what ignores it this long is killed", "realnode"),
    Timeout("kubectl-call", 30, "one kubectl request to a local API server", "realnode"),
)}

STATE_FILE = "node.json"
#: in a kubelet root a real node created (holds its work dir): a leftover the next up may clear
KUBELET_ROOT_MARKER = ".gpu-conformance-real-node"
#: programs a node needs in each mode (from programs.ensure, or unpacked on a GPU host)
NODE_PROGRAMS = ("kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "bridge",
                 "host-local", "loopback", "pki", "kubectl")
FAKE_PROGRAMS = ("pause", "standin", "fakegpu-device-plugin")


@dataclass(frozen=True)
class ControlPlaneAccess:
    """What a node needs from the control plane: its address and the CA that signs node
    certificates (the CA key stands in for TLS bootstrap: see :meth:`RealNode._certificates`)."""

    server: str
    ca_cert: Path
    ca_key: Path
    #: an admin kubeconfig, for the node's waits and its removal
    admin_kubeconfig: Path

    @classmethod
    def from_kwok_cluster(cls, kubeconfig: Path) -> ControlPlaneAccess:
        """A kwokctl cluster: ``<cluster dir>/kubeconfig.yaml`` next to ``pki/ca.{crt,key}``."""
        pki = kubeconfig.parent / "pki"
        server = _kubeconfig_server(kubeconfig)
        return cls(server, pki / "ca.crt", pki / "ca.key", kubeconfig)


def _kubeconfig_server(kubeconfig: Path) -> str:
    # stdlib only: the first "server:" line (kwokctl and our control plane write one cluster)
    for line in kubeconfig.read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if key == "server" and value.strip():
            return value.strip().strip('"')
    raise UsageError(f"{kubeconfig} names no server")


@dataclass
class RealNodeSpec:
    work_dir: Path
    node_name: str = cfg.DEFAULT_NODE_NAME
    gpu_mode: GpuMode = "fake"
    #: fake mode: devices the test plugin advertises, and the name the stand-in logs print
    fake_gpus: int = 2
    device_name: str = "Tesla T4"
    kubelet_root: Path = Path("/var/lib/kubelet")
    labels: dict[str, str] = field(default_factory=dict)
    pod_subnet: str = cfg.DEFAULT_POD_SUBNET
    bridge: str = cfg.DEFAULT_BRIDGE
    cgroup_root: str = cfg.DEFAULT_CGROUP_ROOT
    anonymous_kubelet_api: bool = False
    #: where CDI specs are (nvidia mode: what ``nvidia-ctk cdi generate`` wrote)
    cdi_spec_dirs: tuple[Path, ...] = ()
    #: "nvidia-cdi": run containers through nvidia-container-runtime in CDI mode (as GPU
    #: nodes with the NVIDIA Container Toolkit do) instead of plain runc
    container_runtime: Literal["runc", "nvidia-cdi"] = "runc"
    #: image archives to import besides the built-in ones (nvidia mode: built on the host)
    image_archives: tuple[Path, ...] = ()
    #: program paths; missing ones come from programs.ensure (which may build them)
    programs: dict[str, Path] = field(default_factory=dict)
    ready_timeout: float = TIMEOUTS["node-ready"].seconds
    import_timeout: float = TIMEOUTS["image-import"].seconds
    kubelet_verbosity: int = 2

    def validate(self) -> None:
        cfg.check_node_name(self.node_name)
        if self.gpu_mode not in ("fake", "nvidia"):
            raise UsageError(f"gpu mode must be 'fake' or 'nvidia', got {self.gpu_mode!r}")
        if not 0 <= self.fake_gpus <= 64:
            raise UsageError(f"fake GPUs per node must be between 0 and 64, got {self.fake_gpus}")
        if not self.cgroup_root.startswith("/") or ".." in self.cgroup_root:
            raise UsageError(f"cgroup root {self.cgroup_root!r} must be an absolute cgroup path")


def _say(line: str) -> None:
    print(line, flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    interesting = [t for t in text if t[:1] in ("E", "F") or "error" in t.lower()]
    chosen = (interesting or text)[-lines:]
    return " | ".join(line.strip()[:300] for line in chosen) or "(empty log)"


class RealNode:
    """One real node; all its state lives in ``spec.work_dir`` (and the kubelet root)."""

    def __init__(self, spec: RealNodeSpec) -> None:
        self.spec = spec
        self.layout = cfg.Layout(spec.work_dir.resolve(), spec.kubelet_root)
        self.state_path = self.layout.work_dir / STATE_FILE
        self.state: dict[str, Any] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}

    # --- state ----------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _save_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_suffix(".partial")
        partial.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        os.replace(partial, self.state_path)

    def _record_created(self, path: Path) -> None:
        """Remember a host path this node creates outside its work dir, before creating it."""
        if not path.exists():
            created: list[str] = self.state.setdefault("created", [])
            if str(path) not in created:
                created.append(str(path))
                self._save_state()

    # --- up -------------------------------------------------------------------------------
    def up(self, access: ControlPlaneAccess, log: Log = _say) -> None:
        """Start the node and wait until the API server shows it Ready."""
        spec = self.spec
        spec.validate()
        self._preflight(access, log)
        if self._load_state():
            raise ClusterError(f"a real node already has its state in {self.layout.work_dir}",
                               hint="stop it first: RealNode(...).down()")
        started = time.monotonic()
        self.layout.work_dir.mkdir(parents=True, exist_ok=True)
        self.state = {"node_name": spec.node_name, "cgroup_root": spec.cgroup_root,
                      "bridge": spec.bridge, "kubelet_root": str(self.layout.kubelet_root),
                      "run_dir": str(self.layout.run_dir), "created": [], "pids": {},
                      "sysctls": host.read_sysctls(), "admin_kubeconfig": str(access.admin_kubeconfig)}
        self._save_state()
        try:
            paths = self._programs()
            for folder in (self.layout.logs_dir, self.layout.pki_dir, self.layout.kubelet_dir,
                           self.layout.images_dir, self.layout.cni_conf_dir, self.layout.pod_logs_dir):
                folder.mkdir(parents=True, exist_ok=True)
            for outside in (self.layout.kubelet_root, self.layout.run_dir.parent, self.layout.run_dir,
                            Path("/var/log/containers")):
                self._record_created(outside)
            if str(self.layout.kubelet_root) in self.state["created"]:
                # ours: if this node is killed before its down, the next up may clear it
                self.layout.kubelet_root.mkdir(parents=True, exist_ok=True)
                (self.layout.kubelet_root / KUBELET_ROOT_MARKER).write_text(
                    f"{self.layout.work_dir}\n")
            self.layout.run_dir.mkdir(parents=True, exist_ok=True)
            self._certificates(access, paths["pki"])
            self._cgroups()
            if self.spec.gpu_mode == "fake" and self.spec.container_runtime == "nvidia-cdi" \
                    and not self.spec.cdi_spec_dirs:
                from gpu_conformance.realnode import cdi

                cdi.write_fake_spec(self.layout.work_dir / "cdi", self.spec.fake_gpus, "fake-gpu-",
                                    paths.get("nvidia-cdi-hook"))
            self._start_containerd(paths, log)
            self.timings["containerd"] = time.monotonic() - started
            self._import_images(paths, log)
            self.timings["images"] = time.monotonic() - started
            self._write_cni()
            self._start_kubelet(paths, access, log)
            self._wait_ready(paths["kubectl"], access, log)
            self.timings["ready"] = time.monotonic() - started
        except BaseException:
            log("real node start failed; stopping what was started")
            self.down(log=lambda line: log(f"  cleanup: {line}"), delete_node=False)
            raise
        log(f"real node {spec.node_name} Ready in {self.timings['ready']:.1f}s "
            f"(containerd {self.timings['containerd']:.1f}s, images {self.timings['images']:.1f}s)")

    def _preflight(self, access: ControlPlaneAccess, log: Log) -> None:
        if os.geteuid() != 0:
            raise ClusterError("a real node needs root (mounts, cgroups, network namespaces)")
        for path in (access.ca_cert, access.ca_key, access.admin_kubeconfig):
            if not path.is_file():
                raise ClusterError(f"control plane file {path} does not exist")
        if not shutil.which("mount") or not shutil.which("umount"):
            raise ClusterError("the kubelet mounts volumes with mount(8); it is not on PATH")
        lock = self.layout.device_plugins_dir / "kubelet.sock"
        # a killed kubelet leaves its socket behind: only one that answers is another kubelet
        if lock.exists() and not self._load_state() and host.socket_listening(lock):
            raise ClusterError(f"another kubelet uses {self.layout.kubelet_root} ({lock} exists)",
                               hint="stop it, or give this node another kubelet root")
        self._clear_stale_kubelet_root(log)
        if host.link_exists(self.spec.bridge) and not self._load_state():
            raise ClusterError(f"network link {self.spec.bridge} already exists (another node?)",
                               hint="give this node another bridge name")

    def _clear_stale_kubelet_root(self, log: Log) -> None:
        """A kubelet root that a real node of ours created (its marker) and left behind when it
        was killed before its down: its device checkpoint would bring back the old node's GPU
        resources and pods. Removed when nothing runs or is mounted there; one without the
        marker is never touched."""
        root = self.layout.kubelet_root
        if self._load_state() or not (root / KUBELET_ROOT_MARKER).is_file():
            return
        if host.mounts_under([root]):
            raise ClusterError(f"{root} holds mounts that a killed real node left",
                               hint="unmount them (see /proc/self/mounts), then start again")
        log(f"removing {root}: a real node that was killed before its down left it")
        shutil.rmtree(root)

    def _programs(self) -> dict[str, Path]:
        wanted = [*NODE_PROGRAMS, *(FAKE_PROGRAMS if self.spec.gpu_mode == "fake" else ("pause",))]
        if self.spec.container_runtime == "nvidia-cdi":
            wanted += ["nvidia-container-runtime", "nvidia-cdi-hook"]
        paths = dict(self.spec.programs)
        missing = [p for p in wanted if p not in paths]
        if missing:
            from gpu_conformance import binaries
            from gpu_conformance.realnode import programs

            families = tuple(sorted({programs.PROGRAMS[p].name for p in missing if p in programs.PROGRAMS}))
            paths.update({k: v for k, v in programs.ensure(families).items() if k not in paths})
            if "kubectl" not in paths:
                kubectl = binaries.find("kubectl")
                if kubectl is not None:
                    paths["kubectl"] = kubectl
        absent = [p for p in wanted if p not in paths or not paths[p].is_file()]
        if absent:
            raise ToolchainError(f"real node programs missing: {', '.join(absent)}")
        return paths

    def _pki(self, pki: Path, *args: str) -> None:
        run = subprocess.run([str(pki), *args], capture_output=True, text=True, timeout=60, check=False)
        if run.returncode != 0:
            raise ClusterError(f"pki {args[0]} failed: {run.stderr.strip()[-300:]}")

    def _certificates(self, access: ControlPlaneAccess, pki: Path) -> None:
        """The kubelet's client certificate (``system:node:<name>`` in ``system:nodes``, what
        TLS bootstrap would get signed by the controller manager) and its serving certificate,
        both signed with the control plane's CA key."""
        name = self.spec.node_name
        ca = ["-ca-cert", str(access.ca_cert), "-ca-key", str(access.ca_key)]
        self._pki(pki, "cert", "-dir", str(self.layout.pki_dir), "-name", "kubelet-client",
                  "-cn", f"system:node:{name}", "-o", cfg.NODE_CERT_ORG, "-client", *ca)
        self._pki(pki, "cert", "-dir", str(self.layout.pki_dir), "-name", "kubelet-serving",
                  "-cn", f"system:node:{name}", "-o", cfg.NODE_CERT_ORG, "-ip", name, "-server", *ca)
        shutil.copyfile(access.ca_cert, self.layout.pki_dir / "ca.crt")

    def _cgroups(self) -> None:
        self.state["cgroup_v2"] = host.cgroup_v2()
        self._save_state()
        try:
            host.create_cgroup_root(self.spec.cgroup_root)
        except OSError as exc:
            raise ClusterError(f"cannot create the kubelet's cgroup root {self.spec.cgroup_root}: "
                               f"{exc.strerror} ({exc.filename})") from None

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        log_file = self.layout.logs_dir / f"{name}.log"
        with log_file.open("ab") as handle:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env or dict(os.environ))
        self._children[name] = child
        self.state["pids"][name] = child.pid
        self._save_state()
        return child

    def _start_containerd(self, paths: dict[str, Path], log: Log) -> None:
        nvidia = self.spec.container_runtime == "nvidia-cdi"
        cdi_dirs = self.spec.cdi_spec_dirs or (self.layout.work_dir / "cdi",)
        settings = cfg.ContainerdSettings(
            runc=paths["runc"], cni_bin_dir=paths["bridge"].parent, cdi_spec_dirs=cdi_dirs,
            runtime_binary=paths["nvidia-container-runtime"] if nvidia else None,
            restrict_oom_score_adj=not host.has_capability(host.CAP_SYS_RESOURCE),
        )
        self.layout.containerd_dir.mkdir(parents=True, exist_ok=True)
        self.layout.containerd_config.write_text(cfg.containerd_config(self.layout, settings))
        env = dict(os.environ)
        # containerd starts the shim found next to itself or on PATH
        env["PATH"] = os.pathsep.join(dict.fromkeys(
            [str(paths["containerd-shim-runc-v2"].parent), str(paths["runc"].parent), env.get("PATH", "")]))
        if nvidia:
            # the shim passes containerd's environment on to the runtime it runs
            runtime_config = self.layout.containerd_dir / "nvidia-container-runtime.toml"
            runtime_config.write_text(cfg.nvidia_runtime_config(
                paths["runc"], cdi_dirs, self.layout.logs_dir / "nvidia-container-runtime.log"))
            env["NVIDIA_CTK_CONFIG_FILE_PATH"] = str(runtime_config)
        child = self._spawn("containerd", [str(paths["containerd"]), "--config",
                                           str(self.layout.containerd_config)], env)
        timeout = TIMEOUTS["containerd-ready"].seconds
        deadline = time.monotonic() + timeout
        last = "no socket yet"
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise ClusterError(f"containerd exited with status {child.returncode}: "
                                   f"{_tail(self.layout.logs_dir / 'containerd.log')}")
            if self.layout.containerd_socket.exists():
                run = self._ctr(paths, "version", timeout=10, check=False)
                if run.returncode == 0:
                    log(f"containerd up ({self.layout.containerd_socket})")
                    return
                last = run.stderr.strip()[-200:]
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout:g}s (containerd-ready timeout): expected containerd "
                           f"to answer on {self.layout.containerd_socket}, got instead: {last}")

    def _ctr(self, paths: dict[str, Path], *args: str, timeout: float, check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        command = [str(paths["ctr"]), "--address", str(self.layout.containerd_socket),
                   "--namespace", "k8s.io", *args]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"ctr {' '.join(args[:2])} did not finish within {timeout:g}s") from None
        if check and run.returncode != 0:
            raise ClusterError(f"ctr {' '.join(args[:2])} failed: {run.stderr.strip()[-300:]}")
        return run

    def _import_images(self, paths: dict[str, Path], log: Log) -> None:
        archives = list(self.spec.image_archives)
        if self.spec.gpu_mode == "fake":
            from gpu_conformance.realnode import node_images

            specs = node_images.fake_gpu_images(paths, self.spec.fake_gpus, self.spec.device_name)
        else:
            from gpu_conformance.realnode import node_images

            specs = [node_images.pause_image(paths["pause"])]
        for number, spec in enumerate(specs):
            archives.append(images.build_archive(spec, self.layout.images_dir / f"{number:02d}.tar").archive)
        for archive in archives:
            started = time.monotonic()
            self._ctr(paths, "images", "import", "--snapshotter", "overlayfs", str(archive),
                      timeout=self.spec.import_timeout)
            log(f"imported {archive.name} in {time.monotonic() - started:.1f}s")
        listed = self._ctr(paths, "images", "list", "--quiet", timeout=30).stdout.split()
        self.state["images"] = sorted(name for name in listed if not name.startswith("sha256:"))
        self._save_state()

    def _write_cni(self) -> None:
        self.layout.cni_ipam_dir.mkdir(parents=True, exist_ok=True)
        (self.layout.cni_conf_dir / "10-gpu-conformance.conflist").write_text(
            cfg.cni_conflist(self.layout, subnet=self.spec.pod_subnet, bridge=self.spec.bridge))

    def _start_kubelet(self, paths: dict[str, Path], access: ControlPlaneAccess, log: Log) -> None:
        pki = self.layout.pki_dir
        settings = cfg.KubeletSettings(
            node_name=self.spec.node_name, port=_free_port(), healthz_port=_free_port(),
            ca_file=pki / "ca.crt", serving_cert=pki / "kubelet-serving.crt",
            serving_key=pki / "kubelet-serving.key", cgroup_v1=not self.state["cgroup_v2"],
            cgroup_root=self.spec.cgroup_root, anonymous_api=self.spec.anonymous_kubelet_api,
        )
        self.state["kubelet_port"], self.state["healthz_port"] = settings.port, settings.healthz_port
        self.layout.kubelet_config.write_text(cfg.kubelet_config(self.layout, settings))
        self.layout.kubelet_kubeconfig.write_text(cfg.kubeconfig(
            access.server, pki / "ca.crt", pki / "kubelet-client.crt", pki / "kubelet-client.key",
            f"system:node:{self.spec.node_name}"))
        command = [str(paths["kubelet"]), "--config", str(self.layout.kubelet_config),
                   "--kubeconfig", str(self.layout.kubelet_kubeconfig),
                   "--root-dir", str(self.layout.kubelet_root),
                   "--cert-dir", str(pki),
                   "--hostname-override", self.spec.node_name,
                   f"--v={self.spec.kubelet_verbosity}"]
        if self.spec.labels:
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.spec.labels.items()))
            command.append(f"--node-labels={labels}")
        self.state["kubelet_command"] = command
        self._save_state()
        self._spawn("kubelet", command, self._kubelet_env())
        log(f"kubelet started for node {self.spec.node_name} (port {settings.port})")

    @staticmethod
    def _kubelet_env() -> dict[str, str]:
        env = dict(os.environ)
        # the kubelet runs mount(8) and friends; keep a sane PATH even under a minimal one
        env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
        return env

    def restart_kubelet(self, log: Log = _say) -> None:
        """Stop the kubelet and start it again as it was (it removes every device-plugin socket
        and re-creates kubelet.sock, so plugins must register again)."""
        state = self.state or self._load_state()
        command = [str(part) for part in state.get("kubelet_command", [])]
        if not command:
            raise ClusterError(f"no kubelet was started from {self.layout.work_dir}")
        self.state = state
        pid = int(state.get("pids", {}).get("kubelet", 0))
        if pid and str(self.layout.work_dir) in host.cmdline(pid):
            host.stop([pid], TIMEOUTS["node-process-stop"].seconds, log, "kubelet")
        self._spawn("kubelet", command, self._kubelet_env())
        log(f"kubelet restarted for node {self.spec.node_name}")

    def kubectl(self, kubectl: Path, kubeconfig: Path, *args: str, timeout: float | None = None
                ) -> subprocess.CompletedProcess[str]:
        limit = timeout or TIMEOUTS["kubectl-call"].seconds
        try:
            return subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args],
                                  capture_output=True, text=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, "", f"kubectl did not answer within {limit:g}s")

    def _wait_ready(self, kubectl: Path, access: ControlPlaneAccess, log: Log) -> None:
        name = self.spec.node_name
        timeout = self.spec.ready_timeout
        deadline = time.monotonic() + timeout
        seen = "the node is not registered yet"
        kubelet = self._children.get("kubelet")
        while time.monotonic() < deadline:
            if kubelet is not None and kubelet.poll() is not None:
                raise ClusterError(f"kubelet exited with status {kubelet.returncode}: "
                                   f"{_tail(self.layout.logs_dir / 'kubelet.log')}")
            run = self.kubectl(kubectl, access.admin_kubeconfig, "get", "node", name, "-o", "json")
            if run.returncode == 0:
                node = json.loads(run.stdout)
                conditions = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
                ready = conditions.get("Ready", {})
                if ready.get("status") == "True":
                    return
                seen = (f"Ready={ready.get('status', '?')} "
                        f"({ready.get('reason', '')}: {ready.get('message', '')})")
            time.sleep(1)
        raise ClusterError(f"timed out after {timeout:g}s (node-ready timeout): expected node {name} Ready, "
                           f"got instead: {seen}; kubelet log: {_tail(self.layout.logs_dir / 'kubelet.log')}")

    # --- down -----------------------------------------------------------------------------
    def down(self, log: Log = _say, *, delete_node: bool = True) -> bool:
        """Undo everything ``up`` did (as recorded); False when there was nothing to undo."""
        state = self.state or self._load_state()
        if not state and not self.layout.work_dir.exists():
            return False
        stop_timeout = TIMEOUTS["node-process-stop"].seconds
        markers = [str(self.layout.work_dir), str(self.layout.run_dir)]
        if delete_node:
            self._delete_node_object(state, log)
        pids = {name: int(pid) for name, pid in state.get("pids", {}).items()}
        kubelet = [p for p in [pids.get("kubelet")] if p and any(m in host.cmdline(p) for m in markers)]
        host.stop(kubelet, stop_timeout, log, "kubelet")
        cgroup_root = str(state.get("cgroup_root", self.spec.cgroup_root))
        host.kill_cgroup_tree(cgroup_root, stop_timeout, log)
        containerd = [p for p in [pids.get("containerd")] if p and any(m in host.cmdline(p) for m in markers)]
        host.stop(containerd, stop_timeout, log, "containerd")
        # shims (-address <our socket>), a kubelet or containerd a crashed run left behind
        host.stop(host.processes_mentioning(markers), stop_timeout, log, "leftover process")
        host.kill_cgroup_tree(cgroup_root, stop_timeout, log)
        kubelet_root = Path(str(state.get("kubelet_root", self.layout.kubelet_root)))
        run_dir = Path(str(state.get("run_dir", self.layout.run_dir)))
        host.unmount_all([self.layout.work_dir, kubelet_root, run_dir], log)
        host.remove_cgroup_tree(cgroup_root, stop_timeout, log)
        bridge = str(state.get("bridge", self.spec.bridge))
        try:
            host.delete_link(bridge)
        except OSError as exc:
            log(f"cannot delete link {bridge}: {exc}")
        host.restore_sysctls(dict(state.get("sysctls", {})), log)
        self._remove_container_log_links()
        for created in reversed(list(state.get("created", []))):
            path = Path(created)
            if path.is_dir() and not host.mounts_under([path]):
                shutil.rmtree(path, ignore_errors=True)
        if not host.mounts_under([self.layout.work_dir]):
            shutil.rmtree(self.layout.work_dir, ignore_errors=True)
        self.state = {}
        self._children.clear()
        return True

    def _delete_node_object(self, state: dict[str, Any], log: Log) -> None:
        kubeconfig = Path(str(state.get("admin_kubeconfig", "")))
        kubectl = self.spec.programs.get("kubectl")
        if kubectl is None:
            from gpu_conformance import binaries

            kubectl = binaries.find("kubectl")
        if not kubeconfig.is_file() or kubectl is None:
            return
        run = self.kubectl(kubectl, kubeconfig, "delete", "node", str(state.get("node_name", "")),
                           "--ignore-not-found", "--wait=false", timeout=10)
        if run.returncode != 0:
            log(f"node object not deleted (control plane gone?): {run.stderr.strip()[-200:]}")

    def _remove_container_log_links(self) -> None:
        links = Path("/var/log/containers")
        if not links.is_dir():
            return
        for link in links.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(self.layout.pod_logs_dir)):
                    link.unlink()
