#!/usr/bin/env bash
# A real Kubernetes GPU node on a GPU host: control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler as plain processes on 127.0.0.1), containerd + runc +
# CNI bridge, the real kubelet, nvidia-container-runtime in CDI mode with a CDI spec from
# nvidia-ctk, and NVIDIA's device plugin v0.18.0 deployed from manifests/current unchanged.
# Then the evidence: plugin registration, nvidia.com/gpu capacity, one-GPU Jobs of the
# nvidia-smi and cuda-vectoradd profiles (and torch with WITH_TORCH=1) judged by the profiles'
# own parsers, an oversized pod left Unschedulable, allocatable back to 0 without the plugin.
#
#   scripts/real_node_gpu_host.sh receive    one call per part: reassemble the programs packed by
#                                            scripts/pack_real_node.py (carry MANIFEST.json + part)
#   scripts/real_node_gpu_host.sh run        everything above, then tear it all down (KEEP=1 keeps it)
#   scripts/real_node_gpu_host.sh fake       the same with the test plugin and fake GPUs (no GPU
#                                            needed: nvidia-container-runtime + a fake CDI spec)
#   scripts/real_node_gpu_host.sh down       stop and remove whatever is left
#
# Run from the repository root, as root. Needs python3 (standard library only), ldd, and for
# `run`: /dev/nvidia*, the driver under DRIVER_ROOT, nvcc (cuda-vectoradd). Writes results to
# $OUT (evidence.tar.gz, summary.json, run.log); state lives under GPUC_ROOT (default /tmp/gpuc)
# and survives between calls while the machine is warm. Every step is bounded; the whole `run`
# ends within DEADLINE_S (default 540 s).
#
# Settings (environment): GPUC_ROOT, PACK (default .gpu-conformance/real-node-pack), OUT,
# DRIVER_ROOT (default /usr/local/nvidia), NVCC (default /usr/local/cuda/bin/nvcc), WITH_TORCH=1,
# PROFILES ("nvidia-smi cuda-vectoradd", plus torch with WITH_TORCH=1), KEEP=1, DEADLINE_S.

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
GPUC_ROOT=${GPUC_ROOT:-/tmp/gpuc}
PACK=${PACK:-$REPO/.gpu-conformance/real-node-pack}
OUT=${OUT:-$GPUC_ROOT/out}
DRIVER_ROOT=${DRIVER_ROOT:-/usr/local/nvidia}
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
DEADLINE_S=${DEADLINE_S:-540}
PY=${PYTHON:-python3}
BIN=$GPUC_ROOT/bin
CP=$GPUC_ROOT/control-plane
NODE=$GPUC_ROOT/node
CDI=$GPUC_ROOT/cdi
IMAGES=$GPUC_ROOT/images
EVIDENCE=$GPUC_ROOT/evidence
START=$(date +%s)
mkdir -p "$OUT" "$GPUC_ROOT" || exit 2
LOG=$OUT/run.log

# NVLink multicast stays off on these hosts, in every process started from here
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
die() { say "FAILED: $*"; finish 1; }
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }
# step NAME SECONDS COMMAND...: run bounded (never past the deadline), log it, fail on error
step() {
    local name=$1 limit=$2; shift 2
    local remaining; remaining=$(left)
    (( remaining < limit )) && limit=$remaining
    (( limit <= 5 )) && die "$name: no time left before the ${DEADLINE_S}s deadline"
    say "$name (at most ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    (( rc == 124 || rc == 137 )) && die "$name: timed out after ${limit}s"
    (( rc != 0 )) && die "$name: exit status $rc (see run.log)"
    return 0
}

teardown() {
    [ -f "$NODE/node.json" ] && timeout 120 "$PY" -m gpu_conformance.realnode node down --work "$NODE" \
        --programs-dir "$BIN" >>"$LOG" 2>&1
    [ -d "$CP" ] && timeout 60 "$PY" -m gpu_conformance.realnode control-plane down --work "$CP" >>"$LOG" 2>&1
    return 0
}

finish() {
    local rc=$1
    if [ -d "$EVIDENCE" ]; then
        cp -f "$EVIDENCE/summary.json" "$OUT/summary.json" 2>/dev/null
        tar -czf "$OUT/evidence.tar.gz" -C "$GPUC_ROOT" evidence 2>/dev/null
    fi
    if [ "${KEEP:-0}" != 1 ] && [ "${MODE:-}" != receive ]; then
        say "tearing down"
        teardown
        say "left behind: $(pgrep -c -f "^$BIN/" || true) process(es), $(grep -c "$GPUC_ROOT\|/var/lib/kubelet" /proc/self/mountinfo) mount(s)"
    fi
    say "done (exit $rc)"
    exit "$rc"
}

