"""Every bound in the project, in one table: each wait, request, build and cloud operation.

Each can be overridden the same way, ``--gpu-timeout NAME=SECONDS`` (repeatable; also the
``gpu_timeouts`` ini key and ``GPU_CONFORMANCE_GPU_TIMEOUT``), so a slow real cluster gets
more time without editing code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gpu_conformance.errors import UsageError


@dataclass(frozen=True)
class Timeout:
    name: str
    seconds: float
    reason: str
    #: who uses it: run, request, offline, aks, kind
    scope: str = "run"


_DEFAULTS: tuple[Timeout, ...] = (
    # the run's waits on the cluster
    Timeout("api-ready", 60, "the offline cluster's kube-apiserver serves /readyz within seconds "
            "on 2 cores; a minute covers a loaded CI machine, and an unreachable real cluster "
            "is reported within it"),
    Timeout("nodes-ready", 60, "simulated nodes turn Ready as soon as kwok sees them (the "
            "offline cluster allows this per 500 new nodes); real nodes are expected Ready "
            "before the suite starts"),
    Timeout("plugin-rollout", 600, "the device plugin may wait for the GPU driver to install, "
            "which takes upwards of 5 minutes on a fresh node (Kubernetes e2e uses 10 minutes)"),
    Timeout("gpu-capacity", 300, "after the plugin registers, the kubelet reports nvidia.com/gpu "
            "on its next status update"),
    Timeout("gpu-settle", 30, "a plugin that (re)registers brings allocatable back to capacity "
            "within the kubelet's 10 s status sync; still below after this, GPUs are unhealthy"),
    Timeout("job-complete", 900, "the seed's TensorFlow image is several GB; pulling it and "
            "training 500 steps took about 4 minutes on a K80 node"),
    Timeout("unschedulable-grace", 30, "a pod the scheduler has rejected this long with no "
            "autoscaler activity will not be placed"),
    Timeout("namespace-ready", 60, "the service account controller gives a new namespace its "
            "default ServiceAccount within a second; no pod can be created there before"),
    Timeout("namespace-delete", 120, "namespace finalization waits for every pod to terminate"),
    Timeout("cleanup", 120, "deleting what the run created must not hang a CI job"),
    Timeout("api-probe", 5, "the first contact with a cluster: a reachable API server answers "
            "/version in milliseconds; 5 s of retries tell a dead or silent one from a hiccup"),
    # one API request
    Timeout("api-connect", 10, "a TCP connect to a reachable API server takes milliseconds; "
            "10 s covers a congested VPN", "request"),
    Timeout("api-read", 60, "the slowest API answer the suites wait for is a full node or pod "
            "list on a large cluster", "request"),
    # the offline cluster and its programs
    Timeout("kwokctl", 180, "beyond waiting for the API, kwokctl writes certificates and starts "
            "five processes; 3 minutes covers a loaded 2-core machine", "offline"),
    Timeout("process-stop", 10, "etcd and kube-apiserver shut down within a second or two on "
            "SIGTERM; what ignores it this long is killed", "offline"),
    Timeout("go-build", 3600, "one program's cold build is about 10 minutes on 2 cores; an hour "
            "means something is stuck", "offline"),
    Timeout("program-version", 20, "asking a program on PATH for its version takes "
            "milliseconds", "offline"),
    # Azure
    Timeout("aks-create", 1800, "AKS creates a cluster in 5-10 minutes; a busy region takes 20+",
            "aks"),
    Timeout("aks-gpu-pool", 1800, "GPU VMs boot, then the NVIDIA driver installs (5+ minutes), "
            "and scarce sizes may wait for capacity", "aks"),
    Timeout("aks-delete", 1200, "a cluster deletes in 5-10 minutes; past this Azure keeps "
            "deleting on its own and the expiry tag lets the janitor catch anything left", "aks"),
    # kind
    Timeout("docker-info", 20, "`docker info` answers in well under a second from a running "
            "engine; 20 s covers a Docker Desktop VM that is still waking up", "kind"),
    Timeout("kind-create", 600, "pulling a kindest/node image (~1 GB) and booting a control plane "
            "plus a few workers takes 1-3 minutes on a CI runner", "kind"),
    Timeout("kind-delete", 120, "`kind delete cluster` removes a few containers", "kind"),
    Timeout("kind-keeper-stop", 15, "the fake-GPU keeper's one API round trip per node must end "
            "before teardown gives up on it", "kind"),
)

DEFAULTS: dict[str, Timeout] = {t.name: t for t in _DEFAULTS}


class Timeouts:
    """The timeouts in force for one run."""

    def __init__(self, overrides: Mapping[str, float] | None = None) -> None:
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

    def overrides(self) -> dict[str, float]:
        """The values that differ from the defaults (to hand to another process)."""
        return {n: v for n, v in self._values.items() if v != DEFAULTS[n].seconds}


def parse_overrides(items: Iterable[str], source: str = "--gpu-timeout") -> dict[str, float]:
    """Parse ``NAME=SECONDS`` strings, rejecting malformed ones with one clear line."""
    result: dict[str, float] = {}
    for item in items:
        for part in str(item).replace(",", " ").split():
            name, sep, value = part.partition("=")
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not sep or not math.isfinite(seconds) or seconds <= 0:
                raise UsageError(f"{source}: bad timeout {part!r}: expected NAME=SECONDS with "
                                 "SECONDS > 0")
            result[name.strip()] = seconds
    return result
