#!/usr/bin/env bash
# The multi-threaded wasm build: shared memory and atomics, rayon's pool on Web Workers
# (wasm-bindgen-rayon), `initThreadPool(n)` exported. Needs the pinned nightly (std rebuilt
# with atomics: -Z build-std), which scripts/setup.sh installs; everything else stays on
# stable. Writes effarch.js + effarch_bg.wasm (+ the worker helper snippet) to OUT_DIR.
# With `relaxed`, the relaxed-SIMD variant (`f32x4.relaxed_madd` in the f32 micro-kernel: an
# FMA where the CPU has one), which the loader (www/engine.js) picks where
# `WebAssembly.validate` accepts relaxed SIMD.
#
#   scripts/build_threads.sh OUT_DIR [relaxed]   (e.g. dist/threads, pkg/threads-relaxed)
set -euo pipefail
cd "$(dirname "$0")/.."
NIGHTLY=$(sed -n 's/^NIGHTLY=\([^ ]*\).*/\1/p' scripts/setup.sh)
out=${1:?usage: scripts/build_threads.sh OUT_DIR [relaxed]}
variant=${2:-}
# 4 GiB of shared memory at most (a shared memory must declare its maximum; ViT-B/16 in f32
# needs about 1 GiB with its activations, Mamba-130m less).
export RUSTFLAGS='-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 --cfg getrandom_backend="wasm_js" -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base'
target=target/threads
case "$variant" in
  '') ;;
  relaxed) RUSTFLAGS="$RUSTFLAGS -C target-feature=+relaxed-simd" target=target/threads-relaxed ;;
  *) echo "build_threads.sh: unknown variant '$variant' (relaxed)" >&2; exit 2 ;;
esac
cargo "+$NIGHTLY" build --release --lib --target wasm32-unknown-unknown --no-default-features --features threads \
  -Z build-std=panic_abort,std --target-dir "$target"
mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" --out-name effarch "$target/wasm32-unknown-unknown/release/effarch.wasm"
# wasm-bindgen-rayon 1.3's worker helper initialises each pool worker with the positional
# (module, memory) form, which this wasm-bindgen logs as deprecated in every worker's console:
# give it the object form (and fail loudly if a new version changed the line).
helper=$(ls "$out"/snippets/wasm-bindgen-rayon-*/src/workerHelpers.no-bundler.js)
grep -q 'await pkg.default(data.module, data.memory);' "$helper" \
  || { echo "build_threads.sh: $helper changed; update the patch below" >&2; exit 1; }
sed -i 's/await pkg.default(data.module, data.memory);/await pkg.default({ module_or_path: data.module, memory: data.memory });/' "$helper"
