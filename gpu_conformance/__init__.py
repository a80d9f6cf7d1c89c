"""gpu-conformance: evidence that a Kubernetes cluster really runs GPU workloads.

PYTEST_DONT_REWRITE: the package is a pytest plugin (pytest11) that ``gpu-conformance run``
has imported before pytest starts; its asserts are not test assertions.
"""

from __future__ import annotations

__version__ = "0.1.0"
