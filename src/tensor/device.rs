//! Where tensors live and ops run ([`Device`]), and [`block_on`] for async model code.

use super::gpu::GpuContext;
use crate::error::{Error, Result};
use std::sync::Arc;

/// How the CPU holds and multiplies linear weights (the GPU's counterpart is its context's
/// f16 weights). Attention's products, norms and the scan stay f32 in every precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights (f16/bf16 checkpoint weights kept half and widened exactly): exact to rounding.
    #[default]
    F32,
    /// int8 weights, symmetric per output channel, quantised once at load; activations
    /// quantised per row on the fly; int32 accumulation; f32 dequantising epilogue
    /// (`tensor::cpu::gemm::int8`). Changes the numbers: an explicit option, its accuracy measured.
    Int8,
    /// bf16 weights (half the bytes) and activations rounded to bf16 as they are packed, f32
    /// sums: PyTorch's bf16 numbers. On AMX-BF16 or AVX-512 BF16 where the CPU has them (and
    /// they are faster), else on the f32 micro-kernels.
    Bf16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Int8, Precision::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
            Precision::Bf16 => "bf16",
        }
    }

    /// `"f32"`, `"int8"` or `"bf16"`; anything else is an error naming the choices.
    pub fn parse(s: &str) -> Result<Precision> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::arg(format!("precision {s:?}: expected one of f32, int8, bf16")))
    }
}

/// The precision `--precision auto` picks: int8 where the int8 engine has a vector kernel on
/// this CPU (AVX2, wasm SIMD128) — faster than f32 there, its accuracy tested — else f32.
pub fn auto_precision() -> Precision {
    match super::cpu::gemm::int8::Int8MicroKernel::best() {
        super::cpu::gemm::int8::Int8MicroKernel::Portable => Precision::F32,
        _ => Precision::Int8,
    }
}

/// Where tensors live and ops run.
#[derive(Clone, Debug)]
pub enum Device {
    /// candle-core on the host with our GEMM engine: AVX/FMA natively, SIMD128 in wasm;
    /// linear weights held in the given precision.
    Cpu(Precision),
    /// wgpu with our WGSL kernels: Vulkan/Metal/DX12 natively, WebGPU in the browser.
    Gpu(Arc<GpuContext>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu(_), Device::Cpu(_)) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Default for Device {
    fn default() -> Self {
        Device::cpu()
    }
}

impl Device {
    /// The CPU in f32.
    pub const fn cpu() -> Device {
        Device::Cpu(Precision::F32)
    }

    /// The CPU holding linear weights in `p`.
    pub const fn cpu_with(p: Precision) -> Device {
        Device::Cpu(p)
    }

    /// The precision linear weights are held in on this device (on a GPU: int8 with a
    /// context of int8 weights, else f32, its f16 storage included).
    pub fn precision(&self) -> Precision {
        match self {
            Device::Cpu(p) => *p,
            Device::Gpu(c) if c.weights == super::gpu::GpuWeights::Int8 => Precision::Int8,
            Device::Gpu(_) => Precision::F32,
        }
    }

    /// The device to run on when the user has not chosen: the GPU when a hardware adapter
    /// exists, else the CPU. A software adapter (llvmpipe/lavapipe, WARP natively; SwiftShader
    /// or another fallback adapter in the browser) is passed over everywhere, as our CPU
    /// kernels are far faster than it ([`Device::best_with_reason_async`] says so).
    /// [`Device::describe`] says which adapter was picked.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn best() -> Device {
        pollster::block_on(Self::best_async())
    }

    pub async fn best_async() -> Device {
        Self::best_with_reason_async().await.0
    }

    /// [`Device::best_async`], and why a GPU adapter was passed over when one was.
    pub async fn best_with_reason_async() -> (Device, Option<String>) {
        Self::by_rule(GpuContext::new().await, Precision::F32)
    }

