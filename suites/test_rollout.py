"""Suite 1: the NVIDIA device plugin DaemonSet is rolled out on every GPU node."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from gpu_conformance import checks
from gpu_conformance.device_plugin import PluginRef
from gpu_conformance.errors import FinalStateError, WaitTimeout
from gpu_conformance.kube import call
from gpu_conformance.pytest_plugin import progress
from gpu_conformance.settings import Settings
from gpu_conformance.verdict import Verdict
from gpu_conformance.waits import wait_for

pytestmark = pytest.mark.gpu_suite("rollout")


def _wait_rollout(device_plugin: PluginRef, apps_v1: client.AppsV1Api, core_v1: client.CoreV1Api,
                  settings: Settings, *, per_node: bool) -> None:
    selector_cache: dict[str, str] = {}

    def evaluate(items: list[Any]) -> Verdict:
        if not items:
            return Verdict(False, f"DaemonSet {device_plugin.namespace}/{device_plugin.name} not found",
                           final=f"DaemonSet {device_plugin.namespace}/{device_plugin.name} does not exist")
        ds = items[0]
        if "selector" not in selector_cache:
            labels = ds.spec.selector.match_labels or {}
            selector_cache["selector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        pods = call(core_v1.list_namespaced_pod, device_plugin.namespace,
                    label_selector=selector_cache["selector"]).items
        nodes = checks.find_gpu_nodes(call(core_v1.list_node).items)
        if not nodes:
            return Verdict(False, "no GPU node", final="the cluster has no GPU node at all")
        report = checks.rollout_report(ds, pods, nodes)
        problems = report.problems if per_node else [p for p in report.problems
                                                     if p.startswith("DaemonSet")]
        if not problems:
            return Verdict(True, report.summary)
        # a node the DaemonSet cannot target never gets a pod: once the controller has
        # settled and only such nodes are missing, waiting longer cannot help
        blocked = (per_node and report.counters_settled and bool(report.unreachable)
                   and not report.pending)
        return Verdict(False, report.summary + ": " + "; ".join(problems),
                       final=("; ".join(problems)) if blocked else None)

    description = ("a ready device plugin pod on every GPU node" if per_node
                   else "DaemonSet counters desired == current == updated == ready == available")
    try:
        wait_for(description, apps_v1.list_namespaced_daemon_set, evaluate,
                 timeout=settings.timeouts["plugin-rollout"], timeout_name="plugin-rollout",
                 progress=progress("plugin rollout"), recheck_every=5, namespace=device_plugin.namespace,
                 field_selector=f"metadata.name={device_plugin.name}")
    except (WaitTimeout, FinalStateError) as exc:
        pytest.fail(str(exc), pytrace=False)


def test_plugin_daemonset_counters_agree(device_plugin: PluginRef, apps_v1: client.AppsV1Api,
                                         core_v1: client.CoreV1Api, gpu_settings: Settings) -> None:
    """The DaemonSet's own counters: desired == current == updated == ready == available."""
    _wait_rollout(device_plugin, apps_v1, core_v1, gpu_settings, per_node=False)


def test_plugin_pod_ready_on_every_gpu_node(device_plugin: PluginRef, apps_v1: client.AppsV1Api,
                                            core_v1: client.CoreV1Api,
                                            gpu_settings: Settings) -> None:
    """Every GPU node has a ready plugin pod, whatever the DaemonSet's counters say."""
    _wait_rollout(device_plugin, apps_v1, core_v1, gpu_settings, per_node=True)
