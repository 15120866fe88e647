#!/usr/bin/env bash
# effarch's wasm builds (`benchClip`: single-threaded, and the multi-threaded build) against onnxruntime-web (the
# engine under transformers.js) on an ONNX export of the same ViT-B/16 tower, at 1, 2 and all threads, in one headless
# Chromium session; then effarch's Mamba LM at mamba-130m widths (prefill and decode tokens/s at the same thread
# counts, and on WebGPU where the browser has an adapter), beside the native CLI's figures for the same checkpoint.
# Not part of scripts/test.sh (it takes minutes and needs torch once for the exports).
#   bash scripts/bench_browser.sh [iters]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
ONNX=target/bench/vit_b16.onnx
PY=${PYTHON:-target/pyenv/bin/python}
if [ ! -f "$ONNX" ]; then
  "$PY" -c 'import torch, transformers, onnx' 2>/dev/null || "$PY" -m pip install -q torch transformers onnx
  "$PY" scripts/bench_reference.py --export-only --onnx "$ONNX"
fi
MAMBA=target/bench/mamba-130m
if [ ! -f "$MAMBA/model.safetensors" ]; then
  "$PY" -c 'import sys; sys.path.insert(0, "scripts"); import bench_mamba_reference as B; B.make_checkpoint("'"$MAMBA"'")'
fi
bash scripts/build_pkg.sh >/dev/null 2>&1
(cd scripts/browser-bench && npm install --silent --no-audit --no-fund)
MAMBA_DIR="$PWD/$MAMBA" node scripts/browser-bench/bench.mjs "$PWD" "$ONNX" "${1:-5}"
# The native figures for the same checkpoint, at the same thread counts (the wasm ratio's denominator).
cargo build --release --bin effarch -q
for t in 1 2; do
  echo "native, $t thread(s):"
  RAYON_NUM_THREADS=$t target/release/effarch bench mamba-lm --model "$MAMBA" --prompt-lens 512 --decode 64 --iters 2 --device cpu | tail -1
done
