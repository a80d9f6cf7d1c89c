"""The real node's configuration choices, checked without starting anything."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gpu_conformance.errors import UsageError
from gpu_conformance.realnode import cdi
from gpu_conformance.realnode import config as cfg

LAYOUT = cfg.Layout(Path("/work/n1"), Path("/var/lib/kubelet"))


def kubelet(**overrides: object) -> dict[str, object]:
    settings = cfg.KubeletSettings(node_name="127.0.0.1", port=10250, healthz_port=10248,
                                   ca_file=Path("/pki/ca.crt"), serving_cert=Path("/pki/s.crt"),
                                   serving_key=Path("/pki/s.key"), cgroup_v1=False)
    for key, value in overrides.items():
        object.__setattr__(settings, key, value)
    return dict(json.loads(cfg.kubelet_config(LAYOUT, settings)))


@pytest.mark.parametrize("name", ["127.0.0.1", "127.0.0.2", "127.1.2.3"])
def test_loopback_ips_are_node_names(name: str) -> None:
    assert str(cfg.check_node_name(name)) == name


@pytest.mark.parametrize("name", ["node-1", "10.0.0.1", "::1", "localhost"])
def test_other_node_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        cfg.check_node_name(name)


def test_the_kubelet_is_told_to_run_on_cgroup_v1_only_there() -> None:
    assert "failCgroupV1" not in kubelet()
    assert kubelet(cgroup_v1=True)["failCgroupV1"] is False


def test_the_kubelet_listens_on_its_node_ip_and_checks_clients_by_default() -> None:
    config = kubelet()
    assert config["address"] == "127.0.0.1" and config["readOnlyPort"] == 0
    assert config["authorization"] == {"mode": "Webhook"}
    assert config["authentication"]["anonymous"] == {"enabled": False}  # type: ignore[index]
    assert config["cgroupDriver"] == "cgroupfs" and config["failSwapOn"] is False
    assert config["imageGCHighThresholdPercent"] == 100
    assert config["containerRuntimeEndpoint"] == f"unix://{LAYOUT.containerd_socket}"
    anonymous = kubelet(anonymous_api=True)
    assert anonymous["authorization"] == {"mode": "AlwaysAllow"}


def test_containerd_keeps_everything_under_the_work_and_run_dirs() -> None:
    settings = cfg.ContainerdSettings(runc=Path("/b/runc"), cni_bin_dir=Path("/b"),
                                      restrict_oom_score_adj=True,
                                      runtime_binary=Path("/b/nvidia-container-runtime"))
    parsed = tomllib.loads(cfg.containerd_config(LAYOUT, settings))
    assert parsed["version"] == 4 and parsed["imports"] == []
    assert parsed["root"].startswith("/work/n1/") and parsed["state"].startswith("/work/n1/")
    plugins = parsed["plugins"]
    assert plugins["io.containerd.server.v1.grpc"]["address"] == str(LAYOUT.containerd_socket)
    assert len(str(LAYOUT.shim_socket_dir)) + 65 < 108  # a shim socket path fits sun_path
    assert plugins["io.containerd.nri.v1.nri"]["disable"] is True
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == cfg.PAUSE_IMAGE
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True and runtime["netns_mounts_under_state_dir"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["BinaryName"] == "/b/nvidia-container-runtime" and runc["SystemdCgroup"] is False
    assert runtime["cni"]["conf_dir"] == str(LAYOUT.cni_conf_dir)


def test_the_pod_network_needs_no_iptables_or_forwarding() -> None:
    [plugin] = json.loads(cfg.cni_conflist(LAYOUT))["plugins"]
    assert plugin["type"] == "bridge" and plugin["ipMasq"] is False and plugin["isGateway"] is False
    assert plugin["ipam"]["dataDir"].startswith("/work/n1/")
    with pytest.raises(UsageError):
        cfg.cni_conflist(LAYOUT, subnet="8.8.8.0/24")


def test_the_nvidia_runtime_runs_in_cdi_mode_over_our_runc() -> None:
    parsed = tomllib.loads(cfg.nvidia_runtime_config(Path("/b/runc"), (Path("/cdi"),), Path("/l.log")))
    assert parsed["nvidia-container-runtime"]["mode"] == "cdi"
    assert parsed["nvidia-container-runtime"]["runtimes"] == ["/b/runc"]
    assert parsed["nvidia-container-runtime"]["modes"]["cdi"]["spec-dirs"] == ["/cdi"]


def test_the_fake_cdi_spec_has_each_device_and_all(tmp_path: Path) -> None:
    spec = json.loads(cdi.write_fake_spec(tmp_path, 2, "fake-gpu-", None).read_text())
    assert spec["kind"] == "nvidia.com/gpu"
    assert [d["name"] for d in spec["devices"]] == ["fake-gpu-0", "fake-gpu-1", "all"]
    assert len(spec["devices"][-1]["containerEdits"]["mounts"]) == 2


# --- a kubelet root a killed real node left -----------------------------------------------

def _node_with_root(tmp_path: Path) -> tuple[Any, Path]:
    from gpu_conformance.realnode.node import RealNode, RealNodeSpec

    root = tmp_path / "kubelet"
    (root / "device-plugins").mkdir(parents=True)
    (root / "device-plugins" / "kubelet_internal_checkpoint").write_text(
        '{"Data":{"RegisteredDevices":{"nvidia.com/gpu":["gpu-0","gpu-1"]}}}')
    return RealNode(RealNodeSpec(work_dir=tmp_path / "work", kubelet_root=root)), root


def test_a_kubelet_root_a_killed_node_of_ours_left_is_cleared(tmp_path: Path) -> None:
    from gpu_conformance.realnode.node import KUBELET_ROOT_MARKER

    node, root = _node_with_root(tmp_path)
    (root / KUBELET_ROOT_MARKER).write_text("/old/work\n")
    said: list[str] = []
    node._clear_stale_kubelet_root(said.append)
    assert not root.exists()
    assert said == [f"removing {root}: a real node that was killed before its down left it"]


def test_a_kubelet_root_without_our_marker_is_never_touched(tmp_path: Path) -> None:
    node, root = _node_with_root(tmp_path)
    node._clear_stale_kubelet_root(lambda _line: None)
    assert (root / "device-plugins" / "kubelet_internal_checkpoint").is_file()
