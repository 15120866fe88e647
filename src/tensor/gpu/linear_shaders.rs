//! The linear kernel's WGSL variants, derived from `linear.wgsl` (and the few-row and
//! split-K reduce kernels from theirs) by replacing bindings and load blocks rather than
//! copied: vec4 loads, packed f16 weights, f16 math, int8 weights, the folded LayerNorm.
//! `linear.rs` picks one per call ([`pipeline`]).

use super::{GpuContext, GpuDtype, GpuTensor, GpuWeights};

const BODY: &str = include_str!("linear.wgsl");
const EPILOGUE: &str = include_str!("epilogue.wgsl");

/// A linear kernel's source with `activation.wgsl` and `epilogue.wgsl` in front, made once.
fn with_epilogue(cell: &'static std::sync::OnceLock<String>, body: &str) -> &'static str {
    static HEAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let head = super::elementwise::with_activation(&HEAD, EPILOGUE);
    cell.get_or_init(|| format!("{head}\n{body}"))
}
static SMALL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static REDUCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The kernel's variants: vec4 loads (when K is a multiple of 4, so rows start 16-byte
/// aligned) and packed f16 weights (see [`GpuDtype::F16`]). Only the bindings and the LOAD
/// block differ, so they are derived from `linear.wgsl` rather than copied.
fn variant(vec4: bool, f16: bool) -> (&'static str, &'static str) {
    static SRC: std::sync::OnceLock<[String; 4]> = std::sync::OnceLock::new();
    const NAMES: [&str; 4] = ["linear", "linear_f16", "linear_v4", "linear_f16_v4"];
    let srcs = SRC.get_or_init(|| {
        static FULL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let wgsl: &str = with_epilogue(&FULL, BODY);
        let (a, b) = (wgsl.find("        // LOAD:").unwrap_or(0), wgsl.find("        // END LOAD").unwrap_or(0));
        let vec4_load = |w_load: &str| {
            format!(
                "        {{\n            let r = t / 4u;\n            let kq = (t % 4u) * 4u;\n            let c = k0 + kq;\n            var xv = vec4<f32>(0.0);\n            if (row0 + r < p.m && c < ke) {{ xv = x[(xo + (row0 + r) * p.k + c) / 4u]; }}\n            var wv = vec4<f32>(0.0);\n            if (col0 + r < p.n && c < ke) {{ {w_load} }}\n            for (var i = 0u; i < 4u; i++) {{ xs[(kq + i) * TS + r / 4u][r % 4u] = xv[i]; ws[(kq + i) * TS + r / 4u][r % 4u] = wv[i]; }}\n        }}\n"
            )
        };
        let f16_scalar = wgsl
            .replace("var<storage, read> w: array<f32>;", "var<storage, read> w: array<u32>;")
            .replace("wv = w[wo + gn * p.k + c];", "wv = unpack2x16float(w[(wo + gn * p.k + c) / 2u])[c % 2u];");
        let v4 = |w_ty: &str, w_load: &str| {
            format!("{}{}{}", &wgsl[..a], vec4_load(w_load), &wgsl[b..])
                .replace("var<storage, read> x: array<f32>;", "var<storage, read> x: array<vec4<f32>>;")
                .replace("var<storage, read> w: array<f32>;", &format!("var<storage, read> w: array<{w_ty}>;"))
        };
        [
            wgsl.to_string(),
            f16_scalar,
            v4("vec4<f32>", "wv = w[(wo + (col0 + r) * p.k + c) / 4u];"),
            v4("vec2<u32>", "let q = w[(wo + (col0 + r) * p.k + c) / 4u]; wv = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));"),
        ]
    });
    let i = f16 as usize + 2 * vec4 as usize;
    (NAMES[i], &srcs[i])
}

/// The pipelines `linear` and `matmul_nt` run: every load variant (f16 weights only where the
/// context stores them), the few-row kernel and split K's reduce.
pub(super) fn pipelines(weights: GpuWeights, f16_math: bool) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![variant(false, false), variant(true, false), small(), reduce(), norm_variant(false), reduce_norm()];
    match weights {
        GpuWeights::F16 => v.extend([variant(false, true), variant(true, true), norm_variant(true)]),
        GpuWeights::Int8 => v.extend([int8_variant(false), int8_variant(true), small_int8()]),
        GpuWeights::F32 => {}
    }
    if f16_math {
        v.extend([half_math(false), half_math(true)]);
    }
    v
}

