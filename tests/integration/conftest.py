"""Integration fixtures: real offline clusters (etcd, kube-apiserver, controllers, kwok).

Each test that breaks a cluster gets its own; read-only tests share one. Every cluster
is removed at teardown, whatever the outcome. Programs are built on first use
(`make integration` runs `gpu-conformance binaries` first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpu_conformance import binaries
from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec
from gpu_conformance.paths import REPO_ROOT

REPO = REPO_ROOT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


@dataclass
class Suites:
    """The outcome of one `pytest` run of the conformance suites in a subprocess."""

    returncode: int
    output: str
    junit: Path

    def junit_text(self) -> str:
        return self.junit.read_text() if self.junit.exists() else ""


@pytest.fixture(scope="session")
def kubectl_path() -> Path:
    return binaries.ensure()["kubectl"]


@pytest.fixture(scope="session")
def offline_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineCluster]:
    """One shared offline cluster (1 system + 2 GPU nodes x 2 GPUs) for read-only tests."""
    cluster = OfflineCluster(OfflineClusterSpec(name=f"it-shared-{os.getpid()}", gpu_nodes=2,
                                                gpus_per_node=2))
    try:
        cluster.up(log=lambda _line: None)
        yield cluster
    finally:
        cluster.down(log=lambda _line: None)


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[..., OfflineCluster]]:
    """Factory for a dedicated offline cluster, removed at teardown even if the test fails."""
    made: list[OfflineCluster] = []

    def make(**spec: Any) -> OfflineCluster:
        name = f"it-{len(made)}-{os.getpid()}"
        cluster = OfflineCluster(OfflineClusterSpec(name=name, **spec))
        made.append(cluster)
        cluster.up(log=lambda _line: None)
        return cluster

    yield make
    for cluster in reversed(made):
        cluster.down(log=lambda _line: None)


@pytest.fixture
def kubectl(kubectl_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the pinned kubectl against a cluster: kubectl(cluster, *args, input=None)."""

    def run(cluster: OfflineCluster, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(kubectl_path), f"--kubeconfig={cluster.kubeconfig}", *args],
                                capture_output=True, text=True, input=input, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


@pytest.fixture
def run_suites(tmp_path: Path) -> Callable[..., Suites]:
    """Run the conformance suites (repository pytest.ini) in a subprocess."""
    counter = iter(range(100))

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 420) -> Suites:
        junit = tmp_path / f"junit-{next(counter)}.xml"
        cmd = [sys.executable, "-m", "pytest", "-c", str(REPO / "pytest.ini"),
               f"--rootdir={REPO}", f"--junitxml={junit}", *args]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
        return Suites(result.returncode, result.stdout + result.stderr, junit)

    return run


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60, every: float = 0.5) -> Any:
    """Poll a check that has no watch (kubectl output, a computed view); bounded, and the
    failure reports the last value seen."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"expected {what} within {timeout:g}s, last saw: {value!r}")


def attach_args(cluster: OfflineCluster) -> list[str]:
    return ["--backend", "attach", f"--kubeconfig={cluster.kubeconfig}"]


def objects_snapshot(kubectl: Callable[..., Any], cluster: OfflineCluster) -> dict[str, list[str]]:
    """Names of namespaces, DaemonSets, Jobs, pods and ConfigMaps (sans kube-root-ca), all namespaces."""
    snapshot = {}
    for kind in ("namespaces", "daemonsets", "jobs", "pods", "configmaps"):
        items = json.loads(kubectl(cluster, "get", kind, "-A", "-o", "json").stdout)["items"]
        snapshot[kind] = sorted(f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}"
                                for i in items if i["metadata"]["name"] != "kube-root-ca.crt")
    return snapshot
