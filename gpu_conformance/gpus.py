"""What GPU a node should have, from its VM size or its GPU-feature-discovery labels.

The table maps Azure VM sizes to the GPU model as CUDA and nvidia-smi name it. Sources:
Azure VM size pages (learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/*):
NCasT4_v3, NCv3, NC_A100_v4, NDasrA100_v4, NDm_A100_v4, NCads_H100_v5, ND_H100_v5,
ND_H200_v5, NVadsA10_v5; device names as printed by nvidia-smi on those GPUs; the
retired NC series (K80) is kept only so the seed guide's log can be judged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

GPU_RESOURCE = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"
COUNT_LABEL = "nvidia.com/gpu.count"
MEMORY_LABEL = "nvidia.com/gpu.memory"
PRESENT_LABEL = "nvidia.com/gpu.present"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
LEGACY_INSTANCE_TYPE_LABEL = "beta.kubernetes.io/instance-type"
AKS_ACCELERATOR_LABEL = "kubernetes.azure.com/accelerator"
AKS_AGENTPOOL_LABEL = "kubernetes.azure.com/agentpool"
ACCELERATOR_LABEL = "accelerator"
GENERIC_DEVICE_PATTERN = r"Tesla|NVIDIA"


@dataclass(frozen=True)
class GpuSku:
    vm_size: str
    device_name: str
    count: int
    memory_mib: int
    retired: bool = False

    @property
    def product_label(self) -> str:
        """The value GPU feature discovery puts in ``nvidia.com/gpu.product``."""
        return self.device_name.replace(" ", "-")


def _family(sizes: Mapping[str, int], device: str, memory: int, retired: bool = False) -> list[GpuSku]:
    return [GpuSku(size, device, count, memory, retired) for size, count in sizes.items()]


VM_SIZES: dict[str, GpuSku] = {
    sku.vm_size.lower(): sku
    for sku in [
        *_family({"Standard_NC4as_T4_v3": 1, "Standard_NC8as_T4_v3": 1,
                  "Standard_NC16as_T4_v3": 1, "Standard_NC64as_T4_v3": 4}, "Tesla T4", 15360),
        *_family({"Standard_NC6s_v3": 1, "Standard_NC12s_v3": 2, "Standard_NC24s_v3": 4,
                  "Standard_NC24rs_v3": 4}, "Tesla V100-PCIE-16GB", 16384),
        *_family({"Standard_NC24ads_A100_v4": 1, "Standard_NC48ads_A100_v4": 2,
                  "Standard_NC96ads_A100_v4": 4}, "NVIDIA A100 80GB PCIe", 81920),
        *_family({"Standard_ND96asr_v4": 8}, "NVIDIA A100-SXM4-40GB", 40960),
        *_family({"Standard_ND96amsr_A100_v4": 8}, "NVIDIA A100-SXM4-80GB", 81920),
        *_family({"Standard_NC40ads_H100_v5": 1, "Standard_NC80adis_H100_v5": 2},
                 "NVIDIA H100 NVL", 95830),
        *_family({"Standard_ND96isr_H100_v5": 8}, "NVIDIA H100 80GB HBM3", 81559),
        *_family({"Standard_ND96isr_H200_v5": 8}, "NVIDIA H200", 143771),
        *_family({"Standard_NV6ads_A10_v5": 1}, "NVIDIA A10-4Q", 4096),
        *_family({"Standard_NV12ads_A10_v5": 1}, "NVIDIA A10-8Q", 8192),
        *_family({"Standard_NV18ads_A10_v5": 1}, "NVIDIA A10-12Q", 12288),
        *_family({"Standard_NV36ads_A10_v5": 1, "Standard_NV36adms_A10_v5": 1},
                 "NVIDIA A10-24Q", 24576),
        *_family({"Standard_NV72ads_A10_v5": 2}, "NVIDIA A10-24Q", 24576),
        *_family({"Standard_NC6": 1, "Standard_NC12": 2, "Standard_NC24": 4,
                  "Standard_NC24r": 4}, "Tesla K80", 11441, retired=True),
    ]
}

DEFAULT_VM_SIZE = "Standard_NC4as_T4_v3"


def sku_for_vm_size(vm_size: str | None) -> GpuSku | None:
    return VM_SIZES.get(vm_size.lower()) if vm_size else None


def sku_for_product(product: str) -> GpuSku | None:
    """The first known size whose GPU has this device name or product label."""
    wanted = normalize_device_name(product)
    for sku in VM_SIZES.values():
        if normalize_device_name(sku.device_name) == wanted and not sku.retired:
            return sku
    for sku in VM_SIZES.values():
        if normalize_device_name(sku.device_name) == wanted:
            return sku
    return None


# GFD labels write "-SHARED" / "-MIG-1g.5gb"; CUDA names MIG instances "... MIG 1g.5gb"
_SUFFIXES = re.compile(r"([-\s]SHARED|[-\s]MIG[-\s][0-9a-z.+]+)+$", re.IGNORECASE)


def normalize_device_name(name: str) -> str:
    """Compare device names across nvidia-smi, CUDA and GFD label spellings.

    GFD writes spaces as hyphens and appends ``-SHARED`` (time-slicing) or a MIG profile;
    ``Tesla-T4-SHARED``, ``Tesla T4`` and ``tesla t4`` all compare equal.
    """
    base = _SUFFIXES.sub("", name.strip())
    return " ".join(re.split(r"[\s_-]+", base.lower())).strip()


@dataclass(frozen=True)
class ExpectedGpu:
    """The GPU a workload's device line must name, and where that expectation came from."""

    pattern: str
    source: str
    display: str

    def matches(self, device_name: str) -> bool:
        if self.source == "default":
            return re.search(self.pattern, device_name) is not None
        return normalize_device_name(device_name) == normalize_device_name(self.display) or (
            re.fullmatch(self.pattern, device_name.strip(), re.IGNORECASE) is not None
        )


