//! A per-kernel GPU profile from timestamp queries (wgpu `TIMESTAMP_QUERY`): while profiling,
//! every dispatch's compute pass writes a timestamp at its start and end, each command buffer
//! resolves its own queries before it is submitted, and [`GpuContext::profile_finish`] reads
//! them all back once at the end, so profiling adds no wait between submits. The host side
//! (when each command buffer was submitted) is timed with the wall clock.

use super::readback::futures_oneshot;
use super::GpuContext;
use crate::error::{Error, Result};
use serde::Serialize;

/// A dispatch: its kernel's name and workgroup counts.
type Kernel = (&'static str, (u32, u32, u32));

/// The queries of the command buffer being recorded, and those already submitted.
#[derive(Default)]
pub(super) struct ProfileState {
    /// The current command buffer's query sets and the kernels of each, in order.
    current: Vec<(wgpu::QuerySet, Vec<Kernel>)>,
    /// Submitted: the buffer the queries were copied into, the kernels, the host ms of the
    /// submit, and whether the set opened its command buffer.
    done: Vec<(wgpu::Buffer, Vec<Kernel>, f64, bool)>,
    started_ms: f64,
}

/// One kernel's share of a profiled pass.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    /// The kernel's name and its workgroup counts ("linear_v4 12×4×1"): one row per shape.
    pub kernel: String,
    pub count: usize,
    /// GPU time of all its dispatches, ms.
    pub total_ms: f64,
    pub mean_us: f64,
    /// total_ms / the summed GPU time of every kernel.
    pub share: f64,
}

/// A profiled pass: GPU time per kernel (descending), and where the GPU sat idle.
#[derive(Clone, Debug, Serialize)]
pub struct GpuProfile {
    pub dispatches: usize,
    pub submits: usize,
    /// From the first kernel's start to the last one's end on the GPU, ms.
    pub gpu_span_ms: f64,
    /// The kernels' own times summed, ms (more than busy_ms where kernels overlapped).
    pub kernel_ms: f64,
    /// The time at least one kernel was running, ms.
    pub busy_ms: f64,
    /// gpu_span_ms − busy_ms: the GPU idle between dispatches (barriers, launch latency, the
    /// wait for the host's next submit), ms.
    pub gap_ms: f64,
    /// The gaps between command buffers alone (the GPU waiting for the next submit), ms.
    pub gap_between_submits_ms: f64,
    /// Host ms from the start of profiling to the last submit (recording the pass).
    pub host_ms: f64,
    /// Host ms between consecutive submits, largest.
    pub host_between_submits_max_ms: f64,
    pub kernels: Vec<KernelTime>,
}

impl GpuProfile {
    /// The profile as a table for a terminal: the span, busy and idle time, then the kernels.
    pub fn table(&self) -> String {
        let mut s = format!(
            "GPU profile: {} dispatches in {} submits; GPU span {:.3} ms = busy {:.3} + idle {:.3} (of it between submits {:.3}); kernels summed {:.3} ms; host recording {:.3} ms (largest between submits {:.3})\n",
            self.dispatches, self.submits, self.gpu_span_ms, self.busy_ms, self.gap_ms, self.gap_between_submits_ms, self.kernel_ms, self.host_ms, self.host_between_submits_max_ms
        );
        s += &format!("  {:<36} {:>6} {:>10} {:>10} {:>7}\n", "kernel", "count", "total ms", "mean µs", "share");
        for k in &self.kernels {
            s += &format!("  {:<36} {:>6} {:>10.3} {:>10.2} {:>6.1}%\n", k.kernel, k.count, k.total_ms, k.mean_us, 100.0 * k.share);
        }
        s
    }
}

