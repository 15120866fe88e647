// The second pass of a split-K `linear` (linear.wgsl): y = finish(Σ_z part[z]) over M·N
// outputs, the epilogue (bias, activation, residual; epilogue.wgsl) added by `linear_shaders.rs`.
// NORM (the LayerNorm folded in): also adds the slabs' row sums and normalises.

struct Params { mn: u32, n: u32, splits: u32, has_bias: u32, act: u32, has_res: u32, eps: u32, k: u32 }

@group(0) @binding(0) var<storage, read> part: array<f32>; // [splits, M, N]
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> res: array<f32>;
//#if NORM
@group(0) @binding(5) var<storage, read> cs: array<f32>;
@group(0) @binding(6) var<storage, read> stats: array<vec2<f32>>;
//#endif

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.mn) { return; }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) { s += part[z * p.mn + t]; }
//#if NORM
    let row = t / p.n;
    let c = t % p.n;
    var st = vec2<f32>(0.0);
    for (var z = 0u; z < p.splits; z++) { st += stats[z * (p.mn / p.n) + row]; }
    let d = st.x / f32(p.k);
    let inv = inverseSqrt(max(st.y / f32(p.k) - d * d, 0.0) + bitcast<f32>(p.eps));
    y[t] = finish((s - d * cs[c]) * inv, t, c);
//#else
    y[t] = finish(s, t, t % p.n);
//#endif
}
