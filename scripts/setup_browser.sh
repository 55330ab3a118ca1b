#!/usr/bin/env bash
# Installs what the browser test tier (tests/browser/) needs besides the venv's Python packages:
# Debian's Chromium at /usr/bin/chromium (Playwright drives it through executable_path and never
# downloads a browser of its own). Does nothing when Chromium is already there.
#   CHROMIUM_PATH   the browser to use (default: /usr/bin/chromium)
set -euo pipefail

CHROMIUM_PATH=${CHROMIUM_PATH:-/usr/bin/chromium}
log() { echo "[setup_browser] $*" >&2; }

if [ -x "$CHROMIUM_PATH" ]; then
  log "chromium: $("$CHROMIUM_PATH" --version 2>/dev/null || echo "$CHROMIUM_PATH")"
  exit 0
fi
if [ "$CHROMIUM_PATH" != /usr/bin/chromium ]; then
  log "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable"
  exit 3
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no chromium at $CHROMIUM_PATH and no apt-get to install it; install Chromium and set CHROMIUM_PATH"
  exit 3
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
    log "installing chromium needs root: run 'apt-get update && apt-get install -y chromium' as root"
    exit 3
  fi
fi
log "installing Debian's chromium (apt-get)"
"${SUDO[@]}" apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q chromium >&2
log "chromium: $("$CHROMIUM_PATH" --version 2>/dev/null || echo installed)"
