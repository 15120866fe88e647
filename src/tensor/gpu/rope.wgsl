// Rotary position embedding, "rotate half" form: x [N, H, d], cos/sin [N, d/2]:
//   y[i] = x[i]·cos[i mod d/2] + r(x)[i]·sin[i mod d/2],  r(x)[i] = −x[i + d/2] (i < d/2), x[i − d/2] (else)

struct Params { n: u32, h: u32, d: u32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cs: array<f32>;
@group(0) @binding(2) var<storage, read> sn: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n * p.h * p.d) { return; }
    let half = p.d / 2u;
    let j = i % p.d;
    let row = i / p.d;          // n * H + h
    let tok = row / p.h;
    let f = j % half;
    let c = cs[tok * half + f];
    let s = sn[tok * half + f];
    var r: f32;
    if (j < half) { r = -x[i + half]; } else { r = x[i - half]; }
    y[i] = x[i] * c + r * s;
}
