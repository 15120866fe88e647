#!/usr/bin/env bash
# tests/web/ on the multi-threaded wasm build, relaxed-SIMD variant (the flags of scripts/build_threads.sh, the
# pinned nightly, `--features threads`): each test starts rayon's pool on 2 Web Workers first,
# so the golden CLIP, pruning and Mamba checks run with the kernels split over threads.
# wasm-bindgen-test-runner serves the page cross-origin isolated (SharedArrayBuffer).
set -euo pipefail
cd "$(dirname "$0")/.."
NIGHTLY=$(sed -n 's/^NIGHTLY=\([^ ]*\).*/\1/p' scripts/setup.sh)
# The relaxed-SIMD variant (the build Chromium's isolated pages load): the plain threaded
# build differs from it only in the f32 micro-kernel's multiply-add, which the single-threaded
# run (plain SIMD128) covers.
RUSTFLAGS="$(sed -n "s/^export RUSTFLAGS='\(.*\)'$/\1/p" scripts/build_threads.sh) -C target-feature=+relaxed-simd"
export RUSTFLAGS
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver)}
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-600}
exec cargo "+$NIGHTLY" test --target wasm32-unknown-unknown -Z build-std=panic_abort,std \
  --no-default-features --features threads --test web --target-dir target/threads-relaxed "$@"
