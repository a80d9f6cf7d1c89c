"""Root conftest: the suites' fixtures (the plugin itself is loaded by pytest.ini with -p)."""

pytest_plugins = [
    "fixtures.cluster",
    "fixtures.workload",
]
