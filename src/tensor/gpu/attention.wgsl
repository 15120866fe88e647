// Scaled dot-product attention, tiled: one workgroup of 64 invocations takes BQ query rows that
// share a key/value head (rows of one head, or, with grouped-query attention, of the heads of
// one group: decoding's single rows share their keys too) and walks a chunk of keys in tiles of
// BK keys. Each tile of keys and values is read from memory once, coalesced, into workgroup
// memory, and serves all BQ rows; an online softmax (running max m and sum l, rescaled once
// per tile) means the scores are never stored beyond the tile. S invocations share a query
// row, each holding W4 vec4s of its columns of the query and of the accumulator (S = 1, 2, 4
// for head sizes up to 32, 64, 128); their partial dot products meet in workgroup memory.
//
// No function-scope arrays: `attention.rs` writes the column code out per head size (the
// QV/ACC lines below), so the query and the accumulator are named vec4 registers (arrays
// indexed in loops are placed in slow local memory by some drivers: measured on an H200, a
// kernel with them ran 100× below the card).
//
// q, k, v and the output are read and written through (batch, head, row) strides, so the
// fused QKV projection `[B, N, 3·H·d]` is used in place and the output lands as `[B, N, H·d]`
// with heads merged. Query head h reads key/value head h / group.
//
// Keys are split into chunks of `chunk` keys (workgroups × chunks fill a wide GPU; a chunk
// also bounds one invocation's loop iterations, which Mesa's llvmpipe stops at 65535). With
// one chunk the workgroup writes the normalised output; with several, each row's partial state
// (unnormalised accumulator, m, l) goes to `part` and `attention_combine.wgsl` merges them.
// A pass covers the (batch, key/value head) pairs bg0 .. bg0 + nbg, so `part` stays small.
const D: u32 = HEAD_DIMu;
const S: u32 = SLICESu;
const W4: u32 = VEC4Su;
const BK: u32 = KEYSu;
// A slice's stride in workgroup memory (vec4s): one vec4 of padding between slices when S > 1.
const WS: u32 = W4 + select(0u, 1u, S > 1u);
const DP: u32 = S * WS;
const BQ: u32 = 64u / S;

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>; // [rows of this pass, chunks, d + 2]
@group(0) @binding(5) var<uniform> p: Params;
// [B, Nk]: when p.has_bias, ln(size) is added to the logits of each key (ToMe's proportional
// attention: size = the patches a merged token holds); a one-value placeholder otherwise.
@group(0) @binding(6) var<storage, read> key_size: array<f32>;

var<workgroup> ks: array<vec4<f32>, BK * DP>;
var<workgroup> vs: array<vec4<f32>, BK * DP>;
// The S partial dot products of each (key, row): [BK, S, BQ].
var<workgroup> sc: array<f32, BK * 64u>;

fn base(l: Layout, b: u32, h: u32) -> u32 { return l.off + b * l.bs + h * l.hs; }

