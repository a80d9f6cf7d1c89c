"""Isolation: the probe's output parsed, each judge failing on the leak it exists for, naming
the pod, the container and what it saw; the manifests pin pods to the node and ask for what
each check needs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gpu_conformance.workloads import isolation
from gpu_conformance.workloads.isolation import (
    PodState,
    broken_output,
    judge_concurrent,
    judge_exhausted,
    judge_none,
    judge_single,
    judge_two_containers,
    parse_container,
    pod_state,
    reference_output,
)

H200 = "NVIDIA H200"


def view(text: str, pod: str = "gc-iso", container: str = "probe") -> isolation.ContainerView:
    return parse_container(pod, container, text)


def run_probe(tmp_path: Path, smi: str | None, **env: str) -> str:
    """The probe's shell as the container runs it, with a stand-in nvidia-smi (or none)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if smi is not None:
        (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n{smi}\n")
        (bin_dir / "nvidia-smi").chmod(0o755)
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ISOLATION_CONTAINER": "probe", **env}
    done = subprocess.run(["/bin/sh", "-c", isolation.PROBE], env=full_env, capture_output=True,
                          text=True, timeout=30, check=False)
    return done.stdout + done.stderr


def test_probe_with_one_gpu(tmp_path: Path) -> None:
    out = run_probe(tmp_path, f"echo 'GPU 0: {H200} (UUID: GPU-53cb4b91-3921-783e-384e-c94f2e366ff5)'",
                    NVIDIA_VISIBLE_DEVICES="GPU-53cb4b91-3921-783e-384e-c94f2e366ff5")
    seen = view(out)
    assert seen.uuids == ("GPU-53cb4b91-3921-783e-384e-c94f2e366ff5",) and seen.names == (H200,)
    assert seen.nvidia_smi == "listed" and seen.complete
    assert seen.nvidia_visible_devices == "GPU-53cb4b91-3921-783e-384e-c94f2e366ff5"
    assert judge_single(seen) == []


@pytest.mark.parametrize(("smi", "state"), [
    (None, "absent"),
    ("echo 'No devices were found'; exit 6", "no-devices"),
    ("echo 'Failed to initialize NVML: Unknown Error'; exit 255", "no-devices"),
    ("echo 'something odd'; exit 3", "failed"),
])
def test_probe_without_a_gpu_sees_none(tmp_path: Path, smi: str | None, state: str) -> None:
    seen = view(run_probe(tmp_path, smi, NVIDIA_VISIBLE_DEVICES="all"))
    assert seen.nvidia_smi == state and not seen.sees_gpu and seen.complete
    assert seen.nvidia_visible_devices == "all"
    assert judge_none(seen) == []
    [problem] = judge_single(seen)
    assert problem.startswith("pod gc-iso container probe asked for 1 GPU but nvidia-smi -L "
                              "lists 0")


def test_probe_holds_for_concurrency(tmp_path: Path) -> None:
    out = run_probe(tmp_path, None, ISOLATION_HOLD_SECONDS="0")
    assert out.rstrip().endswith(isolation.END)
    assert 'sleep "${ISOLATION_HOLD_SECONDS:-0}"' in isolation.PROBE


def test_gpu_without_request_names_the_leak() -> None:
    seen = view(broken_output("gpu-without-request", "probe", H200), pod="gc-no-gpu")
    [problem] = judge_none(seen)
    assert problem.startswith("pod gc-no-gpu container probe asked for no GPU but sees 8 GPU(s)")
    assert "NVIDIA_VISIBLE_DEVICES=all comes from the image's environment" in problem
    assert "accept-nvidia-visible-devices-envvar-when-unprivileged = false" in problem
    assert "/dev/nvidia0" in problem


def test_device_node_without_nvidia_smi_is_a_leak() -> None:
    out = reference_output("probe", None).replace(
        "isolation: nvidia-smi-absent", "isolation: device-node /dev/nvidia3\nisolation: "
                                        "nvidia-smi-absent").replace(
        "NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_VISIBLE_DEVICES=<unset>")
    [problem] = judge_none(view(out))
    assert "device nodes /dev/nvidia3" in problem and "privileged pod" in problem


def test_single_with_two_gpus_or_extra_device_nodes() -> None:
    two = reference_output("probe", H200) + "GPU 1: NVIDIA H200 (UUID: GPU-2)\n"
    [problem] = judge_single(view(two))
    assert "lists 2" in problem
    nodes = reference_output("probe", H200).replace(
        "isolation: device-node /dev/nvidia0", "isolation: device-node /dev/nvidia0\n"
                                               "isolation: device-node /dev/nvidia1")
    [problem] = judge_single(view(nodes))
    assert "has 2 GPU device nodes: /dev/nvidia0 /dev/nvidia1" in problem


def test_mig_device_counts_as_one() -> None:
    out = reference_output("probe", "NVIDIA H100 80GB HBM3").replace(
        "isolation: nvidia-smi-exit=0",
        "  MIG 1g.10gb     Device  0: (UUID: MIG-00000002-0000-0000-0000-000000000002)\n"
        "isolation: nvidia-smi-exit=0")
    seen = view(out)
    assert seen.mig_uuids == ("MIG-00000002-0000-0000-0000-000000000002",)
    assert judge_single(seen) == []


def test_two_containers() -> None:
    good = judge_two_containers(view(reference_output("with-gpu", H200), container="with-gpu"),
                                view(reference_output("without-gpu", None),
                                     container="without-gpu"))
    assert good == []
    leaked = isolation.ContainerView(
        "gc-iso", "without-gpu", ("GPU-53cb4b91-3921-783e-384e-c94f2e366ff5",), (H200,),
        nvidia_visible_devices="all", nvidia_smi="listed", complete=True)
    problems = judge_two_containers(view(reference_output("with-gpu", H200),
                                         container="with-gpu"), leaked)
    assert problems[0].startswith("pod gc-iso container without-gpu asked for no GPU but sees 1")
    assert problems[1] == ("pod gc-iso container without-gpu sees the GPU given to with-gpu: "
                           "GPU-53cb4b91-3921-783e-384e-c94f2e366ff5")


def test_concurrent_pods() -> None:
    first = view(reference_output("probe", H200), pod="gc-a")
    second = view(reference_output("probe", H200, uuid="GPU-2", minor=1), pod="gc-b")
    assert judge_concurrent(first, second, overlapped=True) == []
    same = view(broken_output("shared-gpu", "probe", H200), pod="gc-b")
    [problem] = judge_concurrent(first, same, overlapped=True)
    assert problem == ("pod gc-a container probe and pod gc-b container probe were given the "
                       "same GPU GPU-53cb4b91-3921-783e-384e-c94f2e366ff5: the node hands one GPU "
                       "to two pods")
    [problem] = judge_concurrent(first, second, overlapped=False)
    assert "did not run at the same time" in problem


def test_exhausted_node() -> None:
    pending = pod_state({
        "metadata": {"name": "gc-extra"},
        "spec": {},
        "status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't "
                       "match Pod's node affinity/selector."}]},
    })
    assert judge_exhausted(pending, "aks-gpu-0", 8, ["gc-holder"]) == []
    running = PodState("gc-extra", "Running", "True", node_name="aks-gpu-0")
    [problem] = judge_exhausted(running, "aks-gpu-0", 8, ["gc-holder"])
    assert problem.startswith("pod gc-extra is Running on node aks-gpu-0 while gc-holder holds all "
                              "8 GPU(s) of node aks-gpu-0")
    other = PodState("gc-extra", "Pending", "False", "Unschedulable", "Insufficient cpu")
    assert "not for lack of GPUs: Insufficient cpu" in judge_exhausted(other, "n", 1)[0]
    waiting = pod_state({"metadata": {"name": "gc-extra"}, "status": {"phase": "Pending"}})
    assert "not as Unschedulable" in judge_exhausted(waiting, "n", 1)[0]
    assert pod_state({}).name == "?"


