"""Root conftest: loads the gpu-conformance plugin and the suites' fixtures."""

pytest_plugins = [
    "gpu_conformance.pytest_plugin",
    "fixtures.cluster",
    "fixtures.workload",
]