impl GpuContext {
    /// Whether kernels can be timed on this device (the adapter has timestamp queries).
    pub fn can_profile(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Starts timing every dispatch (until [`Self::profile_finish`]). Work recorded before is
    /// submitted first, so the profile holds only what follows.
    pub fn profile_start(&self) -> Result<()> {
        if !self.can_profile() {
            return Err(Error::Device(format!("{} has no timestamp queries: no GPU profile", self.adapter.name)));
        }
        self.flush_with(|_| {});
        *self.profile.lock().unwrap_or_else(|p| p.into_inner()) = Some(ProfileState { started_ms: crate::clock::now_ms(), ..Default::default() });
        self.profiling.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The timestamp writes of the next dispatch's pass, with `name` recorded for it (called
    /// by `dispatch` with the pending encoder locked, only while profiling).
    pub(super) fn profile_pass(&self, name: &'static str, groups: (u32, u32, u32), f: impl FnOnce(Option<wgpu::ComputePassTimestampWrites<'_>>)) {
        let mut guard = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        let Some(state) = guard.as_mut() else { return f(None) };
        // A new query set when the command buffer's last one is full (a command buffer may hold
        // more dispatches than one set has queries for).
        if state.current.last().is_none_or(|(_, names)| names.len() == Self::QUERIES / 2) {
            let set =
                self.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count: Self::QUERIES as u32 });
            state.current.push((set, Vec::with_capacity(Self::QUERIES / 2)));
        }
        let Some((set, names)) = state.current.last_mut() else { return f(None) };
        let i = names.len() as u32;
        names.push((name, groups));
        f(Some(wgpu::ComputePassTimestampWrites { query_set: set, beginning_of_pass_write_index: Some(2 * i), end_of_pass_write_index: Some(2 * i + 1) }))
    }

    /// Queries per query set, two a dispatch: fewer than a command buffer of [`Self::BATCH`]
    /// dispatches needs, so the tests go through a command buffer with several sets.
    const QUERIES: usize = 64;

    /// Before a profiled command buffer is submitted: resolves its queries into buffers that
    /// [`Self::profile_finish`] reads.
    pub(super) fn profile_resolve(&self, enc: &mut wgpu::CommandEncoder) {
        if !self.profiling.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut guard = self.profile.lock().unwrap_or_else(|p| p.into_inner());
        let Some(state) = guard.as_mut() else { return };
        let submitted = crate::clock::now_ms();
        for (j, (set, names)) in std::mem::take(&mut state.current).into_iter().enumerate() {
            let bytes = 16 * names.len() as u64;
            let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile read"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.resolve_query_set(&set, 0..2 * names.len() as u32, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
            state.done.push((read, names, submitted, j == 0));
        }
    }

    /// Stops profiling and reads the timestamps back: GPU time per kernel and the idle gaps.
    pub async fn profile_finish(&self) -> Result<GpuProfile> {
        self.flush_with(|_| {});
        self.profiling.store(false, std::sync::atomic::Ordering::SeqCst);
        let state = self.profile.lock().unwrap_or_else(|p| p.into_inner()).take();
        let state = state.ok_or_else(|| Error::Backend("profile_finish without profile_start".into()))?;
        let mut waits = Vec::new();
        for (buf, ..) in &state.done {
            let (tx, rx) = futures_oneshot();
            buf.slice(..).map_async(wgpu::MapMode::Read, move |r| tx(r));
            waits.push(rx);
        }
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Device(format!("GPU poll failed: {e}")))?;
        for rx in waits {
            rx.await.map_err(|e| Error::Device(format!("GPU profile read-back failed: {e}")))?;
        }
        self.take_error()?;
        // Milliseconds per tick; then (kernel, start, end, first of its command buffer) in
        // submission order.
        let period = self.queue.get_timestamp_period() as f64 * 1e-6;
        let mut spans: Vec<(Kernel, u64, u64, bool)> = Vec::new();
        let mut host = vec![state.started_ms];
        for (buf, names, submitted, first) in &state.done {
            let data = buf.slice(..).get_mapped_range().map_err(|e| Error::Device(format!("GPU profile map failed: {e:?}")))?;
            let ticks: &[u64] = bytemuck::cast_slice(&data);
            spans.extend(names.iter().enumerate().map(|(i, &n)| (n, ticks[2 * i], ticks[2 * i + 1].max(ticks[2 * i]), *first && i == 0)));
            if *first {
                host.push(*submitted);
            }
        }
        Ok(summarise(&spans, period, &host))
    }
}

