"""Symptom -> likely cause: one line added to a failure where the symptom is known."""

from __future__ import annotations

import re

_HINTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), hint)
    for pattern, hint in (
        (r"could not load NVML|NVML.*not found|libnvidia-ml",
         "the node has no NVIDIA driver or container runtime hook: install the driver "
         "(AKS: GPU driver 'Install') or the NVIDIA container toolkit"),
        (r"Insufficient nvidia\.com/gpu",
         "no node has a free GPU: the device plugin is not advertising GPUs, or every GPU is "
         "allocated (see node GPU capacity/allocatable below)"),
        (r"untolerated taint.*(sku|nvidia\.com/gpu)|had untolerated taint",
         "the pod does not tolerate the GPU nodes' taint (AKS GPU pools: sku=gpu:NoSchedule)"),
        (r"ImagePullBackOff|ErrImagePull|pull access denied|manifest unknown",
         "the image cannot be pulled: check its name, the registry's reachability from the "
         "nodes and pull secrets"),
        (r"CUDA driver version is insufficient",
         "the image's CUDA runtime is newer than the node's driver: use an older CUDA image "
         "or upgrade the driver"),
        (r"CrashLoopBackOff",
         "the container keeps exiting: its log tail below says why"),
        (r"BackoffLimitExceeded",
         "the Job's pod failed: its log tail and events below say why"),
        (r"didn't match Pod's node affinity/selector|node\(s\) didn't match",
         "no GPU node matches the pod's nodeSelector/affinity"),
    )
)


def likely_causes(*texts: str) -> list[str]:
    """Each known cause once, in table order, for any symptom found in ``texts``."""
    joined = "\n".join(texts)
    return [hint for pattern, hint in _HINTS if pattern.search(joined)]
