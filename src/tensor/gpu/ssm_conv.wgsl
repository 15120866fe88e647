// Causal depthwise conv1d over the previous K-1 inputs (`state`) followed by this call's L
// inputs (`x`): y[b, t, c] = act(bias[c] + sum_q w[c, q] * win[b, t + q, c]) where win is the
// state then x, and the next state (the window's last K-1 rows) in the same dispatch: one
// dispatch per step where a cat, the conv, a narrow and the activation were four.
// Invocations 0 .. B·L·C write y; the next B·(K-1)·C write the next state.

struct Params { batch: u32, len: u32, c: u32, k: u32, act: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> state: array<f32>;     // [B, K - 1, C]
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [B, L, C]
@group(0) @binding(2) var<storage, read> w: array<f32>;         // [C, K]
@group(0) @binding(3) var<storage, read> bias: array<f32>;      // [C]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;   // [B, L, C]
@group(0) @binding(5) var<storage, read_write> next: array<f32>; // [B, K - 1, C]
@group(0) @binding(6) var<uniform> p: Params;

// Row r of sequence b's window [K - 1 + L, C], channel ch.
fn window(b: u32, r: u32, ch: u32) -> f32 {
    let held = p.k - 1u;
    if (r < held) { return state[(b * held + r) * p.c + ch]; }
    return x[(b * p.len + r - held) * p.c + ch];
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let outs = p.batch * p.len * p.c;
    let held = p.k - 1u;
    if (i >= outs) {
        let j = i - outs;
        if (j >= p.batch * held * p.c) { return; }
        let ch = j % p.c;
        let r = (j / p.c) % held;
        let b = j / (p.c * held);
        next[j] = window(b, p.len + r, ch);
        return;
    }
    let ch = i % p.c;
    let t = (i / p.c) % p.len;
    let b = i / (p.c * p.len);
    var acc = bias[ch];
    for (var q = 0u; q < p.k; q++) {
        acc += w[ch * p.k + q] * window(b, t + q, ch);
    }
    y[i] = activate(acc, p.act);
}
