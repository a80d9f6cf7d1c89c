"""Issue 10: the API server crashes and comes back while a run waits; the run finishes green.

One cluster, ten runs; each run is held in one kind of wait (plugin rollout, GPU capacity,
the workload Job, the namespace deletion at the end) by a condition the test controls, the
kube-apiserver is killed (SIGKILL) and started again, then the condition is released.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_conformance.nodes import GPUS_ANNOTATION
from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT

HOLD_TAINT = "node.kubernetes.io/gpu-conformance-test"


@pytest.fixture(scope="module")
def cluster() -> Iterator[OfflineCluster]:
    import os

    made = OfflineCluster(OfflineClusterSpec(name=f"it-restart-{os.getpid()}", gpu_nodes=2))
    try:
        made.up(log=lambda _line: None)
        yield made
    finally:
        made.down(log=lambda _line: None)


class Run:
    """The suites in a subprocess whose output is read as it comes."""

    def __init__(self, cluster: OfflineCluster, run_id: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-c", str(REPO_ROOT / "pytest.ini"),
             f"--rootdir={REPO_ROOT}", "--junitxml=/dev/null", "-p", "no:cacheprovider",
             "--backend", "attach", f"--kubeconfig={cluster.kubeconfig}", f"--run-id={run_id}",
             str(REPO_ROOT / "suites")],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for_line(self, fragment: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"never saw {fragment!r}:\n{''.join(self.lines)[-4000:]}")

    def finish(self, timeout: float = 660) -> tuple[int, str]:
        # a scheduler that missed the event freeing the GPU retries within its 5-minute flush
        code = self.proc.wait(timeout=timeout)
        self.reader.join(10)
        return code, "".join(self.lines)


RESTARTED: list[int] = []


def _restart_api(cluster: OfflineCluster, kubectl: Callable[..., Any]) -> None:
    RESTARTED.append(cluster.restart_component("kube-apiserver", log=lambda _line: None,
                                               crash=True))
    deadline = time.monotonic() + 60
    while kubectl(cluster, "get", "--raw", "/readyz", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the API server did not come back"
        time.sleep(0.2)


def _hold(kind: str, cluster: OfflineCluster, kubectl: Callable[..., Any], run_id: str
          ) -> tuple[str, Callable[[], None]]:
    """Put the cluster in a state the run waits on; the progress line that shows the wait,
    and how to release it."""
    node = "aks-gpu-00000001"
    if kind == "rollout":
        kubectl(cluster, "taint", "node", node, f"{HOLD_TAINT}=hold:NoSchedule")
        return "plugin rollout:", lambda: kubectl(cluster, "taint", "node", node,
                                                  f"{HOLD_TAINT}-")
    if kind == "capacity":
        # the simulator leaves a node without its GPUs annotation alone: no capacity
        kubectl(cluster, "annotate", "node", node, f"{GPUS_ANNOTATION}-")
        kubectl(cluster, "patch", "node", node, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": {"capacity": {"nvidia.com/gpu": "0"},
                                             "allocatable": {"nvidia.com/gpu": "0"}}}))
        return "gpu capacity:", lambda: kubectl(cluster, "annotate", "node", node,
                                                f"{GPUS_ANNOTATION}=1")
    if kind == "job":
        holder = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "other-run", "namespace": "default",
                               "labels": {"gpu-conformance.io/run": "another-run"}},
                  "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}],
                           "containers": [{"name": "c", "image": "example.invalid/x",
                                           "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
        kubectl(cluster, "apply", "-f", "-", input=json.dumps(holder))
        return f"job gpu-tf-mnist-{node}:", lambda: kubectl(
            cluster, "delete", "pod", "other-run", "-n", "default", "--wait=false")
    namespace = f"gpuconf-{run_id}"

    def hold_namespace() -> None:
        deadline = time.monotonic() + 120
        while kubectl(cluster, "get", "namespace", namespace, check=False).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        kubectl(cluster, "create", "configmap", "held", "-n", namespace)
        kubectl(cluster, "patch", "configmap", "held", "-n", namespace, "--type=merge", "-p",
                json.dumps({"metadata": {"finalizers": ["example.com/hold"]}}))

    holder_thread = threading.Thread(target=hold_namespace, daemon=True)
    holder_thread.start()

    def release() -> None:
        holder_thread.join(60)
        kubectl(cluster, "patch", "configmap", "held", "-n", namespace, "--type=merge", "-p",
                json.dumps({"metadata": {"finalizers": None}}))

    return "namespace(s) gpuconf-", release


def _component_logs(cluster: OfflineCluster) -> str:
    """What the scheduler and kwok saw around the restart, for a failure's message."""
    text = ""
    for name in ("kube-scheduler", "kwok-controller"):
        path = cluster.kwok_dir / "logs" / f"{name}.log"
        tail = path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"
        text += f"\n--- {name} log ---\n{tail}"
    return text


KINDS = ["rollout", "rollout", "rollout", "capacity", "capacity", "job", "job", "job",
         "namespace", "namespace"]


@pytest.mark.parametrize("kind", KINDS, ids=[f"{k}-{i}" for i, k in enumerate(KINDS)])
def test_the_api_server_restarts_during_a_wait_and_the_run_passes(
        kind: str, cluster: OfflineCluster, kubectl: Callable[..., Any], tmp_path: Path) -> None:
    run_id = f"restart-{kind[:3]}-{int(time.time() * 1000) % 100000}"
    line, release = _hold(kind, cluster, kubectl, run_id)
    run = Run(cluster, run_id)
    try:
        run.wait_for_line(line)
        time.sleep(0.5)
        _restart_api(cluster, kubectl)
        time.sleep(1)
    finally:
        try:
            release()
        except AssertionError as exc:
            import os

            log = (cluster.kwok_dir / "logs" / "kube-apiserver.log").read_text()[-1500:]
            ended: list[tuple[int, object]] = []
            for pid in RESTARTED:
                try:
                    ended.append((pid, os.waitpid(pid, os.WNOHANG)))
                except ChildProcessError:
                    ended.append((pid, "not a child"))
            raise AssertionError(f"{exc}\nrestarted: {ended}\nkube-apiserver log:\n{log}") from None
    code, output = run.finish()
    assert code == 0, output[-5000:] + _component_logs(cluster)
    assert "Traceback" not in output
    left = kubectl(cluster, "get", "namespaces", "-l", "gpu-conformance.io/run", "-o", "name",
                   check=False).stdout.strip()
    assert not left, left
