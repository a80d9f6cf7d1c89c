"""The labels of a real GPU node: those AKS and GPU feature discovery put on a node of its GPU."""

from __future__ import annotations

from pathlib import Path


def gpu_labels(gpu_mode: str, fake_gpus: int, device_name: str,
               nvidia_smi: str = "nvidia-smi") -> dict[str, str]:
    """The labels an AKS GPU node of this GPU carries (VM size from the device name NVML
    reports, GFD product and count): the suites judge the real node as they judge AKS's."""
    from gpu_conformance import gpus, nodes

    if gpu_mode == "nvidia":
        import shutil
        import subprocess

        if shutil.which(nvidia_smi) is None and Path("/usr/local/nvidia/bin/nvidia-smi").exists():
            nvidia_smi = "/usr/local/nvidia/bin/nvidia-smi"
        run = subprocess.run([nvidia_smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60, check=True)
        names = [n.strip() for n in run.stdout.splitlines() if n.strip()]
        device_name, count = (names[0] if names else device_name), len(names)
    else:
        count = fake_gpus
    sku = gpus.sku_for_product(device_name)
    if sku is None:
        return {gpus.PRODUCT_LABEL: device_name.replace(" ", "-"),
                gpus.COUNT_LABEL: str(count), gpus.ACCELERATOR_LABEL: "nvidia"}
    labels = nodes.gpu_node_labels(sku, count)
    return {k: v for k, v in labels.items() if not k.startswith("kubernetes.io/")}
