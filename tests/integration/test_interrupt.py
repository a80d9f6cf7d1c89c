"""Ctrl-C (SIGINT) and CI cancellation (SIGTERM) in the middle of a wait still tear down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT

REPO = REPO_ROOT


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_interrupt_during_a_wait_removes_the_cluster(signum: int, kubectl_path: Path) -> None:
    name = f"it-sig-{signum}-{os.getpid()}"
    cluster = OfflineCluster(OfflineClusterSpec(name=name))
    # no GPU node: the Job stays unschedulable, and the long grace keeps the run waiting
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pytest.ini"), f"--rootdir={REPO}",
         "-k", "workload", "--gpu-nodes", "0", f"--cluster-name={name}",
         "--gpu-timeout", "unschedulable-grace=600", "--junitxml=/dev/null"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            jobs = subprocess.run([str(kubectl_path), f"--kubeconfig={cluster.kubeconfig}", "get",
                                   "jobs", "-A", "-o", "name"], capture_output=True, text=True)
            if "job.batch/gpu-tf-mnist" in jobs.stdout:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the run never reached its Job wait: {proc.communicate()[0][-3000:]}")
        pids = cluster.pids()
        assert pids
        proc.send_signal(signum)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
        leftover = cluster.exists()
        cluster.down(log=lambda _line: None)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert f"cluster '{name}' removed" in output
    assert not leftover
    assert [p for p in pids if Path(f"/proc/{p}").exists()
            and ") Z " not in Path(f"/proc/{p}/stat").read_text()] == []