receive() {
    MODE=receive
    [ -f "$PACK/MANIFEST.json" ] || die "no $PACK/MANIFEST.json: carry it with each part"
    mkdir -p "$GPUC_ROOT/parts"
    local part
    for part in "$PACK"/part-*; do
        [ -f "$part" ] || continue
        cp -f "$part" "$GPUC_ROOT/parts/" && say "received $(basename "$part") ($(stat -c %s "$part") bytes)"
    done
    cp -f "$PACK/MANIFEST.json" "$GPUC_ROOT/parts/MANIFEST.json"
    "$PY" - "$GPUC_ROOT/parts" "$BIN" <<'EOF' 2>&1 | tee -a "$LOG"
import hashlib, json, lzma, os, sys, tarfile
from pathlib import Path
parts_dir, bin_dir = Path(sys.argv[1]), Path(sys.argv[2])
manifest = json.loads((parts_dir / "MANIFEST.json").read_text())
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
if bin_dir.is_dir() and all((bin_dir / n).is_file() and digest(bin_dir / n) == f["sha256"]
                            for n, f in manifest["files"].items()):
    print(f"all {len(manifest['files'])} programs already unpacked in {bin_dir}")
    sys.exit(0)
missing = []
for part in manifest["parts"]:
    path = parts_dir / part["name"]
    if not path.is_file() or digest(path) != part["sha256"]:
        missing.append(part["name"])
if missing:
    print(f"waiting for {', '.join(missing)} ({len(manifest['parts']) - len(missing)}/{len(manifest['parts'])} parts here)")
    sys.exit(0)
archive = parts_dir / "real-node-bin.tar.xz"
with open(archive, "wb") as out:
    for part in manifest["parts"]:
        out.write((parts_dir / part["name"]).read_bytes())
assert digest(archive) == manifest["archive_sha256"], "reassembled archive does not match"
staging = bin_dir.with_name(bin_dir.name + ".partial")
os.system(f"rm -rf '{staging}'")
staging.mkdir(parents=True)
with lzma.open(archive) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
    tar.extractall(staging, **({"filter": "tar"} if hasattr(tarfile, "data_filter") else {}))
for name, info in manifest["files"].items():
    assert digest(staging / "bin" / name) == info["sha256"], f"{name} is corrupt"
os.system(f"rm -rf '{bin_dir}'")
(staging / "bin").rename(bin_dir)
staging.rmdir()
archive.unlink()
for part in manifest["parts"]:
    (parts_dir / part["name"]).unlink()
print(f"unpacked {len(manifest['files'])} programs into {bin_dir}: {', '.join(sorted(os.listdir(bin_dir)))}")
EOF
    say "receive done"
    exit 0
}

preflight() {
    [ "$(id -u)" = 0 ] || die "run as root"
    [ -x "$BIN/kubelet" ] && [ -x "$BIN/containerd" ] || die "programs missing in $BIN: run 'receive' with every part first"
    command -v "$PY" >/dev/null || die "python3 missing"
    command -v ldd >/dev/null || die "ldd missing"
    say "host: $(uname -r), $(. /etc/os-release; echo "$PRETTY_NAME"), cgroup $(stat -fc %T /sys/fs/cgroup), $(nproc) cores"
    [ -d /var/lib/kubelet ] && say "note: /var/lib/kubelet exists already"
}

nvidia_setup() {
    [ -e /dev/nvidiactl ] || die "/dev/nvidiactl missing: not a GPU host"
    export LD_LIBRARY_PATH=$DRIVER_ROOT/lib64:$DRIVER_ROOT/lib:${LD_LIBRARY_PATH:-}
    PATH=$DRIVER_ROOT/bin:$PATH
    nvidia-smi -L | tee -a "$LOG" | tee "$OUT/host-nvidia-smi-L.txt" >/dev/null || die "nvidia-smi -L failed on the host"
    GPU_COUNT=$(nvidia-smi -L | grep -c '^GPU ')
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    say "host GPUs: $GPU_COUNT x $GPU_NAME"
    mkdir -p "$CDI"
    step "CDI spec (nvidia-ctk cdi generate)" 120 "$BIN/nvidia-ctk" cdi generate \
        --driver-root "$DRIVER_ROOT" --dev-root / \
        --nvidia-cdi-hook-path "$BIN/nvidia-cdi-hook" \
        --device-name-strategy index --device-name-strategy uuid \
        --output "$CDI/nvidia.yaml"
    cp -f "$CDI/nvidia.yaml" "$OUT/cdi-nvidia.yaml"
    step "CDI devices" 30 "$BIN/nvidia-ctk" cdi list --spec-dir "$CDI"
    local python_arg=()
    [ "${WITH_TORCH:-0}" = 1 ] && python_arg=(--python "$(command -v python3)")
    local nvcc_arg=()
    [ -x "$NVCC" ] && nvcc_arg=(--nvcc "$NVCC") || say "no nvcc at $NVCC: cuda-vectoradd is skipped"
    rm -rf "$IMAGES"
    step "images built on this host" 420 "$PY" -m gpu_conformance.realnode gpu-images --out "$IMAGES" --programs-dir "$BIN" \
        --driver-root "$DRIVER_ROOT" "${nvcc_arg[@]}" "${python_arg[@]}"
    DEFAULT_PROFILES="nvidia-smi"
    [ -x "$NVCC" ] && DEFAULT_PROFILES="$DEFAULT_PROFILES cuda-vectoradd"
    [ "${WITH_TORCH:-0}" = 1 ] && DEFAULT_PROFILES="$DEFAULT_PROFILES torch"
}

