"""What a GPU workload profile is: its Job, and the parsers that judge its logs."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpu_conformance.gates import Judgement

GPU_TOLERATIONS: list[dict[str, str]] = [
    {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
]

WORKLOAD_LABEL = "gpu-conformance.io/workload"


@dataclass
class LogReport:
    """What a parser found in a workload's log. Parsers never raise on bad input."""

    devices: list[str] = field(default_factory=list)
    device_lines: list[str] = field(default_factory=list)
    #: None when the profile has no success marker
    success: bool | None = None
    #: (step, accuracy) in log order
    accuracy: list[tuple[int, float]] = field(default_factory=list)
    #: facts worth a JUnit run property (driver version, CUDA version, ...)
    properties: dict[str, str] = field(default_factory=dict)
    #: symptoms found (error lines, truncation), each a short sentence
    problems: list[str] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float | None:
        return self.accuracy[-1][1] if self.accuracy else None


@dataclass(frozen=True)
class WorkloadProfile:
    """A GPU workload: the container it runs and how its log is judged."""

    name: str
    description: str
    image: str
    parse: Callable[[str], LogReport]
    #: (device name[, GPUs in the Job for all-GPU profiles]) -> the log a healthy run prints
    reference_log: Callable[..., str]
    command: list[str] | None = None
    args: list[str] | None = None
    #: the accuracy the last "accuracy" line must reach, when the profile prints any
    min_accuracy: float | None = None
    #: extra namespaced objects the Job needs (e.g. a ConfigMap holding a script)
    extra_objects: Callable[[str], list[dict[str, Any]]] = lambda namespace: []
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, str]] = field(default_factory=list)
    #: False when a healthy run may name no device (cuda-vectoradd where the image lacks
    #: nvidia-smi): the device check then accepts an empty LogReport.devices, provided
    #: LogReport.success is True; names it does find are still checked
    requires_device_line: bool = True
    #: health and performance profiles: the log judged against the node's VM size's gates
    #: (gpu_conformance.gates), with the user's gate overrides
    judge: Callable[[str, str | None, Sequence[str]], Judgement] | None = None
    #: the Job asks for every allocatable GPU of its node (one pod, all GPUs: NCCL)
    all_gpus: bool = False
    #: the container's args for (VM size, GPUs in the Job, gate overrides)
    gate_args: Callable[[str | None, int, Sequence[str]], list[str]] | None = None

    def job_manifest(
        self,
        name: str,
        namespace: str,
        *,
        gpus: int = 1,
        labels: dict[str, str] | None = None,
        node_name: str | None = None,
        backoff_limit: int = 0,
    ) -> dict[str, Any]:
        """A Job of one pod asking for ``gpus`` GPUs and tolerating the usual GPU taints."""
        container: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
        }
        if self.command:
            container["command"] = list(self.command)
        if self.args:
            container["args"] = list(self.args)
        if self.volume_mounts:
            container["volumeMounts"] = copy.deepcopy(self.volume_mounts)
        if self.env:
            container["env"] = copy.deepcopy(self.env)
        all_labels = {"app": name, WORKLOAD_LABEL: self.name, **(labels or {})}
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "tolerations": copy.deepcopy(GPU_TOLERATIONS),
            "containers": [container],
        }
        if self.volumes:
            pod_spec["volumes"] = copy.deepcopy(self.volumes)
        if node_name:
            pod_spec["nodeSelector"] = {"kubernetes.io/hostname": node_name}
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
            "spec": {
                "backoffLimit": backoff_limit,
                "completions": 1,
                "parallelism": 1,
                "template": {"metadata": {"labels": all_labels}, "spec": pod_spec},
            },
        }
