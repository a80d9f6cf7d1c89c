"""Root conftest: loads the gpu-conformance plugin and the suites' fixtures."""

pytest_plugins = [
    "fixtures.cluster",
    "fixtures.workload",
]
