"""gpu_conformance.hints, .timeouts, .cleanup and .errors."""

from __future__ import annotations

import functools
import json
import signal

import pytest
from kubernetes.client.exceptions import ApiException

from gpu_conformance import hints
from gpu_conformance.cleanup import CleanupStack, deferred_signal, interrupts_deferred
from gpu_conformance.errors import ClusterError, GpuConformanceError, UsageError
from gpu_conformance.timeouts import DEFAULTS, Timeouts, parse_overrides

# --- hints -------------------------------------------------------------------------------------

def test_no_known_symptom_no_hint() -> None:
    assert hints.likely_causes("all good", "") == []


def test_insufficient_gpu_hint() -> None:
    assert hints.likely_causes("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.") == [
        "no node has a free GPU: the device plugin is not advertising GPUs, or every GPU is "
        "allocated (see node GPU capacity/allocatable below)"
    ]


def test_untolerated_taint_hint() -> None:
    [hint] = hints.likely_causes("0/2 nodes are available: 2 node(s) had untolerated taint {sku: gpu}.")
    assert hint == "the pod does not tolerate the GPU nodes' taint (AKS GPU pools: sku=gpu:NoSchedule)"


def test_hints_from_several_texts_once_each_in_table_order() -> None:
    causes = hints.likely_causes(
        "pod x container y is CrashLoopBackOff: back-off",
        "Failed to initialize NVML: could not load NVML library",
        "ImagePullBackOff", "ErrImagePull",
    )
    assert [c.split(":")[0] for c in causes] == [
        "the node has no NVIDIA driver or container runtime hook",
        "the image cannot be pulled",
        "the container keeps exiting",
    ]


def test_hints_are_case_insensitive() -> None:
    assert len(hints.likely_causes("backofflimitexceeded")) == 1


# --- timeouts ----------------------------------------------------------------------------------

def test_timeouts_defaults_and_overrides() -> None:
    timeouts = Timeouts({"job-complete": 1800})
    assert timeouts["job-complete"] == 1800
    assert timeouts["plugin-rollout"] == 600
    assert timeouts.describe("job-complete").startswith("job-complete timeout of 1800s (")
    assert timeouts.describe("cleanup") == f"cleanup timeout of 120s ({DEFAULTS['cleanup'].reason})"


def test_every_default_timeout_has_a_reason() -> None:
    assert all(t.seconds > 0 and len(t.reason) > 20 for t in DEFAULTS.values())


def test_unknown_timeout_name_lists_known_names() -> None:
    with pytest.raises(UsageError) as info:
        Timeouts({"job-completion": 5})
    assert str(info.value) == (
        f"unknown timeout 'job-completion'; known: {', '.join(sorted(DEFAULTS))}"
    )
    assert "aks-create" in DEFAULTS and "kind-create" in DEFAULTS and "api-read" in DEFAULTS


def test_parse_overrides_accepts_commas_and_spaces() -> None:
    assert parse_overrides(["job-complete=1800,cleanup=30", "api-ready=2.5"]) == {
        "job-complete": 1800.0, "cleanup": 30.0, "api-ready": 2.5}
    assert parse_overrides([]) == {}


@pytest.mark.parametrize("item", ["job-complete", "job-complete=", "job-complete=ten",
                                  "job-complete=0", "job-complete=-5"])
def test_parse_overrides_rejects_bad_input(item: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_overrides([item])
    assert str(info.value) == (f"--gpu-timeout: bad timeout {item!r}: expected NAME=SECONDS "
                               "with SECONDS > 0")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_parse_overrides_rejects_non_finite_seconds(value: str) -> None:
    with pytest.raises(UsageError):
        parse_overrides([f"cleanup={value}"])


# --- cleanup -----------------------------------------------------------------------------------

def api_error(status: int, reason: str, message: str = "") -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"message": message}) if message else None
    return exc


def test_cleanup_runs_last_in_first_out() -> None:
    ran: list[str] = []
    stack = CleanupStack()
    for name in ("namespace", "daemonset", "job"):
        stack.push(f"delete {name}", functools.partial(ran.append, name))
    assert stack.run(log=pytest.fail) == []
    assert ran == ["job", "daemonset", "namespace"]
    assert stack.entries == []


def test_cleanup_ignores_not_found() -> None:
    def gone() -> None:
        raise api_error(404, "Not Found", 'namespaces "x" not found')

    logged: list[str] = []
    stack = CleanupStack()
    stack.push("delete namespace x", gone, manual="kubectl delete namespace x")
    assert stack.run(log=logged.append) == []
    assert logged == []


