//! Mamba's kernels: the causal depthwise conv over a window (`ssm_conv.wgsl`) and the
//! selective scan: with MRSS (τ > 0) one invocation per sequence and channel walking time
//! (`ssm_scan.wgsl`); without (τ = 0, every update) parallel over state values and chunks of
//! time with the states carried across chunks (`ssm_chunk.wgsl`).
//! Their CPU twins and the method are in `tensor/ssm.rs`.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

const CONV: &str = include_str!("ssm_conv.wgsl");
const SCAN: &str = include_str!("ssm_scan.wgsl");
const CHUNK: &str = include_str!("ssm_chunk.wgsl");

/// State values per channel the scan kernel holds in registers.
pub const MAX_STATE: usize = 64;

/// `state` `[B, K − 1, C]` (the previous inputs) and `x` `[B, L, C]`, `w` `[C, K]`, `bias`
/// `[C]` → (`act`(conv) `[B, L, C]`, the next state `[B, K − 1, C]`), in one dispatch
/// (`act`: an activation code of `activation.wgsl`, 0 for none).
pub fn conv1d(ctx: &GpuContext, state: &GpuTensor, x: &GpuTensor, w: &GpuTensor, bias: &GpuTensor, act: u32) -> Result<(GpuTensor, GpuTensor)> {
    let (&[c, k], &[b, len, c2]) = (&w.shape[..], &x.shape[..]) else {
        return Err(Error::arg(format!("conv1d: weight {:?} / input {:?}", w.shape, x.shape)));
    };
    if c2 != c || k == 0 || state.shape != [b, k - 1, c] || bias.shape != [c] {
        return Err(Error::arg(format!("conv1d: input {:?}, state {:?}, weight {:?}, bias {:?} do not agree", x.shape, state.shape, w.shape, bias.shape)));
    }
    let y = ctx.empty(&[b, len, c])?;
    let next = ctx.empty(&[b, k - 1, c])?;
    if y.is_empty() && next.is_empty() {
        return Ok((y, next));
    }
    static SRC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let src = SRC.get_or_init(|| format!("{}\n{CONV}", super::elementwise::ACTIVATION));
    let params = ctx.uniform(&[b as u32, len as u32, c as u32, k as u32, act, 0, 0, 0]);
    ctx.dispatch_1d("ssm_conv", src, &[&state.buf, &x.buf, &w.buf, &bias.buf, &y.buf, &next.buf, &params], y.len() + next.len(), 256)?;
    Ok((y, next))
}

/// The scan's inputs as the kernel reads them.
pub struct ScanArgs<'a> {
    /// `[B, L, C]`.
    pub x: &'a GpuTensor,
    /// `[B, L, C]`, after softplus.
    pub dt: &'a GpuTensor,
    /// `[B, L, S]` rows holding B at `b_off..b_off + N` and C right after (x_proj's output).
    pub proj: &'a GpuTensor,
    pub b_off: usize,
    /// `[C, N + 1]`: A then D per channel.
    pub ad: &'a GpuTensor,
    /// `[B, C, N]`.
    pub h: &'a GpuTensor,
    pub tau: f32,
    /// Decay (Σ dt · max |A|) after which a pending MRSS run is applied.
    pub max_run: f32,
}

/// Time steps one scan dispatch runs for `n` state values: one step costs up to 3·n + 2 loop
/// iterations, and llvmpipe stops an invocation after 65535 of them (see `attention.rs`), so a
/// window stays well below. A pending MRSS run is closed at each window's end, as at the end of
/// any call.
pub fn time_window(n: usize) -> usize {
    (30_000 / (3 * n + 2)).max(1)
}

/// Invocations the chunked scan aims for on a wide device (see `attention.rs`).
const TARGET_INVOCATIONS: usize = 128 << 10;
/// Fewest steps in a chunk when time is split for width alone.
const MIN_CHUNK: usize = 64;
/// Most steps in a chunk: one step costs about two loop iterations of `ssm_chunk.wgsl`, and
/// llvmpipe stops an invocation after 65535 of them (see [`time_window`]).
const MAX_CHUNK: usize = 8192;

/// Chunks of time the chunked scan splits `len` steps into for `lanes` parallel
/// (sequence, channel, state) recurrences: on a wide device enough to fill it, else one
/// (never one longer than [`MAX_CHUNK`]).
pub fn scan_chunks(wide: bool, lanes: usize, len: usize) -> usize {
    let fill = if wide { TARGET_INVOCATIONS.div_ceil(lanes.max(1)).min(len.div_ceil(MIN_CHUNK)) } else { 1 };
    fill.max(len.div_ceil(MAX_CHUNK)).max(1)
}

