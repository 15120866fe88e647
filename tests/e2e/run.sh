#!/usr/bin/env bash
# Builds the site (Trunk) and the npm package (wasm-pack), then runs the end-to-end test in
# headless Chromium (tests/e2e/page.mjs). Prints the "test result:" line scripts/test.sh counts.
set -uo pipefail
cd "$(dirname "$0")/../.."
trunk build --release >/tmp/effarch-trunk.log 2>&1 || { tail -30 /tmp/effarch-trunk.log; echo "test result: FAILED. 0 passed; 1 failed (trunk build)"; exit 1; }
wasm-pack build --target web --release >/tmp/effarch-wasm-pack.log 2>&1 || { tail -30 /tmp/effarch-wasm-pack.log; echo "test result: FAILED. 0 passed; 1 failed (wasm-pack build)"; exit 1; }
exec node tests/e2e/page.mjs dist
