#!/usr/bin/env bash
# The conformance suites themselves (pytest --backend attach) against the real GPU node that
# scripts/real_node_gpu_host.sh brought up, as a platform team would run them, plus the
# negative runs issue 9 asks for. Called by real_node_gpu_host.sh (SUITES=1) while its control
# plane and node are up; needs the Python wheels of the suites' dependencies in .whl/ (built
# here with scripts/pack_real_node.py --wheels). Everything lands in $OUT/suites.tar.gz:
#   pass/      the full run: plugin rollout, capacity, Jobs (nvidia-smi, cuda-vectoradd,
#              gpu-health) and device lines on the real node; junit.xml and reports/
#   t4/        the device check told to expect 'Tesla T4' on the H200: must fail naming it
#   more-gpus/ a Job asking one GPU more than the node has (2 on the 1-GPU H200 host):
#              Unschedulable within the grace
#   seed/      the seed DaemonSet on the node tainted sku=gpu:NoSchedule: rollout and capacity
#              fail naming the node
#   node.yaml, plugin.log, kubelet-excerpt.log, results.txt (exit codes and durations)
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GPUC_ROOT=${GPUC_ROOT:-/tmp/gpuc}
CP=${CP:-$GPUC_ROOT/control-plane}
BIN=${BIN:-$GPUC_ROOT/bin}
OUT=${OUT:-$GPUC_ROOT/out}
PY=${PYTHON:-python3}
NODE_NAME=${NODE_NAME:-127.0.0.1}
KC=$CP/admin.kubeconfig
WORK=$GPUC_ROOT/suites
KUBECTL=("$BIN/kubectl" "--kubeconfig=$KC")
rm -rf "$WORK" && mkdir -p "$WORK"
RESULTS=$WORK/results.txt

if [ "${SKIP_WHEELS:-0}" = 1 ]; then  # a python that has the dependencies already
    export PYTHONPATH="$REPO"
else
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$GPUC_ROOT/site" \
        "$REPO"/.whl/*.whl >"$WORK/pip.log" 2>&1 || echo "wheels: install failed (see pip.log)" >>"$RESULTS"
    export PYTHONPATH="$GPUC_ROOT/site:$REPO"
fi
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

# suite NAME EXPECTED_EXIT LIMIT_S ARGS...: one pytest run of the suites, bounded
suite() {
    local name=$1 expected=$2 limit=$3; shift 3
    mkdir -p "$WORK/$name"
    local started=$SECONDS
    (cd "$WORK/$name" && timeout --kill-after=10 "$limit" "$PY" -m pytest -c "$REPO/pytest.ini" \
        --rootdir="$REPO" -p no:cacheprovider --backend attach --kubeconfig="$KC" \
        --junitxml="$WORK/$name/junit.xml" --gpu-report-dir="$WORK/$name/reports" -v -rA \
        "$@" "$REPO/suites" >"$WORK/$name/output.txt" 2>&1)
    local rc=$?
    echo "$name: exit $rc (expected $expected) in $(( SECONDS - started ))s: $*" | tee -a "$RESULTS"
}

"${KUBECTL[@]}" apply -f "$REPO/manifests/current/nvidia-device-plugin.yaml" >>"$WORK/kubectl.log" 2>&1
"${KUBECTL[@]}" -n gpu-resources rollout status ds/nvidia-device-plugin-daemonset --timeout=180s \
    >>"$WORK/kubectl.log" 2>&1
# the cluster's own plugin now (applied outside the suites: they use it and leave it)
suite pass 0 300 --workload nvidia-smi,cuda-vectoradd,gpu-health
"${KUBECTL[@]}" get node "$NODE_NAME" -o yaml >"$WORK/node.yaml" 2>&1
"${KUBECTL[@]}" -n gpu-resources logs ds/nvidia-device-plugin-daemonset >"$WORK/plugin.log" 2>&1
suite t4 1 180 --workload nvidia-smi -k "workload or device" --expect-gpu "Tesla T4"
GPUS=$("${KUBECTL[@]}" get node "$NODE_NAME" -o 'jsonpath={.status.capacity.nvidia\.com/gpu}' 2>/dev/null)
suite more-gpus 1 180 --workload nvidia-smi -k workload --gpus-per-job $(( ${GPUS:-1} + 1 )) \
    --gpu-timeout unschedulable-grace=15
"${KUBECTL[@]}" -n gpu-resources delete ds nvidia-device-plugin-daemonset --wait=true >>"$WORK/kubectl.log" 2>&1
"${KUBECTL[@]}" delete namespace gpu-resources --wait=true >>"$WORK/kubectl.log" 2>&1
"${KUBECTL[@]}" taint node "$NODE_NAME" sku=gpu:NoSchedule >>"$WORK/kubectl.log" 2>&1
suite seed 1 180 --plugin install --plugin-manifest seed -k "rollout or capacity" \
    --gpu-timeout gpu-capacity=20 --gpu-timeout gpu-settle=5 --gpu-timeout plugin-rollout=90
"${KUBECTL[@]}" taint node "$NODE_NAME" sku=gpu:NoSchedule- >>"$WORK/kubectl.log" 2>&1
grep -h -E "device plugin|Registered|nvidia.com/gpu" "$GPUC_ROOT"/node/logs/kubelet*.log 2>/dev/null \
    | tail -200 >"$WORK/kubelet-excerpt.log"
tar -czf "$OUT/suites.tar.gz" -C "$GPUC_ROOT" suites
cat "$RESULTS"
