#!/usr/bin/env bash
# Prepares the git-ignored benchmarks/.cache/ that travels to the GPU machine (64 MiB at most):
#   ComfyUI/  a slim copy of ComfyUI 0.33.0 (no tokenizers, tests, API nodes, models, ...)
#   wheels/   ComfyUI's packages the device image lacks (comfy-kitchen without its ROCm library)
#   authors/  the few files of the authors' Flux code that authors_flux.py imports (scratch only)
# COMFYUI_PATH: ComfyUI checkout (default ~/ComfyUI); AUTHORS_REPO: a git directory of
# github.com/helblazer811/ConceptAttention (default /work/.mirror/helblazer811+ConceptAttention/repo).
# SKIP_AUTHORS=1: leave out authors/ (only authors_flux.py needs it; the Flux.2 runs do not).
set -euo pipefail
cd "$(dirname "$0")"
COMFYUI_PATH=${COMFYUI_PATH:-$HOME/ComfyUI}
AUTHORS_REPO=${AUTHORS_REPO:-/work/.mirror/helblazer811+ConceptAttention/repo}
PY=${PY:-python3}
C=.cache
mkdir -p $C

rm -rf $C/ComfyUI && mkdir -p $C/ComfyUI
(cd "$COMFYUI_PATH" && tar cf - --exclude=./.git --exclude='./comfy/text_encoders/*_tokenizer' \
  --exclude=./comfy/sd1_tokenizer --exclude=./blueprints --exclude=./tests --exclude=./tests-unit \
  --exclude=./comfy_api_nodes --exclude=./models --exclude=./output --exclude=./input --exclude=./user \
  --exclude=./custom_nodes --exclude=./temp --exclude='*.db' --exclude='__pycache__' --exclude=./script_examples .) | tar xf - -C $C/ComfyUI

rm -rf $C/wheels && mkdir -p $C/wheels
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux_2_12_x86_64 \
  -d $C/wheels comfy-aimdo==0.4.13 comfy-kitchen==0.2.31 torchsde==0.2.6 trampoline==0.1.2 einops==0.8.2
# comfy-kitchen ships a 59 MB ROCm library; drop it so everything fits the 64 MiB carry limit.
tmp=$(mktemp -d)
(cd "$tmp" && unzip -q "$OLDPWD"/$C/wheels/comfy_kitchen-*.whl && rm -f comfy_kitchen/backends/hip/_C*.so \
  && grep -v 'backends/hip/_C' comfy_kitchen-*.dist-info/RECORD > R && mv R comfy_kitchen-*.dist-info/RECORD)
rm $C/wheels/comfy_kitchen-*.whl
(cd "$tmp" && zip -q -r -9 "$OLDPWD"/$C/wheels/comfy_kitchen-0.2.31-cp312-abi3-manylinux_2_28_x86_64.whl .)
rm -rf "$tmp"

if [ -n "${SKIP_AUTHORS:-}" ]; then du -sh $C/ComfyUI $C/wheels; exit 0; fi
rm -rf $C/authors && mkdir -p $C/authors
for f in concept_attention/flux/dit.py concept_attention/flux/dit_block.py concept_attention/flux/dit_block_single.py \
         concept_attention/flux/flux/src/flux/math.py concept_attention/flux/flux/src/flux/model.py \
         concept_attention/flux/flux/src/flux/modules/layers.py concept_attention/flux/flux/LICENSE; do
  mkdir -p $C/authors/$(dirname $f)
  git --git-dir="$AUTHORS_REPO" show HEAD:$f > $C/authors/$f
done
git --git-dir="$AUTHORS_REPO" rev-parse HEAD > $C/authors/SOURCE_COMMIT
du -sh $C/ComfyUI $C/wheels $C/authors