def expected_gpu(labels: Mapping[str, str] | None, override: str | None = None) -> ExpectedGpu:
    """Resolve the expected device name: explicit option, product label, VM size, generic."""
    labels = labels or {}
    if override:
        return ExpectedGpu(override, "--expect-gpu", override)
    product = labels.get(PRODUCT_LABEL)
    if product:
        display = _SUFFIXES.sub("", product).replace("-", " ")
        sku = sku_for_product(product)
        shown = sku.device_name if sku else display
        return ExpectedGpu(_loose_pattern(shown), f"label {PRODUCT_LABEL}={product}", shown)
    size = labels.get(INSTANCE_TYPE_LABEL) or labels.get(LEGACY_INSTANCE_TYPE_LABEL)
    sku = sku_for_vm_size(size)
    if sku:
        return ExpectedGpu(_loose_pattern(sku.device_name), f"VM size {sku.vm_size}",
                           sku.device_name)
    return ExpectedGpu(GENERIC_DEVICE_PATTERN, "default", "Tesla|NVIDIA")


def _loose_pattern(device_name: str) -> str:
    words = re.split(r"[\s_-]+", device_name.strip())
    return r"[\s_-]*".join(re.escape(w) for w in words if w)


def expected_gpu_count(labels: Mapping[str, str] | None) -> int | None:
    """GPUs per node implied by the VM size or GFD count label, when either is known."""
    labels = labels or {}
    count = labels.get(COUNT_LABEL)
    if count and count.isdigit():
        return int(count)
    size = labels.get(INSTANCE_TYPE_LABEL) or labels.get(LEGACY_INSTANCE_TYPE_LABEL)
    sku = sku_for_vm_size(size)
    return sku.count if sku else None


def looks_like_gpu_node(labels: Mapping[str, str] | None, capacity: Mapping[str, str] | None) -> str | None:
    """Why a node counts as a GPU node (a label or its capacity), or None if it does not."""
    labels = labels or {}
    capacity = capacity or {}
    for key in (ACCELERATOR_LABEL, AKS_ACCELERATOR_LABEL):
        if labels.get(key, "").lower() == "nvidia":
            return f"label {key}=nvidia"
    if labels.get(PRESENT_LABEL, "").lower() == "true":
        return f"label {PRESENT_LABEL}=true"
    size = labels.get(INSTANCE_TYPE_LABEL) or labels.get(LEGACY_INSTANCE_TYPE_LABEL)
    if sku_for_vm_size(size):
        return f"GPU VM size {size}"
    if capacity.get(GPU_RESOURCE, "0") not in ("", "0"):
        return f"capacity {GPU_RESOURCE}={capacity[GPU_RESOURCE]}"
    return None


CUSTOM_PREFIX = "custom:"


def resolve_product(product: str | None) -> GpuSku:
    """The GPU a simulated node claims: a VM size, a device name or a GFD product label; an
    unlisted GPU only when asked for explicitly (``custom:<device name>``, on the default
    size's shape). Anything else is a usage error listing what is known."""
    from gpu_conformance.errors import UsageError

    if not product:
        sku = sku_for_vm_size(DEFAULT_VM_SIZE)
        assert sku is not None
        return sku
    if product.lower().startswith(CUSTOM_PREFIX):
        name = product[len(CUSTOM_PREFIX):].strip().replace("-", " ")
        if not name:
            raise UsageError(f"--gpu-product {product!r}: give a device name after '{CUSTOM_PREFIX}'")
        base = VM_SIZES[DEFAULT_VM_SIZE.lower()]
        return GpuSku(base.vm_size, name, base.count, base.memory_mib)
    found = sku_for_vm_size(product) or sku_for_product(product)
    if found is None:
        devices = sorted({s.device_name for s in VM_SIZES.values() if not s.retired})
        raise UsageError(
            f"unknown GPU product {product!r}; known: {', '.join(devices)} (or one of their VM "
            f"sizes, e.g. {DEFAULT_VM_SIZE}; an unlisted GPU: '{CUSTOM_PREFIX}<device name>')")
    return found
