#!/usr/bin/env bash
# One prepared run on a machine with a real GPU: the GPU golden tests (tiny fixtures and real
# widths against transformers, GPU against CPU), then `bench clip`, `bench mamba` and a reduced
# `bench qwen` on the first hardware adapter, and one table at the end; before them
# `examples/gpu_overhead.rs` (host cost of an op, read-back latency, GEMM GFLOP/s, the ops of a
# ViT-B/16 layer). Under 8 minutes on a
# recent NVIDIA GPU.
#
#   scripts/gpu_bench.sh              build (release) here, then run
#   scripts/gpu_bench.sh --pack DIR   only build: the CLI and the test binaries into DIR
#   scripts/gpu_bench.sh --bin DIR    only run, from binaries packed earlier (a GPU machine
#                                     without a Rust toolchain; x86-64 Linux, glibc ≥ the builder's;
#                                     the pack carries this machine's Vulkan loader for one without)
#
# Logs and JSON go to $OUT (or target/gpu-bench). Nothing is downloaded: the models are random
# weights at real sizes, the fixtures are in the tree.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/target/gpu-bench}
mkdir -p "$out"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
TESTS=(clip_golden mamba_golden qwen_golden generation)
# GPU_BENCH_SMOKE=1: one test binary and the smallest settings, to check the script itself on a
# software adapter. GPU_BENCH_TESTS=0: the benchmarks alone (no golden tests), or a list of test
# binaries to run; GPU_BENCH_QWEN:
# other `bench qwen` settings.
if [ -n "${GPU_BENCH_SMOKE:-}" ]; then
  RUN_TESTS=(clip_golden) ITERS=1 BATCHES=1 NS=64 QWEN="--vision-depth 1 --lm-layers 1 --image 56 --iters 1 --decode 2"
  MAMBA_LM="--prompt-lens 16 --decode 4 --iters 1"
else
  RUN_TESTS=("${TESTS[@]}") ITERS=20 BATCHES=1,32 NS=256,1024,4096
  # Qwen2.5-VL-3B's widths at full depth (32 vision blocks, 36 LM layers: 15 GB of f32 weights).
  QWEN="--vision-depth 32 --lm-layers 36 --image 448 --iters 3 --decode 16"
  MAMBA_LM="--prompt-lens 512,2048 --decode 128 --iters 3"
fi
# GPU_BENCH_TESTS="clip_golden qwen_golden": only these test binaries.
case "${GPU_BENCH_TESTS:-1}" in
  0) RUN_TESTS=() ;;
  1) ;;
  *) read -ra RUN_TESTS <<<"$GPU_BENCH_TESTS" ;;
esac
QWEN=${GPU_BENCH_QWEN:-$QWEN}

