"""Isolation: a pod sees the GPUs it asked for, and no others.

The checks of the Kubernetes AI conformance "secure accelerator access" requirement, as pure
logic plus manifests; the caller runs the pods and hands their logs and states to the judges:

1. ``single``: a pod asking for 1 GPU sees exactly one (one UUID from ``nvidia-smi -L``, at
   most one /dev/nvidiaN).
2. ``no-request``: a pod on the GPU node that asks for none sees none. Seeing none means
   nvidia-smi is absent or finds no device ("No devices were found", NVML failing to
   initialise) AND no /dev/nvidiaN node exists. The classic hole: CUDA images set
   ``NVIDIA_VISIBLE_DEVICES=all`` in their environment, and a node whose NVIDIA runtime honours
   that variable for unprivileged containers hands every GPU to a pod that asked for none.
3. ``two-containers``: in one pod only the container that asks for the GPU sees it.
4. ``concurrent``: two 1-GPU pods running at the same time on one node get different GPUs.
5. ``exhausted``: with every GPU of the node taken, one more 1-GPU pod stays Pending
   (PodScheduled=False, reason Unschedulable, "Insufficient nvidia.com/gpu").

Every pod is pinned with the ``kubernetes.io/hostname`` node selector (not ``nodeName``: that
bypasses the scheduler, so an over-committed pod would fail admission instead of staying
Pending) and tolerates the GPU taints. Each container runs the same probe, which prints
``isolation:`` lines and ends with ``isolation: END``; ``hold_seconds`` keeps it running after
that so concurrent pods overlap.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpu_conformance.gpus import GPU_RESOURCE
from gpu_conformance.workloads._common import SMI_GPU_LINE
from gpu_conformance.workloads.base import GPU_TOLERATIONS, WORKLOAD_LABEL

NAME = "isolation"
#: a CUDA base image: it carries NVIDIA_VISIBLE_DEVICES=all in its environment, which is what
#: the no-request check must show the node ignoring
IMAGE = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
MARK = "isolation:"
END = f"{MARK} END"
PROBE = (
    f'echo "{MARK} container=$ISOLATION_CONTAINER"; '
    f'echo "{MARK} NVIDIA_VISIBLE_DEVICES=${{NVIDIA_VISIBLE_DEVICES-<unset>}}"; '
    f'echo "{MARK} CUDA_VISIBLE_DEVICES=${{CUDA_VISIBLE_DEVICES-<unset>}}"; '
    f'for d in /dev/nvidia[0-9]*; do [ -e "$d" ] && echo "{MARK} device-node $d"; done; '
    'if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L 2>&1; '
    f'echo "{MARK} nvidia-smi-exit=$?"; else echo "{MARK} nvidia-smi-absent"; fi; '
    f'echo "{END}"; sleep "${{ISOLATION_HOLD_SECONDS:-0}}"'
)
GPU_LIMIT_REASON = "Insufficient nvidia.com/gpu"

_NODE = re.compile(rf"^{MARK} device-node (?P<node>/dev/nvidia\d+)\s*$", re.MULTILINE)
_ENV = re.compile(rf"^{MARK} NVIDIA_VISIBLE_DEVICES=(?P<value>.*)$", re.MULTILINE)
_CUDA_ENV = re.compile(rf"^{MARK} CUDA_VISIBLE_DEVICES=(?P<value>.*)$", re.MULTILINE)
_SMI_EXIT = re.compile(rf"^{MARK} nvidia-smi-exit=(?P<rc>\d+)\s*$", re.MULTILINE)
_SMI_ABSENT = re.compile(rf"^{MARK} nvidia-smi-absent\s*$", re.MULTILINE)
_NO_DEVICES = re.compile(r"No devices were found|Failed to initialize NVML|couldn't communicate "
                         r"with the NVIDIA driver", re.IGNORECASE)
_MIG_LINE = re.compile(r"^\s+MIG \S+\s+Device\s+\d+: \(UUID: (?P<uuid>MIG-[^)\s]+)\)",
                       re.MULTILINE)


@dataclass(frozen=True)
class ContainerView:
    """What one container saw of the node's GPUs."""

    pod: str
    container: str
    uuids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    mig_uuids: tuple[str, ...] = ()
    device_nodes: tuple[str, ...] = ()
    nvidia_visible_devices: str | None = None
    cuda_visible_devices: str | None = None
    #: "listed" (nvidia-smi -L printed GPUs), "no-devices", "absent", "failed", "missing"
    nvidia_smi: str = "missing"
    complete: bool = False
    problems: tuple[str, ...] = ()

    @property
    def who(self) -> str:
        return f"pod {self.pod} container {self.container}"

    @property
    def sees_gpu(self) -> bool:
        return bool(self.uuids) or bool(self.device_nodes)

    def evidence(self) -> str:
        parts = [f"nvidia-smi {self.nvidia_smi}"]
        if self.uuids:
            parts.append("GPUs " + ", ".join(f"{n} ({u})" for n, u in zip(self.names, self.uuids,
                                                                          strict=False)))
        if self.device_nodes:
            parts.append("device nodes " + " ".join(self.device_nodes))
        parts.append(f"NVIDIA_VISIBLE_DEVICES={self.nvidia_visible_devices or '<not printed>'}")
        return "; ".join(parts)


