// Activations by code (elementwise.wgsl's op numbers), shared by the element-wise kernel and
// the linear kernels' epilogues: 3 quick_gelu x·σ(1.702x), 4 silu x·σ(x), 5 softplus
// ln(1 + eˣ) (x above 20), 6 tanh-approximated gelu, 7 exact gelu x·Φ(x); anything else is
// the identity.
fn activate(x: f32, op: u32) -> f32 {
    switch op {
        case 3u: { return x / (1.0 + exp(-1.702 * x)); }
        case 4u: { return x / (1.0 + exp(-x)); }
        case 5u: { return select(log(1.0 + exp(x)), x, x > 20.0); }
        case 6u: { return 0.5 * x * (1.0 + tanh(clamp(0.7978845608 * (x + 0.044715 * x * x * x), -15.0, 15.0))); }
        case 7u: { return 0.5 * x * (1.0 + erf(x * 0.70710678118)); }
        default: { return x; }
    }
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
fn erf(v: f32) -> f32 {
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    return sign(v) * (1.0 - poly * exp(-a * a));
}
