// Scaled dot-product attention, tiled: one workgroup of 64 invocations takes BQ query rows that
// share a key/value head (rows of one head, or, with grouped-query attention, of the heads of
// one group: decoding's single rows share their keys too) and walks a chunk of keys in tiles of
// BK keys. Each tile of keys and values is read from memory once, coalesced, into workgroup
// memory, and serves all BQ rows; an online softmax (running max m and sum l) means the scores
// are never stored. S invocations share a query row, each holding W of its columns of the
// query and of the accumulator in registers (S = 1, 2, 4 for head sizes up to 32, 64, 128, so
// no invocation needs more than 32 + 32 + BK registers for them); their partial dot products
// meet in workgroup memory.
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
//
// D, S, W, BK are constants of each pipeline (`attention.rs` writes them), so every loop over
// columns or keys of a tile has a fixed trip count and its arrays live in registers.
const D: u32 = HEAD_DIMu;
const S: u32 = SLICESu;
const W: u32 = WIDTHu;
const BK: u32 = KEYSu;
// A slice's stride in workgroup memory: one float of padding between slices, so the S
// invocations of a row read S different banks.
const WS: u32 = W + select(0u, 1u, S > 1u);
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

var<workgroup> ks: array<f32, BK * DP>;
var<workgroup> vs: array<f32, BK * DP>;
// The S partial dot products of each (key, row): [BK, S, BQ] (one float when S = 1).
var<workgroup> sc: array<f32, SCORESu>;

fn base(l: Layout, b: u32, h: u32) -> u32 { return l.off + b * l.bs + h * l.hs; }

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
    let col0 = s * W;
    let qi = base(p.q, b, h) + i * p.q.rs + col0;
    var qv: array<f32, W>;
    var acc: array<f32, W>;
    for (var c = 0u; c < W; c++) {
        qv[c] = 0.0;
        if (col0 + c < D) { qv[c] = q[qi + c]; }
        acc[c] = 0.0;
    }
    var m = -3.4e38;
    var l = 0.0;
    var sv: array<f32, BK>;
    for (var t0 = j0; t0 < j1; t0 += BK) {
        for (var e = li; e < BK * S * W; e += 64u) {
            let jj = e / (S * W);
            let col = e % (S * W);
            let j = t0 + jj;
            var kx = 0.0;
            var vx = 0.0;
            if (j < j1 && col < D) {
                kx = k[kb + j * p.k.rs + col];
                vx = v[vb + j * p.v.rs + col];
            }
            let at = jj * DP + (col / W) * WS + col % W;
            ks[at] = kx;
            vs[at] = vx;
        }
        workgroupBarrier();
        for (var jj = 0u; jj < BK; jj++) {
            var dot = 0.0;
            for (var c = 0u; c < W; c++) { dot = fma(qv[c], ks[jj * DP + s * WS + c], dot); }
            sv[jj] = dot;
        }
        if (S > 1u) {
            for (var jj = 0u; jj < BK; jj++) { sc[(jj * S + s) * BQ + r] = sv[jj]; }
            workgroupBarrier();
            for (var jj = 0u; jj < BK; jj++) {
                var dot = 0.0;
                for (var u = 0u; u < S; u++) { dot += sc[(jj * S + u) * BQ + r]; }
                sv[jj] = dot;
            }
        }
        var mt = m;
        for (var jj = 0u; jj < BK; jj++) {
            let j = t0 + jj;
            var x = sv[jj] * p.scale;
            if (p.has_bias != 0u && j < mine) { x += log(key_size[b * p.nk + j]); }
            sv[jj] = x;
            if (j < mine) { mt = max(mt, x); }
        }
        let corr = exp(m - mt);
        l *= corr;
        for (var c = 0u; c < W; c++) { acc[c] *= corr; }
        for (var jj = 0u; jj < BK; jj++) {
            var e = 0.0;
            if (t0 + jj < mine) { e = exp(sv[jj] - mt); }
            l += e;
            for (var c = 0u; c < W; c++) { acc[c] = fma(e, vs[jj * DP + s * WS + c], acc[c]); }
        }
        m = mt;
        workgroupBarrier();
    }
    if (!live) { return; }
    if (p.chunks == 1u) {
        let oi = base(p.o, b, h) + i * p.o.rs + col0;
        let inv = 1.0 / l;
        for (var c = 0u; c < W; c++) {
            if (col0 + c < D) { o[oi + c] = acc[c] * inv; }
        }
        return;
    }
    let row = (b * p.heads + h) * p.nq + i;
    let pi = ((row - p.row0) * p.chunks + ci) * (D + 2u);
    for (var c = 0u; c < W; c++) {
        if (col0 + c < D) { part[pi + col0 + c] = acc[c]; }
    }
    if (s == 0u) {
        part[pi + D] = m;
        part[pi + D + 1u] = l;
    }
}
