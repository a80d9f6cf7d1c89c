"""Benchmark: warm `cluster up` / `cluster down` of the offline cluster, and binary sizes.

    .venv/bin/python benchmarks/cluster_up.py [--rounds 5] [--gpu-nodes 2] [--cold]

--cold also times a build of every program into an empty cache (15-30 min on 2 cores).
Prints one JSON object; the README quotes its figures. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from gpu_conformance import binaries
from gpu_conformance.offline import OfflineCluster, OfflineClusterSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--gpu-nodes", type=int, default=2)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"cpus": os.cpu_count()}
    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["GPU_CONFORMANCE_CACHE"] = cache
            started = time.monotonic()
            binaries.ensure(lambda line: None)
            result["cold_build_s"] = round(time.monotonic() - started, 1)
            del os.environ["GPU_CONFORMANCE_CACHE"]
    paths = binaries.ensure(lambda line: None)
    sizes = {p: round(Path(v).stat().st_size / 2**20, 1) for p, v in sorted(paths.items())}
    result["binary_mib"] = sizes
    result["binary_total_mib"] = round(sum(sizes.values()), 1)
    ups, downs = [], []
    for i in range(args.rounds):
        cluster = OfflineCluster(OfflineClusterSpec(name=f"bench-{os.getpid()}-{i}",
                                                    gpu_nodes=args.gpu_nodes))
        started = time.monotonic()
        cluster.up(log=lambda line: None)
        ups.append(time.monotonic() - started)
        started = time.monotonic()
        cluster.down(log=lambda line: None)
        downs.append(time.monotonic() - started)
    result.update({
        "rounds": args.rounds, "gpu_nodes": args.gpu_nodes,
        "warm_up_s": {"min": round(min(ups), 2), "median": round(statistics.median(ups), 2),
                      "max": round(max(ups), 2)},
        "down_s": {"median": round(statistics.median(downs), 2)},
    })
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
