"""The pytest plugin: options, markers, the run's lifecycle, fixtures, diagnostics and report
properties.

Loaded by the repository's pytest.ini (``-p gpu_conformance.pytest_plugin``), so its
options are known before pytest decides its rootdir. Nothing here touches a cluster for
``--help``, ``--markers`` or ``--collect-only``: the run (provision or attach, device plugin)
starts at session start, before collection, because capacity tests are parametrized by the
cluster's GPU nodes; with xdist only the controller starts it and workers attach.

Suites and fixtures never import this module: what they need of the run reaches them as the
fixtures defined here (``gpu_settings``, ``gpu_run``, ``gpu_backend``, ``gpu_progress``,
``gpu_run_property``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import pytest

from gpu_conformance import backends, options
from gpu_conformance.backends.base import ClusterBackend
from gpu_conformance.checks.capacity import NO_GPU_NODE, NOT_STARTED
from gpu_conformance.errors import GpuConformanceError, UsageError, one_line
from gpu_conformance.gpu_nodes import find_gpu_nodes
from gpu_conformance.kube import call, set_request_timeout
from gpu_conformance.log import Log
from gpu_conformance.namespaces import sweep_namespaces
from gpu_conformance.run import RunContext, RunInfo
from gpu_conformance.settings import Settings

SETTINGS_KEY = pytest.StashKey[Settings]()
CONTEXT_KEY = pytest.StashKey[RunContext | None]()
INFO_KEY = pytest.StashKey[RunInfo]()
NODES_KEY = pytest.StashKey[list[str]]()
PROPS_KEY = pytest.StashKey[dict[str, str]]()
WORKERINPUT = "gpu_conformance_run"

MARKERS = (
    "gpu_suite(name): a conformance suite (rollout, capacity, workload, device)",
    "integration: needs the offline cluster's real processes",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        chosen = Settings.from_config(config)
        if not _is_worker(config):
            # the backend checks its own options now: a bad one is a usage error, not a crash
            config.stash[CONTEXT_KEY] = RunContext.create(chosen, _log)
    except UsageError as exc:
        raise pytest.UsageError(exc.one_line()) from None
    config.stash[SETTINGS_KEY] = chosen
    set_request_timeout(chosen.timeouts["api-connect"], chosen.timeouts["api-read"])
    config.stash[PROPS_KEY] = {}
    _config[:] = [config]
    workerinput = getattr(config, "workerinput", None)
    if workerinput and WORKERINPUT in workerinput:
        config.stash[INFO_KEY] = RunInfo.from_json(workerinput[WORKERINPUT])


_config: list[pytest.Config] = []  # the running config, for its terminal reporter


def _log(line: str) -> None:
    """One line on the terminal, live: the terminal reporter writes past output capture
    (xdist workers have none; their lines reach the captured output of the test)."""
    text = f"[gpu-conformance] {line}"
    plugins = _config[0].pluginmanager if _config else None
    reporter = plugins.get_plugin("terminalreporter") if plugins else None
    capture = plugins.get_plugin("capturemanager") if plugins else None
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(text)
    else:
        print(text, file=sys.stderr, flush=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    _config.clear()


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if _is_worker(config) or config.option.collectonly:
        return
    context = config.stash.get(CONTEXT_KEY, None)
    if context is None:
        return
    try:
        plan = context.backend.preflight()
        if plan is not None:
            print(plan, flush=True)
            config.stash[CONTEXT_KEY] = None
            pytest.exit(f"{context.backend.name}: plan printed, nothing called", returncode=0)
        # CI cancellations send SIGTERM: make it run the same cleanup as Ctrl-C
        signal.signal(signal.SIGTERM, _raise_interrupt)
        info = context.start()
    except GpuConformanceError as exc:
        code = pytest.ExitCode.USAGE_ERROR if isinstance(exc, UsageError) else \
            pytest.ExitCode.INTERNAL_ERROR
        pytest.exit(f"gpu-conformance: {exc.one_line()}", returncode=code)
    config.stash[INFO_KEY] = info
    _add_properties(config, info.properties)
    _log(f"run {info.run_id}: {info.backend} cluster {info.cluster_name!r}, "
         f"{info.properties.get('gpu_node_count')} GPU node(s)")


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent with -p no:xdist
def pytest_configure_node(node: Any) -> None:
    """xdist controller: hand the run to each worker (they attach, never provision)."""
    info = node.config.stash.get(INFO_KEY, None)
    if info is not None:
        node.workerinput[WORKERINPUT] = info.to_json()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    props = getattr(node, "workeroutput", {}).get("gpu_conformance_properties", {})
    _add_properties(node.config, props)


def _add_properties(config: pytest.Config, props: dict[str, str]) -> None:
    from _pytest.junitxml import xml_key

    config.stash[PROPS_KEY].update(props)
    if _is_worker(config):
        workeroutput: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
        collected: dict[str, str] = config.stash[PROPS_KEY]
        workeroutput["gpu_conformance_properties"] = dict(collected)
        return
    xml = config.stash.get(xml_key, None)
    if xml is not None:
        for key, value in props.items():
            xml.add_global_property(key, value)


# trylast: after pytest's own teardown of session fixtures (the run namespace), which an
# interrupted session defers to sessionfinish
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    context = config.stash.get(CONTEXT_KEY, None)
    if context is None:
        return
    failures: list[str] = []
    info = config.stash.get(INFO_KEY, None)
    try:
        if info is not None:
            try:
                api = info.api_client()
                try:
                    failures += sweep_namespaces(api, info.run_id,
                                                 config.stash[SETTINGS_KEY].timeouts["cleanup"],
                                                 _log, wait=info.cluster_outlives_run)
                finally:
                    api.close()
            except Exception as exc:
                failures.append(f"namespace sweep: {one_line(exc)}")
        failures += context.finish()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if failures:
        _log(f"{len(failures)} cleanup step(s) failed; see the lines above")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED if exitstatus == 0 else exitstatus


SUITE_ORDER = ("rollout", "capacity", "workload", "device")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Suites run in the seed guide's order: plugin, capacity, Job, device line."""

    def rank(item: pytest.Item) -> int:
        marker = item.get_closest_marker("gpu_suite")
        name = marker.args[0] if marker and marker.args else ""
        return SUITE_ORDER.index(name) if name in SUITE_ORDER else len(SUITE_ORDER)

    items.sort(key=rank)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if "gpu_node_name" in metafunc.fixturenames:
        names = _node_names(config)
        metafunc.parametrize("gpu_node_name", names, ids=names)
    if "workload_profile" in metafunc.fixturenames:
        chosen = config.stash[SETTINGS_KEY].workloads
        metafunc.parametrize("workload_profile", chosen, ids=list(chosen))


