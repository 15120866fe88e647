#!/usr/bin/env bash
# Builds the site (Trunk, both wasm builds) and the npm package (scripts/build_pkg.sh), then runs the end-to-end test in
# headless Chromium (tests/e2e/page.mjs). Prints the "test result:" line scripts/test.sh counts.
set -uo pipefail
cd "$(dirname "$0")/../.."
trunk build --release >/tmp/effarch-trunk.log 2>&1 || { tail -30 /tmp/effarch-trunk.log; echo "test result: FAILED. 0 passed; 1 failed (trunk build)"; exit 1; }
# The hosted demo's default model, as the Pages workflow publishes ViT-B/16: here the tiny fixture.
{ [ -x target/debug/effarch ] || cargo build --quiet --bin effarch; } >/tmp/effarch-publish.log 2>&1 &&
  EFFARCH=target/debug/effarch bash scripts/publish_models.sh dist tests/fixtures/clip-tiny clip-tiny-int8 >>/tmp/effarch-publish.log 2>&1 ||
  { tail -30 /tmp/effarch-publish.log; echo "test result: FAILED. 0 passed; 1 failed (scripts/publish_models.sh)"; exit 1; }
bash scripts/build_pkg.sh >/tmp/effarch-pkg.log 2>&1 || { tail -30 /tmp/effarch-pkg.log; echo "test result: FAILED. 0 passed; 1 failed (scripts/build_pkg.sh)"; exit 1; }
exec node tests/e2e/page.mjs dist
