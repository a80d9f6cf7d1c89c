"""What the suites saw on the H200 host (tests/data/gpu-host/h200-real-node, 2026-11-29), judged
again by today's code: a real kubelet, containerd, runc and NVIDIA's device plugin v0.18.0
built from source, one NVIDIA H200 through CDI (scripts/real_node_gpu_host.sh SUITES=1).

The Node comes back through the Kubernetes client's own deserializer, as the suites get it; the
logs through the profiles' parsers; the JUnit files as the runs wrote them. If a parser, a
judge or a label mapping changes so that the real GPU would no longer pass (or the negative
runs no longer fail naming what they must), these tests fail.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from gpu_conformance.checks import capacity, device
from gpu_conformance.gates import Status
from gpu_conformance.gpu_nodes import find_gpu_nodes
from gpu_conformance.workloads import PROFILES

DATA = Path(__file__).resolve().parents[1] / "data" / "gpu-host" / "h200-real-node"
NODE = "127.0.0.1"
H200_SIZE = "Standard_ND96isr_H200_v5"


def real_node() -> Any:
    body = yaml.safe_load((DATA / "node.yaml").read_text())
    # the response body as the API server sends it, through the client's own deserializer
    return client.ApiClient().deserialize(json.dumps(body, default=str), "V1Node", "application/json")


def junit(run: str) -> tuple[dict[str, str], dict[str, str]]:
    """(suite attributes, test name -> failure message or "")."""
    root = ET.parse(DATA / f"junit-{run}.xml").getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    cases = {}
    for case in suite.iter("testcase"):
        failure = case.find("failure")
        cases[case.get("name", "")] = "" if failure is None else failure.get("message", "")
    return dict(suite.attrib), cases


def test_the_real_node_is_a_gpu_node_whose_capacity_and_allocatable_pass() -> None:
    node = real_node()
    assert node.status.node_info.kubelet_version == "v1.36.3"
    assert node.status.node_info.container_runtime_version == "containerd://2.4.2"
    [gpu] = find_gpu_nodes([node])
    assert (gpu.name, gpu.capacity, gpu.allocatable) == (NODE, 1, 1)
    assert gpu.labels["nvidia.com/gpu.product"] == "NVIDIA-H200"  # from NVML, not written by hand
    assert gpu.labels["node.kubernetes.io/instance-type"] == H200_SIZE
    assert capacity.judge(gpu) == []


def test_the_expected_gpu_resolved_from_the_real_nodes_labels_is_the_h200() -> None:
    labels = real_node().metadata.labels
    expected = device.expected(labels, None, None)
    assert expected.matches("NVIDIA H200") and not expected.matches("Tesla T4")


@pytest.mark.parametrize("profile", ["nvidia-smi", "cuda-vectoradd"])
def test_the_real_gpus_job_logs_pass_their_profile_and_the_device_check(profile: str) -> None:
    report = PROFILES[profile].parse((DATA / f"job-{profile}.log").read_text())
    assert report.success and report.problems == []
    assert report.devices == ["NVIDIA H200"]
    labels = real_node().metadata.labels
    assert device.judge(report, device.expected(labels, None, None), None) == []
    wrong = device.judge(report, device.expected(labels, "Tesla T4", None), None)
    assert wrong and "NVIDIA H200" in wrong[0] and "Tesla T4" in wrong[0]


def test_the_plugin_registered_with_the_real_kubelet() -> None:
    assert "Registered device plugin for 'nvidia.com/gpu' with Kubelet" in \
        (DATA / "plugin.log").read_text()
    assert 'Got registration request from device plugin with resource" resourceName="nvidia.com/gpu"' \
        in (DATA / "kubelet-excerpt.log").read_text()


def test_the_full_run_passed_every_suite_on_the_real_node() -> None:
    suite, cases = junit("pass")
    assert suite["failures"] == "0" and suite["errors"] == "0" and suite["skipped"] == "0"
    assert int(suite["tests"]) == 10 == len(cases)
    assert all(message == "" for message in cases.values())
    for name in ("test_plugin_pod_ready_on_every_gpu_node", f"test_gpu_capacity_and_allocatable[{NODE}]",
                 f"test_gpu_job_completes[cuda-vectoradd-{NODE}]",
                 f"test_device_line_names_expected_gpu[nvidia-smi-{NODE}]",
                 f"test_gpu_meets_its_gates[gpu-health-{NODE}]"):
        assert name in cases


def test_expecting_a_t4_on_the_h200_failed_naming_the_gpu_the_device_reported() -> None:
    _, cases = junit("t4")
    message = cases[f"test_device_line_names_expected_gpu[nvidia-smi-{NODE}]"]
    assert "expected GPU 'Tesla T4'" in message and "NVIDIA H200" in message


def test_a_job_asking_for_more_gpus_than_the_node_has_was_reported_unschedulable() -> None:
    _, cases = junit("more-gpus")
    message = cases[f"test_gpu_job_completes[nvidia-smi-{NODE}]"]
    assert "Unschedulable" in message and "Insufficient nvidia.com/gpu" in message


def test_the_seed_daemonset_on_the_tainted_real_node_failed_rollout_and_capacity_naming_it() -> None:
    suite, cases = junit("seed")
    assert suite["failures"] == "3"
    taint = f"{NODE} (untolerated taint sku=gpu:NoSchedule)"
    assert taint in cases["test_plugin_daemonset_counters_agree"]
    assert taint in cases["test_plugin_pod_ready_on_every_gpu_node"]
    assert NODE in cases[f"test_gpu_capacity_and_allocatable[{NODE}]"]
    # judged final at desired=0, not waited out (the run took 17 s)
    assert "plugin-rollout timeout" not in json.dumps(cases)


def test_the_h200s_health_snapshot_passes_its_sizes_gates_and_fails_a_tightened_one() -> None:
    log = (DATA / "profiles" / "gpu-health.txt").read_text()
    judge = PROFILES["gpu-health"].judge
    assert judge is not None
    passed = judge(log, H200_SIZE, ())
    assert passed.passed, passed.problems
    assert passed.by_status(Status.PASS)


def test_the_h200s_copy_bandwidth_passes_the_aznhc_gate_and_fails_above_what_it_measured() -> None:
    log = (DATA / "profiles" / "bandwidth.txt").read_text()
    judge = PROFILES["bandwidth"].judge
    assert judge is not None
    assert judge(log, H200_SIZE, ()).passed
    tightened = judge(log, H200_SIZE, ("h2d=60",))  # measured 54.7 GB/s
    assert not tightened.passed
    assert any("host->device" in p for p in tightened.problems)


def test_all_reduce_on_one_gpu_is_not_measured_never_passed_as_measured() -> None:
    log = (DATA / "profiles" / "nccl-allreduce.txt").read_text()
    judge = PROFILES["nccl-allreduce"].judge
    assert judge is not None
    result = judge(log, H200_SIZE, ())
    assert not result.by_status(Status.PASS)
    assert result.by_status(Status.NOT_MEASURED)