def _node_names(config: pytest.Config) -> list[str]:
    """GPU node names to parametrize per-node tests; placeholders when no run started."""
    cached = config.stash.get(NODES_KEY, None)
    if cached is not None:
        return cached
    info = config.stash.get(INFO_KEY, None)
    if info is None:
        names = [NOT_STARTED]
    else:
        from kubernetes import client

        api = info.api_client()
        try:
            nodes = call(client.CoreV1Api(api).list_node).items
        finally:
            api.close()
        names = [n.name for n in find_gpu_nodes(nodes)] or [NO_GPU_NODE]
    config.stash[NODES_KEY] = names
    return names


# --- fixtures: what suites and fixtures know of the run ----------------------------------------

@pytest.fixture(scope="session")
def gpu_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved gpu-conformance options (command line, env, ini, defaults)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def gpu_run(pytestconfig: pytest.Config) -> RunInfo:
    """The run: the cluster the session provisioned or attached to, and its device plugin."""
    info = pytestconfig.stash.get(INFO_KEY, None)
    if info is None:
        pytest.fail("the gpu-conformance run was not started (no cluster): see the lines above",
                    pytrace=False)
    return info


@pytest.fixture(scope="session")
def gpu_backend(gpu_run: RunInfo, gpu_settings: Settings) -> ClusterBackend:
    """The run's backend as this process knows it: its hooks (e.g. kind's stand-in images)
    adapt what the fixtures create. Built from settings and run id; touches no cluster."""
    return backends.create(gpu_settings, gpu_run.run_id)


@pytest.fixture(scope="session")
def gpu_progress() -> Callable[[str], Log]:
    """``gpu_progress(topic)`` -> a Log printing live progress lines ``topic: [ 12.0s] ...``."""
    return lambda topic: (lambda line: _log(f"{topic}: {line}"))


@pytest.fixture(scope="session")
def gpu_run_property(pytestconfig: pytest.Config) -> Callable[[str, str], None]:
    """``gpu_run_property(key, value)``: a fact learned during the run, for the reports."""
    return lambda key, value: _add_properties(pytestconfig, {key: value})


@pytest.fixture(scope="session")
def gpu_node_names(pytestconfig: pytest.Config) -> list[str]:
    """The GPU node names the per-node tests are parametrized with."""
    return _node_names(pytestconfig)


@pytest.fixture(scope="session")
def run_namespace_name(gpu_run: RunInfo, worker_id: str) -> str:
    """The name of this run's (and xdist worker's) namespace."""
    import os

    from gpu_conformance.namespaces import namespace_name

    return namespace_name(gpu_run.run_id, worker_id if worker_id != "master" else str(os.getpid()))


# --- diagnostics on failure --------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when == "teardown" or item.get_closest_marker("gpu_suite") is None:
        return
    info = item.config.stash.get(INFO_KEY, None)
    if info is None:
        return
    from gpu_conformance.namespaces import namespace_name

    worker = getattr(item.config, "workerinput", {}).get("workerid")
    import os

    namespaces = [namespace_name(info.run_id, worker or str(os.getpid()))]
    if info.plugin:
        namespaces.append(info.plugin["namespace"])
    from gpu_conformance import diagnostics

    try:
        api = info.api_client()
        try:
            text = diagnostics.collect(api, namespaces)
        finally:
            api.close()
    except Exception as exc:
        text = f"(diagnostics unavailable: {one_line(exc)})"
    longrepr = report.longrepr
    if hasattr(longrepr, "addsection"):
        longrepr.addsection("gpu-conformance diagnostics", text)
    else:
        report.sections.append(("gpu-conformance diagnostics", text))