def test_cleanup_collects_errors_with_manual_command_and_continues() -> None:
    ran: list[str] = []

    def forbidden() -> None:
        raise api_error(403, "Forbidden", "daemonsets.apps is forbidden")

    def boom() -> None:
        raise RuntimeError("connection reset\nmore detail")

    stack = CleanupStack()
    stack.push("delete namespace gc-1", lambda: ran.append("namespace"),
               manual="kubectl delete namespace gc-1")
    stack.push("delete job", boom)
    stack.push("delete daemonset", forbidden,
               manual="kubectl -n gpu-resources delete daemonset nvidia-device-plugin")
    logged: list[str] = []
    failures = stack.run(log=logged.append)
    assert failures == [
        "cleanup failed: delete daemonset: 403 Forbidden: daemonsets.apps is forbidden; clean up by "
        "hand: kubectl -n gpu-resources delete daemonset nvidia-device-plugin",
        "cleanup failed: delete job: connection reset",
    ]
    assert logged == failures
    assert ran == ["namespace"]


def test_cleanup_interrupted_prints_remaining_manual_commands() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    stack = CleanupStack()
    stack.push("delete namespace", lambda: None, manual="kubectl delete namespace a")
    stack.push("delete crb", lambda: None, manual="kubectl delete clusterrolebinding b")
    stack.push("delete job", interrupt, manual="kubectl delete job c")
    logged: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        stack.run(log=logged.append)
    assert logged == ["cleanup interrupted; clean up by hand: kubectl delete job c && "
                      "kubectl delete clusterrolebinding b && kubectl delete namespace a"]


def test_cleanup_interrupted_without_manual_commands_names_the_steps() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    stack = CleanupStack()
    stack.push("wait for the run's deletions", lambda: None)
    stack.push("close the API client", interrupt)
    logged: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        stack.run(log=logged.append)
    assert logged == ["cleanup interrupted (steps not done: close the API client; wait for the "
                      "run's deletions)"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_first_signal_during_cleanup_is_deferred_and_cleanup_finishes(signum: int) -> None:
    ran: list[str] = []

    def signalled() -> None:
        signal.raise_signal(signum)
        ran.append("daemonset")

    stack = CleanupStack()
    stack.push("delete namespace", lambda: ran.append("namespace"))
    stack.push("delete daemonset", signalled)
    logged: list[str] = []
    before = signal.getsignal(signum)
    assert stack.run(log=logged.append) == []
    assert ran == ["daemonset", "namespace"]
    assert deferred_signal() == signum
    assert logged == [f"interrupted ({signal.Signals(signum).name}): finishing cleanup first, so "
                      "nothing is left behind; interrupt again to stop it"]
    assert signal.getsignal(signum) is before  # the handler is given back


def test_a_second_signal_during_cleanup_stops_it_with_what_is_left() -> None:
    ran: list[str] = []

    def twice() -> None:
        signal.raise_signal(signal.SIGINT)
        ran.append("first survived")
        signal.raise_signal(signal.SIGTERM)
        ran.append("never")

    stack = CleanupStack()
    stack.push("delete namespace", lambda: ran.append("namespace"), manual="kubectl delete ns a")
    stack.push("delete daemonset", twice, manual="kubectl delete ds b")
    logged: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        stack.run(log=logged.append)
    assert ran == ["first survived"]
    assert logged[-1] == ("cleanup interrupted; clean up by hand: kubectl delete ds b && "
                          "kubectl delete ns a")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_deferrals_share_the_outermost() -> None:
    logged: list[str] = []
    with interrupts_deferred(logged.append):
        with interrupts_deferred(logged.append):
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second, though the inner one has ended
    assert deferred_signal() == signal.SIGINT
    assert len(logged) == 1


# --- errors ------------------------------------------------------------------------------------

def test_one_line_collapses_whitespace() -> None:
    assert UsageError("bad\n  option\tvalue ").one_line() == "bad option value"


def test_one_line_appends_hint() -> None:
    exc = ClusterError("port 6443 in use", hint="pick another with --port")
    assert exc.one_line() == "port 6443 in use (pick another with --port)"
    assert str(exc) == "port 6443 in use"
    assert isinstance(exc, GpuConformanceError)


def test_hint_is_per_instance() -> None:
    ClusterError("x", hint="first")
    assert ClusterError("y").one_line() == "y"
