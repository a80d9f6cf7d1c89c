"""``nccl-allreduce``: NCCL all_reduce across every GPU of a node, judged against aznhc's busbw.

The Job asks for ALL GPUs of its node (``job_manifest(..., gpus=<GPUs of the node>)``) and runs
gpu_conformance/data/nccl_allreduce.py from a ConfigMap: one process per GPU, torch.distributed
with NCCL, float32 SUM all_reduce in place over message sizes doubling up to the gate's size
(16 GiB on the 8-GPU sizes, 8 GiB on ND96asr_v4 and NC96ads_A100_v4; capped at a quarter of GPU
memory), warmup then timed calls, time averaged over ranks; per size bytes, time, algbw and
nccl-tests' busbw = algbw * 2(n-1)/n.

Judged: the busbw at the gate's message size against the gate of (VM size, rank count):
Azure's ``check_nccl_allreduce`` runs nccl-tests' all_reduce_perf with exactly that size, one
rank per GPU, and compares its "Avg bus bandwidth" (there: the mean of one out-of-place and one
in-place result; here: the in-place result). A run with other ranks or a smaller largest size is
reported "not gated"; one GPU is "not measured" (all_reduce needs two), never a GPU failure.

The pod gets NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1
(the script sets them again before NCCL loads) and a memory-backed /dev/shm: NCCL's
shared-memory transport does not fit the container runtime's default 64 MiB.
"""

from __future__ import annotations

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

NAME = "nccl-allreduce"
SCRIPT = "nccl_allreduce.py"
CONFIGMAP = "gpu-conformance-nccl-allreduce"
MOUNT_PATH = "/opt/gpu-conformance"
VOLUME = "nccl-allreduce"
SHM_VOLUME = "dshm"
#: NVLink multicast off (the GPU hosts' rule; also harmless elsewhere)
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
            "NVSHMEM_DISABLE_NVLS": "1"}
GIB = 1024**3
TITLE = "NCCL all_reduce bus bandwidth"

_HEADER = re.compile(r"^nccl-allreduce: torch (?P<torch>\S+), NCCL (?P<nccl>[^,\s]+), "
                     r"(?P<ranks>\d+) rank\(s\) of (?P<visible>\d+) visible", re.MULTILINE)
_RANK = re.compile(r"^nccl-rank: rank=(?P<rank>\d+) gpu=(?P<gpu>\d+) uuid=(?P<uuid>\S+) "
                   r"name=(?P<name>.+?)\s*$", re.MULTILINE)
_RESULT = re.compile(r"^allreduce: (?P<rest>.*)$", re.MULTILINE)
_KV = re.compile(r"(\w+)=(\S+)")
_DONE = re.compile(r"^nccl-allreduce: DONE: largest message (?P<bytes>\d+) bytes: busbw "
                   r"(?P<busbw>[0-9.]+) GB/s with (?P<ranks>\d+) ranks in (?P<s>[0-9.]+) s",
                   re.MULTILINE)
_NOT_MEASURED = re.compile(r"^nccl-allreduce: NOT MEASURED: (?P<reason>.+)$", re.MULTILINE)
_FAILED = re.compile(r"^nccl-allreduce: FAILED: (?P<reason>.+)$", re.MULTILINE)
_FAILURES: tuple[Failure, ...] = (
    *CUDA_FAILURES, PYTHON_TRACEBACK,
    (re.compile(r"NCCL error|ncclSystemError|ncclInternalError|ncclUnhandledCudaError"),
     "NCCL reported an error (see the NCCL WARN lines in the log)"),
)


@dataclass(frozen=True)
class Result:
    nbytes: int
    time_us: float
    algbw: float
    busbw: float
    ranks: int


@dataclass
class NcclRun:
    ranks: dict[int, tuple[str, str]] = field(default_factory=dict)  # rank -> (uuid, name)
    results: list[Result] = field(default_factory=list)
    header_ranks: int | None = None
    visible: int | None = None
    torch_version: str | None = None
    nccl_version: str | None = None
    done: bool = False
    not_measured: str = ""
    seconds: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def largest(self) -> Result | None:
        return max(self.results, key=lambda r: r.nbytes) if self.results else None


