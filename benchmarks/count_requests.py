"""pytest plugin for benchmarks/speed.py: counts the HTTP requests the run's Kubernetes client
sends, per test and phase (setup, call, teardown), into $GPU_CONFORMANCE_REQUEST_COUNTS (JSON).

    pytest -p benchmarks.count_requests ...

A watch counts as one request (one HTTP request, however many events it streams).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import rest

_counts: Counter[str] = Counter()
_current = ["session"]
_original = rest.RESTClientObject.request


def _counting(self: Any, *args: Any, **kwargs: Any) -> Any:
    _counts[_current[0]] += 1
    return _original(self, *args, **kwargs)  # type: ignore[no-untyped-call]


rest.RESTClientObject.request = _counting  # type: ignore[method-assign]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _current[0] = f"{item.nodeid}::setup"
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    _current[0] = f"{item.nodeid}::call"
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    _current[0] = f"{item.nodeid}::teardown"
    yield
    _current[0] = "session"


def pytest_unconfigure(config: pytest.Config) -> None:
    target = os.environ.get("GPU_CONFORMANCE_REQUEST_COUNTS")
    if target:
        Path(target).write_text(json.dumps(dict(sorted(_counts.items())), indent=2))
