"""Workload profiles, chosen with ``--workload``."""

from __future__ import annotations

from gpu_conformance.errors import UsageError
from gpu_conformance.workloads.bandwidth import PROFILE as BANDWIDTH
from gpu_conformance.workloads.base import GPU_TOLERATIONS, LogReport, WorkloadProfile
from gpu_conformance.workloads.cuda_vectoradd import PROFILE as CUDA_VECTORADD
from gpu_conformance.workloads.gpu_health import PROFILE as GPU_HEALTH
from gpu_conformance.workloads.nccl_allreduce import PROFILE as NCCL_ALLREDUCE
from gpu_conformance.workloads.nvidia_smi import PROFILE as NVIDIA_SMI
from gpu_conformance.workloads.tf_mnist import PROFILE as TF_MNIST
from gpu_conformance.workloads.torch_probe import PROFILE as TORCH

PROFILES: dict[str, WorkloadProfile] = {
    p.name: p for p in (TF_MNIST, CUDA_VECTORADD, NVIDIA_SMI, TORCH, GPU_HEALTH, BANDWIDTH,
                        NCCL_ALLREDUCE)
}
DEFAULT_PROFILE = TF_MNIST.name


def get_profile(name: str) -> WorkloadProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(
            f"unknown workload {name!r}; choose one of {', '.join(PROFILES)}"
        ) from None


__all__ = ["GPU_TOLERATIONS", "PROFILES", "LogReport", "WorkloadProfile", "get_profile"]
