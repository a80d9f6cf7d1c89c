"""Suite 1: the NVIDIA device plugin DaemonSet is rolled out on every GPU node."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from gpu_conformance.checks import rollout
from gpu_conformance.device_plugin import PluginRef
from gpu_conformance.log import Log
from gpu_conformance.settings import Settings

pytestmark = pytest.mark.gpu_suite("rollout")


def test_plugin_daemonset_counters_agree(device_plugin: PluginRef, kube_api: client.ApiClient,
                                         gpu_settings: Settings,
                                         gpu_progress: Callable[[str], Log]) -> None:
    """The DaemonSet's own counters: desired == current == updated == ready == available."""
    outcome = rollout.check(kube_api, device_plugin, gpu_settings.timeouts,
                            gpu_progress("plugin rollout"), per_node=False)
    assert outcome.ok, outcome.message


def test_plugin_pod_ready_on_every_gpu_node(device_plugin: PluginRef, kube_api: client.ApiClient,
                                            gpu_settings: Settings,
                                            gpu_progress: Callable[[str], Log]) -> None:
    """Every GPU node has a ready plugin pod, whatever the DaemonSet's counters say."""
    outcome = rollout.check(kube_api, device_plugin, gpu_settings.timeouts,
                            gpu_progress("plugin rollout"), per_node=True)
    assert outcome.ok, outcome.message
