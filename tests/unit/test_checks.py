"""gpu_conformance.checks: the judgements, fed with client model objects of broken clusters."""

from __future__ import annotations

import pytest
from kubernetes import client

from gpu_conformance import gpus
from gpu_conformance.checks import capacity, device, rollout, workload
from gpu_conformance.checks.workload import JobObservation
from gpu_conformance.gpu_nodes import GpuNode, find_gpu_nodes, format_taint, untolerated_taints
from gpu_conformance.workloads.base import LogReport
from tests.unit.k8s_objects import (
    daemonset,
    job,
    job_pod,
    manifest_tolerations,
    node,
    plugin_pod,
    toleration,
)

T4_SIZE = "Standard_NC4as_T4_v3"
GPU = gpus.GPU_RESOURCE


def gpu_node(name: str = "aks-gpu-0", *, capacity: int = 1, allocatable: int | None = None,
             labels: dict[str, str] | None = None, ready: bool = True,
             taints: tuple[tuple[str, str, str], ...] = ()) -> GpuNode:
    return GpuNode(
        name=name, why="label accelerator=nvidia",
        labels=labels if labels is not None else {gpus.INSTANCE_TYPE_LABEL: T4_SIZE},
        capacity=capacity, allocatable=capacity if allocatable is None else allocatable,
        taints=taints, unschedulable=False, ready=ready,
    )


# --- find_gpu_nodes ----------------------------------------------------------------------------

def test_find_gpu_nodes_by_each_label_kind_vm_size_and_capacity() -> None:
    found = find_gpu_nodes([
        node("e-capacity", capacity={"cpu": "4", GPU: "2"}),
        node("a-accelerator", labels={"accelerator": "nvidia"}),
        node("b-aks", labels={gpus.AKS_ACCELERATOR_LABEL: "NVIDIA"}),
        node("c-gfd", labels={gpus.PRESENT_LABEL: "true"}),
        node("d-size", labels={gpus.LEGACY_INSTANCE_TYPE_LABEL: "standard_nc6s_v3"}),
    ])
    assert [(n.name, n.why) for n in found] == [
        ("a-accelerator", "label accelerator=nvidia"),
        ("b-aks", "label kubernetes.azure.com/accelerator=nvidia"),
        ("c-gfd", "label nvidia.com/gpu.present=true"),
        ("d-size", "GPU VM size standard_nc6s_v3"),
        ("e-capacity", "capacity nvidia.com/gpu=2"),
    ]
    assert found[4].capacity == 2
    assert found[4].allocatable == 2


def test_find_gpu_nodes_excludes_non_gpu_nodes() -> None:
    found = find_gpu_nodes([
        node("system", labels={gpus.INSTANCE_TYPE_LABEL: "Standard_D4s_v5",
                               "accelerator": "amd"}, capacity={"cpu": "4"}),
        node("zero", capacity={GPU: "0"}),
        node("absent-gfd", labels={gpus.PRESENT_LABEL: "false"}),
        node("bare"),
    ])
    assert found == []


def test_find_gpu_nodes_reads_status_taints_and_readiness() -> None:
    [found] = find_gpu_nodes([
        node("gpu", labels={"accelerator": "nvidia"}, capacity={GPU: "4"}, allocatable={GPU: "3"},
             taints=[("sku", "gpu", "NoSchedule"), ("nvidia.com/gpu", "", "NoSchedule")],
             ready=False, unschedulable=True),
    ])
    assert found == GpuNode(
        name="gpu", why="label accelerator=nvidia", labels={"accelerator": "nvidia"},
        capacity=4, allocatable=3,
        taints=(("sku", "gpu", "NoSchedule"), ("nvidia.com/gpu", "", "NoSchedule")),
        unschedulable=True, ready=False,
        gpu_capacity={GPU: "4"}, gpu_allocatable={GPU: "3"},
    )
    assert not found.shared


def test_find_gpu_nodes_tolerates_missing_status() -> None:
    bare = client.V1Node(metadata=client.V1ObjectMeta(name="n", labels={"accelerator": "nvidia"}),
                         spec=client.V1NodeSpec(), status=None)
    [found] = find_gpu_nodes([bare])
    assert (found.capacity, found.allocatable, found.ready, found.taints) == (0, 0, False, ())


# --- capacity_problems -------------------------------------------------------------------------

def test_capacity_healthy_node_has_no_problems() -> None:
    assert capacity.judge(gpu_node()) == []