/// Returns `(y [B, L, C], h' [B, C, N], stats [B·C, 3])`: the chunked scan when `tau` is 0
/// on a wide device, else the sequential one (MRSS, and software adapters: there one
/// invocation per channel already keeps the few CPU threads busy, and the chunked kernel's
/// per-state loads and barriers cost 4× more; `effarch bench scan` measures both).
pub fn scan(ctx: &GpuContext, s: &ScanArgs) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
    // The choice turns on τ and on the device: a warm-up at one τ compiles both.
    ctx.compile_alternatives(|| [("ssm_scan", SCAN), ("ssm_chunk", CHUNK)]);
    if s.tau == 0.0 && ctx.wide() {
        scan_chunked(ctx, s, None)
    } else {
        scan_sequential(ctx, s)
    }
}

/// [`ScanArgs`]' shapes: `(B, L, C, N, stride)`.
fn scan_dims(s: &ScanArgs) -> Result<(usize, usize, usize, usize, usize)> {
    let (&[b, len, c], &[c2, n1]) = (&s.x.shape[..], &s.ad.shape[..]) else {
        return Err(Error::arg(format!("scan: x {:?} / A·D {:?}", s.x.shape, s.ad.shape)));
    };
    let n = n1.saturating_sub(1);
    let stride = *s.proj.shape.last().unwrap_or(&0);
    if c2 != c || n == 0 || s.dt.shape != s.x.shape || s.h.shape != [b, c, n] || s.proj.len() != b * len * stride || s.b_off + 2 * n > stride {
        return Err(Error::arg(format!(
            "scan: x {:?}, dt {:?}, proj {:?} (B at {}), A·D {:?}, state {:?} do not agree",
            s.x.shape, s.dt.shape, s.proj.shape, s.b_off, s.ad.shape, s.h.shape
        )));
    }
    if n > MAX_STATE {
        return Err(Error::Device(format!("the GPU scan holds at most {MAX_STATE} state values per channel; this model has {n}")));
    }
    Ok((b, len, c, n, stride))
}

/// The scan without MRSS (τ = 0), parallel over state values and over `chunks` chunks of
/// time (default [`scan_chunks`]): two dispatches (chunks' carries, then outputs), one when
/// time is not split. Same arithmetic per step as the sequential kernel; the chunks' start
/// states are composed from their carries (exp(A·Σ dt)·h + h_chunk).
pub fn scan_chunked(ctx: &GpuContext, s: &ScanArgs, chunks: Option<usize>) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
    let (b, len, c, n, stride) = scan_dims(s)?;
    if b == 0 || c == 0 || len == 0 {
        // Nothing to scan (the state passes through): the sequential kernel's one empty window.
        return scan_sequential(ctx, s);
    }
    let y = ctx.empty(&[b, len, c])?;
    let h = ctx.empty(&[b, c, n])?;
    // Every step updates every channel: (updates, merged, runs) = (L, 0, 0).
    let stats = ctx.upload(&[len as f32, 0.0, 0.0].repeat(b * c), &[b * c, 3])?;
    let np = n.next_power_of_two();
    let chunks = chunks.unwrap_or_else(|| scan_chunks(ctx.wide(), b * c * np, len)).clamp(1, len);
    let chunk = len.div_ceil(chunks);
    let chunks = len.div_ceil(chunk);
    let carry = ctx.empty(&[(b * chunks * c * (n + 1)).max(1)])?;
    let groups = (c.div_ceil(64 / np) as u32, chunks as u32, b as u32);
    let pipe = ctx.pipeline("ssm_chunk", CHUNK);
    for pass in if chunks > 1 { 1..=2 } else { 2..=2 } {
        let params =
            ctx.uniform(&[b as u32, len as u32, c as u32, n as u32, stride as u32, s.b_off as u32, chunk as u32, chunks as u32, np as u32, pass, 0, 0]);
        ctx.dispatch(&pipe, &[&s.x.buf, &s.dt.buf, &s.proj.buf, &s.ad.buf, &s.h.buf, &h.buf, &y.buf, &carry.buf, &params], groups)?;
    }
    Ok((y, h, stats))
}