def _factor(ranks: int) -> float:
    return 2.0 * (ranks - 1) / ranks if ranks > 0 else 0.0


def _close(a: float, b: float, rel: float = 0.02, absolute: float = 0.02) -> bool:
    return abs(a - b) <= max(absolute, rel * max(abs(a), abs(b)))


def _result(values: dict[str, str]) -> Result | str:
    try:
        nbytes, ranks = int(values["bytes"]), int(values["ranks"])
        time_us, algbw, busbw = (float(values[k]) for k in ("time_us", "algbw_gbps",
                                                             "busbw_gbps"))
    except (KeyError, ValueError):
        return "unreadable all_reduce line"
    if nbytes <= 0 or ranks <= 0 or not time_us > 0 or algbw < 0 or busbw < 0:
        return "impossible figures"
    if not _close(algbw, nbytes / time_us / 1e3):
        return f"algbw {algbw} GB/s is not bytes/time ({nbytes / time_us / 1e3:.2f})"
    if not _close(busbw, algbw * _factor(ranks)):
        return f"busbw {busbw} GB/s is not algbw x 2(n-1)/n ({algbw * _factor(ranks):.2f})"
    return Result(nbytes, time_us, algbw, busbw, ranks)


def parse_run(log: str) -> NcclRun:
    """Everything the script printed and what is missing or inconsistent; never raises."""
    run = NcclRun(problems=empty_log_problem(log))
    header = _HEADER.search(log)
    if header:
        run.torch_version, run.nccl_version = header.group("torch"), header.group("nccl")
        run.header_ranks, run.visible = int(header.group("ranks")), int(header.group("visible"))
    for match in _RANK.finditer(log):
        run.ranks.setdefault(int(match.group("rank")), (match.group("uuid"),
                                                        match.group("name").strip()))
    for match in _RESULT.finditer(log):
        parsed = _result(dict(_KV.findall(match.group("rest"))))
        if isinstance(parsed, str):
            run.problems.append(f"{parsed}: {match.group(0)[:200]}")
        else:
            run.results.append(parsed)
    done, not_measured, failed = _DONE.search(log), _NOT_MEASURED.search(log), _FAILED.search(log)
    if failed:
        run.problems.append(f"the all_reduce run failed: {failed.group('reason').strip()}")
    run.problems += find_problems(log, _FAILURES)
    if not_measured:
        run.not_measured = not_measured.group("reason").strip()
    elif done:
        run.done, run.seconds = True, float(done.group("s"))
        largest = run.largest
        if largest is None:
            run.problems.append("the run says DONE but printed no all_reduce result")
        else:
            if int(done.group("bytes")) != largest.nbytes or not _close(
                    float(done.group("busbw")), largest.busbw):
                run.problems.append("the DONE line does not match the largest result")
            counts = {r.ranks for r in run.results} | {int(done.group("ranks"))}
            if run.header_ranks is not None:
                counts.add(run.header_ranks)
            if len(counts) > 1:
                run.problems.append(f"the results disagree on the rank count: {sorted(counts)}")
            if run.ranks and len(run.ranks) != largest.ranks:
                run.problems.append(f"{len(run.ranks)} rank line(s) for a {largest.ranks}-rank "
                                    "run")
    elif log.strip() and not failed:
        run.problems.append("no 'nccl-allreduce: DONE', 'NOT MEASURED' or 'FAILED' line: the log "
                            "ends before the run finished (truncated, or the pod was killed)")
    uuids = [uuid for uuid, _ in run.ranks.values()]
    if len(set(uuids)) != len(uuids):
        run.problems.append(f"two ranks ran on the same GPU: {sorted(uuids)}")
    return run


