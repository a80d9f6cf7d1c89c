"""Workload profiles, chosen with ``--workload``."""

from __future__ import annotations

from gpu_conformance.errors import UsageError
from gpu_conformance.workloads.base import GPU_TOLERATIONS, LogReport, WorkloadProfile
from gpu_conformance.workloads.tf_mnist import PROFILE as TF_MNIST

PROFILES: dict[str, WorkloadProfile] = {p.name: p for p in (TF_MNIST,)}
DEFAULT_PROFILE = TF_MNIST.name


def get_profile(name: str) -> WorkloadProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(
            f"unknown workload {name!r}; choose one of {', '.join(PROFILES)}"
        ) from None


__all__ = ["GPU_TOLERATIONS", "PROFILES", "LogReport", "WorkloadProfile", "get_profile"]
