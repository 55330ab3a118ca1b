#!/usr/bin/env bash
# Runs every measurement on the GPU machine, from the repository root.
# Needs benchmarks/.cache/{ComfyUI,wheels,authors}, made here by benchmarks/prepare_device.sh
# and carried to the device (git-ignored). Writes results.json, authors.json, bench.log,
# authors.log and profiles.txt to $OUT (default benchmarks/.cache/out).
# Arguments go to bench_concept_attention.py (e.g. --models flux2dev --resolutions 1024x1024 --concepts 8).
# CHECK_EXACT=1: first run check_exact_gpu.py with the same arguments (its output is appended to bench.log,
# check_exact_gpu.json to $OUT). SKIP_AUTHORS=1: no authors_flux.py. Timeouts: CHECK_TIMEOUT, BENCH_TIMEOUT.
set -uo pipefail
OUT=${OUT:-$PWD/benchmarks/.cache/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  benchmarks/.cache/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, psutil, yaml, scipy, tqdm, safetensors, einops, torchsde, comfy_aimdo, comfy_kitchen; print('imports ok, torch', torch.__version__)"
} 2>&1 | tee "$OUT/bench.log"
if [ -n "${CHECK_EXACT:-}" ]; then
  timeout "${CHECK_TIMEOUT:-120}" python3 benchmarks/check_exact_gpu.py --out "$OUT" "$@" 2>&1 | tee -a "$OUT/bench.log"
fi
timeout "${BENCH_TIMEOUT:-450}" python3 benchmarks/bench_concept_attention.py --out "$OUT" --profile \
  --budget-s "${BENCH_BUDGET:-330}" "$@" 2>&1 | tee -a "$OUT/bench.log"
[ -n "${SKIP_AUTHORS:-}" ] && exit 0
timeout "${AUTHORS_TIMEOUT:-110}" python3 benchmarks/authors_flux.py --out "$OUT" 2>&1 | tee "$OUT/authors.log"
