// y[M, N] = x[M, K] · w[N, K]ᵀ (+ b[N]): HF `[out, in]` weights read as they are.
// Batched over workgroup z with per-batch strides (0 for a shared weight).
// Tiled: a 16×16 workgroup computes a 64×64 output tile, each invocation a 4×4 block, with
// 64×16 tiles of x and w staged in workgroup memory. Edges (M, N, K not multiples of the
// tile) are zero-padded on load and masked on store. `linear.rs` derives variants that load
// vec4s (K a multiple of 4) and/or read packed f16 weights, by replacing the bindings and
// the LOAD block.

struct Params { m: u32, n: u32, k: u32, has_bias: u32, xbs: u32, wbs: u32, ybs: u32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const TILE: u32 = 64u;
const TK: u32 = 16u;
var<workgroup> xs: array<f32, 1024>; // [64 rows][16 k]
var<workgroup> ws: array<f32, 1024>; // [64 cols][16 k]

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let xo = wg.z * p.xbs;
    let wo = wg.z * p.wbs;
    let yo = wg.z * p.ybs;
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    let t = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }

    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // LOAD: each invocation stages 4 consecutive k of one row of x and of w.
        for (var i = 0u; i < 4u; i++) {
            let e = t * 4u + i;
            let r = e / TK;
            let c = k0 + e % TK;
            let gr = row0 + r;
            let gn = col0 + r;
            var xv = 0.0;
            if (gr < p.m && c < p.k) { xv = x[xo + gr * p.k + c]; }
            xs[e] = xv;
            var wv = 0.0;
            if (gn < p.n && c < p.k) { wv = w[wo + gn * p.k + c]; }
            ws[e] = wv;
        }
        // END LOAD
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var bb: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = xs[(lid.y * 4u + i) * TK + kk];
                bb[i] = ws[(lid.x * 4u + i) * TK + kk];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], bb[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + lid.x * 4u + j;
            if (r < p.m && c < p.n) {
                var v = acc[i * 4u + j];
                if (p.has_bias != 0u) { v += b[c]; }
                y[yo + r * p.n + c] = v;
            }
        }
    }
}
