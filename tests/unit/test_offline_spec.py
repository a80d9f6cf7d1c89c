"""The offline cluster's pure parts: spec validation, the simulated SKU, CRI logs, node manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_conformance import gpus, nodes
from gpu_conformance.errors import UsageError
from gpu_conformance.offline import OfflineClusterSpec, _to_cri

# --- validate ----------------------------------------------------------------------------------

def test_defaults_are_valid() -> None:
    OfflineClusterSpec().validate()
    OfflineClusterSpec(name="a", gpu_nodes=0, gpus_per_node=64, port=65535).validate()
    OfflineClusterSpec(name="a" * 40, gpu_nodes=200, gpus_per_node=1, port=1).validate()


@pytest.mark.parametrize(("changes", "message"), [
    ({"name": "Foo_Bar"}, "bad cluster name 'Foo_Bar': use lowercase letters, digits and '-' (max 40)"),
    ({"name": "-lead"}, "bad cluster name '-lead': use lowercase letters, digits and '-' (max 40)"),
    ({"name": "trail-"}, "bad cluster name 'trail-': use lowercase letters, digits and '-' (max 40)"),
    ({"name": "a" * 41}, f"bad cluster name {'a' * 41!r}: use lowercase letters, digits and '-' (max 40)"),
    ({"name": ""}, "bad cluster name '': use lowercase letters, digits and '-' (max 40)"),
    ({"gpu_nodes": -1}, "--gpu-nodes must be between 0 and 5000, got -1"),
    ({"gpu_nodes": 5001}, "--gpu-nodes must be between 0 and 5000, got 5001"),
    ({"gpus_per_node": 0}, "--gpus-per-node must be between 1 and 64, got 0"),
    ({"gpus_per_node": 65}, "--gpus-per-node must be between 1 and 64, got 65"),
    ({"port": 0}, "--port must be between 1 and 65535, got 0"),
    ({"port": 65536}, "--port must be between 1 and 65535, got 65536"),
    ({"node": "virtual"}, "--node must be 'simulated' or 'real', got 'virtual'"),
    ({"real_gpus": "amd"}, "--real-gpus must be 'fake' or 'nvidia', got 'amd'"),
])
def test_validate_rejects(changes: dict[str, object], message: str) -> None:
    spec = OfflineClusterSpec(**changes)  # type: ignore[arg-type]
    with pytest.raises(UsageError) as info:
        spec.validate()
    assert str(info.value) == message


def test_validate_job_log_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=rf"^--job-log {tmp_path} does not exist$"):
        OfflineClusterSpec(job_log=tmp_path).validate()
    log = tmp_path / "job.log"
    log.write_text("name: Tesla T4\n")
    OfflineClusterSpec(job_log=log).validate()


# --- sku -----------------------------------------------------------------------------------------

def test_sku_default_is_the_t4_size() -> None:
    sku = OfflineClusterSpec().sku()
    assert (sku.vm_size, sku.device_name, sku.count) == ("Standard_NC4as_T4_v3", "Tesla T4", 1)


@pytest.mark.parametrize(("product", "vm_size", "device"), [
    ("Tesla T4", "Standard_NC4as_T4_v3", "Tesla T4"),
    ("NVIDIA-H100-80GB-HBM3", "Standard_ND96isr_H100_v5", "NVIDIA H100 80GB HBM3"),
    ("standard_nd96isr_h200_v5", "Standard_ND96isr_H200_v5", "NVIDIA H200"),
    ("Tesla-K80", "Standard_NC6", "Tesla K80"),
])
def test_sku_from_device_name_product_label_or_vm_size(product: str, vm_size: str, device: str) -> None:
    sku = OfflineClusterSpec(gpu_product=product).sku()
    assert (sku.vm_size, sku.device_name) == (vm_size, device)


def test_sku_unlisted_product_only_when_asked_for_explicitly() -> None:
    sku = OfflineClusterSpec(gpu_product="custom:NVIDIA-B200").sku()
    assert sku == gpus.GpuSku("Standard_NC4as_T4_v3", "NVIDIA B200", 1, 15360)
    assert sku.product_label == "NVIDIA-B200"
    with pytest.raises(UsageError, match=r"^unknown GPU product 'NVIDIA-B200'; known: .*NVIDIA H200"):
        OfflineClusterSpec(gpu_product="NVIDIA-B200").sku()


# --- _to_cri -------------------------------------------------------------------------------------

def test_to_cri_converts_plain_lines() -> None:
    assert _to_cri("name: Tesla T4\n\nPASSED") == (
        "2026-01-01T00:00:00.000000000Z stdout F name: Tesla T4\n"
        "2026-01-01T00:00:00.000000000Z stdout F \n"
        "2026-01-01T00:00:00.000000000Z stdout F PASSED\n"
    )


def test_to_cri_keeps_cri_input_and_ends_it_with_newline() -> None:
    cri = "2025-06-01T10:00:00.123Z stderr F oops\n2025-06-01T10:00:01.000Z stdout P part"
    assert _to_cri(cri) == cri + "\n"
    assert _to_cri(cri + "\n") == cri + "\n"


def test_to_cri_empty() -> None:
    assert _to_cri("") == ""


# --- nodes ---------------------------------------------------------------------------------------

def test_gpu_node_manifest() -> None:
    sku = gpus.VM_SIZES["standard_nc64as_t4_v3"]
    manifest = nodes.gpu_node("aks-gpu-00000000", sku, 4, healthy=3, taints=[dict(nodes.GPU_TAINT)])
    labels = manifest["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "aks-gpu-00000000"
    assert labels[nodes.SIMULATED_LABEL] == "true"
    assert {k: labels[k] for k in (gpus.INSTANCE_TYPE_LABEL, gpus.LEGACY_INSTANCE_TYPE_LABEL,
                                   gpus.AKS_ACCELERATOR_LABEL, gpus.ACCELERATOR_LABEL,
                                   gpus.PRODUCT_LABEL, gpus.COUNT_LABEL, gpus.MEMORY_LABEL,
                                   gpus.PRESENT_LABEL, gpus.AKS_AGENTPOOL_LABEL)} == {
        gpus.INSTANCE_TYPE_LABEL: "Standard_NC64as_T4_v3",
        gpus.LEGACY_INSTANCE_TYPE_LABEL: "Standard_NC64as_T4_v3",
        gpus.AKS_ACCELERATOR_LABEL: "nvidia",
        gpus.ACCELERATOR_LABEL: "nvidia",
        gpus.PRODUCT_LABEL: "Tesla-T4",
        gpus.COUNT_LABEL: "4",
        gpus.MEMORY_LABEL: "15360",
        gpus.PRESENT_LABEL: "true",
        gpus.AKS_AGENTPOOL_LABEL: "gpu",
    }
    assert manifest["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert manifest["status"]["capacity"][gpus.GPU_RESOURCE] == "4"
    assert manifest["status"]["allocatable"][gpus.GPU_RESOURCE] == "3"
    assert manifest["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]


def test_gpu_node_defaults_healthy_and_untainted() -> None:
    manifest = nodes.gpu_node("n", gpus.VM_SIZES["standard_nc4as_t4_v3"], 2)
    assert manifest["status"]["allocatable"][gpus.GPU_RESOURCE] == "2"
    assert manifest["spec"]["taints"] == []


def test_gpu_node_labels_are_what_the_checks_expect() -> None:
    sku = gpus.VM_SIZES["standard_nc64as_t4_v3"]
    labels = nodes.gpu_node_labels(sku, 2)
    assert gpus.looks_like_gpu_node(labels, None) == "label accelerator=nvidia"
    assert gpus.expected_gpu_count(labels) == 2
    assert gpus.expected_gpu(labels).display == "Tesla T4"


def test_system_node_has_no_gpu() -> None:
    manifest = nodes.system_node("aks-system-00000000")
    assert gpus.GPU_RESOURCE not in manifest["status"]["capacity"]
    assert gpus.looks_like_gpu_node(manifest["metadata"]["labels"], manifest["status"]["capacity"]) is None


# --- the real node -------------------------------------------------------------------------------

def test_a_real_node_cluster_tells_kwok_to_manage_only_the_simulated_nodes() -> None:
    """kwok's controller manages every node by default and would fight the real kubelet over
    the node's status and its pods; simulated nodes carry the annotation it then selects."""
    from gpu_conformance.offline import OfflineCluster

    assert "kwok-controller" not in OfflineCluster(OfflineClusterSpec(name="a")).component_args()
    args = OfflineCluster(OfflineClusterSpec(name="a", node="real")).component_args()
    assert args["kwok-controller"] == [
        ("manage-all-nodes", "false"),
        ("manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake")]
    simulated = nodes.gpu_node("aks-gpu-00000000", gpus.resolve_product(None), 1)
    assert simulated["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_component_flags_go_to_kwokctl_as_components_patches(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Not --extra-args: kwokctl v0.8.0 indexes a repeated component's patch by the flag's
    position and panics ("index out of range [7] with length 4", seen with --node real)."""
    import yaml

    from gpu_conformance.offline import OfflineCluster

    monkeypatch.setenv("GPU_CONFORMANCE_STATE", str(tmp_path))
    cluster = OfflineCluster(OfflineClusterSpec(name="a", node="real"))
    cluster.dir.mkdir(parents=True)
    paths = {p: tmp_path / p for p in ("kube-apiserver", "kube-controller-manager", "kube-scheduler",
                                       "kubectl", "etcd", "kwok")}
    config = list(yaml.safe_load_all(cluster._write_config(paths, gpus.resolve_product(None)).read_text()))
    patches = {p["name"]: p["extraArgs"] for p in config[0]["componentsPatches"]}
    assert {"key": "leader-elect", "value": "false"} in patches["kube-controller-manager"]
    assert {"key": "kube-api-qps", "value": "200"} in patches["kube-scheduler"]
    assert {"key": "manage-all-nodes", "value": "false"} in patches["kwok-controller"]


@pytest.mark.parametrize(("given", "expected"), [({}, (0, "real")), ({"gpu_nodes": 3}, (3, "real"))])
def test_the_kwok_backend_with_a_real_node_adds_simulated_gpu_nodes_only_when_asked(
        given: dict[str, object], expected: tuple[int, str]) -> None:
    from gpu_conformance.backends import kwok
    from gpu_conformance.settings import Settings

    settings = Settings.from_mapping({"node": "real", **given}, env={})
    backend = kwok.create(settings, "run")
    assert (backend.cluster.spec.gpu_nodes, backend.cluster.spec.node) == expected
    assert backend.cluster.spec.real_gpus == "fake"
    assert kwok.create(Settings.from_mapping({}, env={}), "run").cluster.spec.gpu_nodes == 2


def test_nvidia_gpus_on_a_host_without_them_is_one_clear_error(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from gpu_conformance.errors import ClusterError
    from gpu_conformance.offline import OfflineCluster

    if Path("/dev/nvidiactl").exists():
        pytest.skip("this host has NVIDIA GPUs")
    monkeypatch.setenv("GPU_CONFORMANCE_DRIVER_ROOT", str(tmp_path / "none"))
    cluster = OfflineCluster(OfflineClusterSpec(name="a", node="real", real_gpus="nvidia"))
    with pytest.raises(ClusterError, match=r"--real-gpus nvidia needs an NVIDIA GPU host") as info:
        cluster._nvidia_node_inputs(lambda _line: None)
    assert info.value.hint == "on a host without GPUs use --real-gpus fake"


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"gpu_sharing": "mig-single"}, "Tesla T4 has no MIG"),
    ({"gpu_sharing": "mig-mixed", "gpu_product": "Standard_NC24ads_A100_v4",
      "unhealthy": {"aks-gpu-00000000": 0}}, "--unhealthy works with whole GPUs only"),
    ({"gpu_sharing": "mps"}, "must be one of none, mig-single, mig-mixed, time-slicing"),
])
def test_gpu_sharing_mistakes_are_one_line(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError, match=words) as raised:
        OfflineClusterSpec(**kwargs).validate()  # type: ignore[arg-type]
    assert "\n" not in raised.value.one_line()


@pytest.mark.parametrize(("sharing", "product", "label", "offered"), [
    ("mig-single", "Standard_ND96isr_H200_v5", "NVIDIA-H200-MIG-1g.18gb",
     {"nvidia.com/gpu": "14"}),
    ("mig-mixed", "Standard_NC24ads_A100_v4", "NVIDIA-A100-80GB-PCIe",
     {"nvidia.com/gpu": "0", "nvidia.com/mig-1g.10gb": "4", "nvidia.com/mig-2g.20gb": "2",
      "nvidia.com/mig-3g.40gb": "2"}),
    ("time-slicing", None, "Tesla-T4-SHARED", {"nvidia.com/gpu": "8"}),
])
def test_shared_gpu_nodes_carry_gfd_labels_and_offer_their_resources(
        sharing: str, product: str | None, label: str, offered: dict[str, str]) -> None:
    spec = OfflineClusterSpec(gpu_sharing=sharing, gpu_product=product, gpus_per_node=2)
    spec.validate()
    shared = spec.shared_node()
    assert shared is not None
    manifest = nodes.gpu_node("n", spec.sku(), 2, plugin_managed=False, shared=shared)
    assert manifest["metadata"]["labels"][gpus.PRODUCT_LABEL] == label
    assert {r: v for r, v in manifest["status"]["capacity"].items()
            if r.startswith("nvidia.com/")} == offered


@pytest.mark.parametrize(("nodes", "bound"), [(3, 60.0), (500, 60.0), (2001, 240.12),
                                              (5001, 600.12)])
def test_the_nodes_ready_bound_grows_with_the_nodes_created(nodes: int, bound: float) -> None:
    from gpu_conformance.offline import nodes_ready_bound

    assert nodes_ready_bound(60, nodes) == pytest.approx(bound)
