#!/usr/bin/env bash
# Offloaded-model measurements on the GPU machine (bench_offload.py), from the repository root.
# Needs benchmarks/.cache/{ComfyUI,wheels} from benchmarks/prepare_device.sh (SKIP_AUTHORS=1 is enough).
# Usage: bash benchmarks/run_offload.sh MODEL [CAPS] [extra bench_offload.py args]   (both memory modes, in turn)
# Writes offload_<model>_<mode>.json and offload_<model>.log to $OUT. MODE_TIMEOUT: seconds per mode (default 290).
set -uo pipefail
OUT=${OUT:-$PWD/benchmarks/.cache/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  benchmarks/.cache/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
model=${1:-flux}; caps=${2:-12,16,24,full}; shift 2 || shift $#
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv \
  | tee "$OUT/offload_$model.log"
for mode in classic dynamic; do
  t=${MODE_TIMEOUT:-290}
  timeout "$t" python3 benchmarks/bench_offload.py --model "$model" --mode "$mode" --caps "$caps" \
    --budget-s $((t - 70)) --out "$OUT" "$@" 2>&1 | grep -v '^ ' | tee -a "$OUT/offload_$model.log"
done
