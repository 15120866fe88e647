// Element-wise ops over a flat buffer. `b` broadcasts from the right: b[i % len(b)], which
// is numpy broadcasting whenever b's shape is a suffix of a's (checked by the launcher).
// op: 0 add, 1 mul, 2 scale by s, 3 quick_gelu x·σ(1.702x), 4 silu x·σ(x),
// 5 softplus ln(1 + eˣ) (x above 20), 6 tanh-approximated gelu, 7 exact gelu x·Φ(x)

struct Params { n: u32, bn: u32, op: u32, s: f32 }

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    let x = a[i];
    switch p.op {
        case 0u: { y[i] = x + b[i % p.bn]; }
        case 1u: { y[i] = x * b[i % p.bn]; }
        case 2u: { y[i] = x * p.s; }
        case 3u: { y[i] = x / (1.0 + exp(-1.702 * x)); }
        case 4u: { y[i] = x / (1.0 + exp(-x)); }
        case 5u: { y[i] = select(log(1.0 + exp(x)), x, x > 20.0); }
        case 7u: { y[i] = 0.5 * x * (1.0 + erf(x * 0.70710678118)); }
        default: { y[i] = 0.5 * x * (1.0 + tanh(clamp(0.7978845608 * (x + 0.044715 * x * x * x), -15.0, 15.0))); }
    }
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    return sign(v) * (1.0 - poly * exp(-a * a));
}
