"""Without a container engine the kind backend stops first, with one clear line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gpu_conformance.backends import kind
from gpu_conformance.backends.kind import docker
from gpu_conformance.errors import ClusterError

DAEMON_DOWN = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
               "Is the docker daemon running?")


def _fake_docker(bin_dir: Path, script: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / "docker"
    program.write_text("#!/bin/sh\n" + script + "\n")
    program.chmod(0o755)
    return program


@pytest.fixture
def path_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only an empty folder (plus sh for the fake programs' shebang)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("KIND_EXPERIMENTAL_PROVIDER", raising=False)
    return bin_dir


def _line(error: pytest.ExceptionInfo[ClusterError]) -> str:
    line = error.value.one_line()
    assert "\n" not in line
    return line


def test_no_docker_program(path_only: Path) -> None:
    with pytest.raises(ClusterError) as error:
        docker.require_container_engine()
    assert _line(error).startswith("kind needs a Docker engine: no `docker` program on PATH")


def test_docker_cli_without_engine(path_only: Path) -> None:
    _fake_docker(path_only, f'echo "Client: Docker Engine"\necho "{DAEMON_DOWN}" >&2\nexit 1')
    with pytest.raises(ClusterError) as error:
        docker.require_container_engine()
    assert f"`docker info` failed: {DAEMON_DOWN}" in _line(error)
    assert "--backend kwok" in _line(error)


def test_docker_that_hangs(path_only: Path) -> None:
    sleep = shutil.which("sleep", path="/usr/bin:/bin")
    assert sleep
    _fake_docker(path_only, f"exec {sleep} 30")
    with pytest.raises(ClusterError) as error:
        docker.require_container_engine(timeout_s=0.5)
    assert "did not answer within 0.5s" in _line(error)


def test_running_engine_reports_its_version(path_only: Path) -> None:
    _fake_docker(path_only, 'echo "27.3.1"')
    assert docker.require_container_engine() == "27.3.1"


def test_kind_provider_variable_is_checked_instead(path_only: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIND_EXPERIMENTAL_PROVIDER", "podman")
    _fake_docker(path_only, 'echo "27.3.1"')
    with pytest.raises(ClusterError, match="no `podman` program on PATH"):
        docker.require_container_engine()


def test_this_machine() -> None:
    """The real docker CLI here has no engine behind it (skipped where one runs)."""
    program = shutil.which("docker")
    if program and subprocess.run([program, "info"], capture_output=True, timeout=30,
                                 check=False).returncode == 0:
        pytest.skip("a Docker engine runs here")
    with pytest.raises(ClusterError, match=r"^kind needs a Docker engine"):
        docker.require_container_engine()


def test_up_checks_docker_before_anything_else(
    path_only: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    made: list[object] = []
    backend = kind.KindBackend(kind.KindSettings(cluster_name="c"),
                               cluster_factory=lambda *a, **k: made.append(a))
    logged: list[str] = []
    with pytest.raises(ClusterError, match="kind needs a Docker engine"):
        backend.up(logged.append)
    assert made == []
    assert not (tmp_path / ".pytest-kind").exists()
    backend.down(logged.append, keep=False)  # safe after a failed up, and deletes nothing
    assert logged == []
