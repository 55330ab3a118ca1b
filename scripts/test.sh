#!/usr/bin/env bash
# The project's test command:   bash scripts/test.sh [pytest args]
#
# 1. scripts/setup_env.sh builds/refreshes the venv that runs ComfyUI (COMFYUI_PATH, default
#    ~/ComfyUI; cloned at v0.33.0 when missing) and prints its python.
# 2. ruff checks the whole tree (pyproject.toml [tool.ruff]); a lint error fails the run.
# 3. pytest runs every tier (tests/unit, tests/comfy, tests/server, tests/browser) and writes
#    test-artifacts/junit.xml and test-artifacts/pytest.log.
# 4. The junit report must show that nothing was skipped (or xfailed) and, for a full run (no
#    pytest args), that comfy, server and browser tier tests actually ran. pytest's exit code 5 (no tests
#    collected) is a failure like any other non-zero code.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PY=$(bash scripts/setup_env.sh | tail -n 1)
if [ ! -x "$PY" ]; then
  echo "[test] scripts/setup_env.sh did not print a python interpreter (got: '$PY')" >&2
  exit 3
fi
# The browser tier's Chromium (scripts/setup_browser.sh: apt-get install when it is missing),
# for runs that include tests/browser.
if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qE '^tests/?$|browser'; then
  bash scripts/setup_browser.sh || echo "[test] scripts/setup_browser.sh failed: the browser tier cannot run" >&2
fi

if ! "$PY" -m ruff check "$ROOT"; then
  echo "[test] FAILED: ruff found lint errors (fix them, or 'ruff check --fix' for the fixable ones)"
  exit 1
fi

ART="$ROOT/test-artifacts"
rm -rf "$ART"
mkdir -p "$ART"
JUNIT="$ART/junit.xml"

if [ $# -eq 0 ]; then
  REQUIRED_TIERS="comfy server browser"
  set -- tests
else
  REQUIRED_TIERS=""   # a partial run chosen by hand: no tier requirement
fi

start=$(date +%s)
set +e
"$PY" -m pytest -p no:cacheprovider --junitxml="$JUNIT" "$@" 2>&1 | tee "$ART/pytest.log"
rc=${PIPESTATUS[0]}
set -e
echo "[test] pytest exit code $rc after $(( $(date +%s) - start )) s"

check_rc=0
REQUIRED_TIERS="$REQUIRED_TIERS" "$PY" - "$JUNIT" <<'PYCHECK' || check_rc=$?
import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter

path = sys.argv[1]
if not os.path.isfile(path):
    print(f"[test] FAIL: no junit report at {path}")
    sys.exit(1)
tiers, outcomes, skipped = Counter(), Counter(), []
for case in ET.parse(path).getroot().iter("testcase"):
    parts = case.get("classname", "").split(".")
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
    tiers[tier] += 1
    kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
    outcome = kinds[0] if kinds else "passed"
    outcomes[outcome] += 1
    if outcome == "skipped":
        skipped.append(f"{case.get('classname')}::{case.get('name')}")
print("[test] tests per tier: " + ", ".join(f"{t}={tiers[t]}" for t in ("unit", "comfy", "server", "browser", "other") if tiers[t] or t != "other"))
print("[test] outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
bad = False
if not tiers:
    print("[test] FAIL: the junit report lists no tests")
    bad = True
for tier in os.environ.get("REQUIRED_TIERS", "").split():
    if tiers[tier] == 0:
        print(f"[test] FAIL: no {tier} tier test ran (tests/{tier}/)")
        bad = True
if skipped:
    print(f"[test] FAIL: {len(skipped)} test(s) skipped or xfailed; every test must run and pass:")
    for name in skipped:
        print(f"         {name}")
    bad = True
sys.exit(1 if bad else 0)
PYCHECK

if [ "$rc" -ne 0 ] || [ "$check_rc" -ne 0 ]; then
  [ "$rc" -eq 5 ] && echo "[test] FAIL: pytest collected no tests (exit code 5)"
  echo "[test] FAILED (pytest exit $rc, report check exit $check_rc); report: $JUNIT"
  exit 1
fi

# ComfyUI 0.3.x compatibility: the comfy tier once more against an older checkout, when one is
# there (COMFYUI_COMPAT_PATH, default ~/ComfyUI-0.3.64). Said either way, never silently.
COMPAT=${COMFYUI_COMPAT_PATH:-$HOME/ComfyUI-0.3.64}
if [ $# -eq 1 ] && [ "$1" = tests ]; then
  if [ -f "$COMPAT/main.py" ]; then
    echo "[test] compatibility: tests/comfy against $COMPAT"
    # The families 0.3.x runs, as the family registry declares them (runs_on_comfyui_0_3).
    selection=$("$PY" scripts/families.py compat)
    if ! COMFYUI_PATH="$COMPAT" "$PY" -m pytest -p no:cacheprovider -q tests/comfy/test_maps_match_reference.py \
        tests/comfy/test_exact_images.py tests/comfy/test_run_state.py tests/comfy/test_nodes.py \
        tests/comfy/test_requery.py tests/comfy/test_partial_loading.py -k "$selection" 2>&1 | tee "$ART/pytest-compat.log" | tail -n 3; then
      echo "[test] FAILED: the comfy tier fails against $COMPAT (log: $ART/pytest-compat.log)"
      exit 1
    fi
  else
    echo "[test] compatibility: no ComfyUI checkout at $COMPAT (set COMFYUI_COMPAT_PATH), so the 0.3.x run did not happen"
  fi
fi
echo "[test] OK"