    /// The rule of [`Device::best_with_reason_async`] on a GPU context already asked for, the
    /// CPU's linear layers in `p` when it takes the CPU.
    pub fn by_rule(gpu: Result<Arc<GpuContext>>, p: Precision) -> (Device, Option<String>) {
        match gpu {
            Ok(c) if c.adapter.software => (
                Device::cpu_with(p),
                Some(format!("{} is a software GPU adapter ({}), slower than the CPU path: auto runs on the CPU", c.adapter.name, c.adapter.backend)),
            ),
            Ok(c) => (Device::Gpu(c), None),
            Err(_) => (Device::cpu_with(p), None),
        }
    }

    /// A GPU device on the first adapter; an error (naming why) when there is none.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn gpu() -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new_blocking()?))
    }

    pub async fn gpu_async() -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new().await?))
    }

    /// A GPU device that stores linear weights as `weights` says (f32, f16, int8).
    pub async fn gpu_with(weights: super::gpu::GpuWeights) -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new_with(weights).await?))
    }

    /// A short human-readable name for reports ("cpu (candle-core, avx2+fma)").
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu(p) => {
                let simd = match p {
                    Precision::F32 => super::cpu::simd_name().to_string(),
                    Precision::Int8 => format!("int8 {}", super::cpu::gemm::int8::Int8MicroKernel::best().name()),
                    Precision::Bf16 => match super::cpu::gemm::bf16_engine() {
                        Some(engine) => format!("bf16 {engine}"),
                        None => format!("bf16 on {}", super::cpu::simd_name()),
                    },
                };
                match super::cpu::simd::threads() {
                    1 => format!("cpu (candle-core, {simd})"),
                    t => format!("cpu (candle-core, {simd}, {t} threads)"),
                }
            }
            Device::Gpu(c) => format!(
                "gpu (wgpu, {}, {}{}{})",
                c.adapter.name,
                c.adapter.backend,
                if c.adapter.software { ", software adapter" } else { "" },
                match (c.weights, c.f16_math()) {
                    (_, true) => ", f16 weights and math",
                    (super::gpu::GpuWeights::F16, false) => ", f16 weights",
                    (super::gpu::GpuWeights::Int8, _) => ", int8 weights",
                    (super::gpu::GpuWeights::F32, _) => "",
                }
            ),
        }
    }

    /// Compiles the GPU pipelines a model will run now, at load, by recording `warm_up` (a run
    /// of everything the model can do: [`GpuContext::compile_by_recording`]); on the CPU
    /// nothing, and `warm_up` is not called. On a hardware GPU ([`GpuContext::warm_run_at_load`]) the
    /// warm-up then runs once for real (natively; the page does so itself), so the buffers a
    /// pass needs are allocated and touched at load and the user's first pass is a warm one
    /// (it was 2.7× the warm time on an H200 from first-touch allocations alone); a software
    /// adapter skips it (a whole pass there takes seconds). Returns the ms it took. A warm-up
    /// that fails on the device or on the model's shapes is left to the run to report (the run
    /// would fail the same way, or fall back); a programming error ([`Error::Backend`])
    /// surfaces here.
    pub fn compile_by_recording(&self, warm_up: impl Fn() -> Result<()>) -> Result<f64> {
        match self {
            Device::Cpu(_) => Ok(0.0),
            Device::Gpu(c) => {
                let (mut ms, mut r) = c.compile_by_recording(&warm_up);
                if r.is_ok() && c.warm_run_at_load() && !cfg!(target_arch = "wasm32") {
                    let t0 = crate::clock::now_ms();
                    r = warm_up();
                    ms += crate::clock::now_ms() - t0;
                }
                match r {
                    Err(e @ Error::Backend(_)) => Err(e),
                    _ => Ok(ms),
                }
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu(_) => "cpu",
            Device::Gpu(_) => "gpu",
        }
    }
}