/// The vec4 f16-weight kernel (plain, or with the LayerNorm folded in) doing its math in f16
/// ([`GpuContext::f16_math`]): tiles staged as f16 in workgroup memory, each 16-deep K tile's
/// products summed in f16 registers, the tiles' sums added into the f32 accumulators.
fn half_math(norm: bool) -> (&'static str, &'static str) {
    static SRC: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    const NAMES: [&str; 2] = ["linear_f16_v4_h", "linear_f16_v4_norm_h"];
    let srcs = SRC.get_or_init(|| {
        [false, true].map(|norm| {
            let base = if norm { norm_variant(true).1 } else { variant(true, true).1 };
            let s = format!("enable f16;\n{base}")
                .replace("var<workgroup> xs: array<vec4<f32>, 272>;", "var<workgroup> xs: array<vec4<f16>, 272>;")
                .replace("var<workgroup> ws: array<vec4<f32>, 272>;", "var<workgroup> ws: array<vec4<f16>, 272>;")
                .replace("xs[(kq + i) * TS + r / 4u][r % 4u] = xv[i];", "xs[(kq + i) * TS + r / 4u][r % 4u] = f16(xv[i]);")
                .replace("ws[(kq + i) * TS + r / 4u][r % 4u] = wv[i];", "ws[(kq + i) * TS + r / 4u][r % 4u] = f16(wv[i]);");
            // The inner loop's four f32 FMAs become f16 ones into per-tile sums q0…q3.
            let mut s = s
                .replace("        for (var kk = 0u; kk < TK; kk++) {", "        var q0 = vec4<f16>(0.0h);\n        var q1 = q0;\n        var q2 = q0;\n        var q3 = q0;\n        for (var kk = 0u; kk < TK; kk++) {")
                .replace("        }\n        workgroupBarrier();\n    }", "        }\n        QSUMS        workgroupBarrier();\n    }");
            let mut sums = String::new();
            for (i, c) in ["x", "y", "z", "w"].iter().enumerate() {
                s = s.replace(&format!("acc{i} = fma(vec4<f32>(a.{c}), bv, acc{i});"), &format!("q{i} = fma(vec4<f16>(a.{c}), bv, q{i});"));
                sums.push_str(&format!("acc{i} += vec4<f32>(q{i});\n        "));
            }
            s.replace("QSUMS        ", &sums)
        })
    });
    (NAMES[norm as usize], &srcs[norm as usize])
}

/// The vec4 kernels (plain, or with the LayerNorm folded in) on int8 weights
/// ([`GpuDtype::I8`]): each staged vec4 of a weight row is one word of four int8 values,
/// sign-extended with shifts and multiplied by the row's scale, so the tiles hold the
/// dequantised weights and the rest of the kernel is the f32 one.
pub(super) fn int8_variant(norm: bool) -> (&'static str, &'static str) {
    static SRC: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    const NAMES: [&str; 2] = ["linear_i8_v4", "linear_i8_v4_norm"];
    let srcs = SRC.get_or_init(|| {
        [false, true].map(|norm| {
            let base = if norm { norm_variant(false).1 } else { variant(true, false).1 };
            base.replace("var<storage, read> w: array<vec4<f32>>;", "var<storage, read> w: array<u32>; // [N] scales (f32 bits), then [N, K / 4] int8 quads").replace(
                "wv = w[(wo + (col0 + r) * p.k + c) / 4u];",
                "let qi = bitcast<i32>(w[p.n + (wo + (col0 + r) * p.k + c) / 4u]); wv = vec4<f32>(vec4<i32>(qi << 24u, qi << 16u, qi << 8u, qi) >> vec4<u32>(24u)) * bitcast<f32>(w[col0 + r]);",
            )
        })
    });
    (NAMES[norm as usize], &srcs[norm as usize])
}

/// `src` with the text between the lines `// {tag}` and `// END {tag}` replaced by `with`.
fn splice(src: &str, tag: &str, with: &str) -> String {
    let (open, close) = (format!("// {tag}\n"), format!("// END {tag}\n"));
    match (src.find(&open), src.find(&close)) {
        (Some(a), Some(b)) if b > a => format!("{}{with}\n{}", &src[..a], &src[b + close.len()..]),
        _ => src.to_string(),
    }
}

/// The vec4 kernels with a LayerNorm folded in ([`linear_normed`]): each invocation sums the
/// row it stages (less the row's shift, the mean of its first 16 values, so the sums do not
/// cancel) and the epilogue normalises with the row's mean and variance.
fn norm_variant(f16: bool) -> (&'static str, &'static str) {
    static SRC: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    const NAMES: [&str; 2] = ["linear_v4_norm", "linear_f16_v4_norm"];
    let srcs = SRC.get_or_init(|| {
        [false, true].map(|f16| {
            let base = variant(true, f16).1;
            let s = splice(base, "NORM FNS", NORM_FNS);
            let s = s.replace("    // NORM PRE\n", NORM_PRE);
            let s = splice(&s, "NORM POST", NORM_POST);
            s.replace(
                "xv = x[(xo + (row0 + r) * p.k + c) / 4u]; }",
                "xv = x[(xo + (row0 + r) * p.k + c) / 4u] - vec4<f32>(sh); st += vec2<f32>(dot(xv, vec4<f32>(1.0)), dot(xv, xv)); }",
            )
        })
    });
    (NAMES[f16 as usize], &srcs[f16 as usize])
}

