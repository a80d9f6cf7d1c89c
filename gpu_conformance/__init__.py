"""gpu-conformance: evidence that a Kubernetes cluster really runs GPU workloads."""

from __future__ import annotations

__version__ = "0.1.0"