/// The scan one invocation per (sequence, channel), walking time in windows, with MRSS
/// inside the loop. Returns `(y [B, L, C], h' [B, C, N], stats [B·C, 3])`.
pub fn scan_sequential(ctx: &GpuContext, s: &ScanArgs) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
    let (b, len, c, n, stride) = scan_dims(s)?;
    let y = ctx.empty(&[b, len, c])?;
    let stats = ctx.empty(&[b * c, 3])?;
    // Time in windows of `window` steps, the state passed from one dispatch to the next.
    let window = time_window(n);
    let mut h_in = s.h.clone();
    let mut t0 = 0;
    loop {
        let t1 = (t0 + window).min(len);
        let h = ctx.empty(&[b, c, n])?;
        let params = ctx.uniform(&[
            b as u32,
            len as u32,
            c as u32,
            n as u32,
            stride as u32,
            s.b_off as u32,
            s.tau.to_bits(),
            s.max_run.to_bits(),
            t0 as u32,
            t1 as u32,
            0,
            0,
        ]);
        let binds: [&wgpu::Buffer; 9] = [&s.x.buf, &s.dt.buf, &s.proj.buf, &s.ad.buf, &h_in.buf, &h.buf, &y.buf, &stats.buf, &params];
        ctx.dispatch_1d("ssm_scan", SCAN, &binds, b * c, 64)?;
        h_in = h;
        t0 = t1;
        if t0 >= len {
            return Ok((y, h_in, stats));
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::ssm::ScanInputs;
    use crate::tensor::{Device, Tensor};

    fn vals(n: usize, s: u64) -> Vec<f32> {
        (0..n as u64).map(|i| ((i.wrapping_mul(2654435761).wrapping_add(s * 97) % 1000) as f32 / 500.0) - 1.0).collect()
    }

    /// The chunked scan (any number of chunks, states not a power of two, a start state carried
    /// in from an earlier call, several sequences) gives the CPU's outputs, final state and
    /// update counts; with the sequential GPU kernel beside it.
    #[test]
    fn chunked_scan_matches_cpu_and_the_sequential_kernel() {
        let ctx = super::super::test_context();
        for &(b, l, c, n, chunks) in &[
            (2usize, 300usize, 5usize, 16usize, &[1usize, 4, 7][..]),
            (1, 77, 3, 5, &[1, 2, 77][..]),
            (1, 2048, 24, 16, &[1, 32][..]),
            (3, 1, 70, 16, &[1][..]),
        ] {
            let stride = 2 * n + 3;
            let x = vals(b * l * c, 1);
            let dt: Vec<f32> = vals(b * l * c, 2).iter().map(|v| (v.abs() + 0.01) * 0.3).collect();
            let proj = vals(b * l * stride, 3);
            let ad: Vec<f32> = vals(c * (n + 1), 5).iter().enumerate().map(|(i, v)| if i % (n + 1) == n { *v } else { -(v.abs() + 0.1) }).collect();
            let h0 = vals(b * c * n, 6);
            let cpu = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, &Device::cpu()).unwrap();
            let (yc, hc, sc) = Tensor::selective_scan(
                &ScanInputs {
                    x: &cpu(&x, &[b, l, c]),
                    dt: &cpu(&dt, &[b, l, c]),
                    proj: &cpu(&proj, &[b, l, stride]),
                    b_off: 3,
                    ad: &cpu(&ad, &[c, n + 1]),
                    h: &cpu(&h0, &[b, c, n]),
                },
                0.0,
            )
            .unwrap();
            let (yc, hc, sc) = (yc.to_vec_f32().unwrap(), hc.to_vec_f32().unwrap(), sc.to_vec_f32().unwrap());
            let g = |v: &[f32], s: &[usize]| ctx.upload(v, s).unwrap();
            let (gx, gdt, gp, gad, gh) = (g(&x, &[b, l, c]), g(&dt, &[b, l, c]), g(&proj, &[b, l, stride]), g(&ad, &[c, n + 1]), g(&h0, &[b, c, n]));
            let args = ScanArgs { x: &gx, dt: &gdt, proj: &gp, b_off: 3, ad: &gad, h: &gh, tau: 0.0, max_run: 1.0 };
            let runs = chunks
                .iter()
                .map(|&k| (format!("{k} chunks"), scan_chunked(&ctx, &args, Some(k)).unwrap()))
                .chain([("sequential".to_string(), scan_sequential(&ctx, &args).unwrap())]);
            for (what, (y, h, st)) in runs {
                let (y, h, st) = (ctx.read_blocking(&y).unwrap(), ctx.read_blocking(&h).unwrap(), ctx.read_blocking(&st).unwrap());
                let (dy, dh) = (crate::num::max_abs_diff(&y, &yc), crate::num::max_abs_diff(&h, &hc));
                assert!(dy < 1e-4 && dh < 1e-4, "[{b}, {l}, {c}] N {n}, {what}: y {dy}, h {dh}");
                assert_eq!(st, sc, "[{b}, {l}, {c}] N {n}, {what}: update counts");
            }
        }
        assert!(scan_chunks(true, 24576, 2048) > 1 && scan_chunks(false, 24576, 2048) == 1);
        assert_eq!(scan_chunks(false, 16, 100_000), 13, "no chunk over MAX_CHUNK steps");
    }
}