def evaluate(run: NcclRun, size: SizeGates | None) -> list[GateResult]:
    size = size or SizeGates(gates.NO_VM_SIZE)
    if run.not_measured:
        return [GateResult("nccl-busbw", TITLE, f"{run.visible or 1} GPU(s)", Status.NOT_MEASURED,
                           "", detail=f"{run.not_measured}: not a failure of the GPU")]
    largest = run.largest
    if largest is None:
        return []
    subject = f"{largest.ranks} ranks"
    gate = size.nccl
    if gate is None:
        return [GateResult("nccl-busbw", TITLE, subject, Status.NOT_GATED,
                           f"{largest.busbw:.2f} GB/s at {_size(largest.nbytes)}",
                           detail=gates.not_gated_reason(size, TITLE))]
    if gate.ranks and gate.ranks != largest.ranks:
        return [GateResult("nccl-busbw", TITLE, subject, Status.NOT_GATED,
                           f"{largest.busbw:.2f} GB/s at {_size(largest.nbytes)}",
                           source=gate.source,
                           detail=f"the gate ({gate.busbw_gbps:g} GB/s) is for {gate.ranks} ranks")]
    at = largest
    if gate.message_bytes:
        matching = [r for r in run.results if r.nbytes >= gate.message_bytes]
        if not matching:
            return [GateResult(
                "nccl-busbw", TITLE, subject, Status.NOT_GATED,
                f"{largest.busbw:.2f} GB/s at {_size(largest.nbytes)}", source=gate.source,
                detail=f"the largest message is below the gate's {_size(gate.message_bytes)} "
                       "(capped by GPU memory or --max-bytes); busbw grows with the message")]
        at = min(matching, key=lambda r: r.nbytes)
    status = Status.PASS if at.busbw >= gate.busbw_gbps else Status.FAIL
    return [GateResult("nccl-busbw", TITLE, subject, status,
                       f"{at.busbw:.2f} GB/s at {_size(at.nbytes)} (algbw {at.algbw:.2f} GB/s, "
                       f"{at.time_us / 1000:.2f} ms per call)",
                       f">= {gate.busbw_gbps:g} GB/s", gate.source)]


def _size(nbytes: int) -> str:
    if nbytes % GIB == 0:
        return f"{nbytes // GIB} GiB"
    if nbytes % (1024 * 1024) == 0:
        return f"{nbytes // (1024 * 1024)} MiB"
    return f"{nbytes} bytes"


def parse(log: str) -> LogReport:
    run = parse_run(log)
    report = LogReport(problems=list(run.problems))
    for rank in sorted(run.ranks):
        uuid, name = run.ranks[rank]
        report.device_lines.append(f"rank {rank}: {name} (UUID: {uuid})")
        if name not in report.devices:  # one entry per GPU model: the device check needs names
            report.devices.append(name)
    for key, value in (("torch_version", run.torch_version), ("nccl_version", run.nccl_version)):
        if value:
            report.properties[key] = value
    largest = run.largest
    if largest is not None:
        report.properties.update({"ranks": str(largest.ranks),
                                  "largest_message_bytes": str(largest.nbytes),
                                  "busbw_gbps": f"{largest.busbw:.2f}"})
    if run.not_measured:
        report.properties["nccl_allreduce"] = f"not measured: {run.not_measured}"
    report.success = (run.done or bool(run.not_measured)) and not report.problems
    return report


def judge_log(log: str, vm_size: str | None, overrides: Sequence[str] = ()) -> Judgement:
    run = parse_run(log)
    return gates.judgement(vm_size, run.problems, evaluate(run, gates.resolve(vm_size, overrides)))


# --- the Job ------------------------------------------------------------------------------

@cache
def script() -> str:
    return resources.files("gpu_conformance").joinpath("data", SCRIPT).read_text(encoding="utf-8")


def extra_objects(namespace: str) -> list[dict[str, Any]]:
    return [{
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": namespace, "labels": {WORKLOAD_LABEL: NAME}},
        "data": {SCRIPT: script()},
    }]


def script_args(vm_size: str | None, gpus: int, overrides: Sequence[str] = ()) -> list[str]:
    """``--max-bytes`` for the run: the gate's message size when the Job has the gate's rank
    count, 1 GiB otherwise (the figure is not gated then, so a long run buys nothing)."""
    gate = gates.resolve(vm_size, overrides).nccl
    if gate is not None and gate.message_bytes and gate.ranks in (0, gpus):
        return ["--max-bytes", str(gate.message_bytes)]
    if gpus >= 8:
        return ["--max-bytes", str(16 * GIB)]
    return ["--max-bytes", str(GIB)]


