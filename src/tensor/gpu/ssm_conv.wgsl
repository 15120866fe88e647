// Causal depthwise conv1d over a window that already holds the previous K-1 inputs followed
// by this call's L inputs: y[b, t, c] = bias[c] + sum_q w[c, q] * win[b, t + q, c].

struct Params { batch: u32, len: u32, c: u32, k: u32 }

@group(0) @binding(0) var<storage, read> win: array<f32>;       // [B, L + K - 1, C]
@group(0) @binding(1) var<storage, read> w: array<f32>;         // [C, K]
@group(0) @binding(2) var<storage, read> bias: array<f32>;      // [C]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // [B, L, C]
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.batch * p.len * p.c) { return; }
    let ch = i % p.c;
    let t = (i / p.c) % p.len;
    let b = i / (p.c * p.len);
    let rows = p.len + p.k - 1u;
    var acc = bias[ch];
    for (var q = 0u; q < p.k; q++) {
        acc += w[ch * p.k + q] * win[(b * rows + t + q) * p.c + ch];
    }
    y[i] = acc;
}