plugin_debug() {   # what the device plugin's container sees, when the checks failed
    local dir=$OUT/debug pid
    mkdir -p "$dir"
    for pid in $(pgrep -f '^/usr/bin/nvidia-device-plugin|^nvidia-device-plugin'); do
        {
            echo "== pid $pid"; tr '\0' ' ' </proc/"$pid"/cmdline; echo
            echo "-- environ"; tr '\0' '\n' </proc/"$pid"/environ
            echo "-- mounts"; cat /proc/"$pid"/mounts
            for d in lib64 usr/lib64 lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu dev; do
                echo "-- /$d"; ls -la /proc/"$pid"/root/$d 2>&1 | head -80
            done
        } >"$dir/plugin-$pid.txt" 2>&1
    done
    find "$NODE" -name config.json -path '*io.containerd.runtime.v2.task*' 2>/dev/null | while read -r f; do
        grep -q nvidia-device-plugin "$f" && cp -f "$f" "$dir/plugin-oci-config.json"
    done
    say "plugin debug written to $dir"
}

cluster_and_checks() {   # $1: fake|nvidia
    local mode=$1 node_args=() check_args=()
    step "control plane" 120 "$PY" -m gpu_conformance.realnode control-plane up --work "$CP" --programs-dir "$BIN"
    if [ "$mode" = nvidia ]; then
        local archive
        for archive in "$IMAGES"/*.tar; do node_args+=(--image "$archive"); done
        node_args+=(--gpu-mode nvidia --cdi-dir "$CDI")
        check_args+=(--expect-gpus "$GPU_COUNT" --device-name "$GPU_NAME")
    else
        node_args+=(--gpu-mode fake --fake-gpus 2 --device-name "Tesla T4")
        check_args+=(--expect-gpus 2 --device-name "Tesla T4")
        DEFAULT_PROFILES="tf-mnist nvidia-smi cuda-vectoradd torch"
    fi
    step "real node (containerd, kubelet)" 240 "$PY" -m gpu_conformance.realnode node up --work "$NODE" --control-plane "$CP" \
        --programs-dir "$BIN" --runtime nvidia-cdi "${node_args[@]}"
    local profile
    for profile in ${PROFILES:-$DEFAULT_PROFILES}; do check_args+=(--profile "$profile"); done
    rm -rf "$EVIDENCE"
    say "checks (at most $(left)s)"
    timeout --kill-after=10 "$(( $(left) - 60 ))" "$PY" -m gpu_conformance.realnode check --work "$NODE" \
        --control-plane "$CP" --programs-dir "$BIN" --evidence "$EVIDENCE" "${check_args[@]}" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    (( rc == 0 )) || plugin_debug
    if [ "${SUITES:-0}" = 1 ] && (( rc == 0 )); then
        say "the conformance suites against this node (at most $(( $(left) - 30 ))s)"
        timeout --kill-after=10 "$(( $(left) - 30 ))" env GPUC_ROOT="$GPUC_ROOT" CP="$CP" BIN="$BIN" \
            OUT="$OUT" PYTHON="$PY" "$REPO/scripts/gpu_host_suites.sh" 2>&1 | tee -a "$LOG"
    fi
    (( rc == 0 )) || { say "some checks failed (exit $rc)"; finish 1; }
    say "all checks passed"
    finish 0
}

case "${1:-run}" in
    receive) receive ;;
    run) MODE=run; preflight; teardown; nvidia_setup; cluster_and_checks nvidia ;;
    fake) MODE=fake; preflight; teardown; cluster_and_checks fake ;;
    down) MODE=down; teardown; say "down"; exit 0 ;;
    *) echo "usage: $0 receive|run|fake|down" >&2; exit 2 ;;
esac
