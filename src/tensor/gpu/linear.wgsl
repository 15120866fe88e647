// y[M, N] = x[M, K] · w[N, K]ᵀ (+ b[N]): HF `[out, in]` weights read as they are.
// Batched over workgroup z with per-batch strides (0 for a shared weight).
// Tiled: a 16×16 workgroup computes a 64×64 output tile, each invocation a 4×4 block held
// in vec4 registers, with 64×16 tiles of x and w staged k-major in workgroup memory. Edges
// (M, N, K not multiples of the tile) are zero-padded on load and masked on store.
// Variants (`linear_shaders.rs` picks the flags; `//#if` blocks, resolved by `gpu/wgsl.rs`):
// VEC4 loads vec4s (K a multiple of 4); F16W reads packed f16 weights, I8W int8 weights
// (per-row scales, then int8 quads sign-extended with shifts); NORM folds a LayerNorm in;
// HALF (with VEC4 and F16W) stages the tiles in f16 and sums each K tile in f16.
//
// Split-K (`kc` > 0, when the output has too few tiles to fill the GPU): workgroup z walks
// k in [z·kc, z·kc + kc) only and writes its partial product to its own slab of y (ybs = M·N,
// no epilogue); `linear_reduce.wgsl` adds the slabs and applies it. The epilogue
// (epilogue.wgsl: bias, activation, residual) is prepended by `linear.rs`.
//
// NORM (LayerNorm folded into the product): each invocation sums the row it stages (less the
// row's shift, the mean of its first 16 values, so the sums do not cancel) and the epilogue
// normalises with the row's mean and variance.
//#if HALF
enable f16;
//#endif

struct Params { m: u32, n: u32, k: u32, has_bias: u32, xbs: u32, wbs: u32, ybs: u32, kc: u32, act: u32, has_res: u32, eps: u32, norm: u32 }

//#if VEC4
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
//#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
//#endif
//#if I8W
@group(0) @binding(1) var<storage, read> w: array<u32>; // [N] scales (f32 bits), then [N, K / 4] int8 quads
//#elif F16W && VEC4
@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>;
//#elif F16W
@group(0) @binding(1) var<storage, read> w: array<u32>;
//#elif VEC4
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
//#else
@group(0) @binding(1) var<storage, read> w: array<f32>;
//#endif
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> res: array<f32>; // the residual (p.has_res), like y

const TILE: u32 = 64u;
const TK: u32 = 16u;
// The staged tiles, k-major: xs[kk · 17 + q] holds rows 4q … 4q+3 of the x tile at k0 + kk
// (ws likewise for w's rows, the output columns). The inner loop reads one vec4 of each per
// k, 16 neighbouring invocations 16 consecutive vec4s (no bank conflicts); the stride of 17
// (one vec4 of padding) spreads the stores over the banks.
const TS: u32 = 17u;
//#if HALF
var<workgroup> xs: array<vec4<f16>, 272>;
var<workgroup> ws: array<vec4<f16>, 272>;
//#else
var<workgroup> xs: array<vec4<f32>, 272>;
var<workgroup> ws: array<vec4<f32>, 272>;
//#endif

//#if NORM
@group(0) @binding(6) var<storage, read> cs: array<f32>; // the folded weight's row sums [N]
@group(0) @binding(7) var<storage, read_write> stats: array<vec2<f32>>; // split K: [splits, M] row sums
var<workgroup> rs: array<vec2<f32>, 256>;
// nm = (mean − shift, 1 / std) of the output's row: Σ (x − shift) w′ − (mean − shift) Σ w′ = Σ (x − mean) w′.
fn pre(v: f32, c: u32, nm: vec2<f32>) -> f32 {
    if (p.norm == 0u) { return v; }
    return (v - nm.x * cs[c]) * nm.y;
}
// Tile row i's (mean − shift, 1 / std) from its four stagers' sums.
fn row_norm(i: u32) -> vec2<f32> {
    let s = rs[4u * i] + rs[4u * i + 1u] + rs[4u * i + 2u] + rs[4u * i + 3u];
    let d = s.x / f32(p.k);
    return vec2<f32>(d, inverseSqrt(max(s.y / f32(p.k) - d * d, 0.0) + bitcast<f32>(p.eps)));
}
//#else
fn pre(v: f32, c: u32, nm: vec2<f32>) -> f32 { return v; }
//#endif

