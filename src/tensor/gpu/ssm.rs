//! Mamba's kernels: the causal depthwise conv over a window (`ssm_conv.wgsl`) and the
//! selective scan with MRSS (`ssm_scan.wgsl`, one invocation per sequence and channel).
//! Their CPU twins and the method are in `tensor/ssm.rs`.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

const CONV: &str = include_str!("ssm_conv.wgsl");
const SCAN: &str = include_str!("ssm_scan.wgsl");

pub(super) fn kernels() -> Vec<(&'static str, &'static str)> {
    vec![("ssm_conv", CONV), ("ssm_scan", SCAN)]
}
/// State values per channel the scan kernel holds in registers.
pub const MAX_STATE: usize = 64;

/// `win` `[B, L + K − 1, C]` (previous inputs, then this call's), `w` `[C, K]`, `bias` `[C]`
/// → `[B, L, C]`.
pub fn conv1d(ctx: &GpuContext, win: &GpuTensor, w: &GpuTensor, bias: &GpuTensor) -> Result<GpuTensor> {
    let (&[c, k], &[b, rows, c2]) = (&w.shape[..], &win.shape[..]) else {
        return Err(Error::arg(format!("conv1d: weight {:?} / window {:?}", w.shape, win.shape)));
    };
    if c2 != c || rows < k || bias.shape != [c] {
        return Err(Error::arg(format!("conv1d: window {:?}, weight {:?}, bias {:?} do not agree", win.shape, w.shape, bias.shape)));
    }
    let len = rows + 1 - k;
    let y = ctx.empty(&[b, len, c])?;
    if y.is_empty() {
        return Ok(y);
    }
    let params = ctx.uniform(&[b as u32, len as u32, c as u32, k as u32]);
    ctx.dispatch_1d("ssm_conv", CONV, &[&win.buf, &w.buf, &bias.buf, &y.buf, &params], y.len(), 256)?;
    Ok(y)
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

/// Returns `(y [B, L, C], h' [B, C, N], stats [B·C, 3])`.
pub fn scan(ctx: &GpuContext, s: &ScanArgs) -> Result<(GpuTensor, GpuTensor, GpuTensor)> {
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
