// The selective scan (τ = 0: every state update, no MRSS) parallel over state values and over
// chunks of time, where `ssm_scan.wgsl` walks one channel's whole sequence in one invocation.
//   h_t = exp(dt_t·A_k)·h_{t−1} + dt_t·x_t·B_{t,k};   y_t = Σ_k C_{t,k}·h_{t,k} + D·x_t
// The recurrence of each (sequence, channel, state k) is linear, so a chunk of time [t0, t1)
// maps a start state h to exp(A_k·Σ dt)·h + (the chunk's end state from h = 0):
//   phase 1 (chunks > 1): each chunk's end state from zero and its Σ dt → `carry`;
//   phase 2: each chunk's start state from the carries of the chunks before it, then its
//           steps again, writing y (and, in the last chunk, the final state).
// A workgroup of 64 holds 64 / NP channels × NP state values (NP = N rounded up to a power of
// two); y sums the NP invocations of a channel through workgroup memory, SUB steps at a time.
// `ssm.rs` runs it on wide devices (hardware GPUs) and picks the chunks.
// Seven storage buffers (WebGPU guarantees 8): the update counts (every step of every channel)
// come from the host.

struct Params { batch: u32, len: u32, c: u32, n: u32, stride: u32, b_off: u32, chunk: u32, chunks: u32, np: u32, phase: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;           // [B, L, C]
@group(0) @binding(1) var<storage, read> dt: array<f32>;          // [B, L, C]
@group(0) @binding(2) var<storage, read> proj: array<f32>;        // [B, L, stride]: B at b_off, C at b_off + N
@group(0) @binding(3) var<storage, read> ad: array<f32>;          // [C, N + 1]: A then D
@group(0) @binding(4) var<storage, read> h_in: array<f32>;        // [B, C, N]
@group(0) @binding(5) var<storage, read_write> h_out: array<f32>; // [B, C, N]
@group(0) @binding(6) var<storage, read_write> y: array<f32>;     // [B, L, C]
@group(0) @binding(7) var<storage, read_write> carry: array<f32>; // [B, chunks, C, N + 1]: end state from 0, then Σ dt
@group(0) @binding(8) var<uniform> p: Params;

const SUB: u32 = 32u;
var<workgroup> contrib: array<f32, 2048>; // [SUB, 64]: C_{t,k}·h_{t,k} of each invocation

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let per = 64u / p.np;
    let k = lid.x % p.np;
    let ch = wg.x * per + lid.x / p.np;
    let b = wg.z;
    let ci = wg.y;
    let live = ch < p.c && k < p.n;
    let i = b * p.c + ch;
    var a = 0.0;
    if (live) { a = ad[ch * (p.n + 1u) + k]; }
    let t_begin = ci * p.chunk;
    let t_end = min(p.len, t_begin + p.chunk);

    if (p.phase == 1u) {
        var h = 0.0;
        var sdt = 0.0;
        if (live) {
            for (var t = t_begin; t < t_end; t++) {
                let r = b * p.len + t;
                let xi = r * p.c + ch;
                let dv = dt[xi];
                sdt += dv;
                h = exp(dv * a) * h + dv * x[xi] * proj[r * p.stride + p.b_off + k];
            }
            let cb = ((b * p.chunks + ci) * p.c + ch) * (p.n + 1u);
            carry[cb + k] = h;
            if (k == 0u) { carry[cb + p.n] = sdt; }
        }
        return;
    }

    // The chunk's start state: the sequence's, carried through the chunks before this one.
    var h = 0.0;
    if (live) {
        h = h_in[i * p.n + k];
        for (var c2 = 0u; c2 < ci; c2++) {
            let cb = ((b * p.chunks + c2) * p.c + ch) * (p.n + 1u);
            h = exp(carry[cb + p.n] * a) * h + carry[cb + k];
        }
    }
    for (var s0 = t_begin; s0 < t_end; s0 += SUB) {
        let s1 = min(t_end, s0 + SUB);
        for (var t = s0; t < s1; t++) {
            var v = 0.0;
            if (live) {
                let r = b * p.len + t;
                let xi = r * p.c + ch;
                let dv = dt[xi];
                let pb = r * p.stride + p.b_off;
                h = exp(dv * a) * h + dv * x[xi] * proj[pb + k];
                v = proj[pb + p.n + k] * h;
            }
            contrib[(t - s0) * 64u + lid.x] = v;
        }
        workgroupBarrier();
        // y for each (channel, step) of the workgroup: the channel's N contributions in order.
        for (var q = lid.x; q < per * SUB; q += 64u) {
            let g = q / SUB;
            let tt = q % SUB;
            let ch2 = wg.x * per + g;
            let t = s0 + tt;
            if (ch2 < p.c && t < s1) {
                var acc = 0.0;
                for (var k2 = 0u; k2 < p.n; k2++) { acc += contrib[tt * 64u + g * p.np + k2]; }
                let xi = (b * p.len + t) * p.c + ch2;
                y[xi] = acc + ad[ch2 * (p.n + 1u) + p.n] * x[xi];
            }
        }
        workgroupBarrier();
    }
    if (live && ci + 1u == p.chunks) { h_out[i * p.n + k] = h; }
}
