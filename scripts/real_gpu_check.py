"""Judge real GPU output with the suites' own parsers and device check, on a GPU host.

    python3 scripts/real_gpu_check.py --vm-size Standard_ND96isr_H200_v5 [--out DIR]

Runs `nvidia-smi -L`, `nvidia-smi` and the torch probe (gpu_conformance/data/gpu_probe.py)
directly (no Kubernetes), then parses each log with its workload profile and applies
checks.device_problems with the GPU expected for the VM size, exactly as the device suite
does for a pod's log. Prints one JSON object; exits 0 only if every check passes. Needs only
the standard library (plus torch for the probe): it runs from a plain checkout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpu_conformance import gpus  # noqa: E402
from gpu_conformance.checks import device  # noqa: E402
from gpu_conformance.workloads import get_profile  # noqa: E402

RUNS = {
    "nvidia-smi": [["nvidia-smi", "-L"], ["nvidia-smi"]],
    "torch": [[sys.executable, str(REPO / "gpu_conformance" / "data" / "gpu_probe.py")]],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--vm-size", default=None, help="the VM size whose GPU is expected")
    parser.add_argument("--expect-gpu", default=None, help="or a regex, as --expect-gpu")
    parser.add_argument("--out", type=Path, default=None, help="write each raw log here")
    args = parser.parse_args()
    labels = {gpus.INSTANCE_TYPE_LABEL: args.vm_size} if args.vm_size else {}
    expected = gpus.expected_gpu(labels, args.expect_gpu)
    result: dict[str, object] = {"expected": expected.display, "expected_from": expected.source}
    ok = True
    for name, commands in RUNS.items():
        started = time.monotonic()
        log, codes = "", []
        for command in commands:
            try:
                run = subprocess.run(command, capture_output=True, text=True, timeout=300)
            except FileNotFoundError:
                log += f"{command[0]}: command not found\n"
                codes.append(127)
                continue
            log += run.stdout + run.stderr
            codes.append(run.returncode)
        seconds = round(time.monotonic() - started, 2)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.log").write_text(log)
        profile = get_profile(name)
        report = profile.parse(log)
        problems = device.judge(report, expected, profile.min_accuracy,
                                          needs_device=profile.requires_device_line)
        if any(codes):
            problems.append(f"exit codes {codes}")
        ok = ok and not problems
        result[name] = {"seconds": seconds, "devices": report.devices, "success": report.success,
                        "final_accuracy": report.final_accuracy, "properties": report.properties,
                        "problems": problems}
    result["passed"] = ok
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
