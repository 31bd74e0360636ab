#!/usr/bin/env bash
# Issue 17 items 3 and 5 in one device call, after a change to the step: graph_check (CUDA graphs = eager, pruned
# weights and their optimizer state 0), the ResNet-20 limit (Trainer graphs and compiled; the dense floors), then
# the Table 2 grid compiled, 8 and 12 runs interleaved. One compile cache folder for the call.
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d /tmp/inductor-XXXX)}
quiet() { grep -v "^USDT\|CUDA warning\|AUTOTUNE\|triton_\|strides:\|dtypes:\|num_choices\|SingleProcess\|Autotune\|^  [a-z_]* [0-9.]* ms" ; }
step() {  # step SECONDS command...
    local limit=$1; shift
    local t0=$SECONDS
    echo "=== $*"
    timeout "$limit" "$@" 2>&1 | quiet
    echo "=== rc ${PIPESTATUS[0]} after $((SECONDS - t0)) s"
}
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv
step "${T_CHECK:-120}" $PY benchmarks/graph_check.py
step "${T_LIMIT:-240}" $PY benchmarks/resnet20_limit.py --out "$OUT" \
    --floors "graph, compiled;graph, compiled, grads set to None"
step "${T_GRID:-180}" $PY benchmarks/grid_throughput.py --compile --parallel 8,12 --epochs 1,2 --out "$OUT"