/// One backend's measured cost in a [`Choice`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Figure {
    /// "webgpu" or "cpu".
    pub backend: &'static str,
    /// "WebGPU (NVIDIA GeForce RTX 4070)" or "CPU (wasm simd128, 1 thread)".
    pub label: String,
    /// Milliseconds per layer, or `None` when the probe failed (`error` says why).
    pub ms_per_layer: Option<f64>,
    pub software: bool,
    pub error: Option<String>,
}

/// What backend `auto` picked by measurement, and the figures behind it.
#[derive(Clone, Debug)]
pub struct Choice {
    pub device: Device,
    pub figures: Vec<Figure>,
    /// One line for a tooltip: "WebGPU (…): 14.0 ms/layer, CPU (…): 41.0 ms/layer → WebGPU".
    pub reason: String,
}

impl Device {
    /// `auto` by measurement: `probe` times one layer of the model about to be loaded on a
    /// device (ms). Without a GPU adapter nothing is measured. Otherwise the CPU and the GPU are
    /// each probed and the faster is taken, except that a software adapter (SwiftShader,
    /// llvmpipe, a fallback adapter) is never taken while the CPU works: it is measured only so
    /// that the reason can say how much slower it is. A failing probe loses.
    pub async fn choose_measured<F, Fut>(probe: F) -> Choice
    where
        F: FnMut(Device) -> Fut,
        Fut: std::future::Future<Output = Result<f64>>,
    {
        Self::choose_measured_at(Precision::F32, probe).await
    }

    /// [`Device::choose_measured`] with the linear layers in `p` on both sides: the CPU in `p`,
    /// the GPU with int8 weights for int8 (f32 otherwise: bf16 is a CPU precision).
    pub async fn choose_measured_at<F, Fut>(p: Precision, mut probe: F) -> Choice
    where
        F: FnMut(Device) -> Fut,
        Fut: std::future::Future<Output = Result<f64>>,
    {
        let cpu_dev = Device::cpu_with(p);
        let gpu = match GpuContext::new_with(Self::gpu_weights_for(p)).await {
            Ok(c) => c,
            Err(e) => return Choice { device: cpu_dev, figures: Vec::new(), reason: format!("no GPU adapter ({e}): auto runs on the CPU") },
        };
        let t = super::cpu::simd::threads();
        let cpu_label = format!(
            "CPU ({}{}{})",
            if p == Precision::F32 { String::new() } else { format!("{} ", p.name()) },
            super::cpu::simd_name(),
            if cfg!(target_arch = "wasm32") { format!(", {t} thread{}", if t == 1 { "" } else { "s" }) } else { String::new() }
        );
        let gpu_label = format!("{} ({}{})", GPU_NAME, gpu.adapter.name, if gpu.adapter.software { ", software" } else { "" });
        let software = gpu.adapter.software;
        let figure = |backend, label: String, software, r: Result<f64>| match r {
            Ok(ms) => Figure { backend, label, ms_per_layer: Some(ms), software, error: None },
            Err(e) => Figure { backend, label, ms_per_layer: None, software, error: Some(e.to_string()) },
        };
        let cpu = figure("cpu", cpu_label, false, probe(cpu_dev.clone()).await);
        let gpu_dev = Device::Gpu(gpu);
        let g = figure("webgpu", gpu_label, software, probe(gpu_dev.clone()).await);
        let (take_gpu, reason) = decide(&g, &cpu);
        Choice { device: if take_gpu { gpu_dev } else { cpu_dev }, figures: vec![g, cpu], reason }
    }

    /// How a GPU stores linear weights for precision `p`: int8 for int8, else f32.
    pub fn gpu_weights_for(p: Precision) -> super::gpu::GpuWeights {
        if p == Precision::Int8 {
            super::gpu::GpuWeights::Int8
        } else {
            super::gpu::GpuWeights::F32
        }
    }
}

