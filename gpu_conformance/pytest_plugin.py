"""The pytest plugin: options, markers, the run's lifecycle, fixtures, diagnostics and reports.

Registered through the ``pytest11`` entry point (and ``-p`` in the project's pytest.ini), so
its options are known before pytest decides its rootdir. It stays inert unless the session is
a conformance run: the ``gpu_conformance = true`` ini key (the project's pytest.ini sets it) or
one of its own options on the command line.

Nothing touches a cluster for ``--help``, ``--markers`` or ``--collect-only``, and nothing is
provisioned when nothing is selected: the run (provision or attach, sweep, Lease, device
plugin) starts after collection and deselection, when at least one check remains. Per-node
tests are named by the GPU nodes the backend predicts (or reads, read-only, from a cluster
that exists). With xdist the controller starts the run when the first worker reports a
non-empty collection and hands it to the workers through a file; workers never provision.

Suites and fixtures never import this module: what they need of the run reaches them as the
fixtures defined here (``gpu_settings``, ``gpu_run``, ``gpu_backend``, ``gpu_progress``,
``gpu_run_property``, ``gpu_node_names``).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Generator
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from gpu_conformance import backends, kapi, options, reports
from gpu_conformance.backends.base import ClusterBackend
from gpu_conformance.checks.capacity import NO_GPU_NODE, NOT_STARTED
from gpu_conformance.cleanup import defer_interrupts, deferred_signal
from gpu_conformance.errors import ExitCode, GpuConformanceError, UsageError, exit_code_for, one_line
from gpu_conformance.kube import set_request_timeout
from gpu_conformance.log import Log
from gpu_conformance.namespaces import namespace_name
from gpu_conformance.run import RunContext, RunInfo
from gpu_conformance.settings import Settings

SETTINGS_KEY = pytest.StashKey[Settings]()
CONTEXT_KEY = pytest.StashKey[RunContext]()
#: gives back the signal handlers replaced at session end
RESTORE_KEY = pytest.StashKey[Callable[[], None] | None]()
INFO_KEY = pytest.StashKey[RunInfo]()
NODES_KEY = pytest.StashKey[list[str]]()
PROPS_KEY = pytest.StashKey[dict[str, str]]()
STATE_KEY = pytest.StashKey["_State"]()
RECORDS_KEY = pytest.StashKey[dict[str, "reports.TestRecord"]]()
WORKLOADS_KEY = pytest.StashKey[list[dict[str, Any]]]()
WORKERINPUT = "gpu_conformance"
ACTIVATE_INI = "gpu_conformance"
DEBUG_ENV = "GPU_CONFORMANCE_DEBUG"

MARKERS = (
    "gpu_suite(name): a conformance suite (rollout, capacity, workload, device, health)",
    "integration: needs the offline cluster's real processes",
)


class _State:
    """What the controller (or the only process) knows of the run's life."""

    def __init__(self) -> None:
        self.started = False
        #: set when the session must end early: (exit code, the one line that says why)
        self.stop: tuple[int, str] | None = None
        self.run_file: Path | None = None
        self.started_at = reports.now_iso()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)
    parser.addini(ACTIVATE_INI, "this session runs the GPU conformance suites", type="bool",
                  default=False)


def _active(config: pytest.Config) -> bool:
    """A conformance session: the project's ini says so, or one of our options was given."""
    if SETTINGS_KEY in config.stash:
        return True
    if config.getini(ACTIVATE_INI):
        return True
    return any(config.getoption(o.dest, default=None) not in (None, [], False)
               for o in options.OPTIONS if not o.pytest_kind)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not _active(config):
        return
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
    config.stash[STATE_KEY] = _State()
    config.stash[PROPS_KEY] = {}
    config.stash[RECORDS_KEY] = {}
    config.stash[WORKLOADS_KEY] = []
    set_request_timeout(chosen.timeouts["api-connect"], chosen.timeouts["api-read"])
    _config[:] = [config]
    workerinput = getattr(config, "workerinput", None)
    if workerinput and WORKERINPUT in workerinput:
        handed = json.loads(workerinput[WORKERINPUT])
        config.stash[NODES_KEY] = handed["nodes"]
        config.stash[STATE_KEY].run_file = Path(handed["run_file"])


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
    restore = config.stash.get(RESTORE_KEY, None)
    if restore is not None:
        restore()
    if signal.getsignal(signal.SIGTERM) is _raise_interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --- the run's life ------------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if not _active(config) or _is_worker(config):
        return
    context, state = config.stash[CONTEXT_KEY], config.stash[STATE_KEY]
    plan = context.backend.preflight()
    if plan is not None:
        print(plan, flush=True)
        _stop(config, ExitCode.OK, f"{context.backend.name}: plan printed, nothing called")
        return
    # CI cancellations send SIGTERM: make it run the same cleanup as Ctrl-C
    signal.signal(signal.SIGTERM, _raise_interrupt)
    names = context.backend.peek_gpu_nodes(touch_cluster=not config.option.collectonly)
    config.stash[NODES_KEY] = _placeholders(names)
    state.run_file = Path(tempfile.mkdtemp(prefix="gpu-conformance-run-")) / "run.json"


