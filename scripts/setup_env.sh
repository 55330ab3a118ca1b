#!/usr/bin/env bash
# Creates (or refreshes) the virtualenv that runs ComfyUI 0.33.0 on the CPU and the tests.
# Prints the venv's python path on its last line of stdout.
#   VENV          where the venv lives (default: ~/.cache/comfyui-concept-attention/venv);
#                 kept outside the checkout so fresh clones reuse the multi-GB torch install.
#   COMFYUI_PATH  ComfyUI checkout (default: ~/ComfyUI); cloned at v0.33.0 when missing.
set -euo pipefail

COMFYUI_VERSION=v0.33.0
TORCH_PINS=(torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1)
# pydantic-settings: one of ComfyUI's "non essential" requirements; without it ComfyUI cannot read a
# pack's pyproject.toml ([tool.comfy]), which the server smoke test checks.
# playwright: drives Debian's Chromium (scripts/setup_browser.sh) for the browser tier; it never
# downloads a browser here (no `playwright install`).
# ruff: the linter scripts/test.sh runs first (pinned: a newer release may add checks).
TEST_TOOLS=(pytest pytest-timeout websocket-client "pydantic-settings~=2.0" "playwright>=1.49,<2" "ruff==0.17.6")
VENV=${VENV:-$HOME/.cache/comfyui-concept-attention/venv}
COMFYUI_PATH=${COMFYUI_PATH:-$HOME/ComfyUI}

log() { echo "[setup_env] $*" >&2; }

find_comfyui() {
  if [ -f "$COMFYUI_PATH/main.py" ] && [ -f "$COMFYUI_PATH/comfyui_version.py" ]; then
    return 0
  fi
  log "no ComfyUI at $COMFYUI_PATH; trying: git clone --depth 1 --branch $COMFYUI_VERSION"
  if git clone --depth 1 --branch "$COMFYUI_VERSION" \
      https://github.com/comfyanonymous/ComfyUI.git "$COMFYUI_PATH" >&2; then
    return 0
  fi
  cat >&2 <<MSG
[setup_env] ComfyUI was not found and could not be cloned.
  Put a ComfyUI $COMFYUI_VERSION checkout at ~/ComfyUI, or point COMFYUI_PATH at one:
    git clone --branch $COMFYUI_VERSION https://github.com/comfyanonymous/ComfyUI.git ~/ComfyUI
    COMFYUI_PATH=/path/to/ComfyUI bash .ci/run
MSG
  exit 3
}

# ComfyUI's requirements above the "#non essential" marker, without torch (pinned separately).
essential_requirements() {
  sed '/^#non essential/,$d' "$COMFYUI_PATH/requirements.txt" \
    | grep -vE '^\s*(#|$)' \
    | grep -vE '^(torch|torchvision|torchaudio)\s*([<>=!~].*)?$'
}

find_comfyui
log "ComfyUI: $COMFYUI_PATH ($(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_PATH/comfyui_version.py"))"

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv at $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.concept-attention-stamp"
want="$(printf '%s\n' "${TORCH_PINS[@]}" "${TEST_TOOLS[@]}"; essential_requirements)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "venv up to date"
else
  "$PY" -m pip install -q --upgrade pip >&2
  # torchaudio is pinned with torch so pip never swaps the torch build under it.
  "$PY" -m pip install -q "${TORCH_PINS[@]}" >&2
  essential_requirements > "$VENV/comfyui-requirements.txt"
  "$PY" -m pip install -q "${TORCH_PINS[@]}" -r "$VENV/comfyui-requirements.txt" "${TEST_TOOLS[@]}" >&2
  printf '%s' "$want" > "$stamp"
  log "venv ready"
fi
echo "$PY"
