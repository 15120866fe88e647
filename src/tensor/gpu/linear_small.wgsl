// y[M, N] = x[M, K] · w[N, K]ᵀ (+ b[N]) for a few rows (decoding: M ≤ 8) and K a multiple of
// 4: the tiled kernel would compute 64 rows for each one needed. One workgroup per output
// column: its 64 invocations split K (reading the weight row as coalesced vec4s), each keeps
// one partial sum per row, and a tree in workgroup memory adds them up. The epilogue
// (epilogue.wgsl) is added by `linear_shaders.rs`. I8W: int8 weights (per-row scales, then
// int8 quads sign-extended with shifts; the row's scale multiplies the sum once). SG: the 64
// partial sums of a row are added by subgroupAdd, then the subgroups' sums (64 / subgroup size
// of them) through workgroup memory: one barrier instead of the tree's six.

struct Params { m: u32, n: u32, k: u32, has_bias: u32, xbs: u32, wbs: u32, ybs: u32, kc: u32, act: u32, has_res: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
//#if I8W
@group(0) @binding(1) var<storage, read> w: array<u32>; // [N] scales (f32 bits), then [N, K / 4] int8 quads
//#else
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
//#endif
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
@group(0) @binding(5) var<storage, read> res: array<f32>;

const MR: u32 = 8u; // rows at most (linear.rs checks)
const LANES: u32 = 64u;
var<workgroup> red: array<f32, 512>; // [MR rows][LANES]

@compute @workgroup_size(64, 1, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
//#if SG
    @builtin(subgroup_invocation_id) sgi: u32,
    @builtin(subgroup_size) sgs: u32,
//#endif
) {
    let col = wg.x + wg.y * nwg.x; // uniform over the workgroup
    if (col >= p.n) { return; }
    let l = lid.x;
    let k4 = p.k / 4u;
    // Loops over MR have a fixed trip count, so `acc` stays in registers.
    var acc: array<f32, MR>;
    for (var m = 0u; m < MR; m++) { acc[m] = 0.0; }
    for (var k = l; k < k4; k += LANES) {
//#if I8W
        let qi = bitcast<i32>(w[p.n + col * k4 + k]);
        let wv = vec4<f32>(vec4<i32>(qi << 24u, qi << 16u, qi << 8u, qi) >> vec4<u32>(24u));
//#else
        let wv = w[col * k4 + k];
//#endif
        for (var m = 0u; m < MR; m++) {
            if (m < p.m) { acc[m] += dot(x[m * k4 + k], wv); }
        }
    }
//#if SG
    // Subgroups are consecutive invocations (as every Vulkan, Metal and D3D driver lays out a
    // one-dimensional workgroup); p.m is uniform, so every subgroup op runs in uniform control.
    for (var m = 0u; m < MR; m++) {
        if (m < p.m) {
            let s = subgroupAdd(acc[m]);
            if (sgi == 0u) { red[m * LANES + l / sgs] = s; }
        }
    }
    workgroupBarrier();
    var sum = 0.0;
    if (l < p.m) {
        for (var j = 0u; j < LANES / sgs; j++) { sum += red[l * LANES + j]; }
    }
//#else
    for (var m = 0u; m < MR; m++) {
        if (m < p.m) { red[m * LANES + l] = acc[m]; }
    }
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if (l < s) {
            for (var m = 0u; m < MR; m++) {
                if (m < p.m) { red[m * LANES + l] += red[m * LANES + l + s]; }
            }
        }
        workgroupBarrier();
    }
    let sum = red[min(l, MR - 1u) * LANES];
//#endif
//#if I8W
    if (l < p.m) { y[l * p.n + col] = finish(sum * bitcast<f32>(w[col]), l * p.n + col, col); }
//#else
    if (l < p.m) { y[l * p.n + col] = finish(sum, l * p.n + col, col); }
//#endif
}
