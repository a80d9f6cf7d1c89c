"""Builders of real kubernetes client model objects for the unit tests of gpu_conformance.checks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from gpu_conformance import device_plugin

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def node(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    capacity: Mapping[str, str] | None = None,
    allocatable: Mapping[str, str] | None = None,
    taints: list[tuple[str, str, str]] | None = None,
    ready: bool = True,
    unschedulable: bool | None = None,
) -> client.V1Node:
    """A Node; ``taints`` are (key, value, effect); allocatable defaults to capacity."""
    capacity = dict(capacity or {})
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=dict(labels) if labels is not None else None),
        spec=client.V1NodeSpec(
            taints=[client.V1Taint(key=k, value=v or None, effect=e) for k, v, e in taints or []] or None,
            unschedulable=unschedulable,
        ),
        status=client.V1NodeStatus(
            capacity=capacity or None,
            allocatable=dict(allocatable) if allocatable is not None else (capacity or None),
            conditions=[client.V1NodeCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


def toleration(key: str | None = None, operator: str | None = None, value: str | None = None,
               effect: str | None = None) -> client.V1Toleration:
    return client.V1Toleration(key=key, operator=operator, value=value, effect=effect)


def manifest_tolerations(choice: str) -> list[client.V1Toleration]:
    """The tolerations of the plugin DaemonSet in manifests/<choice>, as client models."""
    ds = device_plugin.daemonset_of(device_plugin.load_manifest(choice))
    return [toleration(t.get("key"), t.get("operator"), t.get("value"), t.get("effect"))
            for t in ds["spec"]["template"]["spec"].get("tolerations") or []]


def daemonset(
    *,
    desired: int = 2,
    current: int | None = None,
    updated: int | None = None,
    ready: int | None = None,
    available: int | None = None,
    tolerations: list[client.V1Toleration] | None = None,
    node_selector: Mapping[str, str] | None = None,
    affinity: client.V1Affinity | None = None,
    generation: int = 1,
    observed_generation: int = 1,
) -> client.V1DaemonSet:
    """A DaemonSet whose counters default to ``desired`` (a finished rollout)."""
    def given(value: int | None) -> int:
        return desired if value is None else value

    return client.V1DaemonSet(
        metadata=client.V1ObjectMeta(name="nvidia-device-plugin-daemonset",
                                     namespace="gpu-resources", generation=generation),
        spec=client.V1DaemonSetSpec(
            selector=client.V1LabelSelector(match_labels={"name": "nvidia-device-plugin-ds"}),
            template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
                containers=[client.V1Container(name="nvidia-device-plugin-ctr",
                                               image="nvcr.io/nvidia/k8s-device-plugin:v0.18.0")],
                tolerations=tolerations,
                node_selector=dict(node_selector) if node_selector is not None else None,
                affinity=affinity,
            )),
        ),
        status=client.V1DaemonSetStatus(
            desired_number_scheduled=desired,
            current_number_scheduled=given(current),
            updated_number_scheduled=given(updated),
            number_ready=given(ready),
            number_available=given(available),
            number_misscheduled=0,
            observed_generation=observed_generation,
        ),
    )


def plugin_pod(name: str, node_name: str, *, ready: bool = True, deleting: bool = False,
               phase: str = "Running") -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace="gpu-resources",
                                     deletion_timestamp=EPOCH if deleting else None),
        spec=client.V1PodSpec(node_name=node_name, containers=[
            client.V1Container(name="nvidia-device-plugin-ctr")]),
        status=client.V1PodStatus(
            phase=phase,
            conditions=[client.V1PodCondition(type="Ready", status="True" if ready else "False")],
        ),
    )


def job(*, succeeded: int | None = None, completions: int | None = 1,
        failed: tuple[str, str] | None = None) -> client.V1Job:
    """A Job; ``failed`` = (reason, message) adds a Failed=True condition."""
    conditions = None
    if failed is not None:
        conditions = [client.V1JobCondition(type="Failed", status="True", reason=failed[0],
                                            message=failed[1])]
    return client.V1Job(
        metadata=client.V1ObjectMeta(name="tf-mnist", namespace="gpu-conformance-test"),
        spec=client.V1JobSpec(completions=completions, template=client.V1PodTemplateSpec()),
        status=client.V1JobStatus(succeeded=succeeded, conditions=conditions),
    )


def job_pod(
    name: str = "tf-mnist-abcde",
    *,
    phase: str = "Pending",
    waiting: tuple[str, str | None] | None = None,
    terminated_exit_code: int | None = None,
    unschedulable_message: str | None = None,
    container: str = "tf-mnist",
) -> client.V1Pod:
    """A Job's pod: ``waiting`` = (reason, message) of its container; or unschedulable."""
    statuses = None
    if waiting is not None or terminated_exit_code is not None:
        state = client.V1ContainerState(
            waiting=client.V1ContainerStateWaiting(reason=waiting[0], message=waiting[1])
            if waiting else None,
            terminated=client.V1ContainerStateTerminated(exit_code=terminated_exit_code, reason="Error")
            if terminated_exit_code is not None else None,
        )
        statuses = [client.V1ContainerStatus(name=container, image="img", image_id="", ready=False,
                                             restart_count=0, state=state)]
    conditions = None
    if unschedulable_message is not None:
        conditions = [client.V1PodCondition(type="PodScheduled", status="False",
                                            reason="Unschedulable", message=unschedulable_message)]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(containers=[client.V1Container(name=container)]),
        status=client.V1PodStatus(phase=phase, container_statuses=statuses, conditions=conditions),
    )


def listed(items: list[Any], resource_version: str = "100") -> Any:
    """What a ``list_*`` call returns: items plus list metadata."""
    return client.V1PodList(items=items, metadata=client.V1ListMeta(resource_version=resource_version))


def named(uid: str, resource_version: str = "1", **labels: str) -> client.V1Pod:
    """A bare object with uid/resourceVersion/labels, for watch tests."""
    return client.V1Pod(metadata=client.V1ObjectMeta(name=uid, uid=uid,
                                                     resource_version=resource_version,
                                                     labels=labels or None))
