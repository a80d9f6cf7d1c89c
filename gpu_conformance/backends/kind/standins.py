"""Small images that take the place of the NVIDIA ones on a kind cluster without GPUs.

The plugin's container becomes a pause container (it must run, not exit); a workload's
container becomes a shell that prints the profile's reference log naming the simulated GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from gpu_conformance.workloads.base import WorkloadProfile

REFERENCE_LOG_ENV = "GPU_CONFORMANCE_REFERENCE_LOG"


@dataclass(frozen=True)
class StandInImages:
    #: runs forever and has no entrypoint arguments; kind node images preload a pause image
    plugin: str
    #: needs only ``sh`` and ``printf``
    workload: str


STAND_IN_IMAGES = StandInImages(plugin="registry.k8s.io/pause:3.10", workload="busybox:1.36")


class WorkloadOverrides(TypedDict):
    """Container fields (and WorkloadProfile fields of the same names) of the kind stand-in."""

    image: str
    command: list[str]
    args: list[str]
    env: list[dict[str, str]]


def workload_overrides(profile: WorkloadProfile, device_name: str,
                       images: StandInImages = STAND_IN_IMAGES) -> WorkloadOverrides:
    """image/command/args/env that make the profile's Job print its reference log.

    The log travels in an environment variable, not a ConfigMap, so the Job stays one
    self-contained object and several Jobs in one namespace never share a name. Every ``$`` is
    doubled because the kubelet expands ``$(NAME)`` in env values and turns ``$$`` into ``$``.
    """
    log = profile.reference_log(device_name)
    return {
        "image": images.workload,
        "command": ["sh", "-c", f'printf "%s" "${REFERENCE_LOG_ENV}"'],
        "args": [],
        "env": [*(dict(e) for e in profile.env),
                {"name": REFERENCE_LOG_ENV, "value": log.replace("$", "$$")}],
    }


def replace_plugin_image(objects: list[dict[str, Any]], image: str) -> None:
    """Every container of the manifest's DaemonSet runs ``image`` instead (in place)."""
    for obj in objects:
        if obj.get("kind") == "DaemonSet":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                container["image"] = image