pack() {
  local dir=$1
  mkdir -p "$dir"
  cargo build --release --bin effarch --example gpu_overhead || return 1
  cp target/release/effarch target/release/examples/gpu_overhead "$dir/"
  local t exe
  for t in "${TESTS[@]}"; do
    exe=$(cargo test --release --test "$t" --no-run --message-format=json 2>/dev/null |
      python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]: print(m["executable"])' | tail -1)
    [ -n "$exe" ] || { echo "could not build the test $t"; return 1; }
    cp "$exe" "$dir/$t"
  done
  strip "$dir"/* 2>/dev/null || true
  # The Vulkan loader of this machine, for a GPU machine without one (its driver brings only
  # the ICD): --bin puts it on LD_LIBRARY_PATH when the system has no libvulkan.so.1.
  local loader
  loader=$(ldconfig -p 2>/dev/null | awk '/libvulkan\.so\.1 .*x86-64/ {print $NF; exit}')
  if [ -n "$loader" ]; then mkdir -p "$dir/lib" && cp -L "$loader" "$dir/lib/libvulkan.so.1"; fi
  # The test binaries find their fixtures under the directory they were built in.
  echo "$root" >"$dir/manifest_dir"
  echo "packed into $dir: $(ls "$dir" | tr '\n' ' ')"
}

case "${1:-}" in
  --pack) pack "${2:?--pack DIR}"; exit $? ;;
  --bin) bin=$(cd "${2:?--bin DIR}" && pwd) ;;
  "") bin=$root/target/gpu-bench/bin; pack "$bin" || exit 1 ;;
  *) echo "usage: $0 [--pack DIR | --bin DIR]"; exit 2 ;;
esac

# Fixtures are found at the path the tests were built in: point it at this tree if it differs.
built_in=$(cat "$bin/manifest_dir" 2>/dev/null || echo "$root")
if [ "$built_in" != "$root" ] && [ ! -e "$built_in" ]; then
  mkdir -p "$(dirname "$built_in")" && ln -s "$root" "$built_in"
fi

if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' && [ -e "$bin/lib/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH="$bin/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "Vulkan loader: the packed one ($bin/lib/libvulkan.so.1)"
fi
# A headless NVIDIA container: the driver's Vulkan ICD JSON names libGLX_nvidia.so.0, whose
# vk_icdGetInstanceProcAddr gives no vkCreateInstance without a display (the loader: "Could not
# get 'vkCreateInstance' via 'vk_icdGetInstanceProcAddr'", wgpu: "vulkan drivers/libraries could
# not be loaded"); the same driver through libEGL_nvidia.so.0 works headless (H200, driver 580).
if [ -z "${VK_DRIVER_FILES:-}" ] && command -v nvidia-smi >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q libEGL_nvidia.so.0; then
  for icd in /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json; do
    if [ -e "$icd" ] && grep -q libGLX_nvidia "$icd"; then
      sed 's/libGLX_nvidia/libEGL_nvidia/' "$icd" >"$out/nvidia_egl_icd.json"
      export VK_DRIVER_FILES=$out/nvidia_egl_icd.json
      echo "Vulkan: NVIDIA's driver through libEGL_nvidia.so.0 ($VK_DRIVER_FILES)"
      break
    fi
  done
fi

effarch=$bin/effarch
start=$(date +%s)
status=0
step() { echo "== $* ($(($(date +%s) - start)) s)"; }

step "fixed costs and per-op times (examples/gpu_overhead.rs)"
timeout 120 "$bin/gpu_overhead" >"$out/ops.txt" 2>&1 || status=1
step "GPU golden tests"
: >"$out/tests.txt"
for t in "${RUN_TESTS[@]}"; do
  # Every test whose name says gpu: the GPU path against transformers' goldens and the CPU.
  "$bin/$t" gpu --test-threads 1 --nocapture >"$out/test-$t.log" 2>&1
  rc=$?
  line=$(grep -E '^test result:' "$out/test-$t.log" | tail -1)
  echo "$t: ${line:-no result (exit $rc)}" | tee -a "$out/tests.txt"
  [ $rc -eq 0 ] || status=1
done

step "bench clip (GPU)"
"$effarch" bench clip --device gpu --keeps 1,0.7,0.5 --batches $BATCHES --iters $ITERS --profile --json >"$out/clip-gpu.json" 2>"$out/clip-gpu.log" || status=1
step "bench clip (GPU, f16 weights and, with shader-f16, f16 math)"
"$effarch" bench clip --device gpu-f16 --keeps 1 --batches $BATCHES --iters $ITERS --profile --json >"$out/clip-gpu-f16.json" 2>"$out/clip-gpu-f16.log" || status=1
step "bench clip (GPU, f32 and int8 weights side by side, cos to f32)"
"$effarch" bench clip --device gpu --precision int8 --keeps 1,0.5 --batches $BATCHES --iters $ITERS --json >"$out/clip-gpu-int8.json" 2>"$out/clip-gpu-int8.log" || status=1
step "bench scan (GPU: sequential against chunked)"
"$effarch" bench scan --device gpu --lens 512,2048,8192 --iters 3 --json >"$out/scan-gpu.json" 2>"$out/scan-gpu.log" || status=1
step "bench clip (CPU, for the ratio)"
"$effarch" bench clip --device cpu --keeps 1,0.5 --batches 1 --iters $(( ITERS < 5 ? ITERS : 5 )) --json >"$out/clip-cpu.json" 2>"$out/clip-cpu.log" || status=1
step "bench mamba (GPU)"
"$effarch" bench mamba --device gpu --ns $NS --steps 16 --iters 3 --json >"$out/mamba-gpu.json" 2>"$out/mamba-gpu.log" || status=1
step "bench mamba-lm (GPU, mamba-130m widths and depth, random weights)"
"$effarch" bench mamba-lm --model random --device gpu $MAMBA_LM --profile --json >"$out/mamba-lm-gpu.json" 2>"$out/mamba-lm-gpu.log" || status=1
step "bench mamba-lm and clip batch 1 (GPU) without subgroups, for the subgroup kernels' before/after"
EFFARCH_GPU_SUBGROUPS=0 "$effarch" bench mamba-lm --model random --device gpu $MAMBA_LM --profile --json >"$out/mamba-lm-gpu-nosg.json" 2>"$out/mamba-lm-gpu-nosg.log" || status=1
EFFARCH_GPU_SUBGROUPS=0 "$effarch" bench clip --device gpu --keeps 1 --batches 1 --iters $ITERS --profile --json >"$out/clip-gpu-nosg.json" 2>"$out/clip-gpu-nosg.log" || status=1
step "bench mamba-lm and clip batch 1 (GPU) with one command buffer per forward (submits only at read-backs)"
EFFARCH_GPU_SUBMIT_EVERY=0 "$effarch" bench mamba-lm --model random --device gpu $MAMBA_LM --json >"$out/mamba-lm-gpu-onecb.json" 2>"$out/mamba-lm-gpu-onecb.log" || status=1
EFFARCH_GPU_SUBMIT_EVERY=0 "$effarch" bench clip --device gpu --keeps 1 --batches $BATCHES --iters $ITERS --json >"$out/clip-gpu-onecb.json" 2>"$out/clip-gpu-onecb.log" || status=1
step "bench qwen (GPU, Qwen2.5-VL-3B widths)"
"$effarch" bench qwen --device gpu $QWEN --profile --json >"$out/qwen-gpu.json" 2>"$out/qwen-gpu.log" || status=1
step "done"

python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception as e:
        print(f"{name}: no result ({e})")
        return None
m = load("mamba-gpu.json")
print(f"\n{(m or {}).get('device', 'GPU: ?')}")
print(open(os.path.join(out, "tests.txt")).read().rstrip())
if os.path.exists(os.path.join(out, "ops.txt")):
    print(open(os.path.join(out, "ops.txt")).read().rstrip())
rows = []
clip, cpu = load("clip-gpu.json"), load("clip-cpu.json")
cpu1 = next((r["ms_median"] for r in cpu or [] if r["keep"] == 1 and r["batch"] == 1), None)
for r in clip or []:
    extra = f"GPU/CPU {r['ms_median'] / cpu1:.3f}" if cpu1 and r["batch"] == 1 and r["keep"] == 1 else ""
    extra = f"{extra} first/warm {r['first_ms'] / r['ms_median']:.2f}, {r['dispatches']} dispatches".strip()
    rows.append((f"clip ViT-B/16 b{r['batch']} keep {r['keep']:.2f}", f"{r['ms_median']:.2f} ms/img", f"ratio {r['ratio']:.3f} (FLOP bound {r['flop_ratio']:.3f})", extra))
for r in load("clip-gpu-f16.json") or []:
    rows.append((f"clip ViT-B/16 f16 b{r['batch']}", f"{r['ms_median']:.2f} ms/img", f"{r['dispatches']} dispatches", ""))
for r in load("clip-gpu-int8.json") or []:
    rows.append((f"clip ViT-B/16 {r['precision']} b{r['batch']} keep {r['keep']:.2f}", f"{r['ms_median']:.2f} ms/img", f"× f32 {r['f32_ratio']:.3f}", f"cos to f32 {r['cos_to_f32']:.6f}"))
for r in (load("scan-gpu.json") or {}).get("rows", []):
    rows.append((f"scan L={r['len']}", f"sequential {r['sequential_ms']:.2f} ms", f"chunked {r['chunked_ms']:.2f} ms ({r['chunks']} chunks)", f"speed-up {r['speedup']:.2f}x; 64-step chunks {r['chunked_fine_ms']:.2f} ms ({r['fine_chunks']}, {r['sequential_ms'] / r['chunked_fine_ms']:.2f}x); max |Δ| {r['max_abs_diff']:.1e}"))
for r in cpu or []:
    rows.append((f"clip ViT-B/16 CPU b{r['batch']} keep {r['keep']:.2f}", f"{r['ms_median']:.2f} ms/img", f"ratio {r['ratio']:.3f} (FLOP bound {r['flop_ratio']:.3f})", ""))
for r in (m or {}).get("rows", []):
    rows.append((f"mamba block d={m['hidden']} N={r['n']}", f"prefill {r['mamba_prefill_ms']:.2f} ms", f"decode {r['mamba_decode_ms']:.3f} ms/token", f"attention: {r['attn_prefill_ms']:.2f} ms, {r['attn_decode_ms']:.3f} ms/token"))
for r in (load("mamba-lm-gpu-nosg.json") or {}).get("rows", []):
    rows.append((f"mamba-130m prompt {r['prompt_tokens']} (no subgroups)", f"prefill {r['prefill_tokens_per_s']:.0f} tokens/s", f"decode {r['decode_tokens_per_s']:.1f} tokens/s", f"{r['decode_ms_per_token']:.3f} ms/token"))
for r in load("clip-gpu-nosg.json") or []:
    rows.append((f"clip ViT-B/16 b{r['batch']} (no subgroups)", f"{r['ms_median']:.2f} ms/img", f"{r['dispatches']} dispatches", ""))
for r in (load("mamba-lm-gpu-onecb.json") or {}).get("rows", []):
    rows.append((f"mamba-130m prompt {r['prompt_tokens']} (one command buffer)", f"prefill {r['prefill_tokens_per_s']:.0f} tokens/s", f"decode {r['decode_tokens_per_s']:.1f} tokens/s", f"{r['decode_ms_per_token']:.3f} ms/token"))
for r in load("clip-gpu-onecb.json") or []:
    rows.append((f"clip ViT-B/16 b{r['batch']} (one command buffer)", f"{r['ms_median']:.2f} ms/img", f"{r['submits']} submits", f"first/warm {r['first_ms'] / r['ms_median']:.2f}"))
for r in (load("mamba-lm-gpu.json") or {}).get("rows", []):
    rows.append((f"mamba-130m prompt {r['prompt_tokens']}", f"prefill {r['prefill_tokens_per_s']:.0f} tokens/s", f"decode {r['decode_tokens_per_s']:.1f} tokens/s", f"{r['decode_ms_per_token']:.3f} ms/token"))
q = load("qwen-gpu.json")
for r in (q or {}).get("rows", []):
    dec = f", decode {1e3 / r['decode_ms_per_token']:.1f} tokens/s" if r.get("decode_ms_per_token") else ""
    rows.append((f"qwen 3B widths {r['method']} keep {r['keep']:.2f}", f"vision {r['vision_ms']:.1f} ms", f"prefill {r['prefill_ms']:.1f} ms (ratio {r['prefill_ratio']:.3f}, FLOP bound {r['flops_ratio']:.3f})", f"{r['visual_tokens']} visual tokens{dec}"))
w = [max(len(x[i]) for x in rows) for i in range(4)] if rows else [0] * 4
print()
for x in rows:
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(x)).rstrip())

# The per-kernel profiles (bench --profile): span, busy, idle, then the kernels by GPU time.
def show(title, p, top=14):
    if not p:
        return
    print(f"\n{title}: {p['dispatches']} dispatches, {p['submits']} submits; GPU span {p['gpu_span_ms']:.3f} ms = busy {p['busy_ms']:.3f} + idle {p['gap_ms']:.3f} "
          f"(between submits {p['gap_between_submits_ms']:.3f}); host recording {p['host_ms']:.3f} ms")
    for k in p["kernels"][:top]:
        print(f"  {k['kernel']:<40} {k['count']:>5} {k['total_ms']:>9.3f} ms {k['mean_us']:>9.1f} µs {100 * k['share']:>5.1f}%")
for name in ("clip-gpu.json", "clip-gpu-nosg.json", "clip-gpu-f16.json"):
    for r in load(name) or []:
        show(f"profile {name[:-5]} b{r['batch']} {r['scorer']} keep {r['keep']:.2f}", r.get("profile"))
for r in (load("mamba-lm-gpu.json") or {}).get("rows", []):
    show(f"profile mamba-130m prefill {r['prompt_tokens']}", r.get("prefill_profile"))
    show(f"profile mamba-130m decoding step after {r['prompt_tokens']}", r.get("decode_profile"))
for r in (load("mamba-lm-gpu-nosg.json") or {}).get("rows", []):
    show(f"profile mamba-130m decoding step after {r['prompt_tokens']} (no subgroups)", r.get("decode_profile"))
for r in (q or {}).get("rows", []):
    show(f"profile qwen {r['method']} keep {r['keep']:.2f} prefill", r.get("profile"))
    show(f"profile qwen {r['method']} keep {r['keep']:.2f} decoding step", r.get("decode_profile"))
EOF
exit $status
