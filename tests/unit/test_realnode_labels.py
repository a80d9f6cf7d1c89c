"""A real node's labels come from its GPU (nvidia-smi's names, as NVML reports them)."""

from __future__ import annotations

from pathlib import Path

from gpu_conformance.realnode.labels import gpu_labels


def test_fake_gpus_get_the_labels_of_their_named_size() -> None:
    labels = gpu_labels("fake", 2, "Tesla T4")
    assert labels["nvidia.com/gpu.product"] == "Tesla-T4"
    assert labels["nvidia.com/gpu.count"] == "2"
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC4as_T4_v3"
    assert not any(key.startswith("kubernetes.io/") for key in labels)


def test_nvidia_gpus_are_named_by_nvidia_smi_and_mapped_to_their_vm_size(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200'\n")
    smi.chmod(0o755)
    labels = gpu_labels("nvidia", 0, "ignored", nvidia_smi=str(smi))
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H200"
    assert labels["nvidia.com/gpu.count"] == "1"
    assert labels["node.kubernetes.io/instance-type"].startswith("Standard_ND96isr_H200")


def test_a_gpu_no_size_is_known_for_keeps_its_product_label(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA Future GPU'\necho 'NVIDIA Future GPU'\n")
    smi.chmod(0o755)
    labels = gpu_labels("nvidia", 0, "ignored", nvidia_smi=str(smi))
    assert labels == {"nvidia.com/gpu.product": "NVIDIA-Future-GPU", "nvidia.com/gpu.count": "2",
                      "accelerator": "nvidia"}