fn store_row(yo: u32, r: u32, c0: u32, v: vec4<f32>, nm: vec2<f32>) {
    if (r >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
        if (c < p.n) { y[yo + r * p.n + c] = finish(pre(v[j], c, nm), r * p.n + c, c); }
    }
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let xo = wg.z * p.xbs;
    let wo = wg.z * p.wbs;
    let yo = wg.z * p.ybs;
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let t = lid.y * 16u + lid.x;
    // Each invocation computes rows 4·lid.y … +3 and columns 4·lid.x … +3 of the tile, in four
    // vec4 registers (no function-scope arrays: those can land in local memory).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    var kb = 0u;
    var ke = p.k;
    if (p.kc != 0u) {
        kb = wg.z * p.kc;
        ke = min(p.k, kb + p.kc);
    }
//#if NORM
    // The row this invocation stages, its shift, and its sums Σ (x − shift), Σ (x − shift)².
    let nr = row0 + t / 4u;
    var sh = 0.0;
    if (nr < p.m) {
        for (var i = 0u; i < 4u; i++) { sh += dot(x[(xo + nr * p.k) / 4u + i], vec4<f32>(1.0)); }
        sh /= 16.0;
    }
    var st = vec2<f32>(0.0);
//#endif
    for (var k0 = kb; k0 < ke; k0 += TK) {
//#if VEC4
        // Each invocation stages one vec4 (4 consecutive k) of one row of x and of w.
        {
            let r = t / 4u;
            let kq = (t % 4u) * 4u;
            let c = k0 + kq;
            var xv = vec4<f32>(0.0);
//#if NORM
            if (row0 + r < p.m && c < ke) { xv = x[(xo + (row0 + r) * p.k + c) / 4u] - vec4<f32>(sh); st += vec2<f32>(dot(xv, vec4<f32>(1.0)), dot(xv, xv)); }
//#else
            if (row0 + r < p.m && c < ke) { xv = x[(xo + (row0 + r) * p.k + c) / 4u]; }
//#endif
            var wv = vec4<f32>(0.0);
//#if I8W
            if (col0 + r < p.n && c < ke) { let qi = bitcast<i32>(w[p.n + (wo + (col0 + r) * p.k + c) / 4u]); wv = vec4<f32>(vec4<i32>(qi << 24u, qi << 16u, qi << 8u, qi) >> vec4<u32>(24u)) * bitcast<f32>(w[col0 + r]); }
//#elif F16W
            if (col0 + r < p.n && c < ke) { let q = w[(wo + (col0 + r) * p.k + c) / 4u]; wv = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)); }
//#else
            if (col0 + r < p.n && c < ke) { wv = w[(wo + (col0 + r) * p.k + c) / 4u]; }
//#endif
//#if HALF
            for (var i = 0u; i < 4u; i++) { xs[(kq + i) * TS + r / 4u][r % 4u] = f16(xv[i]); ws[(kq + i) * TS + r / 4u][r % 4u] = f16(wv[i]); }
//#else
            for (var i = 0u; i < 4u; i++) { xs[(kq + i) * TS + r / 4u][r % 4u] = xv[i]; ws[(kq + i) * TS + r / 4u][r % 4u] = wv[i]; }
//#endif
        }
//#else
        // Each invocation stages 4 consecutive k of one row of x and of w.
        let r = t / 4u;
        let kq = (t % 4u) * 4u;
        let gr = row0 + r;
        let gn = col0 + r;
        for (var i = 0u; i < 4u; i++) {
            let c = k0 + kq + i;
            var xv = 0.0;
            if (gr < p.m && c < ke) { xv = x[xo + gr * p.k + c]; }
            var wv = 0.0;
//#if F16W
            if (gn < p.n && c < ke) { wv = unpack2x16float(w[(wo + gn * p.k + c) / 2u])[c % 2u]; }
//#else
            if (gn < p.n && c < ke) { wv = w[wo + gn * p.k + c]; }
//#endif
            xs[(kq + i) * TS + r / 4u][r % 4u] = xv;
            ws[(kq + i) * TS + r / 4u][r % 4u] = wv;
        }
//#endif
        workgroupBarrier();
//#if HALF
        // Each K tile's products summed in f16, the tile's sums added into the f32 accumulators.
        var q0 = vec4<f16>(0.0h);
        var q1 = q0;
        var q2 = q0;
        var q3 = q0;
        for (var kk = 0u; kk < TK; kk++) {
            let a = xs[kk * TS + lid.y];
            let bv = ws[kk * TS + lid.x];
            q0 = fma(vec4<f16>(a.x), bv, q0);
            q1 = fma(vec4<f16>(a.y), bv, q1);
            q2 = fma(vec4<f16>(a.z), bv, q2);
            q3 = fma(vec4<f16>(a.w), bv, q3);
        }
        acc0 += vec4<f32>(q0);
        acc1 += vec4<f32>(q1);
        acc2 += vec4<f32>(q2);
        acc3 += vec4<f32>(q3);
//#else
        for (var kk = 0u; kk < TK; kk++) {
            let a = xs[kk * TS + lid.y];
            let bv = ws[kk * TS + lid.x];
            acc0 = fma(vec4<f32>(a.x), bv, acc0);
            acc1 = fma(vec4<f32>(a.y), bv, acc1);
            acc2 = fma(vec4<f32>(a.z), bv, acc2);
            acc3 = fma(vec4<f32>(a.w), bv, acc3);
        }
//#endif
        workgroupBarrier();
    }

//#if NORM
    rs[t] = st;
    workgroupBarrier();
    if (p.kc != 0u && wg.x == 0u && t % 4u == 0u && nr < p.m) {
        stats[wg.z * p.m + nr] = rs[t] + rs[t + 1u] + rs[t + 2u] + rs[t + 3u];
    }
    let nm0 = row_norm(lid.y * 4u);
    let nm1 = row_norm(lid.y * 4u + 1u);
    let nm2 = row_norm(lid.y * 4u + 2u);
    let nm3 = row_norm(lid.y * 4u + 3u);
//#else
    let nm0 = vec2<f32>(0.0, 1.0);
    let nm1 = nm0;
    let nm2 = nm0;
    let nm3 = nm0;
//#endif
    let r0 = row0 + lid.y * 4u;
    let c0 = col0 + lid.x * 4u;
    store_row(yo, r0, c0, acc0, nm0);
    store_row(yo, r0 + 1u, c0, acc1, nm1);
    store_row(yo, r0 + 2u, c0, acc2, nm2);
    store_row(yo, r0 + 3u, c0, acc3, nm3);
}