/// The profile of `spans` (kernel, start tick, end tick, first of its command buffer), ticks
/// of `period` ms, and the host ms at the start and at each submit.
fn summarise(spans: &[(Kernel, u64, u64, bool)], period: f64, host: &[f64]) -> GpuProfile {
    let mut by_kernel: Vec<KernelTime> = Vec::new();
    let (mut kernel_ms, mut gap_submits) = (0.0, 0.0);
    // The latest end so far: what the GPU was busy until (kernels may overlap).
    let mut busy_until = spans.first().map_or(0, |s| s.1);
    let mut busy = 0u64;
    for &((name, (gx, gy, gz)), start, end, first) in spans {
        let name = format!("{name} {gx}×{gy}×{gz}");
        let ms = (end - start) as f64 * period;
        kernel_ms += ms;
        if first && start > busy_until {
            gap_submits += (start - busy_until) as f64 * period;
        }
        busy += end.saturating_sub(start.max(busy_until));
        busy_until = busy_until.max(end);
        match by_kernel.iter_mut().find(|k| k.kernel == name) {
            Some(k) => {
                k.count += 1;
                k.total_ms += ms;
            }
            None => by_kernel.push(KernelTime { kernel: name, count: 1, total_ms: ms, mean_us: 0.0, share: 0.0 }),
        }
    }
    for k in &mut by_kernel {
        k.mean_us = 1e3 * k.total_ms / k.count as f64;
        k.share = if kernel_ms > 0.0 { k.total_ms / kernel_ms } else { 0.0 };
    }
    by_kernel.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    let span = match spans.first() {
        Some(a) => busy_until.saturating_sub(a.1) as f64 * period,
        None => 0.0,
    };
    let busy_ms = busy as f64 * period;
    GpuProfile {
        dispatches: spans.len(),
        submits: host.len().saturating_sub(1),
        gpu_span_ms: span,
        kernel_ms,
        busy_ms,
        gap_ms: (span - busy_ms).max(0.0),
        gap_between_submits_ms: gap_submits,
        host_ms: host.last().map_or(0.0, |l| l - host[0]),
        host_between_submits_max_ms: host.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max),
        kernels: by_kernel,
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::{linear::linear, test_context};

    /// A profiled pass names each kernel it ran with its count, and its times add up: the span
    /// is the kernels plus the gaps, every kernel's time is positive.
    #[test]
    fn a_profile_counts_every_dispatch_and_its_times_add_up() {
        let ctx = test_context();
        assert!(ctx.can_profile(), "{} has no timestamp queries (lavapipe has them)", ctx.adapter.name);
        let x = ctx.upload(&[1.0; 64 * 256], &[64, 256]).unwrap();
        let w = ctx.upload(&[0.5; 128 * 256], &[128, 256]).unwrap();
        ctx.set_wide(Some(false));
        ctx.read_blocking(&linear(&ctx, &x, &w, None).unwrap()).unwrap();
        let (d0, _) = ctx.counters();
        ctx.profile_start().unwrap();
        let mut y = x.clone();
        // 60 dispatches: more than one command buffer's worth.
        for _ in 0..30 {
            y = linear(&ctx, &linear(&ctx, &y, &w, None).unwrap(), &ctx.upload(&[0.01; 256 * 128], &[256, 128]).unwrap(), None).unwrap();
        }
        let p = pollster::block_on(ctx.profile_finish()).unwrap();
        let (d1, _) = ctx.counters();
        ctx.set_wide(None);
        assert_eq!(p.dispatches as u64, d1 - d0);
        // One command buffer per 48 dispatches (unless EFFARCH_GPU_SUBMIT_EVERY says otherwise).
        assert!(p.submits >= 2 || super::GpuContext::batch() > 60, "{}", p.table());
        assert_eq!(p.kernels.iter().map(|k| k.count).sum::<usize>(), p.dispatches);
        assert!(p.kernels.iter().all(|k| k.total_ms > 0.0), "{}", p.table());
        // Busy and idle make the span; kernels summed are at least the busy time.
        assert!((p.busy_ms + p.gap_ms - p.gpu_span_ms).abs() <= 1e-9 + 1e-9 * p.gpu_span_ms, "{}", p.table());
        assert!(p.busy_ms > 0.0 && p.kernel_ms >= p.busy_ms * (1.0 - 1e-9), "{}", p.table());
        assert!((p.kernels.iter().map(|k| k.share).sum::<f64>() - 1.0).abs() < 1e-9);
        // Profiling stopped: later dispatches are not timed and need no query set.
        ctx.read_blocking(&linear(&ctx, &x, &w, None).unwrap()).unwrap();
        assert!(ctx.profile.lock().unwrap().is_none());
    }
}
