// Token selection without a host round-trip.
// op 0: flags[b, i] = 1 if score i is among the k largest of its row (ties: lower index
//       first; NaN ranks last), by counting the scores that beat it.
// op 1: out[b, r] = i for the r-th flagged i of row b, in ascending order (kept indices).
// op 2: gather rows: y[b, r, :] = x[b, idx[b, r], :]  (x: [B, n, d], idx: [B, k])
// op 3: embedding: y[t, :] = table[clamp(ids[t]), :]  (table: [n, d])

struct Params { b: u32, n: u32, k: u32, d: u32, op: u32, total: u32, p1: u32, p2: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;
@group(0) @binding(4) var<uniform> p: Params;

fn key(v: f32) -> f32 {
    // NaN compares false both ways; map it below every number.
    if (v == v) { return v; }
    return -3.4e38;
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 256u;
    if (t >= p.total) { return; }
    if (p.op == 0u) {
        let b = t / p.n;
        let i = t % p.n;
        let si = key(x[b * p.n + i]);
        var rank = 0u;
        for (var j = 0u; j < p.n; j++) {
            let sj = key(x[b * p.n + j]);
            if (sj > si || (sj == si && j < i)) { rank++; }
        }
        out[t] = select(0u, 1u, rank < p.k);
    } else if (p.op == 1u) {
        let b = t / p.n;
        let i = t % p.n;
        if (idx[t] == 1u) {
            var pos = 0u;
            for (var j = 0u; j < i; j++) { pos += idx[b * p.n + j]; }
            if (pos < p.k) { out[b * p.k + pos] = i; }
        }
    } else if (p.op == 2u) {
        let c = t % p.d;
        let r = (t / p.d) % p.k;
        let b = t / (p.d * p.k);
        let src = min(idx[b * p.k + r], p.n - 1u);
        y[t] = x[(b * p.n + src) * p.d + c];
    } else {
        let c = t % p.d;
        let r = t / p.d;
        let src = min(idx[r], p.n - 1u);
        y[t] = x[src * p.d + c];
    }
}
