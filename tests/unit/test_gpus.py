"""gpu_conformance.gpus: device names, expected GPU, GPU-node detection."""

from __future__ import annotations

import pytest

from gpu_conformance import gpus
from gpu_conformance.gpus import ExpectedGpu

T4_SIZE = "Standard_NC4as_T4_v3"


@pytest.mark.parametrize("name", [
    "Tesla T4", "tesla t4", "Tesla-T4", "Tesla-T4-SHARED", "  Tesla_T4  ", "TESLA-T4-shared",
])
def test_normalize_device_name_spellings_compare_equal(name: str) -> None:
    assert gpus.normalize_device_name(name) == "tesla t4"


def test_normalize_strips_mig_profile_and_shared_suffixes() -> None:
    assert gpus.normalize_device_name("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb") == "nvidia a100 sxm4 40gb"
    assert gpus.normalize_device_name("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb-SHARED") == "nvidia a100 sxm4 40gb"


def test_normalize_keeps_distinguishing_words() -> None:
    assert gpus.normalize_device_name("NVIDIA A100 80GB PCIe") == "nvidia a100 80gb pcie"
    assert gpus.normalize_device_name("Tesla V100-PCIE-16GB") == "tesla v100 pcie 16gb"


# --- expected_gpu precedence -------------------------------------------------------------------

ALL_SOURCES = {
    gpus.PRODUCT_LABEL: "NVIDIA-H100-NVL",
    gpus.INSTANCE_TYPE_LABEL: T4_SIZE,
}


def test_override_wins_over_everything() -> None:
    assert gpus.expected_gpu(ALL_SOURCES, override="Tesla K80") == ExpectedGpu(
        "Tesla K80", "--expect-gpu", "Tesla K80")


def test_product_label_wins_over_vm_size() -> None:
    expected = gpus.expected_gpu(ALL_SOURCES)
    assert (expected.display, expected.source) == ("NVIDIA H100 NVL",
                                                   "label nvidia.com/gpu.product=NVIDIA-H100-NVL")


def test_unknown_product_label_is_displayed_with_spaces() -> None:
    expected = gpus.expected_gpu({gpus.PRODUCT_LABEL: "NVIDIA-B200-SHARED"})
    assert expected.display == "NVIDIA B200"
    assert expected.matches("NVIDIA B200")


def test_vm_size_wins_over_default() -> None:
    expected = gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: "standard_nc24ads_a100_v4"})
    assert expected.display == "NVIDIA A100 80GB PCIe"
    assert expected.source == "VM size Standard_NC24ads_A100_v4"


def test_legacy_instance_type_label_is_used() -> None:
    expected = gpus.expected_gpu({gpus.LEGACY_INSTANCE_TYPE_LABEL: "Standard_NC6s_v3"})
    assert expected.display == "Tesla V100-PCIE-16GB"


@pytest.mark.parametrize("labels", [None, {}, {gpus.INSTANCE_TYPE_LABEL: "Standard_D4s_v5"}])
def test_default_matches_any_nvidia_device(labels: dict[str, str] | None) -> None:
    expected = gpus.expected_gpu(labels)
    assert (expected.source, expected.display) == ("default", "Tesla|NVIDIA")
    assert expected.matches("Tesla K80")
    assert expected.matches("NVIDIA H200")
    assert not expected.matches("AMD Instinct MI300X")


# --- ExpectedGpu.matches -----------------------------------------------------------------------

def test_tesla_t4_matches_its_shared_product_label_both_ways() -> None:
    from_size = gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: T4_SIZE})
    from_label = gpus.expected_gpu({gpus.PRODUCT_LABEL: "Tesla-T4-SHARED"})
    assert from_label.display == "Tesla T4"
    for expected in (from_size, from_label):
        assert expected.matches("Tesla T4")
        assert expected.matches("Tesla-T4-SHARED")
        assert expected.matches("tesla t4")


