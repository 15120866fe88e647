// Element-wise ops over a flat buffer. `b` broadcasts from the right: b[i % len(b)], which
// is numpy broadcasting whenever b's shape is a suffix of a's (checked by the launcher).
// op: 0 add, 1 mul, 2 scale by s, 3… an activation of activation.wgsl (prepended).

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
        default: { y[i] = activate(x, p.op); }
    }
}
