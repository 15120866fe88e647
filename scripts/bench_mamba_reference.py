#!/usr/bin/env python3
"""Mamba at mamba-130m's widths, side by side with the engine people run small language models
with on a CPU (llama.cpp) and with transformers, in one run on this machine, at the same thread
count: prompt processing (tokens/s at each `--prompt-lens`) and decoding (tokens/s over
`--decode` tokens).

  - the model: MambaForCausalLM at mamba-130m's widths (50280 × 768, 24 layers, d_state 16,
    tied head), every weight from a seed at a trained model's scale (the generation goldens'
    model, tests/fixtures/make_generation_fixtures.py), saved in the hub layout under
    target/bench/mamba-130m/ (speed does not depend on the values, accuracy does: this is the
    model whose generation the goldens check against transformers);
  - llama.cpp: built from the source PyPI's llama-cpp-python sdist vendors (cmake + ninja from
    PyPI, native CPU flags, no network beyond the package registry), the checkpoint converted by
    its own convert_hf_to_gguf.py to GGUF f32, f16 and q8_0, timed by its `llama-bench`;
  - transformers (PyTorch, f32): the prompt as one forward call, then greedy decoding with its
    cache (`generate`, no stop token);
  - effarch: `effarch bench mamba-lm --model target/bench/mamba-130m` (the release CLI, built if
    missing) at f32 and int8.

Every engine runs with `--threads` threads (RAYON_NUM_THREADS for effarch, `-t` for
llama.cpp, torch.set_num_threads). Engines run one after another, each taking the median of
`--iters` rounds after a warm-up; ratios are to llama.cpp f32.

    target/pyenv/bin/pip install torch transformers safetensors numpy cmake ninja   # once
    target/pyenv/bin/python scripts/bench_mamba_reference.py [--threads 2] [--json out.json]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "target", "bench")
LLAMA_CPP_PYTHON = "0.3.36"  # the sdist whose vendored llama.cpp we build (pinned: same code every run)
SEED = 11


def sh(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def make_checkpoint(out):
    """The seeded mamba-130m-width model in the hub layout (config.json + model.safetensors)."""
    if os.path.exists(os.path.join(out, "model.safetensors")):
        return
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    import make_generation_fixtures as MG
    model, _, _ = MG.mamba_130m_model(SEED)
    model.save_pretrained(out, safe_serialization=True)
    print(f"wrote {out}", file=sys.stderr)


def llama_source():
    """llama.cpp's source as llama-cpp-python's sdist vendors it (downloaded once from PyPI)."""
    src = os.path.join(BENCH, f"llama_cpp_python-{LLAMA_CPP_PYTHON}", "vendor", "llama.cpp")
    if os.path.exists(os.path.join(src, "CMakeLists.txt")):
        return src
    # The simple index (PEP 691 JSON), which package mirrors and proxies serve where the
    # per-release JSON API (pypi.org/pypi/<name>/<version>/json) may not be.
    req = urllib.request.Request("https://pypi.org/simple/llama-cpp-python/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = json.load(urllib.request.urlopen(req))["files"]
    url = next(f["url"] for f in files if f["filename"] == f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz")
    tgz = os.path.join(BENCH, os.path.basename(url))
    print(f"downloading {url}", file=sys.stderr)
    urllib.request.urlretrieve(url, tgz)
    with tarfile.open(tgz) as t:
        t.extractall(BENCH, filter="data")
    return src


def build_llama(src, amx=True):
    """llama-bench built with the CPU's own flags; with `amx=False` the same x86 extensions named
    one by one and AMX left out (its q8_0 AMX kernel faults on `tilezero` in some VMs)."""
    build = os.path.join(src, "build" if amx else "build-noamx")
    exe = os.path.join(build, "bin", "llama-bench")
    if os.path.exists(exe):
        return exe
    bindir = os.path.dirname(sys.executable)
    cmake = shutil.which("cmake", path=bindir) or shutil.which("cmake")
    if cmake is None:
        sh([sys.executable, "-m", "pip", "install", "-q", "cmake", "ninja"])
        cmake = shutil.which("cmake", path=bindir)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    if amx:
        isa = ["-DGGML_NATIVE=ON"]
    else:
        flags = set(next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), []))
        named = {"avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "bmi2": "BMI2", "avx_vnni": "AVX_VNNI", "avx512f": "AVX512",
                 "avx512_vbmi": "AVX512_VBMI", "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16"}
        isa = ["-DGGML_NATIVE=OFF"] + [f"-DGGML_{g}={'ON' if f in flags else 'OFF'}" for f, g in named.items()]
        isa += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    sh([cmake, "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", *isa, "-DLLAMA_CURL=OFF",
        "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_OPENSSL=OFF"], env=env)
    sh([cmake, "--build", build, "--target", "llama-bench", f"-j{os.cpu_count()}"], env=env)
    return exe


def convert(src, model_dir, outtype):
    out = os.path.join(BENCH, f"mamba-130m-{outtype}.gguf")
    if not os.path.exists(out):
        env = dict(os.environ, PYTHONPATH=os.path.join(src, "gguf-py"))
        sh([sys.executable, os.path.join(src, "convert_hf_to_gguf.py"), model_dir, "--outtype", outtype, "--outfile", out], env=env,
           stdout=subprocess.DEVNULL)
    return out


def bench_llama(exe, gguf, threads, prompt_lens, decode, iters):
    """llama-bench's tokens/s: prompt processing at each length (pp) and generation (tg)."""
    cmd = [exe, "-m", gguf, "-t", str(threads), "-p", ",".join(map(str, prompt_lens)), "-n", str(decode), "-r", str(iters), "-o", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = json.loads(out)
    pp = {r["n_prompt"]: r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0}
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0)
    return {"prefill_tokens_per_s": pp, "decode_tokens_per_s": tg}


