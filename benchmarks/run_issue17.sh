#!/usr/bin/env bash
# Issue 17's GPU measurements in one device call, in order of priority; each part has its own time limit and
# writes its JSON under $OUT (default benchmarks/results), so a part that fails or runs out leaves the others.
#   1. peer_race.py    (its compiled peer compiles into an empty cache folder: the cold first epoch)
#   2. step_overhead.py --profile (>= 15 ABAB rounds, then the kernel tables)
#   3. compile_warm.py on the same folder, in a new process: the warm first epoch
#   4. fork_warning.py (where the CUDAGraph.cpp warnings come from)
# Wheels in wheels/ (rigl-torch) are installed first. Log: $OUT/issue17.log.
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
LOG="$OUT/issue17.log"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
if ls wheels/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site wheels/*.whl \
        && export PYTHONPATH=/tmp/site
fi
CACHE=$(mktemp -d /tmp/inductor-issue17-XXXX)
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
    $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee -a "$LOG"
step() {  # step SECONDS command...: run with a limit, log everything, say how it ended
    local limit=$1; shift
    local t0=$SECONDS
    echo "=== $* (limit ${limit}s)" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "=== rc ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG"
}
step "${T_RACE:-280}" $PY benchmarks/peer_race.py --cache-dir "$CACHE" --out "$OUT"
step "${T_OVERHEAD:-110}" $PY benchmarks/step_overhead.py --profile --out "$OUT"
step "${T_WARM:-110}" $PY benchmarks/compile_warm.py --cache-dir "$CACHE" --runs 1 --timeout 100 --out "$OUT"
step "${T_FORK:-80}" $PY benchmarks/fork_warning.py --out "$OUT"