def _placeholders(names: list[str] | None) -> list[str]:
    if names is None:
        return [NOT_STARTED]
    return names or [NO_GPU_NODE]


def _stop(config: pytest.Config, code: int, line: str) -> None:
    """End the session early with ``code``: one line, no traceback, nothing run."""
    config.stash[STATE_KEY].stop = (code, line)
    if code != ExitCode.OK:
        _log(f"ERROR: {line}")
    dsession = config.pluginmanager.get_plugin("dsession")
    if dsession is not None and not getattr(dsession, "nodemanager", None):
        config.pluginmanager.unregister(dsession)  # start no xdist worker for a failed run


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> bool | None:
    config = session.config
    if _active(config) and config.stash[STATE_KEY].stop is not None:
        session.items = []
        return True
    return None


SUITE_ORDER = ("rollout", "capacity", "workload", "device", "health", "isolation")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Suites run in the seed guide's order; the run starts once something is selected."""
    if not _active(config):
        return

    def rank(item: pytest.Item) -> int:
        marker = item.get_closest_marker("gpu_suite")
        name = marker.args[0] if marker and marker.args else ""
        return SUITE_ORDER.index(name) if name in SUITE_ORDER else len(SUITE_ORDER)

    items.sort(key=rank)
    # a suite none of whose profiles is selected (no Job profile, no judged one, no
    # isolation): not a skip to report, not selected
    unjudged = [i for i in items
                for key in ("workload_profile", "health_profile", "isolation_profile")
                if key in getattr(i, "fixturenames", ())
                and not isinstance(_params(i).get(key), str)]
    if unjudged:
        config.hook.pytest_deselected(items=unjudged)
        items[:] = [i for i in items if i not in unjudged]
    if _is_worker(config) or config.option.collectonly or not items:
        return
    if not _start(config):
        items[:] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """What exists now (modules, the client's model classes, the items) lives as long as the
    process: out of the garbage collector's sight, each later collection (pytest runs five at
    its end) costs milliseconds instead of 0.1 s (benchmarks/results.json, 'runs')."""
    if _active(session.config):
        gc.freeze()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """xdist controller: the first worker that collected something starts the run."""
    config = node.config
    if _active(config) and ids and not config.option.collectonly:
        _start(config)


def _start(config: pytest.Config) -> bool:
    """Start the run once; on failure, end the session with one line and the right code."""
    state = config.stash[STATE_KEY]
    if state.started or state.stop is not None:
        return state.stop is None
    state.started = True
    context = config.stash[CONTEXT_KEY]
    try:
        named: list[str] = config.stash.get(NODES_KEY, [])
        info = context.start(list(named))
    except BaseException as exc:
        failures = context.finish()  # what start created, before anything else happens
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, GpuConformanceError):
            line = f"gpu-conformance: {exc.one_line()}"
        else:
            if os.environ.get(DEBUG_ENV):
                raise
            line = (f"gpu-conformance: internal error: {type(exc).__name__}: {one_line(exc)} "
                    f"({DEBUG_ENV}=1 shows the traceback)")
        if failures:
            line += f"; and {len(failures)} cleanup step(s) failed (see above)"
        _write_run_file(state, {"error": line})
        _stop(config, exit_code_for(exc), line)
        return False
    config.stash[INFO_KEY] = info
    _write_run_file(state, {"run": info.to_json()})
    _add_properties(config, info.properties)
    _log(f"run {info.run_id}: {info.backend} cluster {info.cluster_name!r}, "
         f"{info.properties.get('gpu_node_count')} GPU node(s)")
    return True


def _write_run_file(state: _State, content: dict[str, Any]) -> None:
    if state.run_file is None:
        return
    partial = state.run_file.with_suffix(".partial")
    partial.write_text(json.dumps(content))
    partial.rename(state.run_file)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent with -p no:xdist
