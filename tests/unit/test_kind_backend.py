"""The kind backend's life cycle around pytest-kind, with kind and Docker replaced by fakes."""

from __future__ import annotations

import inspect
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from pytest_kind import KindCluster

from gpu_conformance import gpus
from gpu_conformance.backends import kind
from gpu_conformance.backends.kind import config, fakegpus
from gpu_conformance.errors import ClusterError, UsageError, WaitTimeout
from gpu_conformance.timeouts import Timeouts

T4 = gpus.VM_SIZES[gpus.DEFAULT_VM_SIZE.lower()]
FAKE_KIND = """#!/bin/sh
echo "$@" >> "{calls}"
case "$1" in
  get) cat "{clusters}" ;;
esac
"""


class FakeKindCluster:
    """pytest-kind's KindCluster as the backend uses it; kind itself is a shell script."""

    instances: list[FakeKindCluster] = []

    def __init__(self, name: str, kubeconfig: Path | None = None, *, image: str | None = None,
                 kind_path: Path | None = None, kubectl_path: Path | None = None) -> None:
        self.name, self.image = name, image
        self.path = Path(".pytest-kind") / name
        self.path.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path = kubeconfig or self.path / "kubeconfig"
        self.kind_path = kind_path or self.path / "kind-fake"
        self.created_with: list[Path | None] = []
        self.deleted = 0
        self.loaded: list[str] = []
        self.create_delay = 0.0
        self.fail: str | None = None
        FakeKindCluster.instances.append(self)

    def ensure_kind(self) -> None:
        if not self.kind_path.exists():
            self.kind_path.write_text(FAKE_KIND.format(calls=Path("kind-calls").resolve(),
                                                       clusters=Path("clusters").resolve()))
            self.kind_path.chmod(0o755)

    def create(self, config_file: Path | None = None) -> None:
        time.sleep(self.create_delay)
        if self.fail == "create":
            raise subprocess.CalledProcessError(1, [str(self.kind_path), "create", "cluster"])
        self.created_with.append(config_file)
        self.kubeconfig_path.write_text("apiVersion: v1\nkind: Config\n")

    def delete(self) -> None:
        if self.fail == "delete":
            raise subprocess.CalledProcessError(1, [str(self.kind_path), "delete", "cluster"])
        self.deleted += 1

    def load_docker_image(self, image: str) -> None:
        self.loaded.append(image)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory holding the fake kind's state (its call log and cluster list)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clusters").write_text("")
    (tmp_path / "kind-calls").write_text("")
    FakeKindCluster.instances = []
    return tmp_path


def _backend(create_delay: float = 0.0, fail: str | None = None,
             **settings: Any) -> kind.KindBackend:
    def factory(*args: Any, **kwargs: Any) -> FakeKindCluster:
        cluster = FakeKindCluster(*args, **kwargs)
        cluster.create_delay, cluster.fail = create_delay, fail
        return cluster

    return kind.KindBackend(kind.KindSettings(cluster_name="c1", **settings),
                            check_engine=lambda: "27.3.1", cluster_factory=factory)


def test_fresh_cluster_is_created_from_the_generated_config_and_deleted(workdir: Path) -> None:
    backend = _backend(gpu_nodes=3, taint=True, load_images=("busybox:1.36",))
    logged: list[str] = []
    kubeconfig = backend.provision(logged.append)
    (cluster,) = FakeKindCluster.instances
    (config_file,) = cluster.created_with
    assert config_file is not None
    assert yaml.safe_load(config_file.read_text()) == config.kind_config(3, T4, 1, taint=True)
    assert kubeconfig == (workdir / ".pytest-kind/c1/kubeconfig").resolve()
    assert cluster.loaded == ["busybox:1.36"]
    assert any("creating cluster c1" in line for line in logged)
    backend.down(logged.append, keep=False)
    backend.down(logged.append, keep=False)
    assert cluster.deleted == 1
    assert logged[-1] == "kind: deleted cluster c1"


def test_existing_cluster_is_reused_and_left_in_place(workdir: Path) -> None:
    (workdir / "clusters").write_text("other\nc1\n")
    backend = _backend()
    logged: list[str] = []
    backend.provision(logged.append)
    (cluster,) = FakeKindCluster.instances
    calls = (workdir / "kind-calls").read_text().splitlines()
    assert calls[0] == "get clusters"
    assert calls[1].startswith("export kubeconfig --name=c1 --kubeconfig=")
    backend.down(logged.append, keep=False)
    assert cluster.deleted == 0
    assert "existed before this run" in logged[-1]


def test_keep_cluster_prints_how_to_delete_it(workdir: Path) -> None:
    backend = _backend()
    logged: list[str] = []
    backend.provision(logged.append)
    backend.down(logged.append, keep=True)
    assert FakeKindCluster.instances[0].deleted == 0
    assert logged[-1].endswith("delete cluster --name c1")


def test_a_hanging_create_is_bounded_and_still_cleaned_up(workdir: Path) -> None:
    backend = _backend(create_delay=5.0, timeouts=Timeouts({"kind-create": 0.3}))
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"kind create cluster to finish within 0\.3s"):
        backend.provision(lambda line: None)
    assert time.monotonic() - started < 3
    backend.down(lambda line: None, keep=False)
    assert FakeKindCluster.instances[0].deleted == 1


