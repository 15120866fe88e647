#!/usr/bin/env python3
"""The engines a user would otherwise pick, side by side with effarch, in one run on this
machine: the ViT-B/16 vision tower + projection (HF `CLIPVisionModelWithProjection` layout,
random weights: latency does not depend on the values), f32, at the same thread count.

  - PyTorch (HF transformers), unpruned and pruned inside block 1 exactly where effarch
    prunes: the block's attention runs on every token (q, k, v each computed once), its keys'
    L2 norms rank the patch tokens (CLS kept), and the block's MLP and every later block run
    on the kept tokens only — the same work as `effarch bench clip`;
  - ONNX Runtime (pip `onnxruntime`) on an ONNX export of the same torch model;
  - `effarch bench clip --device cpu` (the release CLI, built if missing), and, with
    `--candle`, candle-transformers' CLIP vision tower in the CLI's process
    (`effarch bench clip --peer candle`, a build with `--features peer-candle`).

Every engine gets the same thread count (RAYON_NUM_THREADS for effarch). Each engine's
settings are timed round-robin (every iteration runs every (batch, keep) once, so drift hits
all alike); the report gives ms/img (median) and ratios to ONNX Runtime.

    target/pyenv/bin/pip install torch transformers onnx onnxruntime   # once
    target/pyenv/bin/python scripts/bench_reference.py [--threads 2] [--rounds 3] [--candle] [--json out.json]

`--onnx PATH` also writes the ONNX export there (the browser benchmark reuses it).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from keep_rule import n_keep  # scripts/keep_rule.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed_round_robin(fns, iters):
    """Median ms of each callable, every iteration running each once in turn (after one warm-up
    call each), so slow drift (clock, other load) hits every setting alike."""
    for fn in fns.values():
        fn()
    ts = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in ts.items()}


def pruned_forward(model, x, keep, layer=1):
    """The vision tower pruned as effarch prunes: inside block `layer`, between its attention
    and its MLP. The block's attention runs on all tokens with q, k and v computed once; the L2
    norms of those keys (over all heads) rank the patch tokens, the top round(p·n) and CLS stay,
    and the block's MLP and the later blocks run on them only."""
    vm = model.vision_model
    h = vm.pre_layrnorm(vm.embeddings(x))
    for i, blk in enumerate(vm.encoder.layers):
        if i == layer and keep < 1.0:
            at = blk.self_attn
            b, t, d = h.shape
            hn = blk.layer_norm1(h)
            q, k, v = at.q_proj(hn), at.k_proj(hn), at.v_proj(hn)
            heads = lambda z: z.view(b, t, at.num_heads, at.head_dim).transpose(1, 2)
            o = torch.nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))
            h = h + at.out_proj(o.transpose(1, 2).reshape(b, t, d))
            score = k[:, 1:].norm(dim=-1)
            n = n_keep(keep, score.shape[1])
            idx = score.topk(n, dim=1).indices.sort(dim=1).values + 1
            idx = torch.cat([torch.zeros_like(idx[:, :1]), idx], dim=1)
            h = h.gather(1, idx.unsqueeze(-1).expand(-1, -1, d))
            h = h + blk.mlp(blk.layer_norm2(h))
            continue
        out = blk(h, None)
        h = out[0] if isinstance(out, tuple) else out
    pooled = vm.post_layernorm(h[:, 0])
    return model.visual_projection(pooled)


def bench_torch(model, batches, keeps, iters):
    with torch.inference_mode():
        xs = {b: torch.randn(b, 3, 224, 224) for b in batches}
        fns = {(b, keep): (lambda b=b, keep=keep: pruned_forward(model, xs[b], keep)) for b in batches for keep in keeps}
        ms = timed_round_robin(fns, iters)
    return {k: v / k[0] for k, v in ms.items()}