// Column `col` of a head (the value at `at`), 0 past the head.
fn ld_q(at: u32, col: u32) -> f32 {
    if (col < D) { return q[at]; }
    return 0.0;
}
fn ld_k(at: u32, col: u32) -> f32 {
    if (col < D) { return k[at]; }
    return 0.0;
}
fn ld_v(at: u32, col: u32) -> f32 {
    if (col < D) { return v[at]; }
    return 0.0;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let gq = p.group * p.nq;
    let nblk = (gq + BQ - 1u) / BQ;
    let wg = wid.x + wid.y * nwg.x;
    if (wg >= p.nbg * nblk * p.chunks) { return; }
    let ci = wg % p.chunks;
    let blk = (wg / p.chunks) % nblk;
    let bg = p.bg0 + wg / (p.chunks * nblk);
    let groups = p.heads / p.group;
    let b = bg / groups;
    let g = bg % groups;
    let s = li % S;
    let r = li / S;
    // This invocation's row: head g·group + gr / nq, query gr % nq (rows past gq compute a
    // copy of the last one and write nothing).
    let gr = blk * BQ + r;
    let live = gr < gq;
    let grc = min(gr, gq - 1u);
    let h = g * p.group + grc / p.nq;
    let i = grc % p.nq;
    var last = p.nk;
    var last_blk = p.nk;
    if (p.causal != 0u) {
        last = min(p.nk, i + (p.nk - p.nq) + 1u);
        // The last key any row of the block sees.
        let r0 = blk * BQ;
        let r1 = min(r0 + BQ, gq) - 1u;
        var imax = p.nq - 1u;
        if (r0 / p.nq == r1 / p.nq) { imax = r1 % p.nq; }
        last_blk = min(p.nk, imax + (p.nk - p.nq) + 1u);
    }
    let j0 = ci * p.chunk;
    let j1 = min(last_blk, j0 + p.chunk);
    let mine = min(j1, last);
    let kb = base(p.k, b, g);
    let vb = base(p.v, b, g);
    let col0 = s * W4 * 4u;
    let qi = base(p.q, b, h) + i * p.q.rs;
QV_DECL
    var m = -3.4e38;
    var l = 0.0;
    let own = s * WS;
    for (var t0 = j0; t0 < j1; t0 += BK) {
        // The tile: BK keys × S slices × W4 vec4s, a vec4 of one key's columns per step.
        for (var e = li; e < BK * S * W4; e += 64u) {
            let jj = e / (S * W4);
            let c4 = e % (S * W4);
            let j = t0 + jj;
            var kx = vec4<f32>(0.0);
            var vx = vec4<f32>(0.0);
            if (j < j1) {
                let c = c4 * 4u;
                let kr = kb + j * p.k.rs + c;
                let vr = vb + j * p.v.rs + c;
                kx = vec4<f32>(ld_k(kr, c), ld_k(kr + 1u, c + 1u), ld_k(kr + 2u, c + 2u), ld_k(kr + 3u, c + 3u));
                vx = vec4<f32>(ld_v(vr, c), ld_v(vr + 1u, c + 1u), ld_v(vr + 2u, c + 2u), ld_v(vr + 3u, c + 3u));
            }
            let at = jj * DP + (c4 / W4) * WS + c4 % W4;
            ks[at] = kx;
            vs[at] = vx;
        }
        workgroupBarrier();
        for (var jj = 0u; jj < BK; jj++) {
            let at = jj * DP + own;
            var sdot = 0.0;
DOT
            sc[(jj * S + s) * BQ + r] = sdot;
        }
        workgroupBarrier();
        // The tile's scores of this row (partials summed), their max, then the accumulation.
        var mt = m;
        for (var jj = 0u; jj < BK; jj++) {
            if (t0 + jj < mine) { mt = max(mt, score(jj, r, b, t0 + jj)); }
        }
        let corr = exp(m - mt);
        l *= corr;
SCALE
        for (var jj = 0u; jj < BK; jj++) {
            if (t0 + jj < mine) {
                let e = exp(score(jj, r, b, t0 + jj) - mt);
                l += e;
                let at = jj * DP + own;
                let ev = vec4<f32>(e);
ACCUMULATE
            }
        }
        m = mt;
        workgroupBarrier();
    }
    if (!live) { return; }
    if (p.chunks == 1u) {
        let oi = base(p.o, b, h) + i * p.o.rs + col0;
        let inv = 1.0 / l;
STORE_OUT
        return;
    }
    let row = (b * p.heads + h) * p.nq + i;
    let pb = ((row - p.row0) * p.chunks + ci) * (D + 2u);
    let pi = pb + col0;
    let inv = 1.0;
STORE_PART
    if (s == 0u) {
        part[pb + D] = m;
        part[pb + D + 1u] = l;
    }
}

// Row r's full score for key jj of the tile (global key j of batch item b): the S partial dot
// products summed, scaled, with the key's bias.
fn score(jj: u32, r: u32, b: u32, j: u32) -> f32 {
    var x = 0.0;
    for (var u = 0u; u < S; u++) { x += sc[(jj * S + u) * BQ + r]; }
    x *= p.scale;
    if (p.has_bias != 0u) { x += log(key_size[b * p.nk + j]); }
    return x;
}