def pytest_configure_node(node: Any) -> None:
    """xdist controller: tell each worker the GPU nodes to name tests by and where the run
    will be described once it has started."""
    config = node.config
    if not _active(config):
        return
    state = config.stash[STATE_KEY]
    node.workerinput[WORKERINPUT] = json.dumps({
        "nodes": config.stash.get(NODES_KEY, [NOT_STARTED]),
        "run_file": str(state.run_file)})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    output = getattr(node, "workeroutput", {}) or {}
    if _active(node.config):
        _add_properties(node.config, output.get("gpu_conformance_properties", {}))
        node.config.stash[WORKLOADS_KEY].extend(output.get("gpu_conformance_workloads", []))


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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    """Everything from session end on (pytest's teardown of session fixtures, the run's
    cleanup, the reports) is cleanup: a first Ctrl-C/SIGTERM is deferred until the process
    exits with the run's status, a second abandons what is left (unconfigure restores the
    handlers)."""
    config = session.config
    if not _active(config) or _is_worker(config):
        return (yield)
    context = config.stash[CONTEXT_KEY]
    state = config.stash[STATE_KEY]
    config.stash[RESTORE_KEY] = defer_interrupts(_log)
    try:
        yield
    except KeyboardInterrupt:
        if context.cleanups.entries:  # stopped before the run's own cleanup did its part
            _log(context.cleanups.abandoned())
        session.exitstatus = ExitCode.INTERRUPTED
    finally:
        if state.run_file is not None:
            shutil.rmtree(state.run_file.parent, ignore_errors=True)
    if deferred_signal():
        session.exitstatus = ExitCode.INTERRUPTED
        _log("interrupted: cleanup finished")
    return None


