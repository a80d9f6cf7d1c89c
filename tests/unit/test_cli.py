"""The gpu-conformance command: bad input is one clear line and exit status 4, never a traceback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_conformance import binaries, cli, offline

PREFIX = "gpu-conformance: error: "


@pytest.fixture(autouse=True)
def clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty state and cache folders (no clusters, no binaries); needing binaries fails the test.

    Returns the folder cluster files go to.
    """
    monkeypatch.setenv("GPU_CONFORMANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GPU_CONFORMANCE_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("GPU_CONFORMANCE_DEBUG", raising=False)

    def no_binaries(*args: object, **kwargs: object) -> None:
        raise AssertionError("binaries were needed before the input was checked")

    monkeypatch.setattr(binaries, "ensure", no_binaries)
    monkeypatch.setattr(binaries, "find", no_binaries)
    root = offline.clusters_root()
    assert root.is_relative_to(tmp_path)
    return root


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX)
    return lines[0][len(PREFIX):]


@pytest.mark.parametrize(("args", "message"), [
    (["--gpu-nodes", "-1"], "--gpu-nodes must be between 0 and 5000, got -1"),
    (["--gpu-nodes", "5001"], "--gpu-nodes must be between 0 and 5000, got 5001"),
    (["--gpus-per-node", "0"], "--gpus-per-node must be between 1 and 64, got 0"),
    (["--name", "Foo_Bar"],
     "bad cluster name 'Foo_Bar': use lowercase letters, digits and '-' (max 40)"),
    (["--job-log", "/nonexistent"], "--job-log /nonexistent does not exist"),
    (["--port", "70000"], "--port must be between 1 and 65535, got 70000"),
])
def test_cluster_up_bad_input(args: list[str], message: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "up", "--name", "bad-input", *args]) == 4
    assert one_error_line(capsys) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_cluster_up_non_number_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "up", "--gpu-nodes", "abc"]) == 4
    assert one_error_line(capsys) == ("gpu-conformance cluster up: argument --gpu-nodes: expected a whole "
                                      "number, got 'abc' (see --help)")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 this test holds open."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_cluster_up_port_in_use_before_binaries(busy_port: int, clusters: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "up", "--name", "busy", "--port", str(busy_port)]) == 6
    assert one_error_line(capsys) == (f"port {busy_port} on 127.0.0.1 is already in use "
                                      "(pick another with --port, or leave it out)")
    assert not (clusters / "busy").exists()


def test_cluster_up_existing_cluster(clusters: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clusters / "taken").mkdir(parents=True)
    assert cli.main(["cluster", "up", "--name", "taken"]) == 4
    assert one_error_line(capsys) == (
        "an offline cluster named 'taken' already exists (use it, or remove it: "
        "gpu-conformance cluster down --name taken)")


def test_cluster_down_nothing_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "down", "--name", "nothing-here"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "no offline cluster named 'nothing-here'; nothing to do\n"


def test_cluster_down_removes_leftover_files(clusters: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leftover = clusters / "half"
    (leftover / "logs").mkdir(parents=True)
    assert cli.main(["cluster", "down", "--name", "half"]) == 0
    assert not leftover.exists()
    assert capsys.readouterr().err == "cluster 'half' removed\n"


def test_cluster_status_absent(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "status", "--name", "x"]) == 6
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == {
        "name": "x", "exists": False, "processes": 0, "components": {}, "healthy": False,
        "kubeconfig": str(offline.kwok_workdir() / "clusters" / "x" / "kubeconfig.yaml"),
    }


def test_cluster_status_present_reads_spec(clusters: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = clusters / "x"
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps({"gpu_nodes": 3, "vm_size": "Standard_NC6s_v3"}))
    assert cli.main(["cluster", "status", "--name", "x"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["exists"], info["gpu_nodes"], info["vm_size"]) == (True, 3, "Standard_NC6s_v3")


def test_interrupt_is_one_line_and_2(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(self: offline.OfflineCluster) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(offline.OfflineCluster, "status", interrupted)
    assert cli.main(["cluster", "status", "--name", "interrupted"]) == 2
    assert capsys.readouterr().err == "gpu-conformance: interrupted\n"


def test_unexpected_error_is_one_line_without_traceback(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(self: offline.OfflineCluster) -> None:
        raise RuntimeError("boom\n  at line 2")

    monkeypatch.setattr(offline.OfflineCluster, "status", broken)
    assert cli.main(["cluster", "status", "--name", "broken"]) == 3
    assert capsys.readouterr().err == ("gpu-conformance: internal error: RuntimeError: boom "
                                       "(GPU_CONFORMANCE_DEBUG=1 shows the traceback)\n")