def test_capacity_none_blames_the_device_plugin() -> None:
    problems = capacity.judge(gpu_node(capacity=0))
    assert problems == [
        "node aks-gpu-0 (label accelerator=nvidia) reports no nvidia.com/gpu capacity: the device "
        "plugin is not running or not registered on it"
    ]


def test_capacity_allocatable_below_capacity_is_unhealthy_gpus() -> None:
    labels = {gpus.INSTANCE_TYPE_LABEL: "Standard_NC64as_T4_v3"}
    problems = capacity.judge(gpu_node(capacity=4, allocatable=1, labels=labels))
    assert problems == [
        "node aks-gpu-0: allocatable nvidia.com/gpu 1 < capacity 4: 3 GPU(s) marked unhealthy by "
        "the device plugin (XID errors or a failed health check)"
    ]


def test_capacity_differs_from_vm_size() -> None:
    labels = {gpus.INSTANCE_TYPE_LABEL: "Standard_NC64as_T4_v3"}
    assert capacity.judge(gpu_node(capacity=1, labels=labels)) == [
        "node aks-gpu-0: capacity nvidia.com/gpu 1, but its VM size implies 4"
    ]


def test_capacity_differs_from_gfd_count_label() -> None:
    labels = {gpus.INSTANCE_TYPE_LABEL: T4_SIZE, gpus.COUNT_LABEL: "2"}
    assert capacity.judge(gpu_node(capacity=1, labels=labels)) == [
        "node aks-gpu-0: capacity nvidia.com/gpu 1, but its GFD count label implies 2"
    ]


def test_capacity_unknown_size_is_not_compared() -> None:
    assert capacity.judge(gpu_node(capacity=3, labels={})) == []


def test_capacity_node_not_ready() -> None:
    assert capacity.judge(gpu_node(ready=False)) == ["node aks-gpu-0 is not Ready"]


# --- rollout_report ----------------------------------------------------------------------------

NODES = [gpu_node("aks-gpu-0"), gpu_node("aks-gpu-1")]
PODS = [plugin_pod("plugin-a", "aks-gpu-0"), plugin_pod("plugin-b", "aks-gpu-1")]


def test_rollout_complete() -> None:
    report = rollout.judge(daemonset(desired=2), PODS, NODES)
    assert report.problems(per_node=True) == []
    assert report.ready_nodes == ["aks-gpu-0", "aks-gpu-1"]
    assert report.summary == ("2/2 plugin pods ready on GPU nodes; DaemonSet desired=2 current=2 "
                              "updated=2 ready=2 available=2")


def test_rollout_counters_disagree() -> None:
    report = rollout.judge(daemonset(desired=2, ready=1, available=1), PODS, NODES)
    assert report.problems(per_node=True) == ["DaemonSet counters disagree: desired=2, ready=1, available=1"]


def test_rollout_generation_not_observed() -> None:
    report = rollout.judge(daemonset(generation=3, observed_generation=2), PODS, NODES)
    assert report.problems(per_node=True) == ["DaemonSet controller has not observed generation 3 yet"]


def test_rollout_gpu_node_without_plugin_pod_despite_ready_counters() -> None:
    ds = daemonset(desired=1)
    report = rollout.judge(ds, [plugin_pod("plugin-a", "aks-gpu-0")], NODES)
    assert report.problems(per_node=True) == [
        "1 of 2 GPU node(s) have no ready device plugin pod: aks-gpu-1 (no plugin pod)"
    ]
    assert report.ready_nodes == ["aks-gpu-0"]


def test_rollout_plugin_pod_not_ready() -> None:
    pods = [PODS[0], plugin_pod("plugin-b", "aks-gpu-1", ready=False)]
    report = rollout.judge(daemonset(desired=2), pods, NODES)
    assert report.problems(per_node=True) == [
        "1 of 2 GPU node(s) have no ready device plugin pod: aks-gpu-1 (plugin pod not ready)"
    ]


def test_rollout_terminating_pods_are_ignored() -> None:
    pods = [PODS[0], plugin_pod("plugin-b", "aks-gpu-1", deleting=True)]
    report = rollout.judge(daemonset(desired=2), pods, NODES)
    assert report.problems(per_node=True) == [
        "1 of 2 GPU node(s) have no ready device plugin pod: aks-gpu-1 (no plugin pod)"
    ]


SKU_TAINT = ("sku", "gpu", "NoSchedule")


