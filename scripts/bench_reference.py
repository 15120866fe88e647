#!/usr/bin/env python3
"""Reference latency of the same ViT-B/16 vision tower in PyTorch (HF transformers), random
weights, on this machine: run beside `effarch bench clip` to compare like with like.

    pip install torch transformers && python3 scripts/bench_reference.py [--threads 2]
"""
import argparse
import statistics
import time

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--batches", default="1,8")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(patch_size=16, projection_dim=512)).eval()
    print(f"PyTorch {torch.__version__}, {a.threads} threads, ViT-B/16 vision tower + projection, f32")
    with torch.inference_mode():
        for b in [int(x) for x in a.batches.split(",")]:
            x = torch.randn(b, 3, 224, 224)
            model(pixel_values=x)
            ts = []
            for _ in range(a.iters):
                t = time.perf_counter()
                model(pixel_values=x)
                ts.append((time.perf_counter() - t) * 1e3 / b)
            print(f"batch {b}: {statistics.median(ts):.1f} ms/img (median of {a.iters})")


if __name__ == "__main__":
    main()