def test_mig_product_label_matches_the_parent_gpu() -> None:
    expected = gpus.expected_gpu({gpus.PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"})
    assert expected.display == "NVIDIA A100-SXM4-40GB"
    assert expected.matches("NVIDIA A100-SXM4-40GB")
    assert expected.matches("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb")
    assert not expected.matches("NVIDIA A100-SXM4-80GB")


def test_mig_device_name_as_cuda_prints_it_matches() -> None:
    expected = gpus.expected_gpu({gpus.PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"})
    assert expected.matches("NVIDIA A100-SXM4-40GB MIG 1g.5gb")


@pytest.mark.parametrize("device", ["Tesla K80", "Tesla T4G", "NVIDIA T4", "Tesla V100-PCIE-16GB"])
def test_wrong_gpu_does_not_match(device: str) -> None:
    assert not gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: T4_SIZE}).matches(device)


def test_similar_a100_variants_do_not_match_each_other() -> None:
    pcie = gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: "Standard_NC24ads_A100_v4"})
    assert pcie.matches("NVIDIA A100 80GB PCIe")
    assert not pcie.matches("NVIDIA A100-SXM4-80GB")


# --- counts and detection ----------------------------------------------------------------------

def test_expected_gpu_count() -> None:
    assert gpus.expected_gpu_count({gpus.INSTANCE_TYPE_LABEL: "Standard_NC64as_T4_v3"}) == 4
    assert gpus.expected_gpu_count({gpus.INSTANCE_TYPE_LABEL: "Standard_ND96isr_H200_v5"}) == 8
    assert gpus.expected_gpu_count({gpus.INSTANCE_TYPE_LABEL: T4_SIZE, gpus.COUNT_LABEL: "2"}) == 2
    assert gpus.expected_gpu_count({gpus.INSTANCE_TYPE_LABEL: T4_SIZE, gpus.COUNT_LABEL: "two"}) == 1
    assert gpus.expected_gpu_count({gpus.INSTANCE_TYPE_LABEL: "Standard_D4s_v5"}) is None
    assert gpus.expected_gpu_count(None) is None


@pytest.mark.parametrize(("labels", "capacity", "why"), [
    ({"accelerator": "nvidia"}, None, "label accelerator=nvidia"),
    ({gpus.AKS_ACCELERATOR_LABEL: "Nvidia"}, None, "label kubernetes.azure.com/accelerator=nvidia"),
    ({gpus.PRESENT_LABEL: "True"}, None, "label nvidia.com/gpu.present=true"),
    ({gpus.INSTANCE_TYPE_LABEL: "Standard_NC6s_v3"}, None, "GPU VM size Standard_NC6s_v3"),
    (None, {gpus.GPU_RESOURCE: "8"}, "capacity nvidia.com/gpu=8"),
    ({"accelerator": "amd"}, {"cpu": "4"}, None),
    ({gpus.INSTANCE_TYPE_LABEL: "Standard_D4s_v5"}, {gpus.GPU_RESOURCE: "0"}, None),
    (None, {gpus.GPU_RESOURCE: ""}, None),
    (None, None, None),
])
def test_looks_like_gpu_node(labels: dict[str, str] | None, capacity: dict[str, str] | None,
                             why: str | None) -> None:
    assert gpus.looks_like_gpu_node(labels, capacity) == why


def test_sku_lookups() -> None:
    assert gpus.sku_for_vm_size("STANDARD_NC4AS_T4_V3") == gpus.VM_SIZES[T4_SIZE.lower()]
    assert gpus.sku_for_vm_size(None) is None
    sku = gpus.sku_for_product("Tesla-T4")
    assert sku is not None and sku.device_name == "Tesla T4" and sku.product_label == "Tesla-T4"
    k80 = gpus.sku_for_product("Tesla K80")
    assert k80 is not None and k80.retired
    assert gpus.sku_for_product("GeForce RTX 4090") is None
