"""Every wait in the project is bounded by one of these named timeouts.

Each can be overridden with ``--timeout NAME=SECONDS`` (or the ``gpu_timeouts`` ini
option), so a slow real cluster gets more time without editing code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpu_conformance.errors import UsageError


@dataclass(frozen=True)
class Timeout:
    name: str
    seconds: float
    reason: str


_DEFAULTS: tuple[Timeout, ...] = (
    Timeout("api-ready", 60, "the offline cluster's kube-apiserver serves /readyz within seconds "
            "on 2 cores; a minute covers a loaded CI machine"),
    Timeout("nodes-ready", 60, "simulated nodes turn Ready as soon as kwok sees them; real nodes "
            "are expected Ready before the suite starts"),
    Timeout("plugin-rollout", 600, "the device plugin may wait for the GPU driver to install, "
            "which takes upwards of 5 minutes on a fresh node (Kubernetes e2e uses 10 minutes)"),
    Timeout("gpu-capacity", 300, "after the plugin registers, the kubelet reports nvidia.com/gpu "
            "on its next status update"),
    Timeout("job-complete", 900, "the seed's TensorFlow image is several GB; pulling it and "
            "training 500 steps took about 4 minutes on a K80 node"),
    Timeout("unschedulable-grace", 30, "a pod the scheduler has rejected this long with no "
            "autoscaler activity will not be placed"),
    Timeout("namespace-delete", 120, "namespace finalization waits for every pod to terminate"),
    Timeout("cleanup", 120, "deleting what the run created must not hang a CI job"),
)

DEFAULTS: dict[str, Timeout] = {t.name: t for t in _DEFAULTS}


class Timeouts:
    """The timeouts in force for one run."""

    def __init__(self, overrides: dict[str, float] | None = None) -> None:
        self._values = {name: t.seconds for name, t in DEFAULTS.items()}
        for name, seconds in (overrides or {}).items():
            if name not in DEFAULTS:
                raise UsageError(
                    f"unknown timeout {name!r}; known: {', '.join(sorted(DEFAULTS))}"
                )
            self._values[name] = seconds

    def __getitem__(self, name: str) -> float:
        return self._values[name]

    def describe(self, name: str) -> str:
        return f"{name} timeout of {self._values[name]:g}s ({DEFAULTS[name].reason})"


def parse_overrides(items: list[str]) -> dict[str, float]:
    """Parse ``NAME=SECONDS`` strings, rejecting malformed ones with one clear line."""
    result: dict[str, float] = {}
    for item in items:
        for part in item.replace(",", " ").split():
            name, sep, value = part.partition("=")
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not sep or not math.isfinite(seconds) or seconds <= 0:
                raise UsageError(f"bad timeout {part!r}: expected NAME=SECONDS with SECONDS > 0")
            result[name.strip()] = seconds
    return result
