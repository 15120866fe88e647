#!/usr/bin/env bash
# Every CLI command's --json output on the fixtures, timings masked, one file per command in
# OUT: run it before and after a change that should not change behaviour and `diff -r` the two.
# Usage: scripts/json_snapshot.sh OUT [EFFARCH]   (EFFARCH: the binary, default target/release/effarch)
set -euo pipefail
out=${1:?usage: scripts/json_snapshot.sh OUT [EFFARCH]}
bin=${2:-target/release/effarch}
cd "$(dirname "$0")/.."
mkdir -p "$out"
f=tests/fixtures
img=$f/clip-tiny/cat_300x257.png
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
n=0
snap() { # NAME ARGS...: run, mask what depends on the clock, keep the rest byte for byte
  local name=$1; shift
  n=$((n + 1))
  if "$bin" "$@" --json >"$tmp/out" 2>"$tmp/err"; then :; else echo "exit $?" >>"$tmp/out"; cat "$tmp/err" >>"$tmp/out"; fi
  python3 - "$tmp/out" "$tmp" >"$out/$(printf %02d $n)-$name.json" <<'PY'
import json, re, sys
TIMED = re.compile(r"(^|_)(ms|s|us|ns|secs?|seconds|time|times|gflops?|gops?|tok_s|tokens_per_s|per_s|img_s|speed|ratio|x_f32|peak|wall|load|compile|elapsed)($|_)|_ms|ms_|per_s|gflop|gop|ratio|speedup|tokens_s|img_per|exponent")
def mask(v, key="", timed=False):
    timed = timed or bool(TIMED.search(key.lower()))
    if isinstance(v, dict):
        return {k: mask(x, k, timed) for k, x in v.items()}
    if isinstance(v, list):
        return [mask(x, key, timed) for x in v]
    if isinstance(v, (int, float)) and not isinstance(v, bool) and timed:
        return "<timed>"
    return v
text = open(sys.argv[1]).read().replace(sys.argv[2], "TMP")
try:
    docs = [json.loads(text)]
except ValueError:
    print(text, end=""); sys.exit()
print(json.dumps(mask(docs[0]), indent=1, sort_keys=True))
PY
}
clip=$f/clip-tiny
for s in kq-norm kq-norm:query kq-norm:both cls-attn random tome divprune visionzip; do
  snap "clip-$s" clip --model $clip --image $img --scorer $s --keep 0.5 --labels "a photo of a cat,a dog"
done
snap clip-int8 clip --model $clip --image $img --keep 0.7 --precision int8
snap clip-bf16 clip --model $clip --image $img --keep 0.7 --precision bf16
snap clip-gpu clip --model $clip --image $img --keep 0.5 --device gpu
snap clip-bad clip --model $clip --image $f/clip-tiny/config.json
snap eval-clip eval clip --model $clip --data $f/eval-tiny --keeps 1,0.5 --layers 1 --out "$tmp/eval"
snap mamba mamba --model $f/mamba-tiny --prompt "Hello world" --max-new-tokens 6 --mrss-tau 0.05
snap mamba-gpu mamba --model $f/mamba-tiny --prompt "Hello world" --max-new-tokens 6 --device gpu
for m in kq-norm random divprune fastv dart; do
  snap "qwen-$m" qwen --model $f/qwen-tiny --image $img --keep 0.5 --method $m --llm-layer 1 --max-new-tokens 4
done
snap quantize quantize --model $clip --out "$tmp/q"
snap clip-quantized clip --model "$tmp/q" --image $img --keep 0.5 --precision int8
snap bench-clip bench clip --keeps 1,0.5 --batches 1 --iters 1
snap bench-mamba bench mamba --ns 64,128 --iters 1 --steps 2
snap bench-mamba-lm bench mamba-lm --model $f/mamba-tiny --prompt-lens 8,32 --decode 4 --iters 1 --mrss-tau 0,0.5
snap bench-scan bench scan --lens 70,300 --channels 20 --iters 1 --device gpu
snap bench-gemm bench gemm --iters 1
echo "$n outputs in $out"