def parse_container(pod: str, container: str, log: str) -> ContainerView:
    """The probe's output of one container; never raises."""
    problems: list[str] = []
    uuids, names = [], []
    for match in SMI_GPU_LINE.finditer(log):
        uuids.append(match.group("uuid"))
        names.append(match.group("name").strip())
    env = _ENV.search(log)
    cuda_env = _CUDA_ENV.search(log)
    smi_exit = _SMI_EXIT.search(log)
    if uuids:
        smi = "listed"
    elif _SMI_ABSENT.search(log):
        smi = "absent"
    elif _NO_DEVICES.search(log):
        smi = "no-devices"
    elif smi_exit:
        smi = "failed"
    else:
        smi = "missing"
    complete = END in log
    if not log.strip():
        problems.append(f"pod {pod} container {container} printed nothing (did it start?)")
    elif not complete:
        problems.append(f"pod {pod} container {container}: the probe's output ends before "
                        f"'{END}' (truncated, or the container was killed)")
    return ContainerView(
        pod, container, tuple(uuids), tuple(names),
        tuple(m.group("uuid") for m in _MIG_LINE.finditer(log)),
        tuple(sorted(set(_NODE.findall(log)))),
        env.group("value").strip() if env else None,
        cuda_env.group("value").strip() if cuda_env else None, smi, complete, tuple(problems))


def _leak_hint(view: ContainerView) -> str:
    if (view.nvidia_visible_devices or "").lower() == "all":
        return (" NVIDIA_VISIBLE_DEVICES=all comes from the image's environment: the node's NVIDIA "
                "runtime honours it for unprivileged containers (set "
                "accept-nvidia-visible-devices-envvar-when-unprivileged = false in the NVIDIA "
                "container toolkit's config and use the device plugin's volume-mounts or CDI "
                "device list strategy)")
    if view.device_nodes and not view.uuids:
        return " the GPU device nodes are in the container (a privileged pod, or a hostPath /dev)"
    return ""


def judge_single(view: ContainerView) -> list[str]:
    """A container that asked for 1 GPU sees exactly one."""
    problems = list(view.problems)
    if len(view.uuids) != 1:
        problems.append(f"{view.who} asked for 1 GPU but nvidia-smi -L lists {len(view.uuids)} "
                        f"({view.evidence()})")
    if len(view.device_nodes) > 1:
        problems.append(f"{view.who} asked for 1 GPU but has {len(view.device_nodes)} GPU device "
                        f"nodes: {' '.join(view.device_nodes)}")
    return problems


def judge_none(view: ContainerView) -> list[str]:
    """A container that asked for no GPU sees none."""
    problems = list(view.problems)
    if view.sees_gpu:
        problems.append(f"{view.who} asked for no GPU but sees {len(view.uuids)} GPU(s) "
                        f"({view.evidence()}).{_leak_hint(view)}")
    return problems