def test_rollout_seed_tolerations_miss_the_aks_sku_taint() -> None:
    nodes = [gpu_node("aks-gpu-0"), gpu_node("aks-gpu-1", taints=(SKU_TAINT,))]
    ds = daemonset(desired=1, tolerations=manifest_tolerations("seed"))
    report = rollout.judge(ds, [PODS[0]], nodes)
    assert report.problems(per_node=True) == [
        "1 of 2 GPU node(s) have no ready device plugin pod: "
        "aks-gpu-1 (untolerated taint sku=gpu:NoSchedule)"
    ]


def test_rollout_current_manifest_tolerates_both_gpu_taints() -> None:
    taints = (SKU_TAINT, ("nvidia.com/gpu", "", "NoSchedule"))
    nodes = [gpu_node("aks-gpu-0", taints=taints), gpu_node("aks-gpu-1", taints=taints)]
    ds = daemonset(desired=2, tolerations=manifest_tolerations("current"))
    report = rollout.judge(ds, PODS, nodes)
    assert report.problems(per_node=True) == []
    assert report.ready_nodes == ["aks-gpu-0", "aks-gpu-1"]


@pytest.mark.parametrize(("tol", "tolerated"), [
    (toleration(operator="Exists"), True),
    (toleration("sku", "Exists"), True),
    (toleration("sku", "Equal", "gpu", "NoSchedule"), True),
    (toleration("sku", None, "gpu"), True),
    (toleration("sku", "Equal", "cpu", "NoSchedule"), False),
    (toleration("sku", "Exists", effect="NoExecute"), False),
    (toleration("other", "Exists"), False),
])
def test_untolerated_taints_follow_toleration_rules(tol: client.V1Toleration, tolerated: bool) -> None:
    expected = [] if tolerated else ["sku=gpu:NoSchedule"]
    assert [format_taint(t) for t in untolerated_taints([tol], gpu_node(taints=(SKU_TAINT,)))] == expected


def test_untolerated_taints_ignore_prefer_no_schedule_and_show_valueless_taints() -> None:
    n = gpu_node(taints=(("soft", "x", "PreferNoSchedule"), ("nvidia.com/gpu", "", "NoExecute")))
    assert [format_taint(t) for t in untolerated_taints([], n)] == ["nvidia.com/gpu:NoExecute"]


def test_rollout_node_selector_excludes_a_gpu_node() -> None:
    nodes = [gpu_node("aks-gpu-0", labels={"pool": "gpu"}), gpu_node("aks-gpu-1", labels={"pool": "a100"})]
    ds = daemonset(desired=1, node_selector={"pool": "gpu"})
    report = rollout.judge(ds, [PODS[0]], nodes)
    assert report.problems(per_node=True) == [
        "1 of 2 GPU node(s) have no ready device plugin pod: "
        "aks-gpu-1 (the DaemonSet's nodeSelector/affinity excludes it)"
    ]


def test_rollout_required_node_affinity_excludes_a_gpu_node() -> None:
    affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
            node_selector_terms=[client.V1NodeSelectorTerm(match_expressions=[
                client.V1NodeSelectorRequirement(key="pool", operator="NotIn", values=["a100"]),
            ])])))
    nodes = [gpu_node("aks-gpu-0", labels={"pool": "gpu"}), gpu_node("aks-gpu-1", labels={"pool": "a100"})]
    report = rollout.judge(daemonset(desired=1, affinity=affinity), [PODS[0]], nodes)
    assert report.problems(per_node=True) == [
        "1 of 2 GPU node(s) have no ready device plugin pod: "
        "aks-gpu-1 (the DaemonSet's nodeSelector/affinity excludes it)"
    ]
    assert report.summary.startswith("1/2 plugin pods ready on GPU nodes; ")


# --- job_verdict -------------------------------------------------------------------------------

def observe(j: client.V1Job | None, *pods: client.V1Pod, waited: float = 0.0,
            grace: float = 30.0) -> JobObservation:
    return JobObservation(job=j, pods=list(pods),
                          unschedulable_for={str(p.metadata and p.metadata.name): waited for p in pods},
                          unschedulable_grace=grace)


def test_job_not_created_yet() -> None:
    verdict = workload.judge(observe(None))
    assert (verdict.done, verdict.summary, verdict.final) == (False, "Job not created yet", None)


def test_job_completed() -> None:
    verdict = workload.judge(observe(job(succeeded=1), job_pod(phase="Succeeded")))
    assert (verdict.done, verdict.summary, verdict.final) == (True, "completions 1/1", None)


