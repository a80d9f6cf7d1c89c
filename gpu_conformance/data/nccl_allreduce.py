"""NCCL all_reduce bus bandwidth for the ``nccl-allreduce`` workload profile.

Shipped in a ConfigMap and run with the PyTorch image's ``python`` in a pod that holds every
GPU of its node. One process per GPU (torch.multiprocessing, or the environment torchrun sets:
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), torch.distributed with the NCCL
backend, float32 SUM all_reduce in place over message sizes doubling from ``--min-bytes`` to
``--max-bytes`` (default 16 GiB, capped at a quarter of the smallest GPU's memory), each size
checked once for the right result, then ``--warmup`` untimed and ``--iters`` timed calls between
CUDA events. The time per call is averaged over the ranks, as nccl-tests does, and:

  algbw = bytes / time / 1e9                       (GB/s)
  busbw = algbw * 2 * (n - 1) / n                  (nccl-tests' all_reduce bus bandwidth)

NVLink multicast (NVLS) is switched off before NCCL starts: NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1.

Output (parsed by gpu_conformance.workloads.nccl_allreduce), rank 0 unless said:
  nccl-allreduce: torch <v>, NCCL <v>, <n> rank(s), ...           header
  nccl-rank: rank=<r> gpu=<i> uuid=<uuid> name=<device name>     one per rank (from that rank)
  allreduce: bytes=... count=... time_us=... algbw_gbps=... busbw_gbps=... ranks=<n>
  nccl-allreduce: DONE: largest message <b> bytes: busbw <x> GB/s with <n> ranks in <s> s
  nccl-allreduce: NOT MEASURED: all_reduce needs at least 2 GPUs; <n> visible   (exit 0)
  nccl-allreduce: FAILED: <reason>                                             (exit 1)
Exit status: 0 measured (or fewer than 2 GPUs); 1 failed; 2 no usable GPU; 3 no PyTorch.
"""

from __future__ import annotations

import os

# before anything can load NCCL: multicast objects (NVLS) are off on the hosts this runs on
NCCL_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
            "NVSHMEM_DISABLE_NVLS": "1"}
os.environ.update(NCCL_ENV)

import argparse  # noqa: E402
import importlib  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

PREFIX = "nccl-allreduce:"
EXIT_FAILED = 1
EXIT_NO_GPU = 2
EXIT_NO_TORCH = 3
GIB = 1024**3
MIB = 1024**2
DTYPE_BYTES = 4  # float32


def say(text: str) -> None:
    print(text, flush=True)


def fail(reason: str, code: int = EXIT_FAILED) -> int:
    say(f"{PREFIX} FAILED: {reason}")
    return code


# --- pure helpers (unit-tested without torch) ----------------------------------------------

def bus_factor(ranks: int) -> float:
    """nccl-tests' all_reduce bus bandwidth factor 2(n-1)/n."""
    return 2.0 * (ranks - 1) / ranks if ranks > 0 else 0.0


