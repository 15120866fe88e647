// Scaled dot-product attention, one invocation per (batch, head, query row, key chunk), with
// an online softmax (running max and sum) so scores are never stored. q, k, v and the output
// are read and written through (batch, head, row) strides, so the fused QKV projection
// `[B, N, 3·H·d]` is used in place and the output lands as `[B, N, H·d]` with heads merged.
// Grouped-query attention: query head h reads key/value head h / group.
//
// Keys are split into chunks of `chunk` rows. With one chunk the invocation writes the
// normalised output; with several it writes its partial state (running max m, sum l and the
// unnormalised accumulator) to `part`, and `attention_combine.wgsl` merges the chunks. This
// bounds the loop iterations of one invocation: Mesa's llvmpipe (lavapipe) stops any shader
// invocation after 65535 loop iterations in all and silently returns what it has, and a long
// chunk is also the slowest invocation on real GPUs (split-K, as flash-decoding does). Query
// rows (batch × head × row, flattened) run in passes of `rows` from `row0`, so `part` stays small.
//
// The head size is a constant of each pipeline (`attention.rs` writes `D` per head size), so
// the loops over it have a fixed trip count and the query row and the accumulator can live in
// registers; the query row is read once, not once per key.
const D: u32 = HEAD_DIMu;

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>; // [rows of this pass, chunks, d + 2]
@group(0) @binding(5) var<uniform> p: Params;
// [B, Nk]: when p.has_bias, ln(size) is added to the logits of each key (ToMe's proportional
// attention: size = the patches a merged token holds); a one-value placeholder otherwise.
@group(0) @binding(6) var<storage, read> key_size: array<f32>;

fn base(l: Layout, b: u32, h: u32) -> u32 { return l.off + b * l.bs + h * l.hs; }

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    if (t >= p.rows * p.chunks) { return; }
    let ci = t % p.chunks;
    let row = p.row0 + t / p.chunks;
    let qr = query_row(row, p.nq, p.heads);
    let i = qr.x;
    let h = qr.y;
    let b = qr.z;
    let qi = base(p.q, b, h) + i * p.q.rs;
    let kb = base(p.k, b, h / p.group);
    let vb = base(p.v, b, h / p.group);
    var last = p.nk;
    if (p.causal != 0u) { last = min(p.nk, i + (p.nk - p.nq) + 1u); }
    let j0 = ci * p.chunk;
    let j1 = min(last, j0 + p.chunk);
    var qv: array<f32, D>;
    for (var c = 0u; c < D; c++) { qv[c] = q[qi + c]; }
    var acc: array<f32, D>;
    for (var c = 0u; c < D; c++) { acc[c] = 0.0; }
    var m = -3.4e38;
    var l = 0.0;
    for (var j = j0; j < j1; j++) {
        let kj = kb + j * p.k.rs;
        var s = 0.0;
        for (var c = 0u; c < D; c++) { s = fma(qv[c], k[kj + c], s); }
        s *= p.scale;
        if (p.has_bias != 0u) { s += log(key_size[b * p.nk + j]); }
        let mn = max(m, s);
        let corr = exp(m - mn);
        let e = exp(s - mn);
        l = l * corr + e;
        let vj = vb + j * p.v.rs;
        for (var c = 0u; c < D; c++) { acc[c] = acc[c] * corr + e * v[vj + c]; }
        m = mn;
    }
    if (p.chunks == 1u) {
        let oi = base(p.o, b, h) + i * p.o.rs;
        let inv = 1.0 / l;
        for (var c = 0u; c < D; c++) { o[oi + c] = acc[c] * inv; }
        return;
    }
    let pi = t * (D + 2u);
    for (var c = 0u; c < D; c++) { part[pi + c] = acc[c]; }
    part[pi + D] = m;
    part[pi + D + 1u] = l;
}
