"""Cluster backends, imported lazily so one backend's SDK never loads for another."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from gpu_conformance.errors import UsageError

if TYPE_CHECKING:
    import pytest

    from gpu_conformance.backends.base import ClusterBackend

BACKENDS = {
    "kwok": "gpu_conformance.backends.kwok",
    "attach": "gpu_conformance.backends.attach",
    "aks": "gpu_conformance.backends.aks",
    "kind": "gpu_conformance.backends.kind",
}


def backend_from_config(config: pytest.Config, name: str) -> ClusterBackend:
    """The backend ``name``, built from the run's options (no cluster touched)."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module = importlib.import_module(BACKENDS[name])
    backend: ClusterBackend = module.from_pytest_config(config)
    return backend