/// The rule of [`Device::choose_measured`] on the two figures: whether to take the GPU, and
/// the one-line reason.
pub(crate) fn decide(gpu: &Figure, cpu: &Figure) -> (bool, String) {
    let take_gpu = match (gpu.ms_per_layer, cpu.ms_per_layer) {
        (Some(_), None) => true,
        (Some(g), Some(c)) => !gpu.software && g < c,
        _ => false,
    };
    let say = |f: &Figure| match (f.ms_per_layer, &f.error) {
        (Some(ms), _) => format!("{}: {} ms/layer", f.label, fmt_ms(ms)),
        (None, Some(e)) => format!("{}: failed ({e})", f.label),
        (None, None) => f.label.clone(),
    };
    let why = if gpu.software && !take_gpu && gpu.ms_per_layer.is_some() { " (a software adapter is never picked)" } else { "" };
    (take_gpu, format!("{}, {} → {}{why}", say(gpu), say(cpu), if take_gpu { GPU_NAME } else { "CPU" }))
}

/// Three significant figures at most, at least one decimal ("41.0", "2.13", "0.0312").
fn fmt_ms(ms: f64) -> String {
    let decimals = if ms >= 10.0 {
        1
    } else if ms >= 1.0 {
        2
    } else {
        3 + (-ms.max(1e-6).log10()).floor() as usize
    }
    .min(6);
    format!("{ms:.decimals$}")
}

/// What the GPU backend is called where users see it.
#[cfg(target_arch = "wasm32")]
const GPU_NAME: &str = "WebGPU";
#[cfg(not(target_arch = "wasm32"))]
const GPU_NAME: &str = "GPU";

/// Times `run` (which must wait for its device) after one warm-up call: the fastest of up to
/// `max_runs` runs, stopping early once `budget_ms` is spent. For backend probes.
pub async fn time_best<F, Fut>(mut run: F, max_runs: usize, budget_ms: f64) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    run().await?;
    let (start, mut best) = (crate::clock::now_ms(), f64::INFINITY);
    for _ in 0..max_runs.max(1) {
        let t = crate::clock::now_ms();
        run().await?;
        best = best.min(crate::clock::now_ms() - t);
        if crate::clock::now_ms() - start > budget_ms {
            break;
        }
    }
    Ok(best)
}

/// Runs `f` on a thread of the CPU pool (natively), so the parallel kernels it calls split
/// their work from inside the pool: a small op then runs in place and a large one starts on
/// this thread while the other workers join, instead of every op being handed from a thread
/// outside the pool to a (possibly sleeping) worker and waited for. That hand-off is what a
/// decoding step, ~10 small ops per layer, otherwise pays each time.
#[cfg(not(target_arch = "wasm32"))]
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// In wasm, `f()` as it is (GPU handles there are not `Send`; the page already calls from a
/// worker of its own).
#[cfg(target_arch = "wasm32")]
pub fn on_pool<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// One synchronous pass (a decoding step) on `device`: on the CPU [`on_pool`] with the pool's
/// other workers kept awake until it returns ([`super::hot::hot`]), so that they do not fall
/// asleep on a futex between its parallel products and have to be woken for each; on a GPU
/// `f()` here. mamba-130m's f32 decode on a 2-core Xeon with AMX (`bench mamba-lm`, runs
/// alternated): 41.7–42.4 → 47.3–50.9 tokens/s.
#[cfg(not(target_arch = "wasm32"))]
pub fn cpu_pass<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    if matches!(device, Device::Cpu(_)) {
        hot_on_pool(f)
    } else {
        f()
    }
}

/// [`on_pool`] with the other workers kept awake: what [`cpu_pass`] and [`block_on_for`] run.
#[cfg(not(target_arch = "wasm32"))]
fn hot_on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    on_pool(|| super::hot::hot(f))
}

/// In wasm, `f()`.
#[cfg(target_arch = "wasm32")]
pub fn cpu_pass<R>(_device: &Device, f: impl FnOnce() -> R) -> R {
    f()
}

