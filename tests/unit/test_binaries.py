"""gpu_conformance.binaries: lookup order and a clear error without Go; nothing is built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_conformance import binaries
from gpu_conformance.errors import ToolchainError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, an empty PATH and no GPU_CONFORMANCE_<PROGRAM> variables."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GPU_CONFORMANCE_CACHE", str(cache))
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("GOROOT", raising=False)
    monkeypatch.setattr(binaries, "GO_LOCATIONS", [])
    for program in binaries.PROGRAMS:
        monkeypatch.delenv(binaries.env_var(program), raising=False)
    return cache


def executable(path: Path, text: str = "#!/bin/sh\necho fake\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_env_var_names() -> None:
    assert binaries.env_var("kube-apiserver") == "GPU_CONFORMANCE_KUBE_APISERVER"
    assert binaries.env_var("etcd") == "GPU_CONFORMANCE_ETCD"


def test_find_honours_the_program_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = executable(tmp_path / "bin" / "my-apiserver")
    monkeypatch.setenv("GPU_CONFORMANCE_KUBE_APISERVER", str(fake))
    assert binaries.find("kube-apiserver") == fake
    assert binaries.find("kube-scheduler") is None


def test_find_env_var_wins_over_cache(tmp_path: Path, isolated: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    executable(isolated / f"etcd-{binaries.ETCD_VERSION}" / "etcd")
    fake = executable(tmp_path / "etcd-override")
    monkeypatch.setenv("GPU_CONFORMANCE_ETCD", str(fake))
    assert binaries.find("etcd") == fake


def test_find_rejects_a_non_executable_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "kwok"
    plain.write_text("not a program")
    monkeypatch.setenv("GPU_CONFORMANCE_KWOK", str(plain))
    with pytest.raises(ToolchainError) as info:
        binaries.find("kwok")
    assert str(info.value) == f"GPU_CONFORMANCE_KWOK={plain} is not an executable file"


def test_find_rejects_a_missing_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_CONFORMANCE_KWOKCTL", str(tmp_path / "nope"))
    with pytest.raises(ToolchainError) as info:
        binaries.find("kwokctl")
    assert str(info.value) == f"GPU_CONFORMANCE_KWOKCTL={tmp_path / 'nope'} is not an executable file"


def test_find_in_cache_by_family_version(isolated: Path) -> None:
    cached = executable(isolated / f"kubernetes-{binaries.KUBERNETES_VERSION}" / "kubectl")
    assert binaries.find("kubectl") == cached
    executable(isolated / "kwok-v0.0.1" / "kwok")
    assert binaries.find("kwok") is None


def test_cache_dir_defaults_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GPU_CONFORMANCE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert binaries.cache_dir() == tmp_path / ".cache" / "gpu-conformance"


def test_find_on_path_only_with_the_pinned_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "path-bin"
    version = binaries.ETCD_VERSION.lstrip("v")
    etcd = executable(bin_dir / "etcd", f"#!/bin/sh\necho 'etcd Version: {version}'\n")
    executable(bin_dir / "kwok", "#!/bin/sh\necho 'kwok version v0.1.0'\n")
    executable(bin_dir / "kubectl", "#!/bin/sh\necho whatever\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert binaries.find("etcd") == etcd
    assert binaries.find("kwok") is None
    assert binaries.find("kubectl") is None


def test_kubernetes_ldflags_stamp_version_for_component_base_and_client_go() -> None:
    family = binaries.PROGRAMS["kube-apiserver"]
    flags = family.ldflags().split(" -X ")
    assert flags[0] == "-s -w"
    minor = binaries.KUBERNETES_VERSION.split(".")[1]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"{pkg}.gitVersion={binaries.KUBERNETES_VERSION}" in flags
        assert f"{pkg}.gitMajor=1" in flags
        assert f"{pkg}.gitMinor={minor}" in flags
        assert f"{pkg}.gitTreeState=clean" in flags
    assert len(flags) == 9


def test_ldflags_for_a_given_version() -> None:
    family = binaries.Family("kubernetes", "v1.2.3", "kube", {})
    assert "-X k8s.io/client-go/pkg/version.gitVersion=v1.2.3" in family.ldflags()
    assert "-X k8s.io/component-base/version.gitMinor=2" in family.ldflags()


def test_other_families_are_not_stamped() -> None:
    assert binaries.PROGRAMS["etcd"].ldflags() == "-s -w"
    assert binaries.PROGRAMS["kwokctl"].cache_key == f"kwok-{binaries.KWOK_VERSION}"


def test_ensure_without_go_says_go_is_not_installed(isolated: Path) -> None:
    said: list[str] = []
    with pytest.raises(ToolchainError) as info:
        binaries.ensure(said.append)
    assert str(info.value) == ("Go is not installed, and the offline cluster's programs are built "
                               "from Go modules")
    assert "GPU_CONFORMANCE_<PROGRAM>" in info.value.one_line()
    assert said == []
    assert [p.name for p in isolated.iterdir()] == [".build.lock"]


def test_go_is_found_outside_path(isolated: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A short PATH (cron, CI) still finds Go where it installs itself."""
    go = executable(tmp_path / "goroot" / "bin" / "go")
    monkeypatch.setattr(binaries, "GO_LOCATIONS", [str(go)])
    assert binaries._go() == str(go)


def test_ensure_returns_found_programs_without_building(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for program in binaries.PROGRAMS:
        monkeypatch.setenv(binaries.env_var(program), str(executable(tmp_path / "bin" / program)))
    paths = binaries.ensure(pytest.fail)
    assert paths == {p: tmp_path / "bin" / p for p in binaries.PROGRAMS}
    assert not (tmp_path / "cache").exists()
    assert os.access(paths["kwokctl"], os.X_OK)
