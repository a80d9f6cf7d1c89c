"""Copy-bandwidth probe for the ``bandwidth`` workload profile: host<->GPU and GPU<->GPU copies.

Shipped to the cluster in a ConfigMap and run with the PyTorch image's ``python``; it needs only
PyTorch (and uses nvidia-smi when the NVIDIA runtime put it in the container). For every
visible GPU it times, with CUDA events on the copying stream:

  h2d   pinned host buffer -> GPU           d2h   GPU -> pinned host buffer
  d2d   GPU -> the same GPU                 p2p   GPU -> every other GPU (when several)

each as ``--samples`` samples of ``--copies`` back-to-back copies of a ``--buffer-mib`` buffer
(``--p2p-copies`` for GPU->GPU, as there are n(n-1) pairs), after ``--warmup`` copies, and
reports the median sample (and min/max) in GB/s = 1e9 bytes/s.
The defaults follow Azure's node health checks, which run nvbandwidth's copy-engine tests with
512 MiB buffers, 16 copies per sample, 10 samples, median. While a host->GPU copy runs it asks
nvidia-smi for the PCIe link generation and width, because an idle GPU may lower them; and it
records ``nvidia-smi nvlink --status``. It judges nothing: the profile's parser compares the
figures with the gates of the node's VM size.

Output (parsed by gpu_conformance.workloads.bandwidth):
  bandwidth-probe: torch <v>, CUDA <v>, <n> GPU(s), ...        header
  bandwidth-probe: gpu <i>: <name> (UUID: <uuid>, PCI: <bus id>)  one per visible GPU
  bandwidth: kind=h2d src=host dst=0 gbps=... min_gbps=... max_gbps=... bytes=... copies=...
             samples=... [peer_access=0|1]                        one per measurement
  pcie: gpu=<i> gen=5 gen_max=5 width=16 width_max=16 load=h2d    or ``pcie: gpu=<i> unavailable
                                                                  reason=...``
  nvlink: gpu=<i> active=18 inactive=0                            or ``nvlink: unavailable ...``
  bandwidth-probe: DONE: <n> measurements on <g> GPU(s) in <s> s  last line on success (exit 0)
  bandwidth-probe: FAILED: <reason>                               last line on failure
Exit status: 0 done; 1 a copy failed; 2 no usable GPU; 3 no PyTorch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PREFIX = "bandwidth-probe:"
EXIT_FAILED = 1
EXIT_NO_GPU = 2
EXIT_NO_TORCH = 3
MIB = 1024 * 1024
PCIE_QUERY = ("uuid,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,"
              "pcie.link.width.max")
SMI_TIMEOUT = 60


def say(text: str) -> None:
    print(text, flush=True)


def fail(reason: str, code: int) -> int:
    say(f"{PREFIX} FAILED: {reason}")
    return code


# --- pure helpers (unit-tested without torch) ----------------------------------------------

def gbps(nbytes: int, seconds: float) -> float:
    """GB/s with GB = 1e9 bytes, as nvbandwidth and nccl-tests count."""
    return nbytes / seconds / 1e9 if seconds > 0 else 0.0


def measurement_line(kind: str, src: str, dst: str, rates: Sequence[float], nbytes: int,
                     copies: int, peer_access: bool | None = None) -> str:
    """The machine-readable line for one measurement (median, min and max of the samples)."""
    line = (f"bandwidth: kind={kind} src={src} dst={dst} gbps={statistics.median(rates):.2f} "
            f"min_gbps={min(rates):.2f} max_gbps={max(rates):.2f} bytes={nbytes} "
            f"copies={copies} samples={len(rates)}")
    if peer_access is not None:
        line += f" peer_access={int(peer_access)}"
    return line


def pcie_line(gpu: int, link: tuple[int | None, int | None, int | None, int | None] | None,
              load: str = "h2d", reason: str = "") -> str:
    if link is None:
        return f"pcie: gpu={gpu} unavailable reason={reason or 'unknown'}"
    gen, gen_max, width, width_max = ("?" if v is None else str(v) for v in link)
    return f"pcie: gpu={gpu} gen={gen} gen_max={gen_max} width={width} width_max={width_max} " \
           f"load={load}"


def nvlink_line(gpu: int, active: int, inactive: int | None) -> str:
    return f"nvlink: gpu={gpu} active={active} inactive={'all' if inactive is None else inactive}"


def normalize_uuid(uuid: str) -> str:
    """``GPU-53cb...`` (nvidia-smi) and ``53cb...`` (torch) compare equal."""
    text = str(uuid).strip().lower()
    return text if text.startswith(("gpu-", "mig-")) else f"gpu-{text}"


def display_uuid(uuid: str) -> str:
    """nvidia-smi's spelling: ``GPU-53cb4b91-...``."""
    text = normalize_uuid(uuid)
    return text[:3].upper() + text[3:]


def _int(text: str) -> int | None:
    match = re.search(r"\d+", text)
    return int(match.group(0)) if match else None