def job_manifest(name: str, namespace: str, *, gpus: int, vm_size: str | None = None,
                 overrides: Sequence[str] = (), labels: dict[str, str] | None = None,
                 node_name: str | None = None) -> dict[str, Any]:
    """The Job for a node with ``gpus`` GPUs: it asks for all of them, and its message sizes go
    up to the gate's size for ``vm_size``."""
    job = PROFILE.job_manifest(name, namespace, gpus=gpus, labels=labels, node_name=node_name)
    container = job["spec"]["template"]["spec"]["containers"][0]
    container["args"] = script_args(vm_size, gpus, overrides)
    return job


# --- reference logs -----------------------------------------------------------------------

#: SIMULATED busbw (GB/s) at the largest size, not measured: above every gate of gates.GATES
SIMULATED_BUSBW = 480.0
SIMULATED_LOW_BUSBW = 20.0


def _simulated_log(device_name: str, ranks: int, top_busbw: float, max_bytes: int) -> str:
    lines = [f"nccl-allreduce: torch 2.11.0+cu130, NCCL 2.27.7, {ranks} rank(s) of {ranks} "
             f"visible GPU(s), float32 sum in place, sizes 1048576..{max_bytes} bytes doubling, "
             "warmup 5, iters 20, " + " ".join(f"{k}={v}" for k, v in NCCL_ENV.items()),
             "nccl-allreduce: NOTE: simulated figures (offline reference log, not a measurement)"]
    lines += [f"nccl-rank: rank={r} gpu={r} uuid=GPU-00000000-0000-0000-0000-{r:012d} "
              f"name={device_name}" for r in range(ranks)]
    if ranks < 2:
        lines.append(f"nccl-allreduce: NOT MEASURED: all_reduce needs at least 2 GPUs; {ranks} "
                     "visible")
        return "\n".join(lines) + "\n"
    nbytes, last = 1024 * 1024, ""
    factor = _factor(ranks)
    while nbytes <= max_bytes:
        busbw = top_busbw * nbytes / (nbytes + 64 * 1024 * 1024) * (
            (max_bytes + 64 * 1024 * 1024) / max_bytes)
        algbw = busbw / factor
        time_us = nbytes / algbw / 1e3
        algbw = nbytes / round(time_us, 1) / 1e3
        lines.append(f"allreduce: bytes={nbytes} count={nbytes // 4} time_us={time_us:.1f} "
                     f"algbw_gbps={algbw:.2f} busbw_gbps={algbw * factor:.2f} ranks={ranks}")
        last = f"{algbw * factor:.2f}"
        nbytes *= 2
    lines.append(f"nccl-allreduce: DONE: largest message {nbytes // 2} bytes: busbw {last} GB/s "
                 f"with {ranks} ranks in 41.7 s")
    return "\n".join(lines) + "\n"


def reference_log(device_name: str, ranks: int = 8) -> str:
    """A healthy run with SIMULATED figures: ``ranks`` GPUs named ``device_name``, 1 MiB..16 GiB
    (one GPU: the "not measured" log)."""
    return _simulated_log(device_name, ranks, SIMULATED_BUSBW, 16 * GIB)


def broken_reference_log(kind: str, device_name: str, ranks: int = 8) -> str:
    """``low-bus-bandwidth``: busbw 20 GB/s at 16 GiB, below every gate (the lowest is 25)."""
    if kind != "low-bus-bandwidth":
        raise KeyError(kind)
    return _simulated_log(device_name, ranks, SIMULATED_LOW_BUSBW, 16 * GIB)


PROFILE = WorkloadProfile(
    name=NAME,
    description="NCCL all_reduce over every GPU of the node (torch.distributed), nccl-tests' "
                "busbw at the gate's message size",
    image=TORCH_PROFILE.image,
    command=["python", f"{MOUNT_PATH}/{SCRIPT}"],
    parse=parse,
    reference_log=reference_log,
    extra_objects=extra_objects,
    volumes=[{"name": VOLUME, "configMap": {"name": CONFIGMAP}},
             {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}}],
    volume_mounts=[{"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True},
                   {"name": SHM_VOLUME, "mountPath": "/dev/shm"}],
    env=[{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "NCCL_DEBUG", "value": "WARN"},
         *({"name": k, "value": v} for k, v in NCCL_ENV.items())],
    judge=judge_log,
    all_gpus=True,
    gate_args=script_args,
)

