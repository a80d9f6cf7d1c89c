"""bandwidth: the probe's own output (run against a stand-in torch and nvidia-smi) round-trips
through the parser; every gate fails on a low figure naming the figure, the limit and its
source; garbage and truncation never raise."""

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
from gpu_conformance.workloads import bandwidth
from gpu_conformance.workloads.bandwidth import (
    PROFILE,
    broken_reference_log,
    judge_log,
    parse,
    parse_run,
    reference_log,
)

PROBE = Path(__file__).parents[2] / "gpu_conformance" / "data" / "bandwidth_probe.py"
H200 = "Standard_ND96isr_H200_v5"
T4 = "Standard_NC4as_T4_v3"
DEVICE_NAMES = sorted({sku.device_name for sku in gpus.VM_SIZES.values()})


def load_probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bandwidth_probe", PROBE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


probe = load_probe()

#: a stand-in torch: copies are recorded, CUDA events time them at STUB_RATES (GB/s)
STUB_TORCH = '''
import contextlib
import os

__version__ = "2.11.0-stub"
uint8, float32, float64 = "uint8", "float32", "float64"


class version:
    cuda = "13.0"


_RATES = {"h2d": 55.0, "d2h": 53.0, "d2d": 1900.0, "p2p": 370.0}
for item in filter(None, os.environ.get("STUB_RATES", "").split(",")):
    key, value = item.split("=")
    _RATES[key] = float(value)
_copies = []


class Tensor:
    def __init__(self, n, device):
        self.n, self.device = n, device

    def copy_(self, other, non_blocking=False):
        if os.environ.get("STUB_FAIL_AFTER") and len(_copies) >= int(os.environ["STUB_FAIL_AFTER"]):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        _copies.append((other.device, self.device, self.n))
        return self


def empty(n, dtype=None, device=None, pin_memory=False):
    return Tensor(n, device or "cpu")


def _kind(src, dst):
    if src == "cpu":
        return "h2d"
    if dst == "cpu":
        return "d2h"
    return "d2d" if src == dst else "p2p"


class _Event:
    def __init__(self, enable_timing=False):
        self.mark = 0

    def record(self, stream=None):
        self.mark = len(_copies)

    def synchronize(self):
        pass

    def elapsed_time(self, end):
        done = _copies[self.mark:end.mark]
        return sum(n / (_RATES[_kind(s, d)] * 1e9) for s, d, n in done) * 1000.0


class _Props:
    def __init__(self, i):
        self.name = os.environ.get("STUB_NAME", "NVIDIA H200")
        self.uuid = f"53cb4b91-3921-783e-384e-{i:012d}"
        self.pci_domain_id, self.pci_bus_id, self.pci_device_id = 0, 0x83 + i, 0
        self.total_memory = 150 * 2**30


class cuda:
    Event = _Event

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
    def device(i):
        return contextlib.nullcontext()

    @staticmethod
    def synchronize(device=None):
        pass

    @staticmethod
    def can_device_access_peer(a, b):
        return os.environ.get("STUB_NO_PEER") is None
'''

#: a stand-in nvidia-smi: the link query and `nvlink --status` for the stub's GPUs
STUB_SMI = '''#!/bin/sh
n=${STUB_GPUS:-2}
case "$*" in
  *nvlink*)
    i=0
    while [ $i -lt $n ]; do
      echo "GPU $i: NVIDIA H200 (UUID: GPU-53cb4b91-3921-783e-384e-00000000000$i)"
      for l in 0 1 2 3; do echo "	 Link $l: 26.562 GB/s"; done
      [ -n "$STUB_INACTIVE" ] && echo "	 Link 4: <inactive>"
      i=$((i+1))
    done;;
  *--query-gpu*)
    i=0
    while [ $i -lt $n ]; do
      echo "GPU-53cb4b91-3921-783e-384e-00000000000$i, ${STUB_PCIE:-5, 5, 16, 16}"
      i=$((i+1))
    done;;
esac
'''


