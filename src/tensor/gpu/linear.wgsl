// y[M, N] = x[M, K] · w[N, K]ᵀ (+ b[N]): HF `[out, in]` weights read as they are.
// Batched over workgroup z with per-batch strides (0 for a shared weight).
// Tiled: a 16×16 workgroup computes a 64×64 output tile, each invocation a 4×4 block held
// in vec4 registers, with 64×16 tiles of x and w staged k-major in workgroup memory. Edges
// (M, N, K not multiples of the tile) are zero-padded on load and masked on store.
// `linear.rs` derives variants that load vec4s (K a multiple of 4) and/or read packed f16
// weights, by replacing the bindings and the LOAD block.
//
// Split-K (`kc` > 0, when the output has too few tiles to fill the GPU): workgroup z walks
// k in [z·kc, z·kc + kc) only and writes its partial product to its own slab of y (ybs = M·N,
// no epilogue); `linear_reduce.wgsl` adds the slabs and applies it. The epilogue
// (epilogue.wgsl: bias, activation, residual) is prepended by `linear.rs`.
//
// The NORM variants (`linear.rs`: LayerNorm folded into the product) fill in the NORM blocks:
// they sum each row's mean and variance while staging x and normalise in `pre`.

struct Params { m: u32, n: u32, k: u32, has_bias: u32, xbs: u32, wbs: u32, ybs: u32, kc: u32, act: u32, has_res: u32, eps: u32, norm: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
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
var<workgroup> xs: array<vec4<f32>, 272>;
var<workgroup> ws: array<vec4<f32>, 272>;

// NORM FNS
fn pre(v: f32, c: u32, nm: vec2<f32>) -> f32 { return v; }
// END NORM FNS

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
    // NORM PRE
    for (var k0 = kb; k0 < ke; k0 += TK) {
        // LOAD: each invocation stages 4 consecutive k of one row of x and of w.
        let r = t / 4u;
        let kq = (t % 4u) * 4u;
        let gr = row0 + r;
        let gn = col0 + r;
        for (var i = 0u; i < 4u; i++) {
            let c = k0 + kq + i;
            var xv = 0.0;
            if (gr < p.m && c < ke) { xv = x[xo + gr * p.k + c]; }
            var wv = 0.0;
            if (gn < p.n && c < ke) { wv = w[wo + gn * p.k + c]; }
            xs[(kq + i) * TS + r / 4u][r % 4u] = xv;
            ws[(kq + i) * TS + r / 4u][r % 4u] = wv;
        }
        // END LOAD
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = xs[kk * TS + lid.y];
            let bv = ws[kk * TS + lid.x];
            acc0 = fma(vec4<f32>(a.x), bv, acc0);
            acc1 = fma(vec4<f32>(a.y), bv, acc1);
            acc2 = fma(vec4<f32>(a.z), bv, acc2);
            acc3 = fma(vec4<f32>(a.w), bv, acc3);
        }
        workgroupBarrier();
    }

    // NORM POST
    let nm0 = vec2<f32>(0.0, 1.0);
    let nm1 = nm0;
    let nm2 = nm0;
    let nm3 = nm0;
    // END NORM POST
    let r0 = row0 + lid.y * 4u;
    let c0 = col0 + lid.x * 4u;
    store_row(yo, r0, c0, acc0, nm0);
    store_row(yo, r0 + 1u, c0, acc1, nm1);
    store_row(yo, r0 + 2u, c0, acc2, nm2);
    store_row(yo, r0 + 3u, c0, acc3, nm3);
}
