// Strided copy of up to 6 dims: dst[doff + Σ i_d·ds_d] = src[soff + Σ i_d·ss_d] for every
// index i of `shape`. Permute, narrow, cat and patchify are all this with other strides.

struct Params {
    n: u32, soff: u32, doff: u32, rank: u32,
    shape: array<vec4<u32>, 2>,
    ss: array<vec4<u32>, 2>,
    ds: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

fn at(v: array<vec4<u32>, 2>, i: u32) -> u32 { return v[i / 4u][i % 4u]; }

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if (i >= p.n) { return; }
    var rest = i;
    var s = p.soff;
    var d = p.doff;
    for (var k = 0u; k < p.rank; k++) {
        let dim = p.rank - 1u - k;
        let size = at(p.shape, dim);
        let idx = rest % size;
        rest = rest / size;
        s += idx * at(p.ss, dim);
        d += idx * at(p.ds, dim);
    }
    dst[d] = src[s];
}
