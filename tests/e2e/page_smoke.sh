#!/usr/bin/env bash
# Builds the page with Trunk, serves dist/ on loopback and checks in headless Chromium that
# the wasm core loads under the page's Content-Security-Policy. Prints a result line that
# scripts/test.sh counts.
set -uo pipefail
cd "$(dirname "$0")/../.."
trunk build --release >/dev/null 2>&1 || { echo "test result: FAILED. 0 passed; 1 failed (trunk build)"; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 --directory dist >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
sleep 1
profile=$(mktemp -d)
dom=$(timeout 90 chromium --headless=new --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --no-first-run --disable-sync --user-data-dir="$profile" \
  --virtual-time-budget=10000 --dump-dom "http://127.0.0.1:$port/" 2>/dev/null)
rm -rf "$profile"
if grep -q "Core loaded: cpu (candle-core, wasm simd128)" <<<"$dom"; then
  echo "page smoke: the built page loads the wasm core (SIMD128) under its CSP"
  echo "test result: ok. 1 passed; 0 failed"
else
  echo "page smoke: status line not found; page said:"; grep -o '<p id="status"[^<]*' <<<"$dom"
  echo "test result: FAILED. 0 passed; 1 failed"
  exit 1
fi
