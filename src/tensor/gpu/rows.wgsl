// Row-wise ops over [rows, n]: one 64-invocation workgroup per row, reductions in
// workgroup memory. op: 0 layer_norm(w, b, eps), 1 softmax, 2 L2 norm, 3 mean (one value
// per row for 2 and 3), 4 rms_norm(w, eps), 5 layer_norm without w and b. SG: each reduction
// is a subgroupAdd/subgroupMax, then the subgroups' results through workgroup memory (one
// barrier instead of the tree's six).

struct Params { rows: u32, n: u32, op: u32, eps: f32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

//#if SG
var<private> sg_lane: u32;
var<private> sg_size: u32;

// The workgroup's sum (or max) of v: subgroups are consecutive invocations (as every Vulkan,
// Metal and D3D driver lays out a one-dimensional workgroup), called in uniform control flow.
fn combine(s: f32, t: u32, is_max: bool) -> f32 {
    if (sg_lane == 0u) { red[t / sg_size] = s; }
    workgroupBarrier();
    var r = red[0];
    for (var j = 1u; j < WG / sg_size; j++) { r = select(r + red[j], max(r, red[j]), is_max); }
    workgroupBarrier();
    return r;
}

fn reduce_sum(v: f32, t: u32) -> f32 { return combine(subgroupAdd(v), t, false); }

fn reduce_max(v: f32, t: u32) -> f32 { return combine(subgroupMax(v), t, true); }
//#else
fn reduce_sum(v: f32, t: u32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) { red[t] += red[t + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_max(v: f32, t: u32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (t < s) { red[t] = max(red[t], red[t + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
//#endif

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
//#if SG
    sg_lane = sgi;
    sg_size = sgs;
//#endif
    let row = wg.x + wg.y * nwg.x;
    if (row >= p.rows) { return; } // uniform per workgroup: barriers stay in uniform control flow
    let t = lid.x;
    let base = row * p.n;
    if (p.op == 0u || p.op == 5u) {
        var s = 0.0;
        for (var i = t; i < p.n; i += WG) { s += x[base + i]; }
        let mean = reduce_sum(s, t) / f32(p.n);
        var v = 0.0;
        for (var i = t; i < p.n; i += WG) { let d = x[base + i] - mean; v += d * d; }
        let inv = inverseSqrt(reduce_sum(v, t) / f32(p.n) + p.eps);
        if (p.op == 5u) {
            for (var i = t; i < p.n; i += WG) { y[base + i] = (x[base + i] - mean) * inv; }
        } else {
            for (var i = t; i < p.n; i += WG) { y[base + i] = (x[base + i] - mean) * inv * w[i] + b[i]; }
        }
    } else if (p.op == 1u) {
        var m = -3.4e38;
        for (var i = t; i < p.n; i += WG) { m = max(m, x[base + i]); }
        let mx = reduce_max(m, t);
        var s = 0.0;
        for (var i = t; i < p.n; i += WG) { s += exp(x[base + i] - mx); }
        let inv = 1.0 / reduce_sum(s, t);
        for (var i = t; i < p.n; i += WG) { y[base + i] = exp(x[base + i] - mx) * inv; }
    } else if (p.op == 2u) {
        var s = 0.0;
        for (var i = t; i < p.n; i += WG) { let v = x[base + i]; s += v * v; }
        let tot = reduce_sum(s, t);
        if (t == 0u) { y[row] = sqrt(tot); }
    } else if (p.op == 4u) {
        var v = 0.0;
        for (var i = t; i < p.n; i += WG) { let d = x[base + i]; v += d * d; }
        let inv = inverseSqrt(reduce_sum(v, t) / f32(p.n) + p.eps);
        for (var i = t; i < p.n; i += WG) { y[base + i] = x[base + i] * inv * w[i]; }
    } else {
        var s = 0.0;
        for (var i = t; i < p.n; i += WG) { s += x[base + i]; }
        let tot = reduce_sum(s, t);
        if (t == 0u) { y[row] = tot / f32(p.n); }
    }
}
