// Scaled dot-product attention, one invocation per (batch, head, query row), with an online
// softmax (running max and sum) so scores are never stored. q, k, v and the output are read
// and written through (batch, head, row) strides, so the fused QKV projection `[B, N, 3·H·d]`
// is used in place and the output lands as `[B, N, H·d]` with heads merged. Grouped-query
// attention: query head h reads key/value head h / group.

struct Layout { bs: u32, hs: u32, rs: u32, off: u32 }
struct Params {
    batch: u32, heads: u32, nq: u32, nk: u32,
    d: u32, causal: u32, scale: f32, group: u32,
    q: Layout, k: Layout, v: Layout, o: Layout,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

fn base(l: Layout, b: u32, h: u32) -> u32 { return l.off + b * l.bs + h * l.hs; }

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    if (t >= p.batch * p.heads * p.nq) { return; }
    let i = t % p.nq;
    let h = (t / p.nq) % p.heads;
    let b = t / (p.nq * p.heads);
    let qi = base(p.q, b, h) + i * p.q.rs;
    let kb = base(p.k, b, h / p.group);
    let vb = base(p.v, b, h / p.group);
    var last = p.nk;
    if (p.causal != 0u) { last = min(p.nk, i + (p.nk - p.nq) + 1u); }
    var acc: array<f32, 128>;
    for (var c = 0u; c < p.d; c++) { acc[c] = 0.0; }
    var m = -3.4e38;
    var l = 0.0;
    for (var j = 0u; j < last; j++) {
        let kj = kb + j * p.k.rs;
        var s = 0.0;
        for (var c = 0u; c < p.d; c++) { s = fma(q[qi + c], k[kj + c], s); }
        s *= p.scale;
        let mn = max(m, s);
        let corr = exp(m - mn);
        let e = exp(s - mn);
        l = l * corr + e;
        let vj = vb + j * p.v.rs;
        for (var c = 0u; c < p.d; c++) { acc[c] = acc[c] * corr + e * v[vj + c]; }
        m = mn;
    }
    let oi = base(p.o, b, h) + i * p.o.rs;
    let inv = 1.0 / l;
    for (var c = 0u; c < p.d; c++) { o[oi + c] = acc[c] * inv; }
}
