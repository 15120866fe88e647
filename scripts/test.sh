#!/usr/bin/env bash
# The whole test suite: native tests (golden CLIP vs transformers on the CPU and on the GPU
# via Mesa's lavapipe, pruning, bad input, CLI), the same golden/pruning checks inside
# headless Chrome on wasm SIMD128 (single- and multi-threaded builds) and on WebGPU, and the built page end to end in headless
# Chromium (Playwright, WebGPU on SwiftShader); the Mamba scan against the trained typeseg
# model's own reference (fetched from PyPI).
# Installs what it needs first (scripts/setup.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# Mesa's Vulkan loader complains without a runtime dir (harmless, but noisy).
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

# Disk before and after: the builds (native, wasm, two threaded wasm, release) take GBs, and a
# full disk fails as a linker "Bus error", far from its cause.
disk() { printf '\n== disk %s: ' "$1"; df -h . | awk 'NR==2 {print $4 " free of " $2}'; }
disk start

log=$(mktemp)
status=0
run() {
  printf '\n== %s\n' "$*"
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "FAILED ($rc): $*"; status=1; }
}

# Every test binary runs even when one fails (the first failure must not hide the rest), then
# the examples in the doc comments.
run cargo test --all-targets --no-fail-fast
run cargo test --doc
# Our scan on real trained Mamba weights (typeseg 0.2.7, fetched from PyPI) vs the package's reference.
EFFARCH=target/debug/effarch run target/pyenv/bin/python scripts/typeseg_check.py
WASM_BINDGEN_TEST_TIMEOUT=600 run wasm-pack test --headless --chrome --chromedriver "$(command -v chromedriver)" --test web
# The same browser tests on the multi-threaded wasm build (rayon's pool on 2 Web Workers).
run bash scripts/test_wasm_threads.sh
run bash tests/e2e/run.sh

disk end
du -sh target 2>/dev/null | sed 's/^/== target: /'

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
[ "$passed" -gt 0 ] || { echo "no tests ran"; status=1; }
[ "$status" = 0 ] || failed=$((failed > 0 ? failed : 1))
echo
echo "summary: $passed passed, $failed failed"
exit $status