def test_job_without_completions_counts_as_one() -> None:
    verdict = workload.judge(observe(job(succeeded=1, completions=None)))
    assert verdict.done is True


def test_job_running_is_neither_done_nor_final() -> None:
    verdict = workload.judge(observe(job(), job_pod(phase="Running")))
    assert (verdict.done, verdict.summary, verdict.final) == (
        False, "completions 0/1; pod tf-mnist-abcde Running", None)


def test_job_failed_condition_is_final_with_reason() -> None:
    j = job(failed=("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    verdict = workload.judge(observe(j, job_pod(phase="Failed", terminated_exit_code=1)))
    assert verdict.done is False
    assert verdict.final == ("the Job failed (BackoffLimitExceeded: Job has reached the specified "
                             "backoff limit)")


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "CrashLoopBackOff"])
def test_job_pod_stuck_waiting_is_final(reason: str) -> None:
    pod = job_pod(waiting=(reason, "Back-off pulling image \"nope:1\""))
    verdict = workload.judge(observe(job(), pod))
    assert verdict.final == (f"pod tf-mnist-abcde container tf-mnist is {reason}: "
                             "Back-off pulling image \"nope:1\"")


def test_job_pod_waiting_without_message_has_no_trailing_colon_space() -> None:
    verdict = workload.judge(observe(job(), job_pod(waiting=("ErrImagePull", None))))
    assert verdict.final == "pod tf-mnist-abcde container tf-mnist is ErrImagePull:"


def test_job_pod_container_creating_is_not_final() -> None:
    verdict = workload.judge(observe(job(), job_pod(waiting=("ContainerCreating", None))))
    assert verdict.final is None
    assert verdict.summary == "completions 0/1; pod tf-mnist-abcde Pending"


def test_job_pod_nonzero_exit_is_reported() -> None:
    verdict = workload.judge(observe(job(), job_pod(phase="Failed", terminated_exit_code=137)))
    assert verdict.final is None
    assert verdict.summary == "completions 0/1; pod tf-mnist-abcde Failed; tf-mnist exited 137 (Error)"


INSUFFICIENT = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


def test_job_unschedulable_within_grace_is_not_final() -> None:
    verdict = workload.judge(observe(job(), job_pod(unschedulable_message=INSUFFICIENT),
                                         waited=29.9, grace=30))
    assert verdict.final is None
    assert verdict.summary == (
        "completions 0/1; pod tf-mnist-abcde Pending; pod tf-mnist-abcde is Unschedulable: "
        + INSUFFICIENT)


def test_job_unschedulable_after_grace_is_final_with_scheduler_message() -> None:
    verdict = workload.judge(observe(job(), job_pod(unschedulable_message=INSUFFICIENT),
                                         waited=30, grace=30))
    assert verdict.final == "pod tf-mnist-abcde is Unschedulable: " + INSUFFICIENT
    assert "Insufficient nvidia.com/gpu" in verdict.final


# --- device_problems ---------------------------------------------------------------------------

T4 = gpus.expected_gpu({gpus.INSTANCE_TYPE_LABEL: T4_SIZE})
K80_LINE = ("Found device 0 with properties: name: Tesla K80 major: 3 minor: 7 "
            "memoryClockRate(GHz): 0.8235")


def test_device_matches() -> None:
    report = LogReport(devices=["Tesla T4"], device_lines=["name: Tesla T4"], success=True,
                       accuracy=[(499, 0.97)])
    assert device.judge(report, T4, min_accuracy=0.9) == []


def test_device_another_gpu_shows_expected_and_found_lines() -> None:
    report = LogReport(devices=["Tesla K80"], device_lines=[K80_LINE], success=True)
    assert device.judge(report, T4, None) == [
        f"expected GPU 'Tesla T4' (from VM size {T4_SIZE}), but the log names: {K80_LINE}"
    ]


def test_device_another_gpu_without_lines_names_devices() -> None:
    report = LogReport(devices=["Tesla K80", "Tesla T4"])
    assert device.judge(report, T4, None) == [
        f"expected GPU 'Tesla T4' (from VM size {T4_SIZE}), but the log names: Tesla K80, Tesla T4"
    ]


def test_device_no_device_line_comes_first() -> None:
    report = LogReport(problems=["the log ends mid-line"])
    assert device.judge(report, T4, None) == [
        f"no GPU device line in the log (expected Tesla T4, from VM size {T4_SIZE})",
        "the log ends mid-line",
    ]