def run_probe(tmp_path: Path, *args: str, smi: bool = True, **env: str
              ) -> subprocess.CompletedProcess[str]:
    (tmp_path / "torch").mkdir(exist_ok=True)
    (tmp_path / "torch" / "__init__.py").write_text(STUB_TORCH)
    path = os.environ.get("PATH", "/usr/bin:/bin")
    if smi:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "nvidia-smi").write_text(STUB_SMI)
        (bin_dir / "nvidia-smi").chmod(0o755)
        path = f"{bin_dir}:{path}"
    full_env = {**os.environ, "PYTHONPATH": str(tmp_path), "PATH": path, **env}
    return subprocess.run([sys.executable, str(PROBE), "--buffer-mib", "1", "--copies", "2",
                           "--samples", "3", "--warmup", "1", "--pcie-seconds", "5", *args],
                          env=full_env, capture_output=True, text=True, timeout=60, check=False)


def test_probe_output_round_trips(tmp_path: Path) -> None:
    done = run_probe(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = parse(done.stdout)
    assert report.problems == [] and report.success is True, done.stdout
    assert report.devices == ["NVIDIA H200", "NVIDIA H200"]
    assert report.device_lines[0] == "gpu 0: NVIDIA H200 (UUID: GPU-53cb4b91-3921-783e-384e-" \
                                     "000000000000)"
    assert report.properties["h2d_gbps"] == "55.00,55.00"
    assert report.properties["d2h_gbps"] == "53.00,53.00"
    assert report.properties["p2p_min_gbps"] == "370.00"
    run = parse_run(done.stdout)
    assert len(run.measurements) == 3 * 2 + 2
    assert run.pcie[1].gen == 5 and run.pcie[1].width_max == 16 and run.pcie[1].load == "h2d"
    assert run.nvlink == {0: (4, 0), 1: (4, 0)}
    judged = judge_log(done.stdout, H200)
    assert judged.passed, judged.problems
    statuses = {(r.key, r.subject): r.status for r in judged.results}
    assert statuses[("d2d", "GPU 0 (NVIDIA H200)")] is Status.NOT_GATED
    assert statuses[("p2p", "GPU 0 (NVIDIA H200) -> GPU 1 (NVIDIA H200)")] is Status.PASS
    assert statuses[("pcie-link", "GPU 1 (NVIDIA H200)")] is Status.PASS
    assert statuses[("nvlink", "GPU 0 (NVIDIA H200)")] is Status.PASS


def test_low_copy_bandwidth_fails_naming_figure_limit_source(tmp_path: Path) -> None:
    done = run_probe(tmp_path, STUB_RATES="h2d=20,d2h=47,p2p=300")
    problems = judge_log(done.stdout, H200).problems
    source = "conf/nd96isr_h200_v5.conf: 'check_gpu_bw 48 335'"
    assert len(problems) == 2 * 2 + 2, problems
    assert problems[0].startswith("GPU 0 (NVIDIA H200): host->device copy bandwidth: 20.00 GB/s "
                                  "(median of 3, min 20.00, max 20.00); expected >= 48 GB/s")
    assert any(p.startswith("GPU 1 (NVIDIA H200): device->host copy bandwidth: 47.00 GB/s")
               for p in problems)
    assert any(p.startswith("GPU 0 (NVIDIA H200) -> GPU 1 (NVIDIA H200): GPU->GPU peer copy "
                            "bandwidth: 300.00 GB/s") and "expected >= 335 GB/s" in p
               for p in problems)
    assert all(source in p for p in problems)
    assert parse(done.stdout).success is True  # no VM size, no limit


def test_near_the_limit_warns(tmp_path: Path) -> None:
    done = run_probe(tmp_path, STUB_RATES="h2d=49", STUB_GPUS="1")
    judged = judge_log(done.stdout, H200)
    assert judged.passed
    [warn] = judged.by_status(Status.WARN)
    assert warn.key == "h2d" and "close to the limit >= 48 GB/s" in warn.message
    assert "1.05" in warn.message


def test_pcie_downgraded_under_load_fails_everywhere(tmp_path: Path) -> None:
    done = run_probe(tmp_path, STUB_PCIE="3, 5, 8, 16", STUB_GPUS="1")
    report = parse(done.stdout)
    assert report.success is False
    [problem] = report.problems
    assert problem.startswith("GPU 0 (NVIDIA H200): PCIe link under load: Gen 3 of max 5, x8 of "
                              "max x16, sampled during a h2d; expected Gen 5 x16")
    assert "may be reduced when the GPU is not in use" in problem


def test_inactive_nvlink_fails_where_the_conf_checks_it(tmp_path: Path) -> None:
    done = run_probe(tmp_path, STUB_INACTIVE="1")
    problems = judge_log(done.stdout, H200).problems
    assert problems and all("NVLink links: 4 active, 1 inactive; expected all active" in p
                            and "check_nvlink_status" in p for p in problems)
    warned = judge_log(done.stdout, T4)
    assert warned.passed and {r.key for r in warned.by_status(Status.WARN)} == {"nvlink"}


def test_without_nvidia_smi_link_and_peer_gates_are_not_judged(tmp_path: Path) -> None:
    done = run_probe(tmp_path, smi=False, STUB_NO_PEER="1")
    assert done.returncode == 0
    run = parse_run(done.stdout)
    assert run.pcie[0].unavailable.startswith("nvidia-smi cannot run")
    assert run.nvlink_unavailable
    judged = judge_log(done.stdout, H200)
    assert judged.passed
    [p2p, _] = [r for r in judged.results if r.key == "p2p"]
    assert p2p.status is Status.NOT_GATED
    assert "no peer access between these GPUs" in p2p.message
    assert "only when `nvidia-smi nvlink --status` lists links" in p2p.message
    assert {r.status for r in judged.results if r.key == "pcie-link"} == {Status.NOT_MEASURED}


def test_copy_failure_is_reported(tmp_path: Path) -> None:
    done = run_probe(tmp_path, STUB_FAIL_AFTER="10")
    assert done.returncode == 1
    report = parse(done.stdout)
    assert report.success is False
    assert report.problems == ["the bandwidth probe failed: a copy failed after 1 measurement(s): "
                               "CUDA error: an illegal memory access was encountered"]


@pytest.mark.parametrize(("stub", "code", "reason"), [
    ("raise ImportError('No module named torch (stub)')\n", 3, "PyTorch is not installed"),
    ("__version__ = '2.5.1+cpu'\nclass version:\n    cuda = None\n", 2, "has no CUDA support"),
    ("__version__ = 'x'\nclass version:\n    cuda = '12.4'\nclass cuda:\n    @staticmethod\n"
     "    def is_available():\n        return False\n", 2, "no usable CUDA GPU"),
])
def test_no_torch_or_no_gpu(tmp_path: Path, stub: str, code: int, reason: str) -> None:
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(stub)
    done = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == code
    report = parse(done.stdout)
    assert report.success is False and reason in report.problems[0]


def test_helpers() -> None:
    assert probe.gbps(2 * 10**9, 0.5) == 4.0 and probe.gbps(1, 0) == 0.0
    line = probe.measurement_line("p2p", "0", "1", [300.0, 310.0, 320.0], 512, 16, True)
    assert line == ("bandwidth: kind=p2p src=0 dst=1 gbps=310.00 min_gbps=300.00 "
                    "max_gbps=320.00 bytes=512 copies=16 samples=3 peer_access=1")
    [measurement] = parse_run(line).measurements
    assert (measurement.gbps, measurement.peer_access, measurement.samples) == (310.0, True, 3)
    assert probe.parse_cpulist("0-3,8") == {0, 1, 2, 3, 8}
    assert probe.parse_cpulist("garbage") == set() and probe.parse_cpulist("") == set()
    assert probe.normalize_uuid("53CB") == "gpu-53cb"
    assert probe.display_uuid("gpu-53cb") == "GPU-53cb"
    assert probe.parse_pcie_csv("GPU-AB, 5, 5, 16, 16\nNo devices\n") == {
        "gpu-ab": (5, 5, 16, 16)}
    assert probe.parse_pcie_csv("GPU-AB, [N/A], 5, 16, 16") == {"gpu-ab": (None, 5, 16, 16)}
    assert probe.pcie_line(0, (3, 5, 8, 16)) == "pcie: gpu=0 gen=3 gen_max=5 width=8 width_max=16 " \
                                                "load=h2d"

    class Props:
        pci_domain_id, pci_bus_id, pci_device_id = 0, 0x83, 0

    assert probe.pci_bus_id(Props()) == "0000:83:00.0"
    assert probe.pci_bus_id(object()) is None


def test_nvlink_status_formats() -> None:
    """The layouts of aznhc's test/data/{good,bad}_nvlink_status.txt and the H200's capture."""
    good = ("GPU 7: NVIDIA A100-SXM4-80GB (UUID: GPU-c7e253b0-c227-6f10-e860-7482c85e7ce8)\n"
            + "".join(f"\t Link {i}: 25 GB/s\n" for i in range(12)))
    bad = ("GPU 6: NVIDIA A100-SXM4-80GB (UUID: GPU-9667d95e-6d22-0c22-1f57-c481f13e7c44)\n"
           "NVML: Unable to retrieve NVLink information as all links are inactive\n"
           "GPU 5: NVIDIA A100-SXM4-80GB (UUID: GPU-1)\n\t Link 0: 25 GB/s\n\t Link 1: <inactive>\n")
    assert probe.parse_nvlink_status(good) == {"gpu-c7e253b0-c227-6f10-e860-7482c85e7ce8": (12, 0)}
    assert probe.parse_nvlink_status(bad) == {"gpu-9667d95e-6d22-0c22-1f57-c481f13e7c44": (0, None),
                                              "gpu-1": (1, 1)}
    assert probe.nvlink_line(6, 0, None) == "nvlink: gpu=6 active=0 inactive=all"
    run = parse_run("nvlink: gpu=6 active=0 inactive=all\n")
    assert run.nvlink == {6: (0, None)}


@pytest.mark.parametrize("device", DEVICE_NAMES)
def test_reference_log(device: str) -> None:
    report = parse(reference_log(device))
    assert report.devices == [device] and report.success is True and report.problems == []


@pytest.mark.parametrize("size", gates.gated_sizes())
def test_reference_passes_and_broken_fails_every_gated_size(size: str) -> None:
    healthy = reference_log("NVIDIA H200", gpus=8)
    assert judge_log(healthy, size).passed, size
    problems = judge_log(broken_reference_log("low-copy-bandwidth", "NVIDIA H200", gpus=8),
                         size).problems
    assert any("host->device copy bandwidth: 5.00 GB/s" in p and f"conf/{size.lower()[9:]}" in p
               for p in problems), problems
    peer = gates.GATES[size.lower()].p2p
    assert any("GPU->GPU peer copy bandwidth: 100.00 GB/s" in p for p in problems) == bool(peer)


def test_pcie_downgraded_reference() -> None:
    report = parse(broken_reference_log("pcie-downgraded", "NVIDIA H200"))
    assert report.success is False and "Gen 3 of max 5, x8 of max x16" in report.problems[0]


def test_every_truncation_fails() -> None:
    lines = reference_log("NVIDIA H200", gpus=2).splitlines(keepends=True)
    done = next(i for i, line in enumerate(lines) if "bandwidth-probe: DONE" in line)
    for cut in range(done + 1):
        report = parse("".join(lines[:cut]))
        assert report.success is False and report.problems, cut
    assert parse("".join(lines[: done + 1])).success is True


@pytest.mark.parametrize("junk", [
    "", "\n\n", "\x00\xff garbage", "bandwidth: kind=h2d gbps=fast", "bandwidth: kind=h2d",
    "pcie: gpu=x gen=5", "nvlink: gpu=0 active=many", "bandwidth-probe: FAILED:",
    "bandwidth-probe: DONE: 0 measurements on 0 GPU(s) in 0.0 s", "a" * 100_000,
    "bandwidth: kind=h2d src=host dst=0 gbps=nan min_gbps=1 max_gbps=1 bytes=1 copies=1 samples=1",
])
def test_garbage_never_raises_and_never_passes(junk: str) -> None:
    report = parse(junk)
    assert report.success is not True and report.problems
    assert not judge_log(junk, H200).passed


def test_a_gpu_without_measurements_is_a_problem() -> None:
    log = reference_log("NVIDIA H200", gpus=2)
    cut = "\n".join(line for line in log.splitlines()
                    if not line.startswith("bandwidth: kind=h2d src=host dst=1")) + "\n"
    assert parse(cut).problems == ["GPU 1 (NVIDIA H200): no h2d measurement"]


def test_profile_ships_the_probe() -> None:
    [configmap] = bandwidth.extra_objects("gc-ns")
    assert configmap["data"] == {bandwidth.SCRIPT: PROBE.read_text()}
    job = PROFILE.job_manifest("gc-bw", "gc-ns", gpus=8)
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["python", "/opt/gpu-conformance/bandwidth_probe.py"]
    assert pod["volumes"] == [{"name": "bandwidth-probe",
                               "configMap": {"name": "gpu-conformance-bandwidth-probe"}}]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    compile(PROBE.read_text(), "bandwidth_probe.py", "exec")
