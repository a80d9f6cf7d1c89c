"""Issue 10: an interruption at any moment leaves nothing behind.

Twenty runs against one cluster are interrupted (SIGINT and SIGTERM alternately) at points
spread over a whole run, from its first second to its cleanup; two are SIGKILLed and followed
by a normal run, whose sweep removes what the killed one left. After each, the cluster holds
nothing of gpu-conformance: no run namespace, no Lease, no device plugin, no plugin namespace.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT

POINTS = 20


@pytest.fixture(scope="module")
def cluster() -> Iterator[OfflineCluster]:
    made = OfflineCluster(OfflineClusterSpec(name=f"it-intr-{os.getpid()}", gpu_nodes=2))
    try:
        made.up(log=lambda _line: None)
        yield made
    finally:
        made.down(log=lambda _line: None)


def _start(cluster: OfflineCluster) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-c", str(REPO_ROOT / "pytest.ini"),
         f"--rootdir={REPO_ROOT}", "--junitxml=/dev/null", "-p", "no:cacheprovider",
         "--backend", "attach", f"--kubeconfig={cluster.kubeconfig}", "--workload", "all",
         str(REPO_ROOT / "suites")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def leftovers(cluster: OfflineCluster, kubectl: Callable[..., Any]) -> list[str]:
    found = []
    for kind, selector in (("namespaces", "gpu-conformance.io/run"),
                           ("namespaces", "app.kubernetes.io/managed-by=gpu-conformance"),
                           ("daemonsets", "app.kubernetes.io/managed-by=gpu-conformance"),
                           ("leases", "gpu-conformance.io/run")):
        items = json.loads(kubectl(cluster, "get", kind, "-A", "-l", selector, "-o",
                                   "json").stdout)["items"]
        found += [f"{kind}/{i['metadata'].get('namespace', '')}/{i['metadata']['name']}"
                  for i in items if not i["metadata"].get("deletionTimestamp")]
    return found


def _settled(cluster: OfflineCluster, kubectl: Callable[..., Any], timeout: float = 120) -> list[str]:
    """What is left once deletions in progress have finished."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(cluster, kubectl)
        terminating = kubectl(cluster, "get", "namespaces", "-o", "json").stdout.count(
            '"phase": "Terminating"')
        if (not left and not terminating) or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_interrupted_at_twenty_points_leaves_nothing(cluster: OfflineCluster,
                                                     kubectl: Callable[..., Any]) -> None:
    started = time.monotonic()
    proc = _start(cluster)
    out = proc.communicate(timeout=300)[0]
    whole = time.monotonic() - started
    assert proc.returncode == 0, out[-3000:]
    problems = []
    for point in range(POINTS):
        signum = signal.SIGINT if point % 2 == 0 else signal.SIGTERM
        at = whole * (point + 0.5) / POINTS
        proc = _start(cluster)
        time.sleep(at)
        proc.send_signal(signum)
        try:
            output = proc.communicate(timeout=180)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            output = proc.communicate()[0]
            problems.append(f"point {point} ({at:.1f}s): the run did not end after the signal")
        where = f"point {point} ({at:.1f}s of {whole:.1f}s, {signum.name}, exit {proc.returncode})"
        # one signal: the run stops (2) or, landing in its cleanup, finishes that (2), or it
        # had just ended (0); never a traceback, never a death by the signal itself (-2, -15).
        # Before the plugin has said anything (Python and pytest still starting, nothing
        # created) the interpreter's own handling of the signal is all there is.
        # After the session has ended (pytest's summary line printed, the handlers given back
        # at unconfigure) the default disposition may end the exiting process: nothing is left.
        started_run = "[gpu-conformance]" in output
        ended = re.search(r"^=+ .*\b(passed|failed)\b.* in [\d.]+s.* =+$", output.strip()
                          .splitlines()[-1] if output.strip() else "") is not None
        if started_run and ("Traceback (most recent call last)" in output
                            or proc.returncode not in ((0, 2, -signum) if ended else (0, 2))):
            problems.append(f"{where}: {output[-2500:]}")
        left = _settled(cluster, kubectl)
        if left:
            problems.append(f"{where}: left {left}\n{output[-2500:]}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_sigkilled_run_is_swept_by_the_next_one(fraction: float, cluster: OfflineCluster,
                                                kubectl: Callable[..., Any]) -> None:
    started = time.monotonic()
    proc = _start(cluster)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    whole = time.monotonic() - started
    killed = _start(cluster)
    time.sleep(whole * fraction)
    killed.kill()
    killed.communicate(timeout=60)
    after = _start(cluster)
    output = after.communicate(timeout=300)[0]
    assert after.returncode == 0, output[-3000:]
    assert _settled(cluster, kubectl) == []
