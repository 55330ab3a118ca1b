#!/usr/bin/env bash
# Second GPU run (same machine kind as run_device.sh): per-block micro-benchmark of our ops and
# candidate rewrites (CUDA-graph GPU time; PyTorch's native allocator for graph capture), then a
# replication of the 1024x1024 step times with 8 concepts over all blocks and over the last 10.
set -uo pipefail
OUT=${OUT:-$PWD/benchmarks/.cache/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  benchmarks/.cache/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
timeout 200 python3 benchmarks/bench_concept_attention.py --micro --no-cuda-malloc --out "$OUT" 2>&1 | tee "$OUT/micro.log"
timeout 300 python3 benchmarks/bench_concept_attention.py --models flux,sd3 --resolutions 1024x1024 --concepts 8 \
  --last10 --repeats 3 --skip-encode --skip-sync --out "$OUT" 2>&1 | tee "$OUT/bench_last10.log"