@pytest.mark.parametrize("junk", ["", "\x00\xff", "isolation: device-node", "GPU 0:  (UUID: )",
                                  "a" * 100_000, "isolation: END"])
def test_garbage_never_raises(junk: str) -> None:
    seen = view(junk)
    judge_single(seen)
    judge_none(seen)
    assert judge_single(seen)


def test_truncated_output_is_a_problem() -> None:
    out = reference_output("probe", H200)
    cut = out[: out.index(isolation.END)]
    assert any("ends before 'isolation: END'" in p for p in judge_single(view(cut)))
    assert any("printed nothing" in p for p in judge_none(view("")))


def test_manifests() -> None:
    pod = isolation.gpu_pod("gc-one", "gc-ns", "aks-gpu-0", hold_seconds=60)
    spec = pod["spec"]
    assert pod["kind"] == "Pod" and spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == {"kubernetes.io/hostname": "aks-gpu-0"}
    assert "nodeName" not in spec
    [container] = spec["containers"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert container["command"] == ["/bin/sh", "-c", isolation.PROBE]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ISOLATION_HOLD_SECONDS"] == "60" and env["ISOLATION_CONTAINER"] == "probe"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        spec["tolerations"])
    none = isolation.no_request_pod("gc-none", "gc-ns", "aks-gpu-0")["spec"]["containers"][0]
    assert "resources" not in none and isolation.IMAGE.startswith("nvcr.io/nvidia/cuda:")
    two = isolation.two_container_pod("gc-two", "gc-ns", "aks-gpu-0")["spec"]["containers"]
    assert [c["name"] for c in two] == ["with-gpu", "without-gpu"]
    assert two[0]["resources"] == {"limits": {"nvidia.com/gpu": "1"}} and "resources" not in two[1]
    holder = isolation.holder_pod("gc-all", "gc-ns", "aks-gpu-0", 8)["spec"]["containers"][0]
    assert holder["resources"] == {"limits": {"nvidia.com/gpu": "8"}}
    mig = isolation.gpu_pod("gc-mig", "gc-ns", "n", resource="nvidia.com/mig-1g.10gb")
    assert mig["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/mig-1g.10gb": "1"}}
    first = isolation.gpu_pod("a", "ns", "n")
    first["spec"]["tolerations"].clear()
    assert isolation.gpu_pod("a", "ns", "n")["spec"]["tolerations"]


