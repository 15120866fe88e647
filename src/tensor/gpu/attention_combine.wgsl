// Merges the per-chunk partial states of `attention.wgsl` (running max m, sum l, unnormalised
// accumulator) into the output: one invocation per (query row of this pass, output column).

@group(0) @binding(0) var<storage, read> part: array<f32>; // [rows, chunks, d + 2]
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    if (t >= p.rows * p.d) { return; }
    let c = t % p.d;
    let row = p.row0 + t / p.d;
    let qr = query_row(row, p.nq, p.heads);
    let i = qr.x;
    let h = qr.y;
    let b = qr.z;
    let w = p.d + 2u;
    let first = (t / p.d) * p.chunks * w;
    var mx = -3.4e38;
    for (var ci = 0u; ci < p.chunks; ci++) { mx = max(mx, part[first + ci * w + p.d]); }
    var l = 0.0;
    var acc = 0.0;
    for (var ci = 0u; ci < p.chunks; ci++) {
        let pi = first + ci * w;
        let f = exp(part[pi + p.d] - mx);
        l += part[pi + p.d + 1u] * f;
        acc += part[pi + c] * f;
    }
    o[p.o.off + b * p.o.bs + h * p.o.hs + i * p.o.rs + c] = acc / l;
}