/// Runs model code written once as `async` (it awaits only read-backs) to completion from
/// synchronous code. Natively this waits for the device. In the browser nothing may block:
/// a CPU future is ready on its first poll, and one still waiting for WebGPU is an error
/// that points to the async API.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    pollster::block_on(f)
}

/// [`block_on`] for a pass on `devices`: all on the CPU, inside the thread pool ([`on_pool`]), so every
/// parallel kernel of the pass starts on a pool thread instead of being handed over from this
/// one and waited for (ViT-B/16 int8 −3..7 %, f32 −3 % on a 2-core Xeon), with the other
/// workers kept awake until it ends ([`super::hot::hot`]); elsewhere on this
/// thread, since a GPU context records its warm-up's pipelines per thread; and on this thread
/// inside [`on_this_thread`].
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on_for<'a, T: Send>(devices: impl IntoIterator<Item = &'a Device>, f: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
    if devices.into_iter().all(|d| matches!(d, Device::Cpu(_))) && !STAY.get() {
        hot_on_pool(|| pollster::block_on(f))
    } else {
        pollster::block_on(f)
    }
}

thread_local! {
    /// Inside [`on_this_thread`].
    static STAY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every [`block_on_for`] inside it kept on this thread: for callers whose state
/// is per thread (`probe::capture` records the stages a pass reports on its thread).
pub fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the outer setting however `f` ends.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            STAY.set(self.0);
        }
    }
    let _restore = Restore(STAY.replace(true));
    f()
}

/// In wasm, [`block_on`].
#[cfg(target_arch = "wasm32")]
pub fn block_on_for<'a, T>(_devices: impl IntoIterator<Item = &'a Device>, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    block_on(f)
}

#[cfg(target_arch = "wasm32")]
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => {
                Err(Error::Backend("WebGPU results are read back asynchronously in the browser: use the async API (e.g. Clip::run_async)".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{decide, Figure};

    fn fig(backend: &'static str, ms: Option<f64>, software: bool) -> Figure {
        Figure { backend, label: backend.to_uppercase(), ms_per_layer: ms, software, error: ms.is_none().then(|| "out of memory".into()) }
    }

    #[test]
    fn the_faster_backend_wins_but_never_a_software_adapter() {
        let (gpu, reason) = decide(&fig("webgpu", Some(2.0), false), &fig("cpu", Some(40.0), false));
        assert!(gpu, "{reason}");
        assert_eq!(reason, "WEBGPU: 2.00 ms/layer, CPU: 40.0 ms/layer → GPU");
        assert_eq!([super::fmt_ms(123.45), super::fmt_ms(0.0312), super::fmt_ms(0.5)], ["123.5", "0.0312", "0.500"]);
        let (gpu, reason) = decide(&fig("webgpu", Some(50.0), false), &fig("cpu", Some(40.0), false));
        assert!(!gpu, "{reason}");
        assert!(reason.ends_with("→ CPU"), "{reason}");
        // Faster or not, a software adapter is not taken while the CPU works.
        let (gpu, reason) = decide(&fig("webgpu", Some(2.0), true), &fig("cpu", Some(40.0), false));
        assert!(!gpu, "{reason}");
        assert!(reason.ends_with("→ CPU (a software adapter is never picked)"), "{reason}");
    }

    #[test]
    fn a_failing_probe_loses() {
        let (gpu, reason) = decide(&fig("webgpu", None, false), &fig("cpu", Some(40.0), false));
        assert!(!gpu);
        assert_eq!(reason, "WEBGPU: failed (out of memory), CPU: 40.0 ms/layer → CPU");
        let (gpu, reason) = decide(&fig("webgpu", Some(90.0), true), &fig("cpu", None, false));
        assert!(gpu, "the GPU is all that works: {reason}");
    }
}
