"""A control plane of plain processes (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) on 127.0.0.1, with certificates from our ``pki`` program: what a real node
joins where kwokctl is not shipped (the GPU host) or not wanted (no simulator at all).

Unlike kwokctl's, this API server reaches kubelets with a client certificate and verifies
their serving certificates, uses the Node authorizer with NodeRestriction, and the
controller manager can sign kubelet CSRs. Standard library only.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_conformance.errors import ClusterError, ToolchainError
from gpu_conformance.realnode import config as cfg
from gpu_conformance.realnode import host
from gpu_conformance.realnode.node import ControlPlaneAccess
from gpu_conformance.timeouts import Timeout

Log = Callable[[str], None]

TIMEOUTS: dict[str, Timeout] = {t.name: t for t in (
    Timeout("control-plane-ready", 90, "etcd and kube-apiserver serve /readyz in ~5 s on 2 cores; "
            "the default service account needs the controller manager up too", "realnode"),
    Timeout("control-plane-stop", 10, "each component exits within a second or two on SIGTERM",
            "realnode"),
)}

PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "pki")
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
STATE_FILE = "control-plane.json"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass
class ControlPlaneSpec:
    work_dir: Path
    #: program paths; missing ones are looked up with gpu_conformance.binaries / programs
    programs: dict[str, Path] = field(default_factory=dict)
    api_port: int | None = None
    ready_timeout: float = TIMEOUTS["control-plane-ready"].seconds
    verbosity: int = 1


class ControlPlane:
    def __init__(self, spec: ControlPlaneSpec) -> None:
        self.spec = spec
        self.dir = spec.work_dir.resolve()
        self.pki = self.dir / "pki"
        self.logs = self.dir / "logs"
        self.state_path = self.dir / STATE_FILE
        self.state: dict[str, Any] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    def access(self) -> ControlPlaneAccess:
        state = self.state or json.loads(self.state_path.read_text())
        return ControlPlaneAccess(str(state["server"]), self.pki / "ca.crt", self.pki / "ca.key",
                                  self.admin_kubeconfig)

    def _programs(self) -> dict[str, Path]:
        paths = dict(self.spec.programs)
        missing = [p for p in PROGRAMS if p not in paths]
        if missing:
            from gpu_conformance import binaries
            from gpu_conformance.realnode import programs

            for name in missing:
                found = binaries.find(name) if name in binaries.PROGRAMS else None
                if found is None and name in programs.PROGRAMS:
                    found = programs.ensure((programs.PROGRAMS[name].name,)).get(name)
                if found is not None:
                    paths[name] = found
        absent = [p for p in PROGRAMS if p not in paths or not paths[p].is_file()]
        if absent:
            raise ToolchainError(f"control plane programs missing: {', '.join(absent)}")
        return paths

    def _save(self) -> None:
        self.state_path.write_text(json.dumps(self.state, indent=2, sort_keys=True))

    def _pki(self, pki: Path, *args: str) -> None:
        run = subprocess.run([str(pki), *args, "-dir", str(self.pki)], capture_output=True, text=True,
                             timeout=60, check=False)
        if run.returncode != 0:
            raise ClusterError(f"pki {args[0]} failed: {run.stderr.strip()[-300:]}")

    def _certificates(self, pki: Path) -> None:
        self._pki(pki, "ca", "-cn", "gpu-conformance-ca")
        self._pki(pki, "sa")
        self._pki(pki, "cert", "-name", "apiserver", "-cn", "kube-apiserver", "-server",
                  "-ip", "127.0.0.1", "-ip", SERVICE_IP, "-dns", "localhost", "-dns", "kubernetes",
                  "-dns", "kubernetes.default", "-dns", "kubernetes.default.svc",
                  "-dns", "kubernetes.default.svc.cluster.local")
        self._pki(pki, "cert", "-name", "apiserver-kubelet-client", "-cn", "kube-apiserver-kubelet-client",
                  "-o", "system:masters", "-client")
        self._pki(pki, "cert", "-name", "admin", "-cn", "gpu-conformance-admin", "-o", "system:masters",
                  "-client")
        self._pki(pki, "cert", "-name", "controller-manager", "-cn", "system:kube-controller-manager",
                  "-client")
        self._pki(pki, "cert", "-name", "scheduler", "-cn", "system:kube-scheduler", "-client")

    def _kubeconfig(self, name: str, server: str) -> Path:
        path = self.dir / f"{name}.kubeconfig"
        path.write_text(cfg.kubeconfig(server, self.pki / "ca.crt", self.pki / f"{name}.crt",
                                       self.pki / f"{name}.key", name))
        return path

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.logs / f"{name}.log").open("ab") as handle:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self._children[name] = child
        self.state.setdefault("pids", {})[name] = child.pid
        self._save()

    def up(self, log: Log = _say) -> ControlPlaneAccess:
        if self.state_path.exists():
            raise ClusterError(f"a control plane already has its state in {self.dir}",
                               hint="stop it first: ControlPlane(...).down()")
        started = time.monotonic()
        paths = self._programs()
        for folder in (self.pki, self.logs, self.dir / "etcd"):
            folder.mkdir(parents=True, exist_ok=True)
        port = self.spec.api_port or _free_port()
        server = f"https://127.0.0.1:{port}"
        self.state = {"server": server, "pids": {}}
        self._save()
        try:
            self._start(paths, port, server, log)
            self._wait_ready(paths["kubectl"], log)
        except BaseException:
            log("control plane start failed; stopping it")
            self.down(log=lambda line: log(f"  cleanup: {line}"))
            raise
        log(f"control plane up on {server} in {time.monotonic() - started:.1f}s")
        return self.access()

    def _start(self, paths: dict[str, Path], port: int, server: str, log: Log) -> None:
        self._certificates(paths["pki"])
        pki, v = self.pki, f"--v={self.spec.verbosity}"
        etcd_client, etcd_peer = _free_port(), _free_port()
        self._spawn("etcd", [
            str(paths["etcd"]), "--name", "default", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{etcd_peer}",
            "--listen-metrics-urls", "", "--log-level", "warn",
        ])
        self._spawn("kube-apiserver", [
            str(paths["kube-apiserver"]), v, f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--profiling=false",
        ])
        self._kubeconfig("admin", server)
        self._spawn("kube-controller-manager", [
            str(paths["kube-controller-manager"]), v,
            f"--kubeconfig={self._kubeconfig('controller-manager', server)}",
            "--bind-address=127.0.0.1", f"--secure-port={_free_port()}", "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false",
        ])
        self._spawn("kube-scheduler", [
            str(paths["kube-scheduler"]), v, f"--kubeconfig={self._kubeconfig('scheduler', server)}",
            "--bind-address=127.0.0.1", f"--secure-port={_free_port()}", "--leader-elect=false",
            "--profiling=false",
        ])
        log(f"etcd, kube-apiserver, kube-controller-manager, kube-scheduler started ({server})")

    def _kubectl(self, kubectl: Path, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([str(kubectl), "--kubeconfig", str(self.admin_kubeconfig), *args],
                                  capture_output=True, text=True, timeout=15, check=False)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(list(args), 124, "", "kubectl timed out")

    def _wait_ready(self, kubectl: Path, log: Log) -> None:
        timeout = self.spec.ready_timeout
        deadline = time.monotonic() + timeout
        last = "nothing yet"
        while time.monotonic() < deadline:
            for name, child in self._children.items():
                if child.poll() is not None:
                    raise ClusterError(f"{name} exited with status {child.returncode}: "
                                       f"{_last_line(self.logs / f'{name}.log')}")
            ready = self._kubectl(kubectl, "get", "--raw", "/readyz")
            if ready.returncode != 0:
                last = f"/readyz: {(ready.stderr or ready.stdout).strip()[-200:]}"
            else:
                account = self._kubectl(kubectl, "get", "serviceaccount", "default", "-n", "default")
                if account.returncode == 0:
                    return
                last = "API ready, but no default service account yet (controller manager starting)"
            time.sleep(0.5)
        raise ClusterError(f"timed out after {timeout:g}s (control-plane-ready timeout): expected the "
                           f"control plane to serve, got instead: {last}")

    def down(self, log: Log = _say) -> bool:
        """Stop the components (scheduler first, etcd last) and remove the work dir."""
        state = self.state
        if not state and self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text())
            except ValueError:
                state = {}
        if not state and not self.dir.exists():
            return False
        pids: dict[str, int] = {k: int(v) for k, v in state.get("pids", {}).items()}
        timeout = TIMEOUTS["control-plane-stop"].seconds
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            pid = pids.get(name)
            if pid and str(self.dir) in host.cmdline(pid):
                host.stop([pid], timeout, log, name)
        host.stop(host.processes_mentioning([str(self.dir)]), timeout, log, "leftover process")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.state = {}
        self._children.clear()
        return True


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    errors = [line for line in lines if line[:1] in ("E", "F") or "error" in line.lower()]
    return ((errors or lines or ["(empty log)"])[-1])[:300]