const NORM_FNS: &str = "@group(0) @binding(6) var<storage, read> cs: array<f32>; // the folded weight's row sums [N]
@group(0) @binding(7) var<storage, read_write> stats: array<vec2<f32>>; // split K: [splits, M] row sums
var<workgroup> rs: array<vec2<f32>, 256>;
// nm = (mean − shift, 1 / std) of the output's row: Σ (x − shift) w′ − (mean − shift) Σ w′ = Σ (x − mean) w′.
fn pre(v: f32, c: u32, nm: vec2<f32>) -> f32 {
    if (p.norm == 0u) { return v; }
    return (v - nm.x * cs[c]) * nm.y;
}
// Tile row i's (mean − shift, 1 / std) from its four stagers' sums.
fn row_norm(i: u32) -> vec2<f32> {
    let s = rs[4u * i] + rs[4u * i + 1u] + rs[4u * i + 2u] + rs[4u * i + 3u];
    let d = s.x / f32(p.k);
    return vec2<f32>(d, inverseSqrt(max(s.y / f32(p.k) - d * d, 0.0) + bitcast<f32>(p.eps)));
}";

const NORM_PRE: &str = "    // The row this invocation stages, its shift, and its sums Σ (x − shift), Σ (x − shift)².
    let nr = row0 + t / 4u;
    var sh = 0.0;
    if (nr < p.m) {
        for (var i = 0u; i < 4u; i++) { sh += dot(x[(xo + nr * p.k) / 4u + i], vec4<f32>(1.0)); }
        sh /= 16.0;
    }
    var st = vec2<f32>(0.0);
";

const NORM_POST: &str = "    rs[t] = st;
    workgroupBarrier();
    if (p.kc != 0u && wg.x == 0u && t % 4u == 0u && nr < p.m) {
        stats[wg.z * p.m + nr] = rs[t] + rs[t + 1u] + rs[t + 2u] + rs[t + 3u];
    }
    let nm0 = row_norm(lid.y * 4u);
    let nm1 = row_norm(lid.y * 4u + 1u);
    let nm2 = row_norm(lid.y * 4u + 2u);
    let nm3 = row_norm(lid.y * 4u + 3u);";

/// Split K's reduce for [`linear_normed`]: adds the slabs' row sums too and normalises.
pub(super) fn reduce_norm() -> (&'static str, &'static str) {
    static SRC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let src = SRC.get_or_init(|| {
        let s = splice(
            reduce().1,
            "NORM",
            "    let row = t / p.n;
    let c = t % p.n;
    var st = vec2<f32>(0.0);
    for (var z = 0u; z < p.splits; z++) { st += stats[z * (p.mn / p.n) + row]; }
    let d = st.x / f32(p.k);
    let inv = inverseSqrt(max(st.y / f32(p.k) - d * d, 0.0) + bitcast<f32>(p.eps));
    y[t] = finish((s - d * cs[c]) * inv, t, c);",
        );
        s.replace(
            "@compute",
            "@group(0) @binding(5) var<storage, read> cs: array<f32>;\n@group(0) @binding(6) var<storage, read> stats: array<vec2<f32>>;\n\n@compute",
        )
    });
    ("linear_reduce_norm", src)
}

pub(super) fn small() -> (&'static str, &'static str) {
    ("linear_small", with_epilogue(&SMALL, include_str!("linear_small.wgsl")))
}

/// The few-row kernel on int8 weights ([`GpuDtype::I8`]): each vec4 of the weight row is one
/// word of four int8 values, sign-extended with shifts; the row's scale multiplies the sum once.
pub(super) fn small_int8() -> (&'static str, &'static str) {
    static SRC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let src = SRC.get_or_init(|| {
        small()
            .1
            .replace("var<storage, read> w: array<vec4<f32>>;", "var<storage, read> w: array<u32>; // [N] scales (f32 bits), then [N, K / 4] int8 quads")
            .replace(
                "let wv = w[col * k4 + k];",
                "let qi = bitcast<i32>(w[p.n + col * k4 + k]);\n        let wv = vec4<f32>(vec4<i32>(qi << 24u, qi << 16u, qi << 8u, qi) >> vec4<u32>(24u));",
            )
            .replace("finish(red[l * LANES], l * p.n + col, col)", "finish(red[l * LANES] * bitcast<f32>(w[col]), l * p.n + col, col)")
    });
    ("linear_small_i8", src)
}

pub(super) fn reduce() -> (&'static str, &'static str) {
    ("linear_reduce", with_epilogue(&REDUCE, include_str!("linear_reduce.wgsl")))
}

/// The tiled kernel's variant for a product over `k` with weight `w` (the LayerNorm folded
/// in when `norm`; vec4 loads when K allows, f16 weights, f16 math where the context has it).
pub(super) fn pipeline(ctx: &GpuContext, norm: bool, k: usize, w: &GpuTensor) -> std::sync::Arc<wgpu::ComputePipeline> {
    let (name, src) = match (norm, k % 4 == 0, w.dtype) {
        // int8 weights are uploaded only with K a multiple of 4.
        (norm, _, GpuDtype::I8) => int8_variant(norm),
        (norm, true, GpuDtype::F16) if ctx.f16_math() => half_math(norm),
        (true, _, dt) => norm_variant(dt == GpuDtype::F16),
        (false, vec4, dt) => variant(vec4, dt == GpuDtype::F16),
    };
    ctx.pipeline(name, src)
}
