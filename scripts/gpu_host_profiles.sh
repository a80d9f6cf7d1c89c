#!/usr/bin/env bash
# Run the gpu-health, bandwidth and nccl-allreduce profiles directly on a GPU host, exactly as
# their pods run them, then judge the outputs with the project's own parsers and gates.
#
#   OUT=/path/to/out [VM_SIZE=Standard_ND96isr_H200_v5] scripts/gpu_host_profiles.sh
#
# Run from the repository root, as root, on a host with NVIDIA GPUs, nvidia-smi and python3
# with torch (CUDA) and NCCL. Nothing is downloaded. Writes to $OUT (default ./gpu-host-out):
#   gpu-health.txt             nvidia-smi -q -x, then the exit-status line (the pod's command)
#   bandwidth.txt              python3 gpu_conformance/data/bandwidth_probe.py
#   nccl-allreduce.txt         python3 gpu_conformance/data/nccl_allreduce.py on every GPU
#   nccl-allreduce-2gpus.txt   the same on GPUs 0 and 1 (only when 4 or more GPUs are visible)
#   summary.txt                host facts, timings and exit codes, then the verdicts
#   verdicts.json              the verdicts as JSON (when the judge could run)
# The judge needs only the standard library and this repository; if it cannot import the
# package it says so and the raw outputs still come back. Bounded: every step has a timeout and
# a step that could end past DEADLINE_S (default 450 s) is skipped, so the run ends within 8 min.

set -u

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
OUT=${OUT:-$REPO/gpu-host-out}
VM_SIZE=${VM_SIZE:-Standard_ND96isr_H200_v5}
PY=${PYTHON:-python3}
DEADLINE_S=${DEADLINE_S:-450}
mkdir -p "$OUT" || exit 2

# NVLink multicast stays off on these hosts, in every process started from here
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export PATH="/usr/local/nvidia/bin:/usr/local/cuda/bin:$PATH"
export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"

# the gpu-health profile's command, verbatim (gpu_conformance/workloads/gpu_health.py SHELL)
HEALTH_SHELL='nvidia-smi -q -x; rc=$?; echo "gpu-health: nvidia-smi -q -x exit status $rc"; exit $rc'

SUMMARY="$OUT/summary.txt"
STARTED=$(date +%s)
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
elapsed() { echo $(( $(date +%s) - STARTED )); }

# step NAME TIMEOUT_S CMD...: run CMD with its output in $OUT/NAME.txt, unless it could end
# past the deadline; record the time and exit status
step() {
    local name=$1 limit=$2
    shift 2
    if (( $(elapsed) + limit > DEADLINE_S )); then
        say "step $name: SKIPPED (elapsed $(elapsed) s + its ${limit} s limit > ${DEADLINE_S} s)"
        return 0
    fi
    local t0 t1 rc
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.txt" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    say "step $name: exit $rc in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s" \
        "(limit ${limit} s)$( [ "$rc" = 124 ] && echo ' TIMED OUT')"
}

say "gpu_host_profiles: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), repo $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), VM size judged: $VM_SIZE"
say "kernel: $(uname -r); driver: $(cat /proc/driver/nvidia/version 2>/dev/null | head -1)"
say "python: $($PY --version 2>&1); torch: $($PY -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "NCCL", ".".join(map(str, torch.cuda.nccl.version())))' 2>&1 | tail -1)"
say "env: NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST=$TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS=$NVSHMEM_DISABLE_NVLS"
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
say "nvidia-smi -L ($GPUS GPU(s)):"
nvidia-smi -L 2>&1 | tee -a "$SUMMARY"
say "PCIe link at idle (before any load):"
nvidia-smi --query-gpu=index,pci.bus_id,pstate,clocks_event_reasons.active,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv 2>&1 | tee -a "$SUMMARY"
say "nvidia-smi topo -m:"
timeout 30 nvidia-smi topo -m 2>&1 | tee -a "$SUMMARY"

step gpu-health 60 sh -c "$HEALTH_SHELL"
step bandwidth 200 "$PY" gpu_conformance/data/bandwidth_probe.py
if (( GPUS >= 8 )); then
    NCCL_MAX=16G  # the aznhc gate's message size on the 8-GPU sizes
else
    NCCL_MAX=4G   # fewer GPUs than any 8-GPU gate: the figure is not gated, keep it short
fi
step nccl-allreduce 170 "$PY" gpu_conformance/data/nccl_allreduce.py --max-bytes "$NCCL_MAX" --timeout 150
if (( GPUS >= 4 )); then
    step nccl-allreduce-2gpus 110 env CUDA_VISIBLE_DEVICES=0,1 \
        "$PY" gpu_conformance/data/nccl_allreduce.py --max-bytes 4G --timeout 90
fi
say "PCIe link after the runs:"
nvidia-smi --query-gpu=index,pstate,clocks_event_reasons.active,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv 2>&1 | tee -a "$SUMMARY"

say ""
say "=== verdicts against $VM_SIZE (parsers and gates of gpu_conformance; standard library only) ==="
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" timeout 60 "$PY" - "$OUT" "$VM_SIZE" <<'PYEOF' 2>&1 | tee -a "$SUMMARY"
import json
import sys
from pathlib import Path

out, vm_size = Path(sys.argv[1]), sys.argv[2]
try:
    from gpu_conformance.workloads import bandwidth, gpu_health, nccl_allreduce
except Exception as exc:  # the package needs something this host lacks
    print(f"judging SKIPPED: cannot import gpu_conformance ({type(exc).__name__}: {exc})")
    sys.exit(0)

verdicts = {}
for name, module in (("gpu-health", gpu_health), ("bandwidth", bandwidth),
                     ("nccl-allreduce", nccl_allreduce), ("nccl-allreduce-2gpus", nccl_allreduce)):
    path = out / f"{name}.txt"
    if not path.is_file():
        print(f"\n--- {name}: not run")
        continue
    log = path.read_text(errors="replace")
    report = module.parse(log)
    judged = module.judge_log(log, vm_size)
    print(f"\n--- {name}: parse success={report.success}, devices={report.devices}, "
          f"{'PASSED' if judged.passed else 'FAILED'} against {vm_size}")
    for key, value in report.properties.items():
        print(f"  property {key} = {value}")
    messages = {r.message for r in judged.results}
    for problem in judged.problems:
        if problem not in messages:  # the log's own problems; failed results follow below
            print(f"  PROBLEM {problem}")
    sources: list[str] = []
    for result in judged.results:
        if result.source and result.source not in sources:
            sources.append(result.source)
        mark = f" [{sources.index(result.source) + 1}]" if result.source else ""
        print(f"  {result.short()}{mark}")
    for number, source in enumerate(sources, 1):
        print(f"  source [{number}]: {source}")
    verdicts[name] = {"success": report.success, "passed": judged.passed,
                      "devices": report.devices, "properties": report.properties,
                      "problems": judged.problems,
                      "results": [{"key": r.key, "subject": r.subject, "status": r.status.value,
                                   "measured": r.measured, "limit": r.limit, "source": r.source,
                                   "detail": r.detail} for r in judged.results]}
(out / "verdicts.json").write_text(json.dumps({"vm_size": vm_size, "profiles": verdicts},
                                              indent=2))
print(f"\nverdicts.json written; overall {'PASSED' if all(v['passed'] for v in verdicts.values()) else 'FAILED'}")
PYEOF
say ""
say "gpu_host_profiles: done in $(elapsed) s; files in $OUT:"
ls -l "$OUT" | tee -a "$SUMMARY"