def bench_transformers(model_dir, threads, prompt_lens, decode, iters):
    import torch
    from transformers import MambaForCausalLM
    torch.set_num_threads(threads)
    model = MambaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    pp = {}
    with torch.no_grad():
        for n in prompt_lens:
            ids = torch.arange(n).remainder(50000).unsqueeze(0) + 100
            model(ids)  # warm-up
            ts = []
            for _ in range(iters):
                t = time.perf_counter()
                model(ids, use_cache=False, logits_to_keep=1)
                ts.append(time.perf_counter() - t)
            pp[n] = n / statistics.median(ts)
        ids = torch.tensor([[464, 3158, 8516, 30013]])
        kw = dict(do_sample=False, max_new_tokens=decode, min_new_tokens=decode, eos_token_id=None, pad_token_id=0)
        model.generate(ids, **dict(kw, max_new_tokens=4, min_new_tokens=4))
        ts = []
        for _ in range(iters):
            # Decode time = generate(decode + 1) − generate(1): the prompt's forward cancels.
            t = time.perf_counter()
            model.generate(ids, **dict(kw, max_new_tokens=1, min_new_tokens=1))
            t1 = time.perf_counter() - t
            t = time.perf_counter()
            model.generate(ids, **dict(kw, max_new_tokens=decode + 1, min_new_tokens=decode + 1))
            ts.append(time.perf_counter() - t - t1)
    return {"prefill_tokens_per_s": pp, "decode_tokens_per_s": decode / statistics.median(ts)}


def bench_effarch(exe, model_dir, threads, prompt_lens, decode, iters, precision):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [exe, "bench", "mamba-lm", "--model", model_dir, "--prompt-lens", ",".join(map(str, prompt_lens)), "--decode", str(decode),
           "--iters", str(iters), "--precision", precision, "--device", "cpu", "--json"]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout)
    rows = [r for r in out["rows"] if r["mrss_tau"] == 0]
    return {"prefill_tokens_per_s": {r["prompt_tokens"]: r["prefill_tokens_per_s"] for r in rows}, "decode_tokens_per_s": rows[0]["decode_tokens_per_s"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--prompt-lens", default="512,2048")
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--effarch", default=os.path.join(ROOT, "target", "release", "effarch"))
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-transformers", action="store_true")
    a = ap.parse_args()
    prompt_lens = [int(v) for v in a.prompt_lens.split(",")]
    os.makedirs(BENCH, exist_ok=True)
    model_dir = os.path.join(BENCH, "mamba-130m")
    make_checkpoint(model_dir)
    src = llama_source()
    llama = build_llama(src)
    if not os.path.exists(a.effarch):
        sh(["cargo", "build", "--release", "--bin", "effarch"], cwd=ROOT)
    engines = []
    for outtype in ["f32", "f16", "q8_0"]:
        engines.append((f"llama.cpp {outtype}", lambda o=outtype: bench_llama(llama, convert(src, model_dir, o), a.threads, prompt_lens, a.decode, a.iters)))
    for p in ["f32", "int8"]:
        engines.append((f"effarch {p}", lambda p=p: bench_effarch(a.effarch, model_dir, a.threads, prompt_lens, a.decode, a.iters, p)))
    if not a.no_transformers:
        import transformers
        engines.append((f"transformers {transformers.__version__} f32", lambda: bench_transformers(model_dir, a.threads, prompt_lens, a.decode, a.iters)))
    results, failed = {}, []
    for name, fn in engines:
        print(f"timing {name} ...", file=sys.stderr)
        try:
            results[name] = fn()
        except subprocess.CalledProcessError as e:
            if name == "llama.cpp f32":
                raise
            if name == "llama.cpp q8_0" and "amx_int8" in open("/proc/cpuinfo").read():
                # Its AMX q8_0 kernel faults (`tilezero`, invalid opcode) in some VMs: time
                # q8_0 again on a build without AMX (its AVX-512 VNNI kernels).
                print(f"{name} failed (exit {e.returncode}); building llama.cpp without AMX", file=sys.stderr)
                try:
                    exe = build_llama(src, amx=False)
                    results[name + " (no AMX)"] = bench_llama(exe, convert(src, model_dir, "q8_0"), a.threads, prompt_lens, a.decode, a.iters)
                    failed.append(f"{name} with AMX: exit {e.returncode} (timed without AMX instead)")
                    continue
                except subprocess.CalledProcessError as e2:
                    e = e2
            # A reference row that cannot run here is reported, not fatal.
            print(f"{name} failed (exit {e.returncode}); left out", file=sys.stderr)
            failed.append(f"{name}: exit {e.returncode}")
    base = results["llama.cpp f32"]
    for f in failed:
        print(f"not timed: {f}")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\nmamba-130m widths (seed {SEED}), {a.threads} threads, {cpu}; tokens/s (× llama.cpp f32)")
    head = [f"prefill {n}" for n in prompt_lens] + [f"decode {a.decode}"]
    print(f"{'engine':<34}" + "".join(f"{h:>22}" for h in head))
    rows = []
    for name, r in results.items():
        cells = [(r["prefill_tokens_per_s"][n], r["prefill_tokens_per_s"][n] / base["prefill_tokens_per_s"][n]) for n in prompt_lens]
        cells.append((r["decode_tokens_per_s"], r["decode_tokens_per_s"] / base["decode_tokens_per_s"]))
        print(f"{name:<34}" + "".join(f"{v:>13.1f} ({x:.2f}×)" for v, x in cells))
        rows.append({"engine": name, **r, "vs_llama_cpp_f32": {"prefill": {n: c[1] for n, c in zip(prompt_lens, cells)}, "decode": cells[-1][1]}})
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": cpu, "threads": a.threads, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
