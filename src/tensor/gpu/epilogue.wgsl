// The linear kernels' epilogue, applied to an output while it is in a register:
// v + b[c] (p.has_bias), then the activation p.act (activation.wgsl's codes, 0 = none), then
// + res[i] (p.has_res: the residual, indexed like y). Needs `p`, `b` and `res` in the kernel.
fn finish(v: f32, i: u32, c: u32) -> f32 {
    var o = v;
    if (p.has_bias != 0u) { o += b[c]; }
    o = activate(o, p.act);
    if (p.has_res != 0u) { o += res[i]; }
    return o;
}
