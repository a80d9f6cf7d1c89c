"""gpu_conformance.simulator's core: the kubelet device manager's capacity and allocatable for
simulated GPU nodes, from plugin pods and the time, without a cluster."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from gpu_conformance import simulator
from gpu_conformance.simulator import (
    GPUS_ANNOTATION,
    HEALTHY_ANNOTATION,
    RESOURCE_ANNOTATION,
    Allocation,
    DeviceManagers,
    Devices,
    PluginPod,
    SimNode,
    desired,
    plan,
    plugin_pod,
    sim_node,
    status_patch,
)

GRACE = 300.0
GPU = "nvidia.com/gpu"


def node_json(name: str = "gpu-0", *, gpus: str | None = "2", healthy: str | None = None,
              resource: str | None = None, capacity: dict[str, str] | None = None,
              allocatable: dict[str, str] | None = None, rv: str = "10",
              simulated: bool = True) -> dict[str, Any]:
    annotations = {"kwok.x-k8s.io/node": "fake"}
    for key, value in ((GPUS_ANNOTATION, gpus), (HEALTHY_ANNOTATION, healthy),
                       (RESOURCE_ANNOTATION, resource)):
        if value is not None:
            annotations[key] = value
    labels = {"gpu-conformance.io/simulated": "true"} if simulated else {}
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations,
                     "resourceVersion": rv},
        "status": {"capacity": {"cpu": "8", "pods": "110", **(capacity or {})},
                   "allocatable": {"cpu": "7800m", "pods": "110", **(allocatable or {})}},
    }


def pod_json(node: str = "gpu-0", *, ready: bool = True, deleting: bool = False,
             owner: str | None = "DaemonSet", owner_name: str = "gpu-plugins",
             image: str = "nvcr.io/nvidia/k8s-device-plugin:v0.18.0",
             container: str = "nvidia-device-plugin-ctr", labels: dict[str, str] | None = None,
             name: str = "plugin-abc") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "gpu-resources", "uid": f"uid-{name}",
                            "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": owner_name}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": container, "image": image}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def node(**kwargs: Any) -> SimNode:
    found = sim_node(node_json(**kwargs))
    assert found is not None
    return found


def pod(**kwargs: Any) -> PluginPod:
    found = plugin_pod(pod_json(**kwargs))
    assert found is not None
    return found


def gpu_patch(capacity: int, allocatable: int, resource: str = GPU) -> dict[str, Any]:
    return {"status": {"capacity": {resource: str(capacity)},
                       "allocatable": {resource: str(allocatable)}}}


# --- which nodes and pods count ------------------------------------------------------------

def test_simulated_node_reads_its_gpus_and_only_its_gpu_status() -> None:
    found = node(healthy="1", capacity={GPU: "2"}, allocatable={GPU: "1"})
    assert found.devices == {GPU: Devices(total=2, healthy=1)}
    assert found.capacity == {GPU: "2"} and found.allocatable == {GPU: "1"}
    assert found.resource_version == "10"


@pytest.mark.parametrize("kwargs", [{"gpus": None}, {"simulated": False}])
def test_nodes_without_the_label_or_the_gpus_annotation_are_not_simulated(kwargs: dict[str, Any]) -> None:
    assert sim_node(node_json(**kwargs)) is None


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"gpus": "two"}, "whole number"),
    ({"gpus": "-1"}, "negative"),
    ({"healthy": "x"}, HEALTHY_ANNOTATION),
    ({"resource": "gpu"}, "extended resource"),
])
def test_malformed_annotations_are_one_clear_line(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        sim_node(node_json(**kwargs))


def test_more_healthy_than_present_is_all_of_them() -> None:
    assert node(gpus="2", healthy="5").devices[GPU] == Devices(2, 2)


@pytest.mark.parametrize("kwargs", [
    {},  # the current manifest: image and container name
    {"image": "example.io/other:1", "container": "c",
     "labels": {"app.kubernetes.io/name": "nvidia-device-plugin"}},
    {"image": "example.io/other:1", "container": "c", "labels": {"name": "nvidia-device-plugin-ds"}},
    {"image": "example.io/other:1", "container": "nvidia-device-plugin"},  # GPU Operator
    {"image": "mcr.microsoft.com/oss/nvidia/k8s-device-plugin:1.11", "container": "c"},  # seed
    {"image": "example.io/other:1", "container": "c", "owner_name": "nvidia-device-plugin-daemonset"},
])
def test_device_plugin_pods_are_recognized_however_installed(kwargs: dict[str, Any]) -> None:
    assert plugin_pod(pod_json(**kwargs)) is not None


@pytest.mark.parametrize("kwargs", [
    {"owner": None},  # a bare pod with the plugin's image is not a DaemonSet's
    {"owner": "ReplicaSet", "owner_name": "nvidia-device-plugin-7d9f"},
    {"image": "example.io/other:1", "container": "c"},  # some other DaemonSet
])
def test_other_pods_are_not_plugin_pods(kwargs: dict[str, Any]) -> None:
    assert plugin_pod(pod_json(**kwargs)) is None


# --- the kubelet's numbers -----------------------------------------------------------------

def test_a_ready_plugin_registers_all_devices_as_capacity_and_healthy_ones_as_allocatable() -> None:
    patches = plan([node(healthy="1")], [pod()], {}, now=0.0, grace=GRACE)
    assert patches == {"gpu-0": gpu_patch(2, 1)}


@pytest.mark.parametrize("kwargs", [{"ready": False}, {"deleting": True}, {"node": "other"},
                                    {"node": ""}])
def test_no_capacity_without_a_serving_plugin_pod(kwargs: dict[str, Any]) -> None:
    assert plan([node()], [pod(**kwargs)], {}, now=0.0, grace=GRACE) == {}


def test_no_capacity_from_a_pod_that_is_no_plugin() -> None:
    assert plugin_pod(pod_json(image="busybox", container="c")) is None
    assert plan([node()], [], {}, now=0.0, grace=GRACE) == {}


def test_after_the_plugin_goes_allocatable_is_zero_then_capacity_after_the_grace() -> None:
    gpu = node(capacity={GPU: "2"}, allocatable={GPU: "2"})
    assert desired(gpu, False, 100.0, now=100.0, grace=GRACE) == {GPU: Allocation(2, 0)}
    assert desired(gpu, False, 100.0, now=99.0 + GRACE, grace=GRACE) == {GPU: Allocation(2, 0)}
    # the kubelet leaves the removed resource in status, at 0
    assert desired(gpu, False, 100.0, now=100.0 + GRACE, grace=GRACE) == {GPU: Allocation(0, 0)}
    assert plan([gpu], [], {"gpu-0": 100.0}, now=101.0, grace=GRACE) == {"gpu-0": gpu_patch(2, 0)}


def test_the_patch_touches_only_the_gpu_resources_and_none_when_all_is_right() -> None:
    gpu = node(capacity={GPU: "2"}, allocatable={GPU: "1"}, healthy="1")
    assert status_patch(gpu, {GPU: Allocation(2, 1)}) is None
    assert status_patch(gpu, None) is None
    assert status_patch(gpu, {GPU: Allocation(2, 2)}) == gpu_patch(2, 2)


def test_the_resource_is_a_parameter_mig_for_instance() -> None:
    mig = "nvidia.com/mig-1g.10gb"
    patches = plan([node(gpus="7", healthy="6", resource=mig)], [pod()], {}, now=0.0, grace=GRACE)
    assert patches == {"gpu-0": gpu_patch(7, 6, mig)}


# --- the incremental state -----------------------------------------------------------------

def managers(*nodes: SimNode, grace: float = GRACE) -> DeviceManagers:
    state = DeviceManagers(grace)
    state.replace_pods({}, 0.0)
    state.replace_nodes({n.name: n for n in nodes})
    return state


def applied(state: DeviceManagers, name: str, patch: dict[str, Any], rv: str) -> None:
    """What the API server answers to our patch, fed back as the loop does."""
    old = state.nodes[name]
    state.set_node(name, SimNode(name, old.devices,
                                 {**old.capacity, **patch["status"]["capacity"]},
                                 {**old.allocatable, **patch["status"]["allocatable"]}, rv))


def test_lifecycle_register_stop_grace_remove() -> None:
    state = managers(node(healthy="1"))
    assert state.patches(0.0) == {}  # never registered: no GPU resource at all
    state.set_pod("u1", pod(ready=False), 1.0)
    assert state.patches(1.0) == {}
    state.set_pod("u1", pod(), 2.0)
    assert state.patches(2.0) == {"gpu-0": gpu_patch(2, 1)}
    applied(state, "gpu-0", gpu_patch(2, 1), "11")
    assert state.patches(2.5) == {}  # the answer to our own patch changes nothing
    state.set_pod("u1", pod(deleting=True), 10.0)
    assert state.patches(10.0) == {"gpu-0": gpu_patch(2, 0)}  # unhealthy at once
    applied(state, "gpu-0", gpu_patch(2, 0), "12")
    assert state.next_deadline() == 10.0 + GRACE
    assert state.patches(10.0 + GRACE - 1) == {}
    assert state.patches(10.0 + GRACE) == {"gpu-0": gpu_patch(0, 0)}
    applied(state, "gpu-0", gpu_patch(0, 0), "13")
    state.set_pod("u1", None, 20.0 + GRACE)
    assert state.patches(30.0 + GRACE) == {}
    assert state.next_deadline() is None


def test_a_plugin_back_within_the_grace_restores_allocatable() -> None:
    state = managers(node(capacity={GPU: "2"}, allocatable={GPU: "0"}))
    state.set_pod("u1", pod(), 0.0)
    assert state.patches(0.0) == {"gpu-0": gpu_patch(2, 2)}


def test_a_second_plugin_pod_keeps_the_node_served() -> None:
    state = managers(node(capacity={GPU: "2"}, allocatable={GPU: "2"}))
    state.set_pod("old", pod(name="old"), 0.0)
    state.set_pod("new", pod(name="new"), 0.0)
    state.set_pod("old", pod(name="old", deleting=True), 1.0)
    assert state.patches(1.0) == {} and "gpu-0" not in state.last_ready


def test_a_node_overwritten_by_someone_else_is_patched_again() -> None:
    state = managers(node(capacity={GPU: "2"}, allocatable={GPU: "2"}))
    state.set_pod("u1", pod(), 0.0)
    assert state.patches(0.0) == {}
    state.set_node("gpu-0", node(capacity={GPU: "8"}, allocatable={GPU: "8"}, rv="20"))
    assert state.patches(1.0) == {"gpu-0": gpu_patch(2, 2)}
    state.set_node("gpu-0", node(capacity={}, allocatable={}, rv="21"))  # key dropped
    assert state.patches(2.0) == {"gpu-0": gpu_patch(2, 2)}


def test_events_older_than_our_patch_answer_are_ignored() -> None:
    state = managers(node(rv="10"))
    state.set_pod("u1", pod(), 0.0)
    assert state.patches(0.0) == {"gpu-0": gpu_patch(2, 2)}
    applied(state, "gpu-0", gpu_patch(2, 2), "15")
    state.set_node("gpu-0", node(rv="12"))  # a heartbeat from before our patch, delivered late
    assert state.patches(1.0) == {}


def test_healthy_annotation_changes_are_applied_like_listandwatch_updates() -> None:
    state = managers(node(capacity={GPU: "2"}, allocatable={GPU: "2"}))
    state.set_pod("u1", pod(), 0.0)
    state.set_node("gpu-0", node(healthy="1", capacity={GPU: "2"}, allocatable={GPU: "2"}, rv="11"))
    assert state.patches(1.0) == {"gpu-0": gpu_patch(2, 1)}


def test_a_relist_that_misses_the_plugin_stops_it_then() -> None:
    state = managers(node(capacity={GPU: "2"}, allocatable={GPU: "2"}))
    state.replace_pods({"u1": pod()}, 0.0)
    assert state.patches(0.0) == {}
    state.replace_pods({}, 50.0)  # deleted while the watch was down
    assert state.patches(50.0) == {"gpu-0": gpu_patch(2, 0)}
    assert state.next_deadline() == 50.0 + GRACE


def test_on_first_sight_devices_no_plugin_serves_start_their_grace_then() -> None:
    """The simulator restarted after the plugin went: as if the plugin just stopped."""
    state = managers(node(capacity={GPU: "2"}, allocatable={GPU: "2"}))
    assert state.patches(7.0) == {"gpu-0": gpu_patch(2, 0)}
    assert state.next_deadline() == 7.0 + GRACE
    removed = managers(node(capacity={GPU: "0"}, allocatable={GPU: "0"}))
    assert removed.patches(7.0) == {} and removed.next_deadline() is None


def test_nodes_that_go_away_are_forgotten() -> None:
    state = managers(node(capacity={GPU: "2"}, allocatable={GPU: "2"}))
    state.set_pod("u1", pod(), 0.0)
    state.set_pod("u1", None, 1.0)
    state.set_node("gpu-0", None)
    assert state.patches(2.0) == {} and state.next_deadline() is None
    state.replace_nodes({})
    assert state.nodes == {}


def test_a_failed_patch_is_retried_after_its_pause() -> None:
    state = managers(node())
    state.set_pod("u1", pod(), 0.0)
    assert state.patches(0.0) == {"gpu-0": gpu_patch(2, 2)}
    state.defer("gpu-0", 5.0)
    assert state.patches(1.0) == {} and state.next_deadline() == 5.0
    assert state.patches(5.0) == {"gpu-0": gpu_patch(2, 2)}


# --- the loop's pieces ---------------------------------------------------------------------

class FakeResponse:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.data = b"".join(chunks)

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.chunks


def test_watch_lines_are_whole_documents_however_chunked() -> None:
    docs = [{"type": "ADDED", "object": {"n": i}} for i in range(3)]
    text = b"".join(json.dumps(d).encode() + b"\n" for d in docs)
    chunks = [text[:7], text[7:40], text[40:41], text[41:]]
    assert [json.loads(line) for line in simulator._lines(FakeResponse(chunks))] == docs


class FakeCore:
    """patch_node_status answers from a script: a node JSON, or an exception to raise."""

    def __init__(self, answers: dict[str, dict[str, Any] | BaseException]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def patch_node_status(self, name: str, body: dict[str, Any], **kwargs: Any) -> FakeResponse:
        self.calls.append((name, body, kwargs.get("_content_type", "")))
        answer = self.answers[name]
        if isinstance(answer, BaseException):
            raise answer
        return FakeResponse([json.dumps(answer).encode()])


def test_patches_are_merge_patches_and_their_answers_feed_the_state() -> None:
    lines: list[str] = []
    sim = simulator.Simulator(None, grace=GRACE, log=lines.append)  # type: ignore[arg-type]
    ok = node_json("gpu-0", capacity={GPU: "2"}, allocatable={GPU: "2"}, rv="30")
    sim.core = FakeCore({  # type: ignore[assignment]
        "gpu-0": ok,
        "gone": ApiException(status=404, reason="Not Found"),
        "down": urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
    })
    for name in ("gpu-0", "gone", "down"):
        sim.state.set_node(name, node(name=name))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        sim._patch_all(pool, {n: gpu_patch(2, 2) for n in ("gpu-0", "gone", "down")})
    core = sim.core
    assert isinstance(core, FakeCore)
    assert {c[2] for c in core.calls} == {"application/merge-patch+json"}
    assert sim.state.nodes["gpu-0"].capacity == {GPU: "2"}
    assert "gone" not in sim.state.nodes
    assert "down" in sim.state.deferred
    assert len(lines) == 1 and lines[0].startswith("patch node status: cannot reach the API server")
    assert lines[0].endswith("connection refused; retrying")


def test_the_same_problem_is_logged_once_and_its_end_once() -> None:
    lines: list[str] = []
    problems = simulator._Problems(lines.append, "pods")
    for _ in range(3):
        problems.failed("connection refused; retrying")
    problems.recovered()
    problems.recovered()
    assert lines == ["pods: connection refused; retrying", "pods: working again (2 more failures)"]


def test_main_rejects_a_missing_kubeconfig_in_one_line(tmp_path: Any, capsys: Any) -> None:
    code = simulator.main(["--kubeconfig", str(tmp_path / "none.yaml"), "--plugin-grace", "3"])
    assert code == 4
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "does not exist" in out[0]


def test_stop_and_running_without_a_process(tmp_path: Any) -> None:
    assert not simulator.running(tmp_path)
    assert simulator.stop(tmp_path, timeout=0.1) is False
    (tmp_path / simulator.PID_FILE).write_text(f"{os.getpid()}\n")
    assert not simulator.running(tmp_path), "this pytest process is not the simulator"


def test_a_recurring_outage_reads_the_same_whatever_the_url() -> None:
    def refused(url: str) -> BaseException:
        reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
        return urllib3.exceptions.MaxRetryError(None, url, reason)  # type: ignore[arg-type]

    first = simulator._problem(refused("/api/v1/pods?timeoutSeconds=311"), "https://127.0.0.1:1")
    second = simulator._problem(refused("/api/v1/pods?timeoutSeconds=502"), "https://127.0.0.1:1")
    assert first == second == "cannot reach the API server at https://127.0.0.1:1: connection refused"


# --- several resources: MIG profiles, time-sliced replicas ---------------------------------

def test_the_devices_annotation_gives_each_resource_its_devices() -> None:
    from gpu_conformance import gpus as gpus_module
    from gpu_conformance import nodes, sharing

    sku = gpus_module.resolve_product("Standard_ND96isr_H100_v5")
    shared = sharing.simulated_node("mig-mixed", sku.device_name, 2, vm_size=sku.vm_size)
    manifest = nodes.gpu_node("gpu-0", sku, 2, plugin_managed=True, shared=shared)
    found = sim_node(manifest)
    assert found is not None
    assert found.devices == {GPU: Devices(0, 0), "nvidia.com/mig-1g.10gb": Devices(4, 4),
                             "nvidia.com/mig-2g.20gb": Devices(2, 2),
                             "nvidia.com/mig-3g.40gb": Devices(2, 2)}
    # until a plugin registers them, the node's status carries none of them
    assert not any(r.startswith("nvidia.com/") for r in manifest["status"]["capacity"])


@pytest.mark.parametrize(("text", "devices"), [
    ("nvidia.com/mig-1g.10gb=4/3", {"nvidia.com/mig-1g.10gb": Devices(4, 3)}),
    (" nvidia.com/gpu=8 , nvidia.com/gpu.shared=2/9", {GPU: Devices(8, 8),
                                                       "nvidia.com/gpu.shared": Devices(2, 2)}),
])
def test_devices_annotation_values(text: str, devices: dict[str, Devices]) -> None:
    found = sim_node({**node_json(gpus=None), "metadata": {
        **node_json(gpus=None)["metadata"],
        "annotations": {simulator.DEVICES_ANNOTATION: text}}})
    assert found is not None and found.devices == devices


@pytest.mark.parametrize(("text", "words"), [
    ("mig-1g.10gb=4", "extended resource names"),
    ("nvidia.com/mig-1g.10gb", "RESOURCE=TOTAL"),
    ("nvidia.com/gpu=four", "whole number"),
    ("nvidia.com/gpu=4/-1", "negative"),
])
def test_malformed_devices_annotation_is_one_clear_line(text: str, words: str) -> None:
    bad = node_json(gpus=None)
    bad["metadata"]["annotations"][simulator.DEVICES_ANNOTATION] = text
    with pytest.raises(ValueError, match=words):
        sim_node(bad)
