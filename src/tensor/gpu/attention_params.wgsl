// The uniform parameters and helpers that `attention.wgsl` and `attention_combine.wgsl`
// share; prepended to both (tensor/gpu/attention.rs).

struct Layout { bs: u32, hs: u32, rs: u32, off: u32 }
struct Params {
    batch: u32, heads: u32, nq: u32, nk: u32,
    d: u32, causal: u32, scale: f32, group: u32,
    q: Layout, k: Layout, v: Layout, o: Layout,
    chunk: u32, chunks: u32, row0: u32, rows: u32,
    has_bias: u32, bg0: u32, nbg: u32, _p2: u32,
}

// The query (x), head (y) and batch item (z) of a query row numbered over [B, H, Nq].
fn query_row(row: u32, nq: u32, heads: u32) -> vec3<u32> {
    return vec3<u32>(row % nq, (row / nq) % heads, row / (nq * heads));
}