def parse_pcie_csv(text: str) -> dict[str, tuple[int | None, int | None, int | None, int | None]]:
    """``nvidia-smi --query-gpu=<PCIE_QUERY> --format=csv,noheader,nounits`` -> uuid -> link."""
    links = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) == 5 and cells[0].lower().startswith("gpu-"):
            gen, gen_max, width, width_max = (_int(c) for c in cells[1:])
            links[normalize_uuid(cells[0])] = (gen, gen_max, width, width_max)
    return links


_NVLINK_GPU = re.compile(r"^GPU \d+: .*\(UUID: (?P<uuid>[^)\s]+)\)\s*$")
_NVLINK_LINK = re.compile(r"^\s*Link \d+: (?P<state>.*)$")


def parse_nvlink_status(text: str) -> dict[str, tuple[int, int | None]]:
    """``nvidia-smi nvlink --status`` -> uuid -> (active links, inactive links or None for
    "all links are inactive")."""
    found: dict[str, tuple[int, int | None]] = {}
    uuid = None
    for line in text.splitlines():
        header = _NVLINK_GPU.match(line)
        if header:
            uuid = normalize_uuid(header.group("uuid"))
            found[uuid] = (0, 0)
            continue
        if uuid is None:
            continue
        active, inactive = found[uuid]
        if "all links are inactive" in line:
            found[uuid] = (active, None)
            continue
        link = _NVLINK_LINK.match(line)
        if link and inactive is not None:
            if "inactive" in link.group("state"):
                found[uuid] = (active, inactive + 1)
            else:
                found[uuid] = (active + 1, inactive)
    return found


def parse_cpulist(text: str) -> set[int]:
    """``0-23,48-71`` (sysfs local_cpulist) -> the CPU numbers; empty on garbage."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        if not first.strip().isdigit() or (last and not last.strip().isdigit()):
            return set()
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def pci_bus_id(props: Any) -> str | None:
    """``0000:83:00.0`` from torch's device properties, when this torch reports them."""
    domain, bus, device = (getattr(props, f"pci_{n}_id", None) for n in ("domain", "bus", "device"))
    if not all(isinstance(v, int) for v in (domain, bus, device)):
        return None
    return f"{domain:04x}:{bus:02x}:{device:02x}.0"


# --- measuring ----------------------------------------------------------------------------

@contextmanager
def near_gpu(bus_id: str | None) -> Iterator[str]:
    """Run the block on the CPUs local to the GPU (so pinned buffers land on its NUMA node, as
    nvbandwidth does); yields a note saying where. Best effort: restores the old affinity."""
    if not bus_id or not hasattr(os, "sched_setaffinity"):
        yield "CPU affinity unchanged"
        return
    try:
        with open(f"/sys/bus/pci/devices/{bus_id}/local_cpulist", encoding="ascii") as handle:
            local = parse_cpulist(handle.read())
    except OSError:
        local = set()
    before = os.sched_getaffinity(0)
    wanted = local & before
    if not wanted or wanted == before:
        yield "CPU affinity unchanged"
        return
    os.sched_setaffinity(0, wanted)
    try:
        yield f"host buffer allocated on the GPU's local CPUs ({len(wanted)} of {len(before)})"
    finally:
        os.sched_setaffinity(0, before)


def timed_copies(torch: Any, device: int, copy: Callable[[], Any], copies: int, samples: int,
                 warmup: int, nbytes: int) -> list[float]:
    """GB/s of each sample of ``copies`` copies, timed with CUDA events on ``device``'s stream."""
    rates = []
    with torch.cuda.device(device):
        for _ in range(warmup):
            copy()
        torch.cuda.synchronize(device)
        for _ in range(samples):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(copies):
                copy()
            end.record()
            end.synchronize()
            rates.append(gbps(nbytes * copies, float(start.elapsed_time(end)) / 1000.0))
    return rates