def export_onnx(model, path):
    x = torch.randn(1, 3, 224, 224)

    class Tower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).image_embeds

    kw = dict(input_names=["pixel_values"], output_names=["image_embeds"], dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}, opset_version=17)
    try:
        torch.onnx.export(Tower(model).eval(), (x,), path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(Tower(model).eval(), (x,), path, **kw)


def bench_ort(path, batches, threads, iters):
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    xs = {b: np.random.randn(b, 3, 224, 224).astype(np.float32) for b in batches}
    ms = timed_round_robin({b: (lambda b=b: sess.run(None, {"pixel_values": xs[b]})) for b in batches}, iters)
    return {b: v / b for b, v in ms.items()}, ort.__version__


def cos(a, b):
    import numpy as np
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def prepare_reduced(model, onnx_path, threads):
    """The reduced-precision engines a user would otherwise pick, batch 1, unpruned: ONNX
    Runtime `quantize_dynamic` (QInt8 weights, per tensor as by default, and per channel as
    effarch's int8), PyTorch bf16 (autocast, and bf16 weights) and PyTorch `quantize_dynamic`
    (int8 linears). Returns each one's callable and its cos to the same model in f32 (timed
    round-robin in one loop by `timed_round_robin`)."""
    import copy
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        ref = model(pixel_values=x).image_embeds.numpy()
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    fns, outs = {}, {}
    for name, per_channel in [("ONNX Runtime int8 (quantize_dynamic)", False), ("ONNX Runtime int8 per channel", True)]:
        qp = onnx_path.replace(".onnx", f"_int8{'_pc' if per_channel else ''}.onnx")
        quantize_dynamic(onnx_path, qp, weight_type=QuantType.QInt8, per_channel=per_channel)
        sess = ort.InferenceSession(qp, so, providers=["CPUExecutionProvider"])
        fns[name] = lambda sess=sess: sess.run(None, {"pixel_values": x.numpy()})[0]
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    qdyn = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)

    def autocast():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(pixel_values=x).image_embeds.float().numpy()

    def bf16_weights():
        with torch.inference_mode():
            return bf16(pixel_values=x.to(torch.bfloat16)).image_embeds.float().numpy()

    def qdynamic():
        with torch.inference_mode():
            return qdyn(pixel_values=x).image_embeds.numpy()

    fns[f"PyTorch {torch.__version__} bf16 autocast"] = autocast
    fns[f"PyTorch {torch.__version__} bf16 weights"] = bf16_weights
    fns[f"PyTorch {torch.__version__} quantize_dynamic int8"] = qdynamic
    for k, f in fns.items():
        outs[k] = cos(f(), ref)
    return fns, outs