def bandwidths(nbytes: int, seconds: float, ranks: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s (1e9 bytes/s) for one all_reduce of ``nbytes``."""
    algbw = nbytes / seconds / 1e9 if seconds > 0 else 0.0
    return algbw, algbw * bus_factor(ranks)


def sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """Message sizes doubling from ``min_bytes`` up to ``max_bytes`` (always included), each a
    whole number of float32 elements."""
    top = max(DTYPE_BYTES, max_bytes - max_bytes % DTYPE_BYTES)
    size = max(DTYPE_BYTES, min(min_bytes, top) - min(min_bytes, top) % DTYPE_BYTES)
    found = []
    while size < top:
        found.append(size)
        size *= 2
    return [*found, top]


def memory_cap(total_memory_bytes: int) -> int:
    """The largest power-of-two message that fits a quarter of the GPU's memory (the buffer
    plus NCCL's own)."""
    cap = 1 << max(0, (max(1, total_memory_bytes // 4)).bit_length() - 1)
    return max(MIB, cap)


def result_line(nbytes: int, seconds: float, ranks: int) -> str:
    algbw, busbw = bandwidths(nbytes, seconds, ranks)
    return (f"allreduce: bytes={nbytes} count={nbytes // DTYPE_BYTES} time_us={seconds * 1e6:.1f} "
            f"algbw_gbps={algbw:.2f} busbw_gbps={busbw:.2f} ranks={ranks}")


def done_line(nbytes: int, seconds: float, ranks: int, elapsed: float) -> str:
    return (f"{PREFIX} DONE: largest message {nbytes} bytes: busbw "
            f"{bandwidths(nbytes, seconds, ranks)[1]:.2f} GB/s with {ranks} ranks in "
            f"{elapsed:.1f} s")


def not_measured_line(visible: int) -> str:
    return f"{PREFIX} NOT MEASURED: all_reduce needs at least 2 GPUs; {visible} visible"


def parse_bytes(text: str) -> int:
    """``16G`` / ``512M`` / ``1048576`` -> bytes (binary units, as nccl-tests reads -b/-e)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    units = {"K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}
    if value and value[-1] in units:
        return int(float(value[:-1]) * units[value[-1]])
    return int(value)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- one rank -----------------------------------------------------------------------------

def worker(local_rank: int, world: int, rank_offset: int, port: int, config: dict[str, Any]
           ) -> None:
    """One rank: every size, rank 0 prints. Raises on any failure (the parent reports it)."""
    torch: Any = importlib.import_module("torch")
    dist: Any = importlib.import_module("torch.distributed")
    rank = rank_offset + local_rank
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)
    props = torch.cuda.get_device_properties(local_rank)
    uuid = str(getattr(props, "uuid", "") or "unknown")
    uuid = uuid if uuid.upper().startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
    say(f"nccl-rank: rank={rank} gpu={local_rank} uuid={uuid} name={props.name}")
    kwargs: dict[str, Any] = {"backend": "nccl", "rank": rank, "world_size": world,
                              "timeout": timedelta(seconds=config["timeout"])}
    if config.get("init_method"):
        kwargs["init_method"] = config["init_method"]
    else:
        kwargs["init_method"] = f"tcp://127.0.0.1:{port}"
    try:
        dist.init_process_group(**kwargs, device_id=device)
    except TypeError:  # torch < 2.3 has no device_id
        dist.init_process_group(**kwargs)
    try:
        buffer = torch.empty(config["max_bytes"] // DTYPE_BYTES, dtype=torch.float32,
                             device=device)
        last: tuple[int, float] | None = None
        for nbytes in config["sizes"]:
            view = buffer[: nbytes // DTYPE_BYTES]
            view.fill_(1.0)
            dist.all_reduce(view)
            torch.cuda.synchronize(device)
            for part in (view[:1024], view[-1024:]):
                low, high = float(part.min().item()), float(part.max().item())
                if low != world or high != world:
                    raise RuntimeError(f"all_reduce of {nbytes} bytes gave values {low}..{high} "
                                       f"on rank {rank}, expected {world}")
            for _ in range(config["warmup"]):
                dist.all_reduce(view)
            torch.cuda.synchronize(device)
            dist.barrier()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(config["iters"]):
                dist.all_reduce(view)
            end.record()
            end.synchronize()
            mean = torch.tensor([start.elapsed_time(end) / 1000.0 / config["iters"]],
                                dtype=torch.float64, device=device)
            dist.all_reduce(mean)
            seconds = float(mean.item()) / world
            if rank == 0:
                say(result_line(nbytes, seconds, world))
            last = (nbytes, seconds)
        if rank == 0 and last is not None:
            say(done_line(last[0], last[1], world, time.time() - config["started"]))
    finally:
        dist.destroy_process_group()


def _spawned(local_rank: int, world: int, port: int, config: dict[str, Any]) -> None:
    worker(local_rank, world, 0, port, config)


# --- the parent ---------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--max-bytes", default="16G",
                        help="largest message (default 16G, the aznhc gate's size on 8-GPU "
                             "sizes; capped at a quarter of GPU memory)")
    parser.add_argument("--min-bytes", default="1M", help="smallest message (default 1M)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per size (5)")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per size (20)")
    parser.add_argument("--nprocs", type=int, default=0,
                        help="ranks (default: every visible GPU)")
    parser.add_argument("--timeout", type=float, default=480.0,
                        help="seconds before the run is abandoned (default 480)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started, started_wall = time.monotonic(), time.time()
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError as exc:
        return fail(f"PyTorch is not installed in this image ({exc})", EXIT_NO_TORCH)
    cuda_version = getattr(torch.version, "cuda", None)
    if not cuda_version:
        return fail(f"this PyTorch build ({torch.__version__}) has no CUDA support", EXIT_NO_GPU)
    try:
        visible = int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except RuntimeError as exc:
        return fail(f"CUDA initialisation failed: {exc}", EXIT_NO_GPU)
    launched = all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    world = int(os.environ["WORLD_SIZE"]) if launched else (args.nprocs or visible)
    if visible == 0:
        return fail("no usable CUDA GPU: torch.cuda.is_available() is False", EXIT_NO_GPU)
    try:
        max_bytes = parse_bytes(args.max_bytes)
        min_bytes = parse_bytes(args.min_bytes)
    except ValueError:
        return fail(f"bad --max-bytes/--min-bytes: {args.max_bytes!r}, {args.min_bytes!r}")
    smallest = min(int(torch.cuda.get_device_properties(i).total_memory) for i in range(visible))
    capped = min(max_bytes, memory_cap(smallest))
    nccl = torch.cuda.nccl.version() if hasattr(torch.cuda, "nccl") else "unknown"
    nccl = ".".join(str(p) for p in nccl) if isinstance(nccl, tuple) else str(nccl)
    if not launched or os.environ.get("RANK") == "0":
        say(f"{PREFIX} torch {torch.__version__}, NCCL {nccl}, {world} rank(s) of {visible} "
            f"visible GPU(s), float32 sum in place, sizes {min_bytes}..{capped} bytes doubling"
            f"{' (capped from ' + str(max_bytes) + ' by GPU memory)' if capped < max_bytes else ''}"
            f", warmup {args.warmup}, iters {args.iters}, "
            + " ".join(f"{k}={os.environ.get(k)}" for k in NCCL_ENV))
    if not launched and world > visible:
        return fail(f"asked for {world} ranks but only {visible} GPU(s) are visible")
    if world < 2:
        say(not_measured_line(visible if not launched else world))
        return 0
    config = {"sizes": sizes(min_bytes, capped), "max_bytes": capped, "warmup": args.warmup,
              "iters": args.iters, "timeout": args.timeout, "started": started_wall,
              "init_method": "env://" if launched else ""}
    if launched:
        try:
            worker(int(os.environ["LOCAL_RANK"]), world, int(os.environ["RANK"])
                   - int(os.environ["LOCAL_RANK"]), 0, config)
        except Exception as exc:
            return fail(f"rank {os.environ['RANK']}: {_last_line(exc)}")
        return 0
    mp: Any = importlib.import_module("torch.multiprocessing")
    context = mp.start_processes(_spawned, args=(world, free_port(), config), nprocs=world,
                                 join=False, start_method="spawn")
    deadline = started + args.timeout
    try:
        while not context.join(timeout=5):
            if time.monotonic() > deadline:
                for process in context.processes:
                    if process.is_alive():
                        process.kill()
                return fail(f"timed out after {args.timeout:.0f} s (a rank hung in NCCL?)")
    except Exception as exc:  # ProcessRaisedException / ProcessExitedException
        for process in context.processes:
            if process.is_alive():
                process.kill()
        return fail(_last_line(exc))
    return 0


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else repr(exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
