"""Cluster backends, imported lazily so one backend's SDK never loads for another."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gpu_conformance.errors import UsageError

if TYPE_CHECKING:
    from gpu_conformance.backends.base import ClusterBackend
    from gpu_conformance.settings import Settings

BACKENDS = {
    "kwok": "gpu_conformance.backends.kwok",
    "attach": "gpu_conformance.backends.attach",
    "aks": "gpu_conformance.backends.aks",
    "kind": "gpu_conformance.backends.kind",
}
#: the backend a fleet's clusters are validated with (each cluster is reached, not made)
FLEET_BACKEND = "attach"


def create(settings: Settings, run_id: str) -> ClusterBackend:
    """The run's backend, built from its settings and run id (no cluster touched)."""
    name = settings.backend
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(BACKENDS[name])
    backend: ClusterBackend = module.create(settings, run_id)
    return backend