def test_failed_create_is_one_line(workdir: Path) -> None:
    with pytest.raises(ClusterError) as error:
        _backend(fail="create").provision(lambda line: None)
    assert "create cluster` failed with exit 1" in error.value.one_line()


def test_failed_delete_says_how_to_delete_by_hand(workdir: Path) -> None:
    backend = _backend()
    backend.provision(lambda line: None)
    FakeKindCluster.instances[0].fail = "delete"
    with pytest.raises(ClusterError) as error:
        backend.down(lambda line: None, keep=False)
    assert "could not delete kind cluster c1" in error.value.one_line()
    assert "delete cluster --name c1" in error.value.hint


def test_kind_bin_must_be_executable(workdir: Path) -> None:
    with pytest.raises(UsageError, match="--kind-bin"):
        _backend(kind_bin=workdir / "missing-kind").provision(lambda line: None)
    assert FakeKindCluster.instances == []


def test_pytest_kind_offers_what_the_backend_uses(workdir: Path) -> None:
    """Guards the pinned pytest-kind API the backend relies on."""
    cluster = KindCluster("c2", None, image="kindest/node:v1.31.0", kind_path=Path("/bin/true"),
                          kubectl_path=None)
    assert cluster.kind_path == Path("/bin/true")
    assert cluster.kubeconfig_path == Path(".pytest-kind/c2/kubeconfig")
    assert cluster.path.is_dir()
    for method in ("ensure_kind", "create", "delete", "load_docker_image"):
        assert callable(getattr(cluster, method))
    assert "config_file" in inspect.signature(cluster.create).parameters


# ---------------------------------------------------------------- the keeper's life cycle


class FakeNodes:
    """Node reads and patches of a CoreV1Api, for the keeper's thread handling only (the real
    API server behaviour is in tests/integration/test_kind_fake_gpus.py)."""

    def __init__(self, names: list[str]) -> None:
        self.labels: dict[str, dict[str, str]] = {n: {} for n in names}
        self.capacity: dict[str, dict[str, str]] = {n: {} for n in names}
        self.allocatable: dict[str, dict[str, str]] = {n: {} for n in names}
        self.lock = threading.Lock()

    def read_node_status(self, name: str, **_: Any) -> client.V1Node:
        with self.lock:
            return client.V1Node(
                metadata=client.V1ObjectMeta(name=name, labels=dict(self.labels[name])),
                status=client.V1NodeStatus(capacity=dict(self.capacity[name]),
                                           allocatable=dict(self.allocatable[name])))

    def patch_node(self, name: str, body: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.labels[name].update(body["metadata"]["labels"])

    def patch_node_status(self, name: str, body: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.capacity[name].update(body["status"]["capacity"])
            self.allocatable[name].update(body["status"]["allocatable"])

    def kubelet_reset(self, name: str) -> None:
        with self.lock:
            self.capacity[name][gpus.GPU_RESOURCE] = "0"
            self.allocatable[name].pop(gpus.GPU_RESOURCE, None)


def _wait(condition: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_keeper_restores_what_a_kubelet_dropped_and_stops() -> None:
    api = FakeNodes(["w1", "w2"])
    fakegpus.advertise_fake_gpus(api, ["w1", "w2"], 2, T4)  # type: ignore[arg-type]
    logged: list[str] = []
    keeper = fakegpus.FakeGpuKeeper(api, ["w1", "w2"], 2, T4,  # type: ignore[arg-type]
                                log=logged.append, interval_s=0.05)
    assert keeper.ensure() == []
    keeper.start()
    api.kubelet_reset("w2")
    assert _wait(lambda: keeper.restored)
    assert keeper.restored[0][0] == "w2"
    assert "capacity nvidia.com/gpu=0" in keeper.restored[0][1]
    assert api.allocatable["w2"][gpus.GPU_RESOURCE] == "2"
    started = time.monotonic()
    assert keeper.stop(15)
    assert time.monotonic() - started < 1
    assert not keeper.running
    assert any("node w2 had lost its fake GPUs" in line for line in logged)


def test_keeper_ends_with_its_lifetime() -> None:
    api = FakeNodes(["w1"])
    logged: list[str] = []
    keeper = fakegpus.FakeGpuKeeper(api, ["w1"], 1, T4,  # type: ignore[arg-type]
                                log=logged.append, interval_s=0.02, lifetime_s=0.1)
    keeper.start()
    assert _wait(lambda: not keeper.running)
    assert "lifetime" in logged[-1]


def test_keeper_survives_a_failed_round() -> None:
    api = FakeNodes(["w1"])
    logged: list[str] = []
    keeper = fakegpus.FakeGpuKeeper(api, ["w1", "gone"], 1, T4,  # type: ignore[arg-type]
                                log=logged.append, interval_s=0.02)
    keeper.start()
    assert _wait(lambda: keeper.errors >= 2)
    assert keeper.running
    assert keeper.stop(15)
    assert "keeper round failed" in logged[-1]