def test_device_line_not_needed() -> None:
    assert device.judge(LogReport(success=True), T4, None, needs_device=False) == []


def test_device_accuracy_below_threshold() -> None:
    report = LogReport(devices=["Tesla T4"], accuracy=[(100, 0.95), (499, 0.8)])
    assert device.judge(report, T4, min_accuracy=0.9) == [
        "accuracy at step 499 is 0.8000, below the threshold 0.9"
    ]


def test_device_accuracy_at_threshold_passes() -> None:
    report = LogReport(devices=["Tesla T4"], accuracy=[(499, 0.9)])
    assert device.judge(report, T4, min_accuracy=0.9) == []


def test_device_success_false() -> None:
    report = LogReport(devices=["Tesla T4"], success=False)
    assert device.judge(report, T4, None) == [
        "the workload's success marker is missing from its log"
    ]



def test_rollout_report_separates_unreachable_from_pending_nodes() -> None:
    """Taint-blocked nodes are unreachable (the wait may stop); a node awaiting its pod is not."""
    nodes = [gpu_node("aks-gpu-0"), gpu_node("aks-gpu-1", taints=(SKU_TAINT,)), gpu_node("aks-gpu-2")]
    ds = daemonset(desired=2, tolerations=manifest_tolerations("seed"))
    report = rollout.judge(ds, [PODS[0]], nodes)
    assert [g.node for g in report.unreachable] == ["aks-gpu-1"]
    assert [g.node for g in report.pending] == ["aks-gpu-2"]
    assert report.ready_nodes == ["aks-gpu-0"]
    assert report.settled


def test_rollout_counters_not_settled_while_they_disagree() -> None:
    report = rollout.judge(daemonset(desired=2, ready=1), [PODS[0]], [gpu_node("aks-gpu-0")])
    assert not report.settled


@pytest.mark.parametrize("per_node", [True, False])
def test_rollout_seed_daemonset_on_tainted_pool_is_final_at_desired_zero(per_node: bool) -> None:
    """The seed DaemonSet on an AKS pool tainted sku=gpu:NoSchedule: the controller caught up
    at desired=0, so both rollout checks stop waiting and name the node and its taint."""
    nodes = [gpu_node("aks-gpu-0", taints=(SKU_TAINT,))]
    report = rollout.judge(daemonset(desired=0, tolerations=manifest_tolerations("seed")), [], nodes)
    assert report.final(per_node)
    problems = "; ".join(report.problems(per_node))
    assert "desired=0" in problems or per_node
    assert "aks-gpu-0 (untolerated taint sku=gpu:NoSchedule)" in problems


def test_rollout_desired_zero_before_the_controller_caught_up_is_not_final() -> None:
    nodes = [gpu_node("aks-gpu-0", taints=(SKU_TAINT,))]
    ds = daemonset(desired=0, generation=2, observed_generation=1,
                   tolerations=manifest_tolerations("seed"))
    assert not rollout.judge(ds, [], nodes).final(True)


# --- the GPUs a pod holds, and a rejection that predates their release --------------------------

def _pod(spec: dict[str, object]) -> client.V1Pod:
    """A pod as the client returns it: the API's JSON deserialized into its models."""
    pod: client.V1Pod = client.ApiClient()._ApiClient__deserialize(  # type: ignore[attr-defined]
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
         "spec": {"nodeName": "aks-gpu-0", **spec}}, "V1Pod")
    return pod


def _gpus(n: int, *, limit_only: bool = False) -> dict[str, object]:
    amount = {GPU: str(n)}
    return {"limits": amount} if limit_only else {"limits": amount, "requests": amount}


