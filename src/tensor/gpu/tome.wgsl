// Token Merging (ToMe) on the device: bipartite soft matching and the size-weighted merge, so a
// merging pass is recorded without reading anything back. Same order and tie-breaking as the
// host code (prune/tome.rs). Tokens at even positions form set A (na of them), odd ones set B.
// op 0 unit:  u[b, i, :] = mean over heads of token i's key, L2-normalised  (from the fused QKV)
// op 1 edges: for A token a: its most similar B token (first on ties) -> node_idx (outu[b, a])
//             and that similarity -> node_max (outf[b, a]); CLS (a = 0) never merges: lowest.
// op 2 rank:  outu[B·na + b·na + a] = A tokens with a larger similarity (ties: lower index)
// op 3 dest:  each token's index after merging: unmerged A tokens in order (CLS first), then
//             every B token; the r best-ranked A tokens go to their B token.  (iu = op 1+2's)
// op 4 merge: out[b, o, c] = Σ size_i · x[b, i, c] / Σ size_i over the tokens i with dest o
// op 5 sizes: outf[b, o] = Σ size_i over the tokens i with dest o
// Every loop is bounded well below llvmpipe's 65535 iterations (the caller checks t and d).

struct Params {
    batch: u32, t: u32, d: u32, heads: u32,
    width: u32, koff: u32, r: u32, n_unm: u32,
    na: u32, nb: u32, n_out: u32, c: u32,
    op: u32, total: u32, p0: u32, p1: u32,
}

@group(0) @binding(0) var<storage, read> xf: array<f32>;
@group(0) @binding(1) var<storage, read> iu: array<u32>;
@group(0) @binding(2) var<storage, read> sf: array<f32>;
@group(0) @binding(3) var<storage, read_write> outf: array<f32>;
@group(0) @binding(4) var<storage, read_write> outu: array<u32>;
@group(0) @binding(5) var<uniform> p: Params;

const LOWEST: f32 = -3.4e38;

fn key(v: f32) -> f32 {
    // NaN compares false both ways; rank it below every number.
    if (v == v) { return v; }
    return LOWEST;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = gid.x + gid.y * nwg.x * 64u;
    if (g >= p.total) { return; }
    if (p.op == 0u) {
        // g = b·t + i
        let row = g * p.width + p.koff;
        var ss = 0.0;
        for (var c = 0u; c < p.d; c++) {
            var m = 0.0;
            for (var h = 0u; h < p.heads; h++) { m += xf[row + h * p.d + c]; }
            m = m / f32(p.heads);
            outf[g * p.d + c] = m;
            ss += m * m;
        }
        let norm = sqrt(ss);
        for (var c = 0u; c < p.d; c++) { outf[g * p.d + c] = outf[g * p.d + c] / norm; }
    } else if (p.op == 1u) {
        // g = b·na + a; xf = the unit keys
        let b = g / p.na;
        let a = g % p.na;
        if (a == 0u) {
            outf[g] = LOWEST;
            outu[g] = 0u;
            return;
        }
        let ua = (b * p.t + 2u * a) * p.d;
        var best = LOWEST;
        var at = 0u;
        for (var j = 0u; j < p.nb; j++) {
            let ub = (b * p.t + 2u * j + 1u) * p.d;
            var s = 0.0;
            for (var c = 0u; c < p.d; c++) { s += xf[ua + c] * xf[ub + c]; }
            if (j == 0u || s > best) {
                best = s;
                at = j;
            }
        }
        outf[g] = best;
        outu[g] = at;
    } else if (p.op == 2u) {
        // g = b·na + a; sf = node_max
        let b = g / p.na;
        let a = g % p.na;
        let s = key(sf[g]);
        var rank = 0u;
        for (var j = 0u; j < p.na; j++) {
            let o = key(sf[b * p.na + j]);
            if (o > s || (o == s && j < a)) { rank++; }
        }
        outu[p.batch * p.na + g] = rank;
    } else if (p.op == 3u) {
        // g = b·t + i; iu = [node_idx | rank]
        let b = g / p.t;
        let i = g % p.t;
        if (i % 2u == 1u) {
            outu[g] = p.n_unm + i / 2u;
            return;
        }
        let a = i / 2u;
        let ranks = p.batch * p.na + b * p.na;
        if (iu[ranks + a] < p.r) {
            outu[g] = p.n_unm + iu[b * p.na + a];
            return;
        }
        var pos = 0u;
        for (var j = 0u; j < a; j++) {
            if (iu[ranks + j] >= p.r) { pos++; }
        }
        outu[g] = pos;
    } else if (p.op == 4u) {
        // g = (b·n_out + o)·c + ch; xf = x [B, t, c], iu = dest, sf = sizes
        let ch = g % p.c;
        let bo = g / p.c;
        let b = bo / p.n_out;
        let o = bo % p.n_out;
        var acc = 0.0;
        var size = 0.0;
        for (var i = 0u; i < p.t; i++) {
            if (iu[b * p.t + i] == o) {
                let s = sf[b * p.t + i];
                acc += s * xf[(b * p.t + i) * p.c + ch];
                size += s;
            }
        }
        outf[g] = acc / size;
    } else {
        // g = b·n_out + o
        let b = g / p.n_out;
        let o = g % p.n_out;
        var size = 0.0;
        for (var i = 0u; i < p.t; i++) {
            if (iu[b * p.t + i] == o) { size += sf[b * p.t + i]; }
        }
        outf[g] = size;
    }
}