def sample_pcie_under_load(torch: Any, device: int, uuid: str, host: Any, gpu: Any,
                           seconds: float) -> str:
    """Ask nvidia-smi for the link while host->GPU copies keep it busy."""
    pending: deque[Any] = deque()
    with torch.cuda.device(device):
        def batch() -> None:
            for _ in range(4):
                gpu.copy_(host, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            pending.append(event)

        batch()
        try:
            proc = subprocess.Popen(["nvidia-smi", f"--query-gpu={PCIE_QUERY}",
                                     "--format=csv,noheader,nounits"],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            torch.cuda.synchronize(device)
            return pcie_line(device, None, reason=f"nvidia-smi cannot run ({exc.strerror})")
        deadline = time.monotonic() + seconds
        while proc.poll() is None and time.monotonic() < deadline:
            batch()
            while len(pending) > 2:
                pending.popleft().synchronize()
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0] or ""
        torch.cuda.synchronize(device)
    link = parse_pcie_csv(output).get(normalize_uuid(uuid))
    if link is None:
        first = output.strip().splitlines()[0] if output.strip() else "no output"
        return pcie_line(device, None, reason=f"nvidia-smi did not report this GPU ({first})")
    return pcie_line(device, link)


def nvlink_lines(uuids: Sequence[str]) -> list[str]:
    try:
        done = subprocess.run(["nvidia-smi", "nvlink", "--status"], capture_output=True,
                              text=True, timeout=SMI_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"nvlink: unavailable reason=nvidia-smi nvlink --status failed ({exc})"]
    status = parse_nvlink_status(done.stdout)
    if done.returncode != 0 and not status:
        first = (done.stdout + done.stderr).strip().splitlines()
        return [f"nvlink: unavailable reason=exit status {done.returncode}"
                f" ({first[0] if first else 'no output'})"]
    lines = []
    for index, uuid in enumerate(uuids):
        active, inactive = status.get(normalize_uuid(uuid), (0, 0))
        lines.append(nvlink_line(index, active, inactive))
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--buffer-mib", type=int, default=512, help="copy size (default 512 MiB)")
    parser.add_argument("--copies", type=int, default=16, help="copies per sample (default 16)")
    parser.add_argument("--samples", type=int, default=10, help="samples, median reported (10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed copies first (default 2)")
    parser.add_argument("--p2p-copies", type=int, default=4,
                        help="copies per GPU->GPU sample (default 4: n(n-1) pairs, and a pair "
                             "without NVLink copies at PCIe speed)")
    parser.add_argument("--no-p2p", action="store_true", help="skip GPU->GPU copies")
    parser.add_argument("--pcie-seconds", type=float, default=15.0,
                        help="longest wait for nvidia-smi while sampling the PCIe link (15)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError as exc:
        return fail(f"PyTorch is not installed in this image ({exc})", EXIT_NO_TORCH)
    cuda_version = getattr(torch.version, "cuda", None)
    if not cuda_version:
        return fail(f"this PyTorch build ({torch.__version__}) has no CUDA support", EXIT_NO_GPU)
    try:
        count = int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except RuntimeError as exc:
        return fail(f"CUDA initialisation failed: {exc}", EXIT_NO_GPU)
    if count == 0:
        return fail("no usable CUDA GPU: torch.cuda.is_available() is False", EXIT_NO_GPU)
    nbytes = args.buffer_mib * MIB
    say(f"{PREFIX} torch {torch.__version__}, CUDA {cuda_version}, {count} GPU(s), "
        f"{args.buffer_mib} MiB buffers, {args.copies} copies x {args.samples} samples (median), "
        f"pinned host memory, GB/s = 1e9 bytes/s, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}")
    uuids, buses = [], []
    for index in range(count):
        props = torch.cuda.get_device_properties(index)
        uuid = normalize_uuid(str(getattr(props, "uuid", "")) or f"unknown-{index}")
        uuids.append(uuid)
        buses.append(pci_bus_id(props))
        pci = f", PCI: {buses[-1]}" if buses[-1] else ""
        say(f"{PREFIX} gpu {index}: {props.name} (UUID: {display_uuid(uuid)}{pci})")
    for line in nvlink_lines(uuids):
        say(line)
    measurements = 0
    device_buffers: list[tuple[Any, Any]] = []
    # kept until the end: PyTorch's pinned-memory cache would hand GPU 1 the block allocated
    # near GPU 0, defeating the NUMA placement
    host_buffers: list[Any] = []
    try:
        for index in range(count):
            src = torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{index}")
            dst = torch.empty(nbytes, dtype=torch.uint8, device=f"cuda:{index}")
            device_buffers.append((src, dst))
            with near_gpu(buses[index]) as where:
                host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
            host_buffers.append(host)
            say(f"{PREFIX} gpu {index}: {where}")
            for kind, copy, source, target in (
                    ("h2d", lambda s=src, h=host: s.copy_(h, non_blocking=True), "host", index),
                    ("d2h", lambda s=src, h=host: h.copy_(s, non_blocking=True), index, "host"),
                    ("d2d", lambda s=src, d=dst: d.copy_(s, non_blocking=True), index, index)):
                rates = timed_copies(torch, index, copy, args.copies, args.samples, args.warmup,
                                     nbytes)
                say(measurement_line(kind, str(source), str(target), rates, nbytes, args.copies))
                measurements += 1
            say(sample_pcie_under_load(torch, index, uuids[index], host, src, args.pcie_seconds))
        if count > 1 and not args.no_p2p:
            for source in range(count):
                for target in range(count):
                    if source == target:
                        continue
                    peer = bool(torch.cuda.can_device_access_peer(source, target))
                    src_buf, dst_buf = device_buffers[source][0], device_buffers[target][1]

                    def peer_copy(d: Any = dst_buf, s: Any = src_buf) -> Any:
                        return d.copy_(s, non_blocking=True)

                    rates = timed_copies(torch, source, peer_copy, args.p2p_copies,
                                         args.samples, args.warmup, nbytes)
                    say(measurement_line("p2p", str(source), str(target), rates, nbytes,
                                         args.p2p_copies, peer_access=peer))
                    measurements += 1
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        return fail(f"a copy failed after {measurements} measurement(s): "
                    f"{lines[0] if lines else repr(exc)}", EXIT_FAILED)
    say(f"{PREFIX} DONE: {measurements} measurements on {count} GPU(s) in "
        f"{time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