# named apart from the wrapper above; pytest only reads hooks whose names start with pytest_
@pytest.hookimpl(trylast=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_run_cleanup(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if not _active(config) or _is_worker(config):
        return
    state = config.stash[STATE_KEY]
    failures: list[str] = []
    if state.started or state.stop is not None:
        _write_reports(config, state)
    if state.started and state.stop is None:
        failures = config.stash[CONTEXT_KEY].finish()
    if state.stop is not None:
        session.exitstatus = state.stop[0]
    elif failures:
        _log(f"{len(failures)} cleanup step(s) failed:")
        for line in failures:
            _log(f"  {line}")
        session.exitstatus = ExitCode.CHECKS_FAILED if exitstatus == 0 else exitstatus


# --- parametrization -----------------------------------------------------------------------------

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    config = metafunc.config
    if not _active(config):
        return
    if "gpu_node_name" in metafunc.fixturenames:
        names = config.stash.get(NODES_KEY, [NOT_STARTED])
        metafunc.parametrize("gpu_node_name", names, ids=names)
    # profile first: tests run profile by profile, each on every node, so one profile's Jobs
    # run on all nodes at once instead of one node's profiles one after another
    from gpu_conformance.workloads import PROFILES

    selected = config.stash[SETTINGS_KEY].workloads
    if "workload_profile" in metafunc.fixturenames:
        jobs = [p for p in selected if p in PROFILES]
        metafunc.parametrize("workload_profile", jobs, ids=jobs)
    if "health_profile" in metafunc.fixturenames:
        judged = [p for p in selected if p in PROFILES and PROFILES[p].judge]
        metafunc.parametrize("health_profile", judged, ids=judged)
    if "isolation_profile" in metafunc.fixturenames:
        probes = [p for p in selected if p not in PROFILES]
        metafunc.parametrize("isolation_profile", probes, ids=probes)
    if "workload_node" in metafunc.fixturenames:
        names = config.stash.get(NODES_KEY, [NOT_STARTED])
        limit = config.stash[SETTINGS_KEY].workload_nodes
        chosen_nodes = names[:limit] if limit else names
        metafunc.parametrize("workload_node", chosen_nodes, ids=chosen_nodes)


# --- fixtures: what suites and fixtures know of the run ----------------------------------------

@pytest.fixture(scope="session")
def gpu_settings(pytestconfig: pytest.Config) -> Settings:
    """The resolved gpu-conformance options (command line, env, ini, defaults)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture(scope="session")
def gpu_run(pytestconfig: pytest.Config) -> RunInfo:
    """The run: the cluster the session provisioned or attached to, and its device plugin."""
    info = pytestconfig.stash.get(INFO_KEY, None)
    if info is None and _is_worker(pytestconfig):
        info = _read_run_file(pytestconfig)
    if info is None:
        pytest.fail("the gpu-conformance run was not started (no cluster): see the lines above",
                    pytrace=False)
    return info


def _read_run_file(config: pytest.Config) -> RunInfo | None:
    state = config.stash[STATE_KEY]
    if state.run_file is None or not state.run_file.is_file():
        return None
    content = json.loads(state.run_file.read_text())
    if "error" in content:
        pytest.fail(content["error"], pytrace=False)
    info = RunInfo.from_json(content["run"])
    config.stash[INFO_KEY] = info
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
def gpu_record_workload(pytestconfig: pytest.Config) -> Callable[[Any], None]:
    """``gpu_record_workload(result)``: a workload's result, for the per-node report table."""

    def record(result: Any) -> None:
        run = reports.WorkloadRun.from_result(result, node=result.target, busy=result.busy,
                                              holders=result.holders)
        data = {**asdict(run), "device_lines": list(run.device_lines),
                "holders": list(run.holders), "properties": dict(run.properties)}
        found = pytestconfig.stash[WORKLOADS_KEY]
        found[:] = [w for w in found if (w["profile"], w["node"]) != (run.profile, run.node)]
        found.append(data)
        if _is_worker(pytestconfig):
            pytestconfig.workeroutput["gpu_conformance_workloads"] = list(found)  # type: ignore[attr-defined]

    return record


@pytest.fixture(scope="session")
def gpu_node_names(pytestconfig: pytest.Config) -> list[str]:
    """The GPU node names the per-node tests are parametrized with."""
    names: list[str] = pytestconfig.stash.get(NODES_KEY, [NOT_STARTED])
    return list(names)


@pytest.fixture(scope="session")
def run_namespace_name(gpu_run: RunInfo, worker_id: str) -> str:
    """The name of this run's (and xdist worker's) namespace."""
    return _namespace(gpu_run.run_id, worker_id)


def _namespace(run_id: str, worker: str | None) -> str:
    if worker in (None, "master"):
        from gpu_conformance.coordination import run_namespace

        return run_namespace(run_id)  # the run's own namespace, holding its Lease
    return namespace_name(run_id, str(worker))


# --- diagnostics on failure, records for the reports ----------------------------------------------

def _params(item: pytest.Item) -> dict[str, Any]:
    return dict(getattr(getattr(item, "callspec", None), "params", {}) or {})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any, Any, None]:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("gpu_suite")
    if marker is None or not _active(item.config):
        return
    if call.when == "setup":
        params = _params(item)
        node = params.get("gpu_node_name", params.get("workload_node"))
        report.user_properties += [("gpu_suite", marker.args[0] if marker.args else ""),
                                   ("gpu_node", node or ""),
                                   ("gpu_profile", params.get("workload_profile",
                                                              params.get("health_profile",
                                                                         params.get(
                                                                             "isolation_profile",
                                                                             ""))))]
    if not report.failed or call.when == "teardown":
        return
    info = item.config.stash.get(INFO_KEY, None)
    if info is None:
        return
    worker = getattr(item.config, "workerinput", {}).get("workerid")
    namespaces = [_namespace(info.run_id, worker)]
    if info.plugin:
        namespaces.append(info.plugin["namespace"])
    from gpu_conformance import diagnostics

    try:
        api = info.api_client()
        try:
            full = diagnostics.collect(api, namespaces, limit=None, max_pods=None, max_events=None)
        finally:
            api.close()
    except Exception as exc:
        full = f"(diagnostics unavailable: {one_line(exc)})"
    limit = diagnostics.MAX_CHARS
    text = full if len(full) <= limit else (
        full[:limit] + f"\n... (cut at {limit} characters; the whole text is in the artifact)")
    artifact = _write_artifact(item.config, info, report.nodeid,
                               f"{report.longreprtext}\n\n--- gpu-conformance diagnostics ---\n"
                               f"{full}\n")
    if artifact:
        report.user_properties.append(("artifact", artifact))
        text += f"\n(full diagnostics: {artifact})"
    longrepr = report.longrepr
    if hasattr(longrepr, "addsection"):
        longrepr.addsection("gpu-conformance diagnostics", text)
    else:
        report.sections.append(("gpu-conformance diagnostics", text))


def _write_artifact(config: pytest.Config, info: RunInfo, nodeid: str, text: str) -> str | None:
    """The failure's full diagnostics as report_dir/artifacts/<name>.txt; its path."""
    folder = config.stash[SETTINGS_KEY].report_dir
    relative = reports.artifact_path(nodeid)
    try:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        hidden = reports.find_secrets_in_kubeconfig(info.kubeconfig)
        target.write_text(reports.redact(text, hidden), errors="replace")
    except OSError as exc:
        _log(f"could not write the artifact of {nodeid}: {one_line(exc)}")
        return None
    return str(folder / relative)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Every test's outcome, worst phase kept, for the summary (the controller sees them all)."""
    config = _config[0] if _config else None
    if config is None or not _active(config) or _is_worker(config):
        return
    props = dict(report.user_properties)
    if "gpu_suite" not in props and report.when != "setup":
        known = config.stash[RECORDS_KEY].get(report.nodeid)
        if known is None:
            return
    records = config.stash[RECORDS_KEY]
    previous = records.get(report.nodeid)
    outcome: reports.TestOutcome = (
        "error" if report.failed and report.when != "call" else
        "failed" if report.failed else "skipped" if report.skipped else "passed")
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    if previous is not None and rank[previous.outcome] >= rank[outcome]:
        if report.when == "call":
            records[report.nodeid] = replace(previous, duration_s=report.duration)
        return
    cause = ""
    if report.failed:
        cause = reports.cause_line(_failure_text(report))
    elif report.skipped and isinstance(report.longrepr, tuple):
        cause = reports.cause_line(str(report.longrepr[2]))
    base = previous or reports.TestRecord(
        nodeid=report.nodeid, suite=str(props.get("gpu_suite", "")), outcome="passed",
        duration_s=0.0, node=str(props.get("gpu_node") or "") or None,
        profile=str(props.get("gpu_profile") or "") or None)
    artifact = props.get("artifact")
    records[report.nodeid] = replace(base, outcome=outcome, cause=cause or base.cause,
                                     duration_s=report.duration if report.when == "call"
                                     else base.duration_s,
                                     artifact=str(artifact) if artifact else base.artifact)


def _failure_text(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if message:
        return str(message).removeprefix("AssertionError: ").removeprefix("Failed: ")
    return report.longreprtext


def _write_reports(config: pytest.Config, state: _State) -> None:
    """summary.md/.json/.html (and $GITHUB_STEP_SUMMARY) for this run; never fails the run."""
    settings = config.stash[SETTINGS_KEY]
    info = config.stash.get(INFO_KEY, None)
    try:
        cluster = _cluster_report(config, state, info)
        summary = reports.Summary(clusters=[cluster], started_at=state.started_at,
                                  finished_at=reports.now_iso(), command=" ".join(sys.argv))
        step = os.environ.get("GITHUB_STEP_SUMMARY")
        reports.write(settings.report_dir, summary, {}, Path(step) if step else None,
                      secrets=reports.find_secrets_in_kubeconfig(
                          info.kubeconfig if info else settings.kubeconfig))
        _log(f"reports: {settings.report_dir / 'summary.md'} ({summary.verdict})")
    except Exception as exc:  # a report that cannot be written must not hide the verdict
        _log(f"could not write the reports: {one_line(exc)}")


def _cluster_report(config: pytest.Config, state: _State, info: RunInfo | None
                    ) -> reports.ClusterReport:
    tests = list(config.stash[RECORDS_KEY].values())
    if info is None:
        context = config.stash[CONTEXT_KEY]
        return reports.ClusterReport(
            name=context.backend.name, backend=context.backend.name, tests=tests,
            error=state.stop[1] if state.stop else "the run did not start")

    from gpu_conformance.gpu_nodes import find_gpu_nodes
    from gpu_conformance.kube import call

    gpu_nodes: list[Any] = []
    pods: list[reports.PluginPod] = []
    try:
        api = info.api_client()
        try:
            core = kapi.CoreV1Api(api)
            gpu_nodes = find_gpu_nodes(call(core.list_node).items)
            if info.plugin:
                listed: list[Any] = call(core.list_namespaced_pod, info.plugin["namespace"]).items
                for pod in listed:
                    ready = any(c.type == "Ready" and c.status == "True"
                                for c in (pod.status.conditions or [])) if pod.status else False
                    if pod.spec and pod.spec.node_name:
                        pods.append(reports.PluginPod(pod.spec.node_name,
                                                      f"{pod.metadata.namespace}/"
                                                      f"{pod.metadata.name}", ready))
        finally:
            api.close()
    except Exception as exc:
        _log(f"reports: could not read the cluster's nodes ({one_line(exc)})")
    runs = [reports.WorkloadRun(**{**w, "device_lines": tuple(w["device_lines"]),
                                   "holders": tuple(w["holders"])})
            for w in config.stash[WORKLOADS_KEY]]
    settings = config.stash[SETTINGS_KEY]
    properties: dict[str, str] = config.stash[PROPS_KEY]
    return reports.ClusterReport(
        name=info.cluster_name, backend=info.backend,
        kubernetes_version=info.properties.get("kubernetes_version"),
        properties=dict(properties),
        nodes=reports.node_rows(gpu_nodes, plugin_pods=pods, workloads=runs, tests=tests,
                                profiles=list(settings.workloads)),
        tests=tests)