def test_probe_shell_is_posix() -> None:
    done = subprocess.run(["/bin/sh", "-n", "-c", isolation.PROBE], capture_output=True,
                          text=True, check=False, env={"PATH": os.environ.get("PATH", "/bin")})
    assert done.returncode == 0, done.stderr


def test_exhausted_mig_node_is_judged_on_its_mig_resource() -> None:
    pending = pod_state({
        "metadata": {"name": "gc-extra"}, "spec": {},
        "status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 1 Insufficient nvidia.com/mig-3g.40gb."}]},
    })
    assert judge_exhausted(pending, "aks-gpu-0", 2, ["gc-holder"],
                           resource="nvidia.com/mig-3g.40gb") == []
    [problem] = judge_exhausted(pending, "aks-gpu-0", 2, ["gc-holder"])
    assert "not for lack of GPUs" in problem


def test_isolation_on_a_busy_node_fails_or_skips_as_busy_says() -> None:
    from gpu_conformance.checks.isolation import IsolationResult

    busy = IsolationResult("aks-gpu-0", problems=["node aks-gpu-0 is busy: all its GPUs are held "
                                                  "by other pods: team/train (1)"], busy=True)
    failed, skipped = busy.outcome("fail"), busy.outcome("skip")
    assert (failed.ok, failed.skip, skipped.ok, skipped.skip) == (False, False, False, True)
    assert failed.message == skipped.message == busy.problems[0]
    passed = IsolationResult("aks-gpu-0", ran=["1 GPU asked -> 1 seen"],
                             not_applicable=["two concurrent pods need 2 nvidia.com/gpu"])
    assert passed.outcome().ok and "not applicable" in passed.outcome().message
