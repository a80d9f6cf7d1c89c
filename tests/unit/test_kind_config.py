"""The generated kind config: shape, labels a kubelet accepts, the optional GPU taint."""

from __future__ import annotations

import re

import pytest
import yaml

from gpu_conformance import gpus
from gpu_conformance.backends.kind import config as kind
from gpu_conformance.errors import UsageError
from gpu_conformance.nodes import GPU_TAINT, SIMULATED_LABEL

T4 = gpus.VM_SIZES[gpus.DEFAULT_VM_SIZE.lower()]
H100 = gpus.VM_SIZES["standard_nc80adis_h100_v5"]

# What a kubelet accepts in --node-labels within the kubernetes.io / k8s.io namespaces
# (k8s.io/kubelet well-known labels); anything else there makes the kubelet refuse to start.
KUBELET_ALLOWED = {
    "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
    "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
}
_RESTRICTED = re.compile(r"(^|\.)(kubernetes\.io|k8s\.io)$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def test_one_control_plane_and_n_labelled_workers() -> None:
    config = kind.kind_config(3, T4, 1)
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker", "worker"]
    assert "labels" not in config["nodes"][0]
    for worker in config["nodes"][1:]:
        labels = worker["labels"]
        assert labels[gpus.PRODUCT_LABEL] == "Tesla-T4"
        assert labels[gpus.INSTANCE_TYPE_LABEL] == gpus.DEFAULT_VM_SIZE
        assert labels[gpus.COUNT_LABEL] == "1"
        assert labels[SIMULATED_LABEL] == "true"
        assert "kubeadmConfigPatches" not in worker


def test_labels_leave_os_and_arch_to_the_kubelet() -> None:
    labels = kind.kind_config(1, T4, 1)["nodes"][1]["labels"]
    assert "kubernetes.io/arch" not in labels
    assert "kubernetes.io/os" not in labels


@pytest.mark.parametrize("sku", [T4, H100], ids=lambda s: s.vm_size)
def test_every_label_is_one_a_kubelet_may_register_with(sku: gpus.GpuSku) -> None:
    labels = kind.kind_config(1, sku, 2)["nodes"][1]["labels"]
    for key, value in labels.items():
        namespace = key.partition("/")[0] if "/" in key else ""
        if _RESTRICTED.search(namespace):
            assert key in KUBELET_ALLOWED or namespace.endswith(
                ("kubelet.kubernetes.io", "node.kubernetes.io")), key
        assert isinstance(value, str) and _LABEL_VALUE.match(value), (key, value)


def test_workers_are_judged_as_the_configured_gpu() -> None:
    labels = kind.kind_config(2, H100, 2)["nodes"][1]["labels"]
    assert gpus.looks_like_gpu_node(labels, None)
    assert gpus.expected_gpu(labels).display == H100.device_name
    assert gpus.expected_gpu_count(labels) == 2


def test_gpu_taint_is_a_join_configuration_patch() -> None:
    config = kind.kind_config(2, T4, 1, taint=True)
    for worker in config["nodes"][1:]:
        (patch,) = worker["kubeadmConfigPatches"]
        assert yaml.safe_load(patch) == {
            "kind": "JoinConfiguration",
            "nodeRegistration": {"taints": [GPU_TAINT]},
        }
    assert "kubeadmConfigPatches" not in config["nodes"][0]


def test_yaml_is_the_same_config() -> None:
    text = kind.kind_config_yaml(2, T4, 1, taint=True)
    assert yaml.safe_load(text) == kind.kind_config(2, T4, 1, taint=True)
    assert text.startswith("kind: Cluster\n")


def test_no_workers_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="at least 1 worker"):
        kind.kind_config(0, T4, 1)
