"""nccl-allreduce: the script run against a stand-in torch (distributed and multiprocessing
included) round-trips through the parser; the busbw gate fails naming figure, limit and source;
one GPU is "not measured"; garbage and truncation never raise."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from gpu_conformance import gates, gpus
from gpu_conformance.gates import Status
from gpu_conformance.workloads import nccl_allreduce
from gpu_conformance.workloads.nccl_allreduce import (
    PROFILE,
    broken_reference_log,
    job_manifest,
    judge_log,
    parse,
    parse_run,
    reference_log,
)

SCRIPT = Path(__file__).parents[2] / "gpu_conformance" / "data" / "nccl_allreduce.py"
GIB = 1024**3
MIB = 1024**2
H200 = "Standard_ND96isr_H200_v5"
H100_NVL = "Standard_NC80adis_H100_v5"
DEVICE_NAMES = sorted({sku.device_name for sku in gpus.VM_SIZES.values()})


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nccl_allreduce_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = dict(os.environ)
    try:
        spec.loader.exec_module(module)
    finally:  # importing the script sets the NVLS variables: keep them out of this process
        os.environ.clear()
        os.environ.update(saved)
    return module


script = load_script()

STUB_TORCH = '''
import contextlib
import os

__version__ = "2.11.0-stub"
float32, float64 = "float32", "float64"
ALGBW = float(os.environ.get("STUB_ALGBW", "250"))
calls = []


class version:
    cuda = "13.0"


class Tensor:
    def __init__(self, n, value=0.0):
        self.n, self.value = n, value

    def __getitem__(self, part):
        return Tensor(len(range(*part.indices(self.n))), self.value)

    def fill_(self, value):
        self.value = value
        return self

    def min(self):
        return self

    max = min

    def item(self):
        return self.value


def empty(n, dtype=None, device=None):
    return Tensor(n)


def tensor(values, dtype=None, device=None):
    return Tensor(len(values), values[0])


def device(kind, index=None):
    return f"{kind}:{index}"


class _Event:
    def __init__(self, enable_timing=False):
        self.mark = 0

    def record(self, stream=None):
        self.mark = len(calls)

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        return sum(calls[self.mark:end.mark]) / (ALGBW * 1e9) * 1000.0


class _Props:
    def __init__(self, i):
        self.name = "NVIDIA H200"
        self.uuid = f"53cb4b91-3921-783e-384e-{i:012d}"
        self.total_memory = int(os.environ.get("STUB_MEMORY", str(150 * 2**30)))


class cuda:
    Event = _Event

    class nccl:
        @staticmethod
        def version():
            return (2, 27, 7)

    @staticmethod
    def is_available():
        return True

    @staticmethod
    def device_count():
        return int(os.environ.get("STUB_GPUS", "2"))

    @staticmethod
    def get_device_properties(i):
        return _Props(i)

    @staticmethod
    def set_device(i):
        pass

    @staticmethod
    def synchronize(device=None):
        pass
'''

STUB_DISTRIBUTED = '''
import os
import torch

world = {"n": 1}


class ReduceOp:
    SUM = "sum"


def init_process_group(backend, rank, world_size, timeout, init_method, device_id=None):
    if os.environ.get("STUB_INIT_FAIL"):
        raise RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1, unhandled system error")
    world["n"] = world_size


def all_reduce(t, op=None):
    t.value = t.value * (world["n"] - (1 if os.environ.get("STUB_WRONG") else 0))
    torch.calls.append(t.n * 4)


def barrier():
    pass


def destroy_process_group():
    pass
'''

STUB_MULTIPROCESSING = '''
class _Process:
    def is_alive(self):
        return False

    def kill(self):
        pass


class _Context:
    def __init__(self, fn, args, nprocs):
        self.processes = [_Process() for _ in range(nprocs)]
        self.error = None
        for rank in range(nprocs):
            try:
                fn(rank, *args)
            except Exception as exc:
                self.error = (rank, exc)
                break

    def join(self, timeout=None):
        if self.error:
            rank, exc = self.error
            raise Exception(f"\\n\\n-- Process {rank} terminated with the following error:\\n"
                            f"Traceback (most recent call last):\\n  ...\\n"
                            f"{type(exc).__name__}: {exc}")
        return True


def start_processes(fn, args=(), nprocs=1, join=True, start_method="spawn"):
    return _Context(fn, args, nprocs)
'''


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    package = tmp_path / "torch"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(STUB_TORCH)
    (package / "distributed.py").write_text(STUB_DISTRIBUTED)
    (package / "multiprocessing.py").write_text(STUB_MULTIPROCESSING)
    full_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE",
                                                                  "LOCAL_RANK")}
    full_env.update({"PYTHONPATH": str(tmp_path), **env})
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=full_env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_two_ranks_round_trip(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--max-bytes", "64M")
    assert done.returncode == 0, done.stdout + done.stderr
    report = parse(done.stdout)
    assert report.problems == [] and report.success is True, done.stdout
    assert report.devices == ["NVIDIA H200"]
    assert len(report.device_lines) == 2
    run = parse_run(done.stdout)
    assert [r.nbytes for r in run.results] == [MIB * 2**i for i in range(7)]
    assert all(r.ranks == 2 and abs(r.busbw - 250.0) < 0.5 for r in run.results)
    assert report.properties["busbw_gbps"] == "250.00"
    assert report.properties["nccl_version"] == "2.27.7"
    header = done.stdout.splitlines()[0]
    assert "NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1" in header


def test_nvls_is_off_even_when_the_environment_says_otherwise(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--max-bytes", "2M", NCCL_NVLS_ENABLE="1",
                      NVSHMEM_DISABLE_NVLS="0")
    assert "NCCL_NVLS_ENABLE=0" in done.stdout and "NVSHMEM_DISABLE_NVLS=1" in done.stdout
    assert script.NCCL_ENV == nccl_allreduce.NCCL_ENV


def test_smaller_than_the_gate_is_not_gated_until_overridden(tmp_path: Path) -> None:
    log = run_script(tmp_path, "--max-bytes", "64M").stdout
    [result] = judge_log(log, H100_NVL).results
    assert result.status is Status.NOT_GATED
    assert "below the gate's 16 GiB" in result.message
    assert judge_log(log, H100_NVL, ["nccl-bytes=64M"]).passed
    slow = run_script(tmp_path, "--max-bytes", "64M", STUB_ALGBW="100").stdout
    [problem] = judge_log(slow, H100_NVL, ["nccl-bytes=64M"]).problems
    assert problem.startswith("2 ranks: NCCL all_reduce bus bandwidth: 100.00 GB/s at 64 MiB")
    assert "expected >= 208 GB/s" in problem
    assert "conf/nc80adis_h100_v5.conf: 'check_nccl_allreduce 208.0 1 16G'" in problem


def test_eight_ranks_at_the_gate_size(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--max-bytes", "16G", STUB_GPUS="8")
    run = parse_run(done.stdout)
    assert run.largest is not None and run.largest.nbytes == 16 * GIB
    assert abs(run.largest.busbw - 437.5) < 0.5  # 250 GB/s algbw x 2*7/8
    assert judge_log(done.stdout, H200).passed
    slow = run_script(tmp_path, "--max-bytes", "16G", STUB_GPUS="8", STUB_ALGBW="200").stdout
    [problem] = judge_log(slow, H200).problems
    assert problem.startswith("8 ranks: NCCL all_reduce bus bandwidth: 350.00 GB/s at 16 GiB")
    assert "expected >= 431 GB/s" in problem and "conf/nd96isr_h200_v5.conf" in problem
    [other] = judge_log(done.stdout, H100_NVL).results
    assert other.status is Status.NOT_GATED and "is for 2 ranks" in other.message


def test_memory_caps_the_largest_message(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--max-bytes", "16G", STUB_MEMORY=str(16 * GIB))
    assert "capped from 17179869184 by GPU memory" in done.stdout
    run = parse_run(done.stdout)
    assert run.largest is not None and run.largest.nbytes == 4 * GIB


def test_one_gpu_is_not_measured(tmp_path: Path) -> None:
    done = run_script(tmp_path, STUB_GPUS="1")
    assert done.returncode == 0
    assert "nccl-allreduce: NOT MEASURED: all_reduce needs at least 2 GPUs; 1 visible" in done.stdout
    report = parse(done.stdout)
    assert report.success is True and report.problems == []
    judged = judge_log(done.stdout, H200)
    assert judged.passed
    [result] = judged.results
    assert result.status is Status.NOT_MEASURED and "not a failure of the GPU" in result.message


@pytest.mark.parametrize(("args", "env", "reason"), [
    (["--nprocs", "4"], {}, "asked for 4 ranks but only 2 GPU(s) are visible"),
    (["--max-bytes", "4M"], {"STUB_WRONG": "1"}, "gave values 1.0..1.0 on rank 0, expected 2"),
    (["--max-bytes", "4M"], {"STUB_INIT_FAIL": "1"}, "unhandled system error"),
    (["--max-bytes", "lots"], {}, "bad --max-bytes"),
])
def test_failures_are_reported(tmp_path: Path, args: list[str], env: dict[str, str],
                               reason: str) -> None:
    done = run_script(tmp_path, *args, **env)
    assert done.returncode == 1, done.stdout + done.stderr
    report = parse(done.stdout)
    assert report.success is False
    assert any(reason in p for p in report.problems), report.problems


def test_torchrun_environment(tmp_path: Path) -> None:
    done = run_script(tmp_path, "--max-bytes", "2M", RANK="0", WORLD_SIZE="2", LOCAL_RANK="0",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "allreduce: bytes=2097152" in done.stdout
    alone = run_script(tmp_path, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    assert "NOT MEASURED" in alone.stdout


@pytest.mark.parametrize(("stub", "code"), [
    ("raise ImportError('No module named torch (stub)')\n", 3),
    ("__version__ = '2.5.1+cpu'\nclass version:\n    cuda = None\n", 2),
])
def test_no_torch(tmp_path: Path, stub: str, code: int) -> None:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(stub)
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == code
    assert parse(done.stdout).success is False


def test_helpers() -> None:
    assert script.bus_factor(8) == 1.75 and script.bus_factor(2) == 1.0
    assert script.bandwidths(10**9, 0.01, 8) == (100.0, 175.0)
    assert script.sizes(MIB, 4 * MIB) == [MIB, 2 * MIB, 4 * MIB]
    assert script.sizes(MIB, 3 * MIB) == [MIB, 2 * MIB, 3 * MIB]
    assert script.sizes(10 * GIB, GIB) == [GIB]
    assert script.memory_cap(141 * GIB) == 32 * GIB and script.memory_cap(80 * GIB) == 16 * GIB
    assert script.memory_cap(40 * GIB) == 8 * GIB and script.memory_cap(1) == MIB
    assert script.parse_bytes("16G") == 16 * GIB and script.parse_bytes("512MiB") == 512 * MIB
    assert script.parse_bytes("1048576") == MIB
    line = script.result_line(16 * GIB, 0.0626349, 8)
    [result] = parse_run(line).results
    assert (result.nbytes, result.ranks) == (16 * GIB, 8)
    assert abs(result.busbw - 480.0) < 0.1
    assert script.done_line(16 * GIB, 0.0626349, 8, 41.7).startswith(
        "nccl-allreduce: DONE: largest message 17179869184 bytes: busbw 480.00 GB/s")


def test_inconsistent_lines_are_problems() -> None:
    log = reference_log("NVIDIA H200")
    tampered = log.replace("busbw_gbps=480.00", "busbw_gbps=500.00")
    problems = parse(tampered).problems
    assert any(p.startswith("busbw 500.0 GB/s is not algbw x 2(n-1)/n") for p in problems)
    same_gpu = log.replace("uuid=GPU-00000000-0000-0000-0000-000000000001",
                           "uuid=GPU-00000000-0000-0000-0000-000000000000")
    assert any(p.startswith("two ranks ran on the same GPU") for p in parse(same_gpu).problems)
    done_wrong = log.replace("busbw 480.00 GB/s with", "busbw 999.00 GB/s with")
    assert "the DONE line does not match the largest result" in parse(done_wrong).problems


@pytest.mark.parametrize("device", DEVICE_NAMES)
def test_reference_log(device: str) -> None:
    report = parse(reference_log(device))
    assert report.devices == [device] and report.success is True and report.problems == []
    assert len(report.device_lines) == 8


@pytest.mark.parametrize("size", [s for s in gates.gated_sizes() if gates.GATES[s.lower()].nccl])
def test_reference_passes_and_broken_fails_every_nccl_gate(size: str) -> None:
    gate = gates.GATES[size.lower()].nccl
    assert gate is not None
    assert judge_log(reference_log("NVIDIA H200", ranks=gate.ranks), size).passed
    [problem] = judge_log(broken_reference_log("low-bus-bandwidth", "NVIDIA H200",
                                               ranks=gate.ranks), size).problems
    assert f"expected >= {gate.busbw_gbps:g} GB/s" in problem and f"conf/{size.lower()[9:]}" in problem


def test_every_truncation_fails() -> None:
    lines = reference_log("NVIDIA H200").splitlines(keepends=True)
    done = next(i for i, line in enumerate(lines) if "nccl-allreduce: DONE" in line)
    for cut in range(done + 1):
        report = parse("".join(lines[:cut]))
        assert report.success is False and report.problems, cut
        judge_log("".join(lines[:cut]), H200)
    assert parse("".join(lines[: done + 1])).success is True


@pytest.mark.parametrize("junk", [
    "", "\n", "\x00\xff", "allreduce: bytes=x", "allreduce: bytes=1 time_us=0 algbw_gbps=1 "
    "busbw_gbps=1 ranks=2", "nccl-allreduce: DONE: largest message 1 bytes: busbw 1 GB/s with 2 "
    "ranks in 1 s", "nccl-allreduce: FAILED:", "nccl-rank: rank=0", "a" * 100_000,
])
def test_garbage_never_raises_and_never_passes(junk: str) -> None:
    report = parse(junk)
    assert report.success is not True and report.problems
    assert not judge_log(junk, H200).passed


def test_job_asks_for_every_gpu_and_sets_the_environment() -> None:
    job = job_manifest("gc-nccl", "gc-ns", gpus=8, vm_size=H200, node_name="aks-gpu-0")
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == "nccl-allreduce"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert container["args"] == ["--max-bytes", str(16 * GIB)]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["NCCL_NVLS_ENABLE"] == "0" and env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
    assert env["NVSHMEM_DISABLE_NVLS"] == "1"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod["volumes"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "aks-gpu-0"}
    assert nccl_allreduce.script_args("Standard_ND96asr_v4", 8) == ["--max-bytes", str(8 * GIB)]
    assert nccl_allreduce.script_args("Standard_NC4as_T4_v3", 1) == ["--max-bytes", str(GIB)]
    assert nccl_allreduce.script_args(H200, 2) == ["--max-bytes", str(GIB)]
    [configmap] = nccl_allreduce.extra_objects("gc-ns")
    assert configmap["data"] == {"nccl_allreduce.py": SCRIPT.read_text()}
    assert PROFILE.command == ["python", "/opt/gpu-conformance/nccl_allreduce.py"]
