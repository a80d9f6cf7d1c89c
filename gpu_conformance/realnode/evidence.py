"""The evidence that a real node runs GPU workloads: the device plugin's DaemonSet (the
manifest as shipped) registers nvidia.com/gpu with the real kubelet, one-GPU Jobs of each
workload profile complete and their logs pass the profile's parser, an oversized request
stays Unschedulable, and removing the plugin takes the GPUs away. Each check is timed and
its evidence (logs, objects) saved. Standard library and kubectl only (runs on a GPU host)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpu_conformance.errors import ToolchainError
from gpu_conformance.paths import manifests_dir
from gpu_conformance.realnode import images
from gpu_conformance.realnode.node import ControlPlaneAccess
from gpu_conformance.workloads import PROFILES

Log = Callable[[str], None]
NAMESPACE = "real-node-evidence"
PLUGIN_NAMESPACE = "gpu-resources"
PLUGIN_DAEMONSET = "nvidia-device-plugin-daemonset"
#: bounds, each with its reason
PLUGIN_RUNNING = 180  # the real plugin's image is imported; NVML init takes a second or two
REGISTERED = 120      # after the pod starts, the plugin serves and registers within seconds
CAPACITY = 60         # the kubelet reports new devices at its next status update (10 s here)
JOB_COMPLETE = 600    # the torch probe trains for ~15 s on an H200; its image is GBs to unpack
UNSCHEDULABLE = 60    # the scheduler rejects an oversized pod on its first attempt
PLUGIN_GONE = 60      # allocatable drops at the first status update after the stream ends


class Evidence:
    def __init__(self, kubectl: Path, kubeconfig: Path, evidence_dir: Path | None, log: Log) -> None:
        self.kubectl_path, self.kubeconfig, self.dir, self.log = kubectl, kubeconfig, evidence_dir, log
        self.checks: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()
        if evidence_dir is not None:
            evidence_dir.mkdir(parents=True, exist_ok=True)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60
                ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
                                  capture_output=True, text=True, input=input, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(list(args), 124, "", f"kubectl timed out after {timeout}s")

    def json(self, *args: str) -> dict[str, Any]:
        run = self.kubectl(*args, "-o", "json")
        return dict(json.loads(run.stdout)) if run.returncode == 0 and run.stdout else {}

    def save(self, name: str, text: str) -> None:
        if self.dir is not None:
            (self.dir / name).write_text(text)

    def record(self, name: str, ok: bool, detail: str, since: float | None = None) -> bool:
        entry: dict[str, Any] = {"name": name, "ok": ok, "detail": detail[:2000]}
        if since is not None:
            entry["seconds"] = round(time.monotonic() - since, 1)
        self.checks.append(entry)
        self.log(f"{'PASS' if ok else 'FAIL'} {name}: {detail[:300]}"
                 + (f" ({entry['seconds']}s)" if "seconds" in entry else ""))
        return ok

    def wait(self, check: Callable[[], Any], timeout: float) -> tuple[Any, float]:
        started = time.monotonic()
        value = None
        while time.monotonic() - started < timeout:
            value = check()
            if value:
                break
            time.sleep(0.5)
        return value, time.monotonic() - started


def _gpus(node: dict[str, Any]) -> tuple[str | None, str | None]:
    status = node.get("status", {})
    return (status.get("capacity", {}).get("nvidia.com/gpu"),
            status.get("allocatable", {}).get("nvidia.com/gpu"))


def run_checks(access: ControlPlaneAccess, programs: dict[str, Path], *, node_name: str,
               profiles: list[str], expect_gpus: int | None, device_name: str | None,
               evidence_dir: Path | None, work_dir: Path, manifest: Path | None, log: Log) -> dict[str, Any]:
    kubectl = programs.get("kubectl")
    if kubectl is None:
        from gpu_conformance import binaries

        kubectl = binaries.find("kubectl")
    if kubectl is None:
        raise ToolchainError("kubectl is missing")
    ev = Evidence(kubectl, access.admin_kubeconfig, evidence_dir, log)
    node_log = work_dir / "logs" / "kubelet.log"
    state = json.loads((work_dir / "node.json").read_text()) if (work_dir / "node.json").is_file() else {}
    imported = set(state.get("images", []))

    node = ev.json("get", "node", node_name)
    conditions: list[dict[str, Any]] = node.get("status", {}).get("conditions", [])
    ready: dict[str, Any] = next((c for c in conditions if c["type"] == "Ready"), {})
    info = node.get("status", {}).get("nodeInfo", {})
    ev.record("node Ready (real kubelet)",
              ready.get("status") == "True" and ready.get("reason") == "KubeletReady",
              f"{ready.get('reason')}; kubelet {info.get('kubeletVersion')}, runtime "
              f"{info.get('containerRuntimeVersion')}, kernel {info.get('kernelVersion')}, "
              f"os {info.get('osImage')}")
    ev.record("no nvidia.com/gpu before the plugin", _gpus(node) in ((None, None), ("0", "0")),
              f"capacity/allocatable {_gpus(node)}")

    plugin_manifest = manifest or manifests_dir() / "current" / "nvidia-device-plugin.yaml"
    applied = time.monotonic()
    run = ev.kubectl("apply", "-f", str(plugin_manifest))
    ev.record("plugin manifest applied unchanged", run.returncode == 0, (run.stdout or run.stderr).strip())

    def plugin_pod() -> dict[str, Any] | None:
        pods = ev.json("get", "pods", "-n", PLUGIN_NAMESPACE).get("items", [])
        mine = [p for p in pods if p.get("spec", {}).get("nodeName") == node_name
                and not p["metadata"].get("deletionTimestamp")]
        running = [p for p in mine if p["status"].get("phase") == "Running"]
        return running[0] if running else None

    pod, _ = ev.wait(plugin_pod, PLUGIN_RUNNING)
    ev.record("plugin pod Running on the real node", pod is not None,
              f"{pod['metadata']['name']} ip {pod['status'].get('podIP')}" if pod else
              "no Running pod: " + ev.kubectl("get", "pods", "-n", PLUGIN_NAMESPACE, "-o", "wide").stdout,
              applied)
    ev.timings["plugin_running"] = round(time.monotonic() - applied, 1)
    pod_name = pod["metadata"]["name"] if pod else ""

    def registered() -> str:
        text = ev.kubectl("logs", "-n", PLUGIN_NAMESPACE, pod_name).stdout if pod_name else ""
        return text if "Registered device plugin for 'nvidia.com/gpu' with Kubelet" in text else ""

    plugin_log, _ = ev.wait(registered, REGISTERED)
    ev.save("device-plugin.log", plugin_log or ev.kubectl("logs", "-n", PLUGIN_NAMESPACE, pod_name).stdout)
    ev.record("plugin log: Registered device plugin for 'nvidia.com/gpu' with Kubelet", bool(plugin_log),
              "see device-plugin.log", applied)
    kubelet_text = node_log.read_text(errors="replace") if node_log.is_file() else ""
    lines = [line for line in kubelet_text.splitlines()
             if "registration request from device plugin" in line]
    ev.record("kubelet log: registration request for nvidia.com/gpu", bool(lines), (lines or ["none"])[-1])

    def capacity() -> tuple[str, str] | None:
        cap, alloc = _gpus(ev.json("get", "node", node_name))
        if cap and alloc and int(alloc) > 0 and (expect_gpus is None or int(alloc) == expect_gpus):
            return cap, alloc
        return None

    found, _ = ev.wait(capacity, CAPACITY)
    ev.timings["capacity_visible"] = round(time.monotonic() - applied, 1)
    ev.record("nvidia.com/gpu in capacity and allocatable", found is not None,
              f"capacity/allocatable {found or _gpus(ev.json('get', 'node', node_name))}", applied)
    gpus = int(found[1]) if found else (expect_gpus or 1)

    ev.kubectl("create", "namespace", NAMESPACE)
    chosen = profiles or [n for n, p in PROFILES.items() if images.normalize_reference(p.image) in imported]
    if found is None:
        # a final state: with no allocatable GPU no Job below could ever be scheduled
        ev.record("GPU Jobs, oversized pod, plugin removal", False,
                  "skipped: the node has no nvidia.com/gpu")
        chosen = []
    for name in chosen:
        profile = PROFILES[name]
        objects = [*profile.extra_objects(NAMESPACE),
                   profile.job_manifest(f"job-{name}", NAMESPACE, node_name=node_name)]
        started = time.monotonic()
        ev.kubectl("apply", "-f", "-",
                   input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        done = ev.kubectl("wait", "-n", NAMESPACE, "--for=condition=complete", f"job/job-{name}",
                          f"--timeout={JOB_COMPLETE}s", timeout=JOB_COMPLETE + 30)
        text = ev.kubectl("logs", "-n", NAMESPACE, f"job/job-{name}").stdout
        ev.save(f"job-{name}.log", text)
        report = profile.parse(text)
        devices_ok = device_name is None or set(report.devices) <= {device_name}
        ev.record(f"job {name}: 1 GPU, completed, log passes the profile's parser",
                  done.returncode == 0 and bool(report.success) and devices_ok,
                  f"complete={done.returncode == 0} success={report.success} devices={report.devices} "
                  f"accuracy={report.final_accuracy} problems={report.problems} "
                  f"properties={report.properties}", started)

    if found is None:
        return _finish(ev, node_name, work_dir)
    too_many = PROFILES["nvidia-smi"].job_manifest("too-many", NAMESPACE, gpus=gpus + 1,
                                                   node_name=node_name)
    ev.kubectl("apply", "-f", "-", input=json.dumps(too_many))

    def unschedulable() -> str:
        for item in ev.json("get", "pods", "-n", NAMESPACE, "-l", "app=too-many").get("items", []):
            for condition in item["status"].get("conditions", []):
                if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                    return str(condition.get("message", ""))
        return ""

    message, _ = ev.wait(unschedulable, UNSCHEDULABLE)
    ev.record(f"a pod asking for {gpus + 1} GPUs stays Pending (Insufficient nvidia.com/gpu)",
              "Insufficient nvidia.com/gpu" in (message or ""), message or "not Unschedulable")
    ev.kubectl("delete", "job", "-n", NAMESPACE, "too-many", "--wait=false")

    removed = time.monotonic()
    ev.kubectl("delete", "daemonset", "-n", PLUGIN_NAMESPACE, PLUGIN_DAEMONSET, "--wait=false")

    def allocatable_zero() -> tuple[str | None, str | None] | None:
        cap, alloc = _gpus(ev.json("get", "node", node_name))
        return (cap, alloc) if alloc == "0" else None

    after, _ = ev.wait(allocatable_zero, PLUGIN_GONE)
    ev.record("plugin deleted: allocatable 0 at once, capacity kept for the 5-minute grace period",
              after is not None and after[0] == str(gpus), f"capacity/allocatable {after}", removed)

    return _finish(ev, node_name, work_dir)


def _finish(ev: Evidence, node_name: str, work_dir: Path) -> dict[str, Any]:
    ev.save("node.json", json.dumps(ev.json("get", "node", node_name), indent=2))
    ev.save("events.txt", ev.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp").stdout[-200_000:])
    for name in ("kubelet", "containerd", "nvidia-container-runtime"):
        path = work_dir / "logs" / f"{name}.log"
        if path.is_file():
            ev.save(f"{name}.log.tail", "\n".join(path.read_text(errors="replace").splitlines()[-3000:]))
    summary = {"passed": all(c["ok"] for c in ev.checks), "checks": ev.checks, "timings": ev.timings,
               "total_seconds": round(time.monotonic() - ev.started, 1)}
    ev.save("summary.json", json.dumps(summary, indent=2))
    return {"summary": summary}