def bench_effarch(exe, batches, keeps, threads, iters, peer, precisions="f32"):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [exe, "bench", "clip", "--device", "cpu", "--json", "--iters", str(iters), "--batches", ",".join(map(str, batches)), "--keeps", ",".join(map(str, keeps)), "--precision", precisions]
    if peer:
        cmd += ["--peer", "candle"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def effarch_rows(eff):
    """The rows of `effarch bench clip --json` (an object with `rows`, or, from older CLIs, the
    list itself)."""
    return eff["rows"] if isinstance(eff, dict) else eff


def merge_rounds(rounds):
    """Each engine's figure as its median over the rounds (the effarch rows keep the first
    round's other fields: ratios to its own unpruned run, cos, FLOP bound, recomputed where
    they are times)."""
    med = statistics.median
    ort = {b: med([r[0][b] for r in rounds]) for b in rounds[0][0]}
    tor = {k: med([r[1][k] for r in rounds]) for k in rounds[0][1]}
    eff = json.loads(json.dumps(rounds[0][2]))
    rows = effarch_rows(eff)
    all_rows = [effarch_rows(r[2]) for r in rounds]
    for i, row in enumerate(rows):
        row["ms_median"] = med([rr[i]["ms_median"] for rr in all_rows])
    for row in rows:
        base = [x for x in rows if x["batch"] == row["batch"] and x.get("precision") == row.get("precision") and x["keep"] >= 1]
        if base:
            row["ratio"] = row["ms_median"] / base[0]["ms_median"]
    if isinstance(eff, dict):
        for i, p in enumerate(eff.get("peer", [])):
            p["ms_median"] = med([r[2]["peer"][i]["ms_median"] for r in rounds])
    red = None
    if rounds[0][3]:
        red = {k: (med([r[3][k][0] for r in rounds]), rounds[0][3][k][1]) for k in rounds[0][3]}
    return ort, tor, eff, red


def round_ratios(rounds):
    """Each round's headline ratios (batch 1, unpruned): ours against the peer each precision
    is compared with, and the pruned ratios of our int8 and f32."""
    out = {}
    for ort, _tor, eff, red in rounds:
        rows = effarch_rows(eff)
        ms = lambda p, keep=1.0: next((r["ms_median"] for r in rows if r["batch"] == 1 and r.get("precision", "f32") == p and abs(r["keep"] - keep) < 1e-4), None)
        add = lambda k, v: out.setdefault(k, []).append(v)
        if 1 in ort and ms("f32"):
            add("effarch f32 / ONNX Runtime f32", ms("f32") / ort[1])
        if red:
            ort8 = next((v[0] for k, v in red.items() if k.startswith("ONNX Runtime int8 (")), None)
            bf = next((v[0] for k, v in red.items() if k.endswith("bf16 weights")), None)
            if ort8 and ms("int8"):
                add("effarch int8 / ONNX Runtime int8", ms("int8") / ort8)
            if bf and ms("bf16"):
                add("effarch bf16 / PyTorch bf16 weights", ms("bf16") / bf)
        for p in ("f32", "int8", "bf16"):
            for keep in (0.7, 0.5):
                if ms(p, keep) and ms(p):
                    add(f"effarch {p} keep {keep} / unpruned", ms(p, keep) / ms(p))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--keeps", default="1,0.7,0.5")
    ap.add_argument("--effarch", default=os.path.join(ROOT, "target", "release", "effarch"))
    ap.add_argument("--candle", action="store_true", help="also time candle-transformers (builds the CLI with --features peer-candle)")
    ap.add_argument("--onnx", help="where to write the ONNX export (default: a temporary file)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--export-only", action="store_true", help="only write the ONNX export (--onnx) and stop")
    ap.add_argument("--rounds", type=int, default=1, help="time every engine this many times, in turn (medians over rounds; per-round ratios printed)")
    ap.add_argument("--no-reduced", action="store_true", help="skip the reduced-precision table (int8, bf16)")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error(f"--rounds {a.rounds}: at least one round is needed")
    batches = [int(b) for b in a.batches.split(",")]
    keeps = [float(k) for k in a.keeps.split(",")]
    if 1.0 not in keeps:
        keeps = [1.0] + keeps
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(patch_size=16, projection_dim=512)).eval()
    if a.export_only:
        if not a.onnx:
            sys.exit("--export-only needs --onnx PATH")
        with torch.inference_mode():
            export_onnx(model, a.onnx)
        return

    if a.candle or not os.path.exists(a.effarch):
        feats = ["--features", "peer-candle"] if a.candle else []
        print("building the effarch CLI (release) ...", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--quiet", *feats], cwd=ROOT, check=True)

    onnx_path = a.onnx or os.path.join(tempfile.mkdtemp(), "vit_b16.onnx")
    print(f"exporting ONNX to {onnx_path} ...", file=sys.stderr)
    with torch.inference_mode():
        export_onnx(model, onnx_path)

    reduced = None if a.no_reduced else prepare_reduced(model, onnx_path, a.threads)
    rounds = []
    for r in range(a.rounds):
        # Every engine once per round, in the same order: with --rounds > 1 a slow spell of
        # this machine (a noisy neighbour, the clock) shows as one round's outlier, not as a
        # false ratio; each engine's figure is then its median over the rounds.
        print(f"round {r + 1}/{a.rounds}: timing ONNX Runtime, PyTorch, effarch; {a.threads} threads each ...", file=sys.stderr)
        ort_rows, ort_version = bench_ort(onnx_path, batches, a.threads, a.iters)
        torch_rows = bench_torch(model, batches, keeps, a.iters)
        eff = bench_effarch(a.effarch, batches, keeps, a.threads, a.iters, a.candle, "f32" if a.no_reduced else "f32,int8,bf16")
        red = None
        if reduced:
            print(f"round {r + 1}/{a.rounds}: timing reduced precision (batch 1, unpruned, round-robin) ...", file=sys.stderr)
            ms = timed_round_robin(reduced[0], a.iters)
            red = {k: (ms[k], reduced[1][k]) for k in reduced[0]}
        rounds.append((ort_rows, torch_rows, eff, red))
    ort_rows, torch_rows, eff, red = merge_rounds(rounds)
    eff_list = effarch_rows(eff)
    eff_rows = {(r["batch"], round(r["keep"], 4)): r["ms_median"] for r in eff_list if r.get("precision", "f32") == "f32"}
    candle_rows = {p["batch"]: p["ms_median"] for p in eff.get("peer", [])} if isinstance(eff, dict) else {}

    result = {"threads": a.threads, "onnxruntime": ort_version, "torch": torch.__version__, "rows": []}
    print(f"\nViT-B/16 vision tower + projection, f32, {a.threads} threads, median of {a.iters}; ratio = engine / ONNX Runtime {ort_version}")
    print(f"{'engine':<28} {'batch':>5} {'ms/img':>9} {'vs ORT':>7} " + " ".join(f"{'keep ' + str(k):>9}" for k in keeps if k < 1))
    for b in batches:
        engines = [("ONNX Runtime " + ort_version, {1.0: ort_rows[b]}), ("PyTorch " + torch.__version__, {k: torch_rows[(b, k)] for k in keeps}), ("effarch", {k: eff_rows[(b, k)] for k in keeps})]
        if b in candle_rows:
            engines.append(("candle-transformers", {1.0: candle_rows[b]}))
        for name, t in engines:
            base = t[1.0]
            pr = " ".join(f"{t[k] / base:>9.3f}" if k in t else f"{'-':>9}" for k in keeps if k < 1)
            print(f"{name:<28} {b:>5} {base:>9.1f} {base / ort_rows[b]:>7.3f} {pr}")
            result["rows"].append({"engine": name, "batch": b, "ms_per_img": t, "vs_onnxruntime": base / ort_rows[b]})
    if red:
        f32_ms = eff_rows[(1, 1.0)]
        table = [("effarch f32", f32_ms, 1.0)]
        table += [(f"effarch {r['precision']}", r["ms_median"], r["cos_to_f32"]) for r in eff_list if r.get("precision") not in (None, "f32") and r["batch"] == 1 and r["keep"] >= 1]
        table += [("ONNX Runtime f32", ort_rows[1], 1.0), (f"PyTorch {torch.__version__} f32", torch_rows[(1, 1.0)], 1.0)]
        table += [(k, ms, c) for k, (ms, c) in red.items()]
        print(f"\nViT-B/16 vision tower, batch 1, {a.threads} threads: every precision (cos: to the same engine's f32)")
        print(f"{'engine':<46} {'ms/img':>8} {'x effarch f32':>14} {'cos to f32':>11}")
        for name, ms, c in table:
            print(f"{name:<46} {ms:>8.1f} {ms / f32_ms:>14.3f} {c:>11.6f}")
            result["rows"].append({"engine": name, "batch": 1, "ms_per_img": {1.0: ms}, "vs_effarch_f32": ms / f32_ms, "cos_to_f32": c})
        pr = [r for r in eff_list if r.get("precision") == "int8" and r["batch"] == 1]
        for r in pr:
            print(f"effarch int8 keep {r['keep']:.2f}: {r['ms_median']:.1f} ms/img, ratio {r['ratio']:.3f} (FLOP bound {r['flop_ratio']:.3f})")
    if len(rounds) > 1:
        result["rounds"] = round_ratios(rounds)
        print(f"\nper round (engine / peer, batch 1, unpruned), {len(rounds)} rounds:")
        for name, vals in result["rounds"].items():
            print(f"{name:<40} " + " ".join(f"{v:.3f}" for v in vals) + f"   median {statistics.median(vals):.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
