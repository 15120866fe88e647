#!/usr/bin/env bash
# effarch's wasm builds (`benchClip` in f32 and int8: single-threaded, and the multi-threaded build) against onnxruntime-web (the
# engine under transformers.js) on an ONNX export of the same ViT-B/16 tower and its quantize_dynamic (q8) copy, at 1, 2 and all threads, in one headless
# Chromium session; then effarch's Mamba LM at mamba-130m widths (prefill and decode tokens/s at the same thread
# counts, and on WebGPU where the browser has an adapter), beside the native CLI's figures for the same checkpoint.
# Not part of scripts/test.sh (it takes minutes and needs torch once for the exports).
#   bash scripts/bench_browser.sh [iters]          (MAMBA_ONLY=1: the Mamba rows only)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
ONNX=target/bench/vit_b16.onnx
PY=${PYTHON:-target/pyenv/bin/python}
if [ ! -f "$ONNX" ]; then
  "$PY" -c 'import torch, transformers, onnx' 2>/dev/null || "$PY" -m pip install -q torch transformers onnx
  "$PY" scripts/bench_reference.py --export-only --onnx "$ONNX"
fi
# Its quantize_dynamic copy (int8 weights per tensor, dynamic activations): what transformers.js
# serves by default (q8).
ONNX_Q8=target/bench/vit_b16_q8.onnx
if [ ! -f "$ONNX_Q8" ]; then
  "$PY" -c 'import onnxruntime' 2>/dev/null || "$PY" -m pip install -q onnxruntime
  "$PY" -c 'import sys; from onnxruntime.quantization import quantize_dynamic, QuantType; quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QInt8)' "$ONNX" "$ONNX_Q8"
fi
MAMBA=target/bench/mamba-130m
if [ ! -f "$MAMBA/model.safetensors" ]; then
  "$PY" -c 'import PIL, safetensors' 2>/dev/null || "$PY" -m pip install -q pillow safetensors
  "$PY" -c 'import sys; sys.path.insert(0, "scripts"); import bench_mamba_reference as B; B.make_checkpoint("'"$MAMBA"'")'
fi
bash scripts/build_pkg.sh >/dev/null 2>&1
(cd scripts/browser-bench && npm install --silent --no-audit --no-fund)
ONNX_Q8="$PWD/$ONNX_Q8" MAMBA_DIR="$PWD/$MAMBA" node scripts/browser-bench/bench.mjs "$PWD" "$ONNX" "${1:-5}"
# The native figures for the same checkpoint, at the same thread counts (the wasm ratio's denominator).
cargo build --release --bin effarch -q
for t in 1 2; do
  echo "native, $t thread(s):"
  RAYON_NUM_THREADS=$t target/release/effarch bench mamba-lm --model "$MAMBA" --prompt-lens 512 --decode 64 --iters 2 --device cpu | tail -1
done
