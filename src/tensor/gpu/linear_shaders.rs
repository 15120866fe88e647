//! The linear kernels' variants: `linear.wgsl` (tiled), `linear_small.wgsl` (few rows) and
//! `linear_reduce.wgsl` (split K's second pass), each specialised by flags (`//#if` blocks,
//! `gpu/wgsl.rs`): VEC4 loads, F16W (packed f16 weights), I8W (int8 weights), NORM (a LayerNorm
//! folded in), HALF (f16 math). `linear.rs` picks one per call ([`pipeline`]).

use super::wgsl::specialise;
use super::{GpuContext, GpuDtype, GpuTensor};
use std::sync::OnceLock;

const TILED: &str = include_str!("linear.wgsl");
const SMALL: &str = include_str!("linear_small.wgsl");
const REDUCE: &str = include_str!("linear_reduce.wgsl");
const EPILOGUE: &str = include_str!("epilogue.wgsl");

/// The variants, in the order of [`VARIANTS`].
#[derive(Clone, Copy)]
enum V {
    Plain,
    F16,
    V4,
    F16V4,
    V4Norm,
    F16V4Norm,
    HalfV4,
    HalfV4Norm,
    I8V4,
    I8V4Norm,
    Small,
    SmallI8,
    SmallSg,
    SmallI8Sg,
    Reduce,
    ReduceNorm,
}

/// Each variant's pipeline name, shader file and flags.
const VARIANTS: [(&str, &str, &[&str]); 16] = [
    ("linear", TILED, &[]),
    ("linear_f16", TILED, &["F16W"]),
    ("linear_v4", TILED, &["VEC4"]),
    ("linear_f16_v4", TILED, &["VEC4", "F16W"]),
    ("linear_v4_norm", TILED, &["VEC4", "NORM"]),
    ("linear_f16_v4_norm", TILED, &["VEC4", "F16W", "NORM"]),
    ("linear_f16_v4_h", TILED, &["VEC4", "F16W", "HALF"]),
    ("linear_f16_v4_norm_h", TILED, &["VEC4", "F16W", "HALF", "NORM"]),
    ("linear_i8_v4", TILED, &["VEC4", "I8W"]),
    ("linear_i8_v4_norm", TILED, &["VEC4", "I8W", "NORM"]),
    ("linear_small", SMALL, &[]),
    ("linear_small_i8", SMALL, &["I8W"]),
    ("linear_small_sg", SMALL, &["SG"]),
    ("linear_small_i8_sg", SMALL, &["I8W", "SG"]),
    ("linear_reduce", REDUCE, &[]),
    ("linear_reduce_norm", REDUCE, &["NORM"]),
];

/// `(name, source)` of variant `v`: its shader specialised for its flags, with the activation
/// and epilogue functions after it (WGSL's module-scope declarations may come in any order, and
/// an `enable` must come first), made once; every later call is one atomic load.
fn build(v: V) -> (&'static str, &'static str) {
    static SRC: [OnceLock<String>; VARIANTS.len()] = [const { OnceLock::new() }; VARIANTS.len()];
    static HEAD: OnceLock<String> = OnceLock::new();
    let (name, body, flags) = VARIANTS[v as usize];
    (name, SRC[v as usize].get_or_init(|| format!("{}\n{}", specialise(body, flags), super::elementwise::with_activation(&HEAD, EPILOGUE))))
}

/// The tiled kernel: vec4 loads (when K is a multiple of 4, so rows start 16-byte aligned)
/// and packed f16 weights (see [`GpuDtype::F16`]).
fn variant(vec4: bool, f16: bool) -> (&'static str, &'static str) {
    build([V::Plain, V::F16, V::V4, V::F16V4][f16 as usize + 2 * vec4 as usize])
}

/// The vec4 f16-weight kernel (plain, or with the LayerNorm folded in) doing its math in f16
/// ([`GpuContext::f16_math`]): tiles staged as f16 in workgroup memory, each 16-deep K tile's
/// products summed in f16 registers, the tiles' sums added into the f32 accumulators.
pub(super) fn half_math(norm: bool) -> (&'static str, &'static str) {
    build(if norm { V::HalfV4Norm } else { V::HalfV4 })
}

