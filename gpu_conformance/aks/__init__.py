"""AKS provisioning internals; the public surface is ``gpu_conformance.backends.aks``.

Nothing here imports an Azure package at module level, so option registration and
``--help`` never load the SDK or look for credentials.
"""

from __future__ import annotations
