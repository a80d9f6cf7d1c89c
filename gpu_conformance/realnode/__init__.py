"""A real Kubernetes node for the offline control plane: kubelet, containerd, runc and CNI
plugins, all built from pinned Go modules, with images built locally (no registry).

Standard library only (plus the project's own errors/binaries modules), so the same code
runs on a GPU host that has Python but none of the project's dependencies.
"""

from __future__ import annotations
