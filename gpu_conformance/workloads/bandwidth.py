"""``bandwidth``: host<->GPU and GPU<->GPU copy bandwidth with PyTorch, judged per VM size.

The probe (gpu_conformance/data/bandwidth_probe.py) travels in a ConfigMap mounted at
/opt/gpu-conformance and runs in the PyTorch image on every GPU the pod got: pinned
host->GPU (h2d), GPU->host (d2h), GPU->same GPU (d2d) and, with several GPUs, GPU->GPU peer
copies (p2p); 512 MiB buffers, 16 copies (4 per GPU->GPU pair) x 10 samples, median,
GB/s = 1e9 bytes/s (the way Azure's node health checks run nvbandwidth). It also samples the
PCIe link with nvidia-smi while a host->GPU copy keeps it busy, and records
``nvidia-smi nvlink --status``.

``parse`` needs no VM size: it reports devices, figures (properties) and the faults that hold
everywhere (probe failure, truncation, a PCIe link below its maximum under load).
``judge_log(log, vm_size, overrides)`` adds the size's gates (gates.GATES): h2d and d2h against
aznhc's ``check_gpu_bw`` first figure, p2p against its second (only between GPUs with active
NVLinks, as aznhc runs that test only when ``nvidia-smi nvlink --status`` lists links), NVLink
links all active where the size's conf checks them. d2d has no source: always "not gated".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from gpu_conformance import gates
from gpu_conformance.gates import GateResult, Judgement, SizeGates, Status
from gpu_conformance.workloads._common import (
    CUDA_FAILURES,
    PYTHON_TRACEBACK,
    Failure,
    empty_log_problem,
    find_problems,
)
from gpu_conformance.workloads.base import WORKLOAD_LABEL, LogReport, WorkloadProfile
from gpu_conformance.workloads.torch_probe import PROFILE as TORCH_PROFILE

NAME = "bandwidth"
SCRIPT = "bandwidth_probe.py"
CONFIGMAP = "gpu-conformance-bandwidth-probe"
MOUNT_PATH = "/opt/gpu-conformance"
VOLUME = "bandwidth-probe"
KINDS = ("h2d", "d2h", "d2d", "p2p")
TITLES = {"h2d": "host->device copy bandwidth", "d2h": "device->host copy bandwidth",
          "d2d": "device->device (same GPU) copy bandwidth", "p2p": "GPU->GPU peer copy bandwidth"}

_HEADER = re.compile(r"^bandwidth-probe: torch (?P<torch>\S+), CUDA (?P<cuda>[^,\s]+), "
                     r"(?P<count>\d+) GPU\(s\)", re.MULTILINE)
_GPU = re.compile(r"^bandwidth-probe: gpu (?P<index>\d+): (?P<name>.+?) \(UUID: "
                  r"(?P<uuid>[^,)\s]+)(?:, PCI: (?P<pci>[^)\s]+))?\)\s*$", re.MULTILINE)
_LINE = re.compile(r"^(?P<kind>bandwidth|pcie|nvlink): (?P<rest>.*)$", re.MULTILINE)
_KV = re.compile(r"(\w+)=(\S+)")
_DONE = re.compile(r"^bandwidth-probe: DONE: (?P<n>\d+) measurements on (?P<g>\d+) GPU\(s\) in "
                   r"(?P<s>[0-9.]+) s", re.MULTILINE)
_FAILED = re.compile(r"^bandwidth-probe: FAILED: (?P<reason>.+)$", re.MULTILINE)
_FAILURES: tuple[Failure, ...] = (*CUDA_FAILURES, PYTHON_TRACEBACK)


@dataclass(frozen=True)
class Measurement:
    kind: str
    src: str
    dst: str
    gbps: float
    min_gbps: float
    max_gbps: float
    nbytes: int
    copies: int
    samples: int
    peer_access: bool | None = None


@dataclass(frozen=True)
class PcieSample:
    gpu: int
    gen: int | None = None
    gen_max: int | None = None
    width: int | None = None
    width_max: int | None = None
    load: str = ""
    unavailable: str = ""


@dataclass
class Gpu:
    index: int
    name: str
    uuid: str
    pci: str | None = None


@dataclass
class BandwidthRun:
    gpus: dict[int, Gpu] = field(default_factory=dict)
    measurements: list[Measurement] = field(default_factory=list)
    pcie: dict[int, PcieSample] = field(default_factory=dict)
    #: gpu -> (active links, inactive links or None for "all inactive")
    nvlink: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    nvlink_unavailable: str = ""
    header_gpus: int | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    done: bool = False
    seconds: float | None = None
    problems: list[str] = field(default_factory=list)

    def of(self, kind: str) -> list[Measurement]:
        return [m for m in self.measurements if m.kind == kind]

    def gpu_subject(self, index: str | int) -> str:
        try:
            gpu = self.gpus.get(int(index))
        except ValueError:
            return f"GPU {index}"
        return f"GPU {index} ({gpu.name})" if gpu else f"GPU {index}"


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _integer(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _measurement(values: dict[str, str]) -> Measurement | None:
    kind = values.get("kind", "")
    numbers = [_number(values.get(k)) for k in ("gbps", "min_gbps", "max_gbps")]
    ints = [_integer(values.get(k)) for k in ("bytes", "copies", "samples")]
    if kind not in KINDS or "src" not in values or "dst" not in values:
        return None
    gbps, low, high = numbers
    nbytes, copies, samples = ints
    if gbps is None or low is None or high is None or nbytes is None or copies is None \
            or samples is None:
        return None
    peer = values.get("peer_access")
    return Measurement(kind, values["src"], values["dst"], gbps, low, high, nbytes, copies,
                       samples, None if peer is None else peer == "1")


def parse_run(log: str) -> BandwidthRun:
    """Everything the probe printed, and what is missing or unreadable; never raises."""
    run = BandwidthRun(problems=empty_log_problem(log))
    header = _HEADER.search(log)
    if header:
        run.torch_version, run.cuda_version = header.group("torch"), header.group("cuda")
        run.header_gpus = int(header.group("count"))
    for match in _GPU.finditer(log):
        index = int(match.group("index"))
        run.gpus.setdefault(index, Gpu(index, match.group("name").strip(), match.group("uuid"),
                                       match.group("pci")))
    for match in _LINE.finditer(log):
        rest = match.group("rest")
        values = dict(_KV.findall(rest))
        if match.group("kind") == "bandwidth":
            measurement = _measurement(values)
            if measurement is None:
                run.problems.append(f"unreadable measurement line: {match.group(0)[:200]}")
            else:
                run.measurements.append(measurement)
        elif match.group("kind") == "pcie":
            gpu = _integer(values.get("gpu"))
            if gpu is None:
                continue
            if " unavailable" in rest:
                run.pcie[gpu] = PcieSample(gpu, unavailable=rest.partition("reason=")[2].strip())
            else:
                run.pcie[gpu] = PcieSample(
                    gpu, _integer(values.get("gen")), _integer(values.get("gen_max")),
                    _integer(values.get("width")), _integer(values.get("width_max")),
                    values.get("load", ""))
        else:
            gpu = _integer(values.get("gpu"))
            active = _integer(values.get("active"))
            if gpu is None or active is None:
                run.nvlink_unavailable = rest.partition("reason=")[2].strip() or rest.strip()
                continue
            inactive = values.get("inactive")
            run.nvlink[gpu] = (active, None if inactive == "all" else _integer(inactive))
    done = _DONE.search(log)
    failed = _FAILED.search(log)
    if failed:
        run.problems.append(f"the bandwidth probe failed: {failed.group('reason').strip()}")
    run.problems += find_problems(log, _FAILURES)
    if done:
        run.done, run.seconds = True, float(done.group("s"))
    elif log.strip() and not failed:
        run.problems.append("no 'bandwidth-probe: DONE' or 'bandwidth-probe: FAILED' line: the "
                            "log ends before the probe finished (truncated, or the container "
                            "was killed)")
    if run.done:
        if run.header_gpus is not None and run.header_gpus != len(run.gpus):
            run.problems.append(f"the probe saw {run.header_gpus} GPU(s) but described "
                                f"{len(run.gpus)}")
        for index in sorted(run.gpus):
            missing = [k for k in ("h2d", "d2h") if not any(
                m.kind == k and str(index) in (m.src, m.dst) for m in run.measurements)]
            if missing:
                run.problems.append(f"{run.gpu_subject(index)}: no {' or '.join(missing)} "
                                    "measurement")
        if not run.gpus:
            run.problems.append("the probe finished without describing any GPU")
    return run


# --- judging ------------------------------------------------------------------------------

def _copy_result(run: BandwidthRun, m: Measurement, limit: gates.Limit | None,
                 size: SizeGates, subject: str, detail: str = "") -> GateResult:
    measured = f"{m.gbps:.2f} GB/s (median of {m.samples}, min {m.min_gbps:.2f}, max " \
               f"{m.max_gbps:.2f})"
    if limit is None:
        reason = gates.not_gated_reason(size, TITLES[m.kind])
        return GateResult(m.kind, TITLES[m.kind], subject, Status.NOT_GATED, measured,
                          detail="; ".join(x for x in (detail, reason) if x))
    status = Status.PASS
    if m.gbps < limit.value:
        status = Status.FAIL
    elif m.gbps < limit.value * gates.BANDWIDTH_WARN_FACTOR:
        status = Status.WARN
        detail = "; ".join(x for x in (detail, f"within 5% of the limit, where aznhc warns "
                                               f"({gates.BANDWIDTH_WARN_SOURCE})") if x)
    return GateResult(m.kind, TITLES[m.kind], subject, status, measured,
                      f">= {limit.value:g} GB/s", limit.source, detail)


def _nvlink_active(run: BandwidthRun, index: str) -> bool:
    try:
        active = run.nvlink.get(int(index), (0, 0))[0]
    except ValueError:
        return False
    return active > 0


def evaluate(run: BandwidthRun, size: SizeGates | None) -> list[GateResult]:
    """Every measurement against ``size`` (None: only the rules that hold for every size)."""
    size = size or SizeGates(gates.NO_VM_SIZE)
    results: list[GateResult] = []
    for m in run.measurements:
        if m.kind == "h2d":
            results.append(_copy_result(run, m, size.h2d, size, run.gpu_subject(m.dst)))
        elif m.kind == "d2h":
            results.append(_copy_result(run, m, size.d2h, size, run.gpu_subject(m.src)))
        elif m.kind == "d2d":
            results.append(_copy_result(run, m, None, size, run.gpu_subject(m.src)))
        else:
            subject = f"{run.gpu_subject(m.src)} -> {run.gpu_subject(m.dst)}"
            peer = "" if m.peer_access is not False else \
                "no peer access between these GPUs: the copy goes through host memory"
            limit = size.p2p
            if limit is not None and not (_nvlink_active(run, m.src)
                                          and _nvlink_active(run, m.dst)):
                results.append(GateResult(
                    m.kind, TITLES[m.kind], subject, Status.NOT_GATED,
                    f"{m.gbps:.2f} GB/s", detail="; ".join(x for x in (peer, (
                        "no active NVLink seen on both GPUs, and aznhc runs its GPU-to-GPU test "
                        "only when `nvidia-smi nvlink --status` lists links")) if x)))
            else:
                results.append(_copy_result(run, m, limit, size, subject, peer))
    rule = gates.RULES["pcie-link"]
    for index, sample in sorted(run.pcie.items()):
        subject = run.gpu_subject(index)
        if sample.unavailable or None in (sample.gen, sample.gen_max, sample.width,
                                          sample.width_max):
            results.append(GateResult("pcie-link", "PCIe link under load", subject,
                                      Status.NOT_MEASURED, sample.unavailable or "incomplete"))
            continue
        measured = (f"Gen {sample.gen} of max {sample.gen_max}, x{sample.width} of max "
                    f"x{sample.width_max}, sampled during a {sample.load or 'copy'}")
        low = (sample.gen or 0) < (sample.gen_max or 0) or (sample.width or 0) < (
            sample.width_max or 0)
        results.append(GateResult(
            "pcie-link", "PCIe link under load", subject, Status.FAIL if low else Status.PASS,
            measured, f"Gen {sample.gen_max} x{sample.width_max}", rule.source,
            rule.what if low else ""))
    nvlink_rule = gates.RULES["nvlink"]
    for index, (active, inactive) in sorted(run.nvlink.items()):
        subject = run.gpu_subject(index)
        measured = f"{active} active, {'all' if inactive is None else inactive} inactive"
        broken = inactive is None or inactive > 0
        if size.nvlink is not None:
            if active == 0 and inactive == 0:
                results.append(GateResult("nvlink", "NVLink links", subject, Status.NOT_MEASURED,
                                          measured, detail="no NVLink reported"))
            else:
                results.append(GateResult(
                    "nvlink", "NVLink links", subject, Status.FAIL if broken else Status.PASS,
                    measured, "all active", f"{size.nvlink}; {nvlink_rule.source}",
                    nvlink_rule.what if broken else ""))
        elif broken and active > 0:
            results.append(GateResult("nvlink", "NVLink links", subject, Status.WARN, measured,
                                      source=nvlink_rule.source,
                                      detail="some links inactive; this size has no NVLink gate"))
    return results


def parse(log: str) -> LogReport:
    run = parse_run(log)
    report = LogReport(problems=list(run.problems))
    for index in sorted(run.gpus):
        gpu = run.gpus[index]
        report.devices.append(gpu.name)
        report.device_lines.append(f"gpu {index}: {gpu.name} (UUID: {gpu.uuid})")
    if run.torch_version:
        report.properties["torch_version"] = run.torch_version
    if run.cuda_version:
        report.properties["torch_cuda_version"] = run.cuda_version
    for kind in ("h2d", "d2h", "d2d"):
        found = run.of(kind)
        if found:
            report.properties[f"{kind}_gbps"] = ",".join(f"{m.gbps:.2f}" for m in found)
    if run.of("p2p"):
        report.properties["p2p_min_gbps"] = f"{min(m.gbps for m in run.of('p2p')):.2f}"
    if run.seconds is not None:
        report.properties["probe_seconds"] = f"{run.seconds:.1f}"
    for result in evaluate(run, None):
        if result.status is Status.FAIL and result.message not in report.problems:
            report.problems.append(result.message)
    report.success = run.done and bool(run.gpus) and not report.problems
    return report


def judge_log(log: str, vm_size: str | None, overrides: Sequence[str] = ()) -> Judgement:
    run = parse_run(log)
    return gates.judgement(vm_size, run.problems, evaluate(run, gates.resolve(vm_size, overrides)))


# --- the Job ------------------------------------------------------------------------------

@cache
def probe_script() -> str:
    return resources.files("gpu_conformance").joinpath("data", SCRIPT).read_text(encoding="utf-8")


def extra_objects(namespace: str) -> list[dict[str, Any]]:
    """The ConfigMap holding the probe, created before the Job."""
    return [{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": namespace, "labels": {WORKLOAD_LABEL: NAME}},
        "data": {SCRIPT: probe_script()},
    }]


# --- reference logs -----------------------------------------------------------------------

#: SIMULATED figures (GB/s), not measured: they sit above every gate of gates.GATES so the
#: offline cluster's healthy log passes everywhere; the H200 capture replaces them
SIMULATED = {"h2d": 55.0, "d2h": 55.0, "d2d": 1900.0, "p2p": 370.0}
#: the broken variant's figures: below every gate (V100's h2d 10, ND A100's p2p 235)
SIMULATED_LOW = {"h2d": 5.0, "d2h": 5.0, "d2d": 1900.0, "p2p": 100.0}
_REFERENCE_UUID = "GPU-53cb4b91-3921-783e-384e-c94f2e366ff5"


def _simulated_log(device_name: str, gpus: int, figures: dict[str, float]) -> str:
    nbytes, copies, samples = 512 * 1024 * 1024, 16, 10
    lines = [f"bandwidth-probe: torch 2.11.0+cu130, CUDA 13.0, {gpus} GPU(s), 512 MiB buffers, "
             f"{copies} copies x {samples} samples (median), pinned host memory, GB/s = 1e9 "
             "bytes/s, CUDA_VISIBLE_DEVICES=<unset>",
             "bandwidth-probe: NOTE: simulated figures (offline reference log, not a measurement)"]

    def line(kind: str, src: str, dst: str, peer: bool | None = None) -> str:
        value = figures[kind]
        text = (f"bandwidth: kind={kind} src={src} dst={dst} gbps={value:.2f} "
                f"min_gbps={value * 0.99:.2f} max_gbps={value * 1.01:.2f} bytes={nbytes} "
                f"copies={4 if kind == 'p2p' else copies} samples={samples}")
        return text + (f" peer_access={int(peer)}" if peer is not None else "")

    uuids = [_REFERENCE_UUID if i == 0 else f"GPU-00000000-0000-0000-0000-{i:012d}"
             for i in range(gpus)]
    for i in range(gpus):
        lines.append(f"bandwidth-probe: gpu {i}: {device_name} (UUID: {uuids[i]}, PCI: "
                     f"0000:{0x83 + i:02x}:00.0)")
    lines += [f"nvlink: gpu={i} active=18 inactive=0" for i in range(gpus)]
    for i in range(gpus):
        lines.append(f"bandwidth-probe: gpu {i}: CPU affinity unchanged")
        lines += [line("h2d", "host", str(i)), line("d2h", str(i), "host"),
                  line("d2d", str(i), str(i)),
                  f"pcie: gpu={i} gen=5 gen_max=5 width=16 width_max=16 load=h2d"]
    lines += [line("p2p", str(s), str(d), True) for s in range(gpus) for d in range(gpus) if s != d]
    count = 3 * gpus + gpus * (gpus - 1)
    lines.append(f"bandwidth-probe: DONE: {count} measurements on {gpus} GPU(s) in "
                 f"{9.5 + 4 * gpus:.1f} s")
    return "\n".join(lines) + "\n"


def reference_log(device_name: str, gpus: int = 1) -> str:
    """A healthy probe log with SIMULATED figures for ``gpus`` GPUs named ``device_name``."""
    return _simulated_log(device_name, gpus, SIMULATED)


def broken_reference_log(kind: str, device_name: str, gpus: int = 1) -> str:
    """``low-copy-bandwidth``: h2d/d2h at 5 GB/s (and p2p at 100 GB/s with several GPUs);
    ``pcie-downgraded``: the link at Gen 3 x8 of Gen 5 x16 while copying."""
    if kind == "low-copy-bandwidth":
        return _simulated_log(device_name, gpus, SIMULATED_LOW)
    if kind == "pcie-downgraded":
        return reference_log(device_name, gpus).replace(
            "gen=5 gen_max=5 width=16 width_max=16", "gen=3 gen_max=5 width=8 width_max=16")
    raise KeyError(kind)


PROFILE = WorkloadProfile(
    name=NAME,
    description="host<->GPU and GPU<->GPU copy bandwidth (PyTorch, pinned memory, CUDA events), "
                "PCIe link under load, NVLink status",
    image=TORCH_PROFILE.image,
    command=["python", f"{MOUNT_PATH}/{SCRIPT}"],
    parse=parse,
    reference_log=reference_log,
    extra_objects=extra_objects,
    volumes=[{"name": VOLUME, "configMap": {"name": CONFIGMAP}}],
    volume_mounts=[{"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True}],
    env=[{"name": "PYTHONUNBUFFERED", "value": "1"}],
    judge=judge_log,
)