def test_pod_gpus_follows_kubernetes_pod_requests() -> None:
    from gpu_conformance.diagnostics import gpu_holders, pod_gpus

    app = {"name": "app", "image": "i", "resources": _gpus(1)}
    assert pod_gpus(_pod({"containers": [app, {**app, "name": "b"}]})) == 2
    # a limit alone (an object not defaulted by the API server) counts as the request
    assert pod_gpus(_pod({"containers": [{**app, "resources": _gpus(3, limit_only=True)}]})) == 3
    # a plain init container runs alone: the larger of it and the app containers
    init = {"name": "init", "image": "i", "resources": _gpus(4)}
    assert pod_gpus(_pod({"containers": [app], "initContainers": [init]})) == 4
    # a sidecar (restartable init container) runs beside the app containers and later inits
    sidecar = {"name": "side", "image": "i", "restartPolicy": "Always", "resources": _gpus(1)}
    assert pod_gpus(_pod({"containers": [app], "initContainers": [sidecar]})) == 2
    assert pod_gpus(_pod({"containers": [app], "initContainers": [sidecar, init]})) == 5
    assert pod_gpus(_pod({"containers": [app], "initContainers": [init, sidecar]})) == 4
    assert pod_gpus(_pod({"containers": [app], "overhead": {GPU: "1"}})) == 2
    assert pod_gpus(_pod({"containers": [{"name": "cpu", "image": "i"}]})) == 0
    assert gpu_holders([_pod({"containers": [app], "initContainers": [init]})]) == {
        "aks-gpu-0": [("n/p", 4)]}


@pytest.mark.parametrize(("message", "wanted", "free", "stale"), [
    ("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't satisfy "
     "plugin(s) [NodeAffinity].", 1, 1, True),
    # still no room: the scheduler is right
    ("0/3 nodes are available: 1 Insufficient nvidia.com/gpu.", 1, 0, False),
    # more than the node will ever have free: final
    ("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.", 2, 1, False),
    # rejected for another reason: GPUs being free changes nothing
    ("0/1 nodes are available: 1 node(s) had untolerated taint {sku: gpu}.", 1, 1, False),
])
def test_a_rejection_for_gpus_that_are_free_now_is_stale(message: str, wanted: int, free: int,
                                                         stale: bool) -> None:
    pod = _pod({"containers": [{"name": "c", "image": "i", "resources": _gpus(wanted)}]})
    assert workload.stale_rejection(pod, message, free) is stale


# --- capacity of MIG and time-sliced nodes ---------------------------------------------------

def _shared_node(sharing_mode: str, *, allocatable: dict[str, str] | None = None,
                 capacity: dict[str, str] | None = None) -> GpuNode:
    """A simulated shared GPU node's manifest, read back as the client returns it."""
    from gpu_conformance import nodes as node_manifests
    from gpu_conformance import sharing

    sku = gpus.resolve_product("Standard_ND96isr_H100_v5")
    shared = sharing.simulated_node(sharing_mode, sku.device_name, 2, vm_size=sku.vm_size)
    manifest = node_manifests.gpu_node("aks-gpu-0", sku, 2, shared=shared)
    manifest["status"]["capacity"].update(capacity or {})
    manifest["status"]["allocatable"].update(allocatable or {})
    manifest["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    v1: client.V1Node = client.ApiClient()._ApiClient__deserialize(  # type: ignore[attr-defined]
        manifest, "V1Node")
    [found] = find_gpu_nodes([v1])
    return found


@pytest.mark.parametrize("mode", ["mig-single", "mig-mixed", "time-slicing"])
def test_shared_nodes_offering_what_their_labels_promise_pass(mode: str) -> None:
    node = _shared_node(mode)
    assert node.shared
    assert capacity.judge(node) == []


def test_a_mig_node_whose_allocatable_drops_fails_naming_the_mig_resource() -> None:
    [problem] = capacity.judge(_shared_node("mig-mixed",
                                            allocatable={"nvidia.com/mig-2g.20gb": "1"}))
    assert problem.startswith("node aks-gpu-0 (mig-mixed): nvidia.com/mig-2g.20gb: allocatable "
                              "1 < capacity 2: 1 device(s) marked unhealthy by the device plugin")


def test_a_time_sliced_node_without_its_replicas_fails() -> None:
    [problem] = capacity.judge(_shared_node("time-slicing", capacity={GPU: "2"},
                                            allocatable={GPU: "2"}))
    assert "capacity 2, but the labels promise 2 device(s) x 4 replica(s) = 8" in problem


def test_a_mig_node_without_any_gpu_resource_says_the_plugin_is_missing() -> None:
    node = _shared_node("mig-mixed", capacity={r: "0" for r in (
        "nvidia.com/mig-1g.10gb", "nvidia.com/mig-2g.20gb", "nvidia.com/mig-3g.40gb")},
        allocatable={r: "0" for r in ("nvidia.com/mig-1g.10gb", "nvidia.com/mig-2g.20gb",
                                      "nvidia.com/mig-3g.40gb")})
    [problem] = capacity.judge(node)
    assert "reports no GPU resource capacity" in problem and "mig-mixed" in problem
