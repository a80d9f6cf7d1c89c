"""The offline cluster's own API readiness wait (kwokctl's once-a-second poll replaced): a
component that died, and a server that never gets ready, each end it with one clear line."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from gpu_conformance.errors import ClusterError
from gpu_conformance.offline import COMPONENTS, OfflineCluster, OfflineClusterSpec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Readyz(BaseHTTPRequestHandler):
    """/readyz as a starting API server answers: 500 until ``ready_after`` questions."""

    asked: list[str] = []
    ready_after = 3

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        ok = len(type(self).asked) > type(self).ready_after
        body = b"ok" if ok else b"[-]poststarthook/rbac/bootstrap-roles failed: not finished"
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineCluster:
    monkeypatch.setenv("GPU_CONFORMANCE_STATE", str(tmp_path))
    found = OfflineCluster(OfflineClusterSpec(name="start"))
    found.kwok_dir.mkdir(parents=True)
    return found


def _kubeconfig(cluster: OfflineCluster, port: int) -> None:
    cluster.kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))


@pytest.fixture
def server(cluster: OfflineCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Readyz]]:
    monkeypatch.setattr(_Readyz, "asked", [])
    httpd = HTTPServer(("127.0.0.1", 0), _Readyz)
    _kubeconfig(cluster, httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield _Readyz
    httpd.shutdown()
    httpd.server_close()


def test_it_asks_until_ready(cluster: OfflineCluster, server: type[_Readyz],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "components", lambda: {"etcd": True, "kube-apiserver": True})
    cluster._wait_api_ready(10)
    assert server.asked == ["/readyz"] * (server.ready_after + 1)


def test_a_server_that_never_gets_ready_times_out_with_its_answer(
        cluster: OfflineCluster, server: type[_Readyz], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "ready_after", 10**6)
    monkeypatch.setattr(cluster, "components", lambda: {"etcd": True, "kube-apiserver": True})
    with pytest.raises(ClusterError) as raised:
        cluster._wait_api_ready(0.3)
    assert "was not ready within 0.3s (api-ready timeout): HTTP 500" in str(raised.value)
    assert "kube-apiserver.log" in raised.value.one_line()


def test_a_dead_api_server_is_said_at_once(cluster: OfflineCluster,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _kubeconfig(cluster, _free_port())  # nothing listens there
    monkeypatch.setattr(cluster, "components", lambda: {"etcd": True, "kube-apiserver": False})
    with pytest.raises(ClusterError) as raised:
        cluster._wait_api_ready(60)
    assert "kube-apiserver exited while the offline cluster started" in str(raised.value)


def test_a_component_that_gave_up_is_named_with_its_last_error(
        cluster: OfflineCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = cluster.kwok_dir / "logs"
    logs.mkdir()
    (logs / "kube-controller-manager.log").write_text(
        'I1129 08:31:21.4 1 serving.go:386] Generated self-signed cert\n'
        'E1129 08:31:31.4 1 run.go:72] "command failed" err="failed to wait for apiserver being '
        'healthy: timed out waiting for the condition"\n')
    monkeypatch.setattr(cluster, "components",
                        lambda: {**dict.fromkeys(COMPONENTS, True),
                                 "kube-controller-manager": False})
    with pytest.raises(ClusterError) as raised:
        cluster._require_components()
    line = raised.value.one_line()
    assert "kube-controller-manager exited while the offline cluster started" in line
    assert "failed to wait for apiserver being healthy" in line
    assert "kube-controller-manager.log" in line


def test_all_components_running_is_quiet(cluster: OfflineCluster,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "components", lambda: dict.fromkeys(COMPONENTS, True))
    cluster._require_components()