def judge_two_containers(with_gpu: ContainerView, without_gpu: ContainerView) -> list[str]:
    """Only the container that asked for the GPU sees it (and the other does not see it)."""
    problems = judge_single(with_gpu) + judge_none(without_gpu)
    shared = set(with_gpu.uuids) & set(without_gpu.uuids)
    if shared:
        problems.append(f"{without_gpu.who} sees the GPU given to {with_gpu.container}: "
                        f"{', '.join(sorted(shared))}")
    return problems


def judge_concurrent(first: ContainerView, second: ContainerView,
                     overlapped: bool | None = None) -> list[str]:
    """Two 1-GPU pods that ran at the same time on one node got different GPUs.

    ``overlapped``: whether both were Running at once (None: not observed)."""
    problems = judge_single(first) + judge_single(second)
    shared = set(first.uuids) & set(second.uuids)
    if shared:
        problems.append(f"{first.who} and {second.who} were given the same GPU "
                        f"{', '.join(sorted(shared))}: the node hands one GPU to two pods")
    if overlapped is False:
        problems.append(f"{first.who} and {second.who} did not run at the same time, so distinct "
                        "GPUs prove nothing (raise hold_seconds)")
    return problems


@dataclass(frozen=True)
class PodState:
    """The part of a pod's status the exhausted-node check needs."""

    name: str
    phase: str
    scheduled: str | None = None  # PodScheduled condition status: "True" / "False"
    reason: str = ""
    message: str = ""
    node_name: str | None = None


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """From a pod as a dict (``ApiClient().sanitize_for_serialization(pod)`` or kubectl JSON)."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    scheduled: Mapping[str, Any] = next((c for c in status.get("conditions") or []
                                         if c.get("type") == "PodScheduled"), {})
    return PodState(str(metadata.get("name", "?")), str(status.get("phase", "Unknown")),
                    scheduled.get("status"), str(scheduled.get("reason") or ""),
                    str(scheduled.get("message") or ""), spec.get("nodeName"))


def judge_exhausted(extra: PodState, node: str, gpus_on_node: int,
                    holders: Sequence[str] = (), *, resource: str = GPU_RESOURCE) -> list[str]:
    """With all ``gpus_on_node`` GPUs taken (by ``holders``), the extra pod is Pending,
    unschedulable for lack of nvidia.com/gpu."""
    held = f"while {', '.join(holders)} hold{'s' if len(holders) == 1 else ''} all " \
           f"{gpus_on_node} GPU(s) of node {node}" if holders else \
           f"while all {gpus_on_node} GPU(s) of node {node} are taken"
    if extra.phase != "Pending" or extra.node_name:
        return [f"pod {extra.name} is {extra.phase} on node {extra.node_name or '?'} {held}: the "
                "node offers more nvidia.com/gpu than it has GPUs (time-slicing or a miscounting "
                "device plugin?)"]
    if extra.scheduled != "False" or extra.reason != "Unschedulable":
        return [f"pod {extra.name} is Pending {held} but not as Unschedulable (PodScheduled="
                f"{extra.scheduled}, reason {extra.reason or '-'}): wait for the scheduler"]
    if f"Insufficient {resource}" not in extra.message:
        return [f"pod {extra.name} is Unschedulable {held}, but not for lack of GPUs: "
                f"{extra.message}"]
    return []


# --- manifests ----------------------------------------------------------------------------

def _container(name: str, gpus: int, hold_seconds: int, resource: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", PROBE],
        "env": [{"name": "ISOLATION_CONTAINER", "value": name},
                {"name": "ISOLATION_HOLD_SECONDS", "value": str(hold_seconds)},
                # nvidia-smi needs only the driver
                {"name": "NVIDIA_DISABLE_REQUIRE", "value": "true"}],
    }
    if gpus:
        container["resources"] = {"limits": {resource: str(gpus)}}
    return container


def pod_manifest(name: str, namespace: str, node: str, containers: list[dict[str, Any]],
                 labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    all_labels = {"app": name, WORKLOAD_LABEL: NAME, **(labels or {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": copy.deepcopy(GPU_TOLERATIONS),
            "containers": containers,
        },
    }


def gpu_pod(name: str, namespace: str, node: str, *, gpus: int = 1, hold_seconds: int = 0,
            resource: str = GPU_RESOURCE, labels: Mapping[str, str] | None = None,
            container: str = "probe") -> dict[str, Any]:
    """A pod asking for ``gpus`` GPUs (checks 1 and 4; with all GPUs and a hold, the holder
    of check 5; with ``gpus=0``, check 2). Containers are named after their role (the
    offline cluster serves each role's output by container name)."""
    return pod_manifest(name, namespace, node,
                        [_container(container, gpus, hold_seconds, resource)], labels)


def no_request_pod(name: str, namespace: str, node: str, *,
                   labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check 2: pinned to the GPU node, asking for no GPU, in an image that sets
    NVIDIA_VISIBLE_DEVICES=all."""
    return gpu_pod(name, namespace, node, gpus=0, labels=labels, container="no-request")


def two_container_pod(name: str, namespace: str, node: str, *, resource: str = GPU_RESOURCE,
                      labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check 3: ``with-gpu`` asks for 1 GPU, ``without-gpu`` for none."""
    return pod_manifest(name, namespace, node, [_container("with-gpu", 1, 0, resource),
                                                _container("without-gpu", 0, 0, resource)],
                        labels)


def holder_pod(name: str, namespace: str, node: str, gpus: int, *, hold_seconds: int = 300,
               resource: str = GPU_RESOURCE, labels: Mapping[str, str] | None = None
               ) -> dict[str, Any]:
    """Check 5: takes all ``gpus`` GPUs of the node and keeps them ``hold_seconds``."""
    return gpu_pod(name, namespace, node, gpus=gpus, hold_seconds=hold_seconds,
                   resource=resource, labels=labels)


# --- reference output ---------------------------------------------------------------------

REFERENCE_UUID = "GPU-53cb4b91-3921-783e-384e-c94f2e366ff5"


def reference_output(container: str, device_name: str | None, *, index: int = 0,
                     uuid: str = REFERENCE_UUID, minor: int = 0) -> str:
    """What the probe prints in a container given one GPU (``device_name``) or none (None):
    the healthy outputs the offline cluster can serve."""
    lines = [f"{MARK} container={container}"]
    if device_name is None:
        lines += [f"{MARK} NVIDIA_VISIBLE_DEVICES=all", f"{MARK} CUDA_VISIBLE_DEVICES=<unset>",
                  f"{MARK} nvidia-smi-absent"]
    else:
        lines += [f"{MARK} NVIDIA_VISIBLE_DEVICES={uuid}", f"{MARK} CUDA_VISIBLE_DEVICES=<unset>",
                  f"{MARK} device-node /dev/nvidia{minor}",
                  f"GPU {index}: {device_name} (UUID: {uuid})", f"{MARK} nvidia-smi-exit=0"]
    return "\n".join([*lines, END]) + "\n"


def broken_output(kind: str, container: str, device_name: str, gpus: int = 8) -> str:
    """``gpu-without-request``: a container that asked for no GPU sees all ``gpus`` of them
    through the image's NVIDIA_VISIBLE_DEVICES=all; ``shared-gpu``: a 1-GPU container given
    the reference UUID that the other pod got too (judge with judge_concurrent)."""
    if kind == "shared-gpu":
        return reference_output(container, device_name)
    if kind != "gpu-without-request":
        raise KeyError(kind)
    lines = [f"{MARK} container={container}", f"{MARK} NVIDIA_VISIBLE_DEVICES=all",
             f"{MARK} CUDA_VISIBLE_DEVICES=<unset>"]
    lines += [f"{MARK} device-node /dev/nvidia{i}" for i in range(gpus)]
    lines += [f"GPU {i}: {device_name} (UUID: GPU-00000000-0000-0000-0000-{i:012d})"
              for i in range(gpus)]
    lines += [f"{MARK} nvidia-smi-exit=0", END]
    return "\n".join(lines) + "\n"
