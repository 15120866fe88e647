#!/usr/bin/env bash
# effarch's wasm builds (`benchClip`: single-threaded, and the multi-threaded build) against onnxruntime-web (the
# engine under transformers.js) on an ONNX export of the same ViT-B/16 tower, at 1, 2 and all threads, in one headless
# Chromium session. Not part of scripts/test.sh (it takes minutes and needs torch once for the
# export).
#   bash scripts/bench_browser.sh [iters]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
ONNX=target/bench/vit_b16.onnx
if [ ! -f "$ONNX" ]; then
  PY=${PYTHON:-target/pyenv/bin/python}
  "$PY" -c 'import torch, transformers, onnx' 2>/dev/null || "$PY" -m pip install -q torch transformers onnx
  "$PY" scripts/bench_reference.py --export-only --onnx "$ONNX"
fi
bash scripts/build_pkg.sh >/dev/null 2>&1
(cd scripts/browser-bench && npm install --silent --no-audit --no-fund)
node scripts/browser-bench/bench.mjs "$PWD" "$ONNX" "${1:-5}"
