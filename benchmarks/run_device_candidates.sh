#!/usr/bin/env bash
# Third GPU run: 1024x1024 step time with 8 concepts over all blocks, product code vs the candidate
# rewrites of concept_attention / token_scores (bench-side monkeypatch), their map agreement, and
# encode mode again.
set -uo pipefail
OUT=${OUT:-$PWD/benchmarks/.cache/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  benchmarks/.cache/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
timeout 400 python3 benchmarks/bench_concept_attention.py --models flux,sd3 --resolutions 1024x1024 --concepts 8 \
  --candidates --last10 --repeats 3 --skip-sync --out "$OUT" 2>&1 | tee "$OUT/bench_candidates.log"