/// The vec4 kernels (plain, or with the LayerNorm folded in) on int8 weights
/// ([`GpuDtype::I8`]): each staged vec4 of a weight row is one word of four int8 values,
/// sign-extended with shifts and multiplied by the row's scale, so the tiles hold the
/// dequantised weights and the rest of the kernel is the f32 one.
pub(super) fn int8_variant(norm: bool) -> (&'static str, &'static str) {
    build(if norm { V::I8V4Norm } else { V::I8V4 })
}

/// The vec4 kernels with a LayerNorm folded in ([`linear_normed`]): each invocation sums the
/// row it stages (less the row's shift, so the sums do not cancel) and the epilogue
/// normalises with the row's mean and variance.
fn norm_variant(f16: bool) -> (&'static str, &'static str) {
    build(if f16 { V::F16V4Norm } else { V::V4Norm })
}

/// Split K's reduce for [`linear_normed`]: adds the slabs' row sums too and normalises.
pub(super) fn reduce_norm() -> (&'static str, &'static str) {
    build(V::ReduceNorm)
}

/// The few-row kernel (`linear_small.wgsl`), on int8 weights where `w` holds them (each vec4
/// of the weight row is one word of four int8 values, sign-extended with shifts; the row's
/// scale multiplies the sum once), its sums added by subgroup operations where the context
/// uses them ([`GpuContext::subgroups`]).
pub(super) fn small(ctx: &GpuContext, w: &GpuTensor) -> (&'static str, &'static str) {
    build(match (w.dtype == GpuDtype::I8, ctx.subgroups()) {
        (false, false) => V::Small,
        (true, false) => V::SmallI8,
        (false, true) => V::SmallSg,
        (true, true) => V::SmallI8Sg,
    })
}

pub(super) fn reduce() -> (&'static str, &'static str) {
    build(V::Reduce)
}

/// Every variant's `.wgsl` is well formed (each `//#if` closed) and the flags reach what they
/// should: only the int8 variants unpack int8, only the NORM ones fold the norm in.
#[cfg(test)]
#[test]
fn every_variant_is_well_formed_and_gets_its_flags() {
    for src in [TILED, SMALL, REDUCE] {
        assert!(super::wgsl::balanced(src));
    }
    let all = [
        variant(false, false),
        variant(false, true),
        variant(true, false),
        variant(true, true),
        norm_variant(false),
        norm_variant(true),
        half_math(false),
        half_math(true),
        int8_variant(false),
        int8_variant(true),
        build(V::Small),
        build(V::SmallI8),
        build(V::SmallSg),
        build(V::SmallI8Sg),
        reduce(),
        reduce_norm(),
    ];
    assert_eq!(all.map(|v| v.0), VARIANTS.map(|v| v.0), "each function builds its own entry");
    for (name, src) in all {
        assert!(!src.lines().any(|l| l.trim_start().starts_with("//#")), "{name}: a directive left");
        assert_eq!(src.contains("qi << 24u"), name.contains("i8"), "{name}: int8 unpacking");
        assert_eq!(src.contains("fn row_norm") || src.contains("stats[z"), name.contains("norm"), "{name}: the folded norm");
        assert_eq!(src.contains("enable f16;"), name.ends_with("_h"), "{name}: f16 math");
        assert_eq!(src.contains("subgroupAdd("), name.ends_with("_sg"), "{name}: subgroups");
    }
}

/// The tiled kernel's variant for a product over `k` with weight `w` (the LayerNorm folded
/// in when `norm`; vec4 loads when K allows, f16 weights, f16 math where the context has it).
pub(super) fn pipeline(ctx: &GpuContext, norm: bool, k: usize, w: &GpuTensor) -> std::sync::Arc<wgpu::ComputePipeline> {
    let (name, src) = choose(ctx, norm, k, w);
    ctx.pipeline(name, src)
}

/// The `(name, source)` of [`pipeline`]'s choice.
pub(super) fn choose(ctx: &GpuContext, norm: bool, k: usize, w: &GpuTensor) -> (&'static str, &'static str) {
    match (norm, k % 4 == 0, w.dtype) {
        // int8 weights are uploaded only with K a multiple of 4.
        (norm, _, GpuDtype::I8) => int8_variant(norm),
        (norm, true, GpuDtype::F16) if ctx.f16_math() => half_math(norm),
        (true, _, dt) => norm_variant(dt == GpuDtype::F16),
        (false, vec4, dt) => variant(vec4, dt == GpuDtype::F16),
    }
}
