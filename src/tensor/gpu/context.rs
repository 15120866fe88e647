//! The GPU context: adapter, device, queue, limits, the width policy, and the slot that turns
//! wgpu's device errors into `Result`s.

use super::buffers::BufferPool;
use super::{AdapterReport, GpuWeights};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterReport,
    pub limits: wgpu::Limits,
    /// How linear weights are stored (f32; f16 or int8: less memory and bandwidth, math f32).
    pub weights: GpuWeights,
    /// f16 weights on an adapter that has `shader-f16` (the device was made with it): see
    /// [`Self::f16_math`].
    pub shader_f16: bool,
    pub(super) pipelines: Mutex<HashMap<&'static str, Arc<wgpu::ComputePipeline>>>,
    pub(super) pool: Arc<Mutex<BufferPool>>,
    pub(super) binding_limit: std::sync::atomic::AtomicU64,
    /// Whether kernels split work to fill the device ([`Self::wide`]): 0 = from the adapter,
    /// 1 = no, 2 = yes (tests force each).
    pub(super) wide: std::sync::atomic::AtomicU8,
    /// Dispatches recorded and command buffers submitted so far ([`Self::counters`]).
    pub(super) dispatches: std::sync::atomic::AtomicU64,
    pub(super) submits: std::sync::atomic::AtomicU64,
    /// Dispatches recorded but not yet submitted: one submit per [`Self::BATCH`] ops (or at
    /// a read-back) instead of one per op.
    pub(super) pending: Mutex<Option<super::pipelines::Pending>>,
    /// The first device error not yet reported (validation, out of memory, device loss).
    /// wgpu's default handler panics; ours records it and the next op returns it.
    pub(super) error: Arc<Mutex<Option<String>>>,
    /// A bug injected by a test: the next op fails with [`Error::Backend`].
    pub(super) bug: Arc<Mutex<Option<String>>>,
    /// The thread recording a warm-up ([`Self::compile_by_recording`]), if any: its dispatches
    /// compile their pipelines and run nothing. Other threads on the context run as usual.
    pub(super) recorder: Mutex<Option<std::thread::ThreadId>>,
    /// Whether [`Self::recorder`] is set (one atomic load on every dispatch, not a lock).
    pub(super) recording: std::sync::atomic::AtomicBool,
    /// Kernel names by pipeline, for the profile.
    pub(super) pipeline_names: Mutex<HashMap<usize, &'static str>>,
    /// Each pipeline's bind group layout (asked of wgpu once, not on every dispatch), by the
    /// pipeline's address: pipelines are cached in [`Self::pipelines`] for the context's life.
    pub(super) layouts: Mutex<HashMap<usize, wgpu::BindGroupLayout>>,
    /// Uniform buffers by content ([`Self::uniform`]): a decoding step repeats the same
    /// parameters op for op, so after the first step no uniform buffer is created.
    pub(super) uniforms: Mutex<HashMap<Vec<u32>, wgpu::Buffer>>,
    /// The timestamp queries of a profile in progress ([`Self::profile_start`]).
    pub(super) profile: Mutex<Option<super::profile::ProfileState>>,
    /// Whether a profile is in progress (one atomic load on every dispatch, not a lock).
    pub(super) profiling: std::sync::atomic::AtomicBool,
    /// Whether the device was made with subgroup operations ([`Self::subgroups`]).
    pub(super) has_subgroups: bool,
    /// [`Self::subgroups`] turned off by a test (1), or from the device (0, 2).
    pub(super) subgroup_override: std::sync::atomic::AtomicU8,
    /// [`Self::warm_run_at_load`] forced by a test: 0 = from the adapter, 1 = no, 2 = yes.
    pub(super) warm_run: std::sync::atomic::AtomicU8,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({:?})", self.adapter)
    }
}

impl GpuContext {
    /// The first adapter wgpu offers (high-performance preference). Errors when there is none,
    /// so a test or run asked for the GPU never passes silently on the CPU.
    pub async fn new() -> Result<Arc<GpuContext>> {
        Self::new_with(GpuWeights::F32).await
    }

    /// [`GpuContext::new`] with linear weights stored as `weights` says.
    pub async fn new_with(weights: GpuWeights) -> Result<Arc<GpuContext>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor { backends: wgpu::Backends::PRIMARY, ..wgpu::InstanceDescriptor::new_without_display_handle() });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() })
            .await
            .map_err(|e| Error::Device(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let shader_f16 = weights == GpuWeights::F16 && adapter.features().contains(wgpu::Features::SHADER_F16);
        #[cfg_attr(target_arch = "wasm32", allow(unused_mut))]
        let mut features = if shader_f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() };
        // Timestamp queries cost nothing until a profile asks for them (natively: `bench --profile`);
        // subgroups (natively, on adapters whose subgroups are at most a workgroup of 64 wide)
        // serve the reductions of `rows.wgsl` and the few-row linear kernel.
        #[cfg(not(target_arch = "wasm32"))]
        {
            features.insert(adapter.features() & wgpu::Features::TIMESTAMP_QUERY);
            if info.subgroup_max_size <= 64 {
                features.insert(adapter.features() & wgpu::Features::SUBGROUP);
            }
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("effarch"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(format!("GPU device request failed on {}: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(|| e.to_string());
        }));
        let slot = error.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            s.get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
        });
        #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))]
        let mut adapter =
            AdapterReport { name: info.name.clone(), backend: format!("{:?}", info.backend), software: info.device_type == wgpu::DeviceType::Cpu };
        #[cfg(target_arch = "wasm32")]
        if let Some((name, fallback)) = browser_adapter_info().await {
            adapter.name = name;
            adapter.software |= fallback;
        }
        Ok(Arc::new(GpuContext {
            error,
            bug: Arc::default(),
            device,
            queue,
            adapter,
            limits,
            weights,
            shader_f16,
            pipelines: Mutex::new(HashMap::new()),
            pool: Arc::new(Mutex::new(BufferPool::default())),
            binding_limit: std::sync::atomic::AtomicU64::new(0),
            wide: std::sync::atomic::AtomicU8::new(0),
            dispatches: std::sync::atomic::AtomicU64::new(0),
            submits: std::sync::atomic::AtomicU64::new(0),
            pending: Mutex::new(None),
            recorder: Mutex::new(None),
            recording: std::sync::atomic::AtomicBool::new(false),
            pipeline_names: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
            uniforms: Mutex::new(HashMap::new()),
            profile: Mutex::new(None),
            profiling: std::sync::atomic::AtomicBool::new(false),
            // EFFARCH_GPU_SUBGROUPS=0 turns them off, so a benchmark can time both on one GPU.
            has_subgroups: features.contains(wgpu::Features::SUBGROUP)
                && !cfg!(target_arch = "wasm32")
                && std::env::var("EFFARCH_GPU_SUBGROUPS").as_deref() != Ok("0"),
            subgroup_override: std::sync::atomic::AtomicU8::new(0),
            warm_run: std::sync::atomic::AtomicU8::new(0),
        }))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Arc<GpuContext>> {
        pollster::block_on(Self::new())
    }

    /// The largest buffer one binding may hold: the adapter's limits (or a lower one set for tests).
    pub fn max_binding(&self) -> u64 {
        let adapter = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        match self.binding_limit.load(std::sync::atomic::Ordering::Relaxed) {
            0 => adapter,
            l => l.min(adapter),
        }
    }

    /// `(dispatches, submits)` since the context was made: a pass's cost in fixed GPU
    /// overheads is the difference around it.
    pub fn counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.dispatches.load(Relaxed), self.submits.load(Relaxed))
    }

    /// Whether the device is wide enough that a small problem is worth splitting to fill it
    /// (split K in `linear`, key chunks in attention), each split costing a second pass: true
    /// on a hardware GPU (an H200 has 132 multiprocessors), false on a software adapter
    /// (lavapipe, SwiftShader), whose few CPU threads one pass keeps busy already.
    pub fn wide(&self) -> bool {
        match self.wide.load(std::sync::atomic::Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => !self.adapter.software,
        }
    }

    /// Whether the linear kernels with f16 weights also do their math in f16: tiles staged in
    /// f16 in workgroup memory, each 16-deep K tile's products summed in f16, the tiles added in
    /// f32 (its own golden tolerance). Half the workgroup memory and twice the multiply rate
    /// where a GPU has f16 units: with `shader-f16` on a [`Self::wide`] device (a software
    /// adapter emulates f16: ViT-B/16 6.6 s against 5.2 s with f32 math on lavapipe).
    pub fn f16_math(&self) -> bool {
        self.shader_f16 && self.wide()
    }

    /// Whether kernels with a subgroup variant use it (`rows.wgsl`'s reductions, the few-row
    /// linear kernel): where the device has subgroup operations (wgpu `SUBGROUP`; lavapipe's
    /// are 8 wide, NVIDIA's 32), unless a test turned them off.
    pub fn subgroups(&self) -> bool {
        self.has_subgroups && self.subgroup_override.load(std::sync::atomic::Ordering::Relaxed) != 1
    }

    /// Turns the subgroup variants off (`Some(false)`) or back to the device's choice, so
    /// tests run both paths on an adapter that has subgroups.
    #[doc(hidden)]
    pub fn set_subgroups(&self, on: Option<bool>) {
        self.subgroup_override.store(on.map_or(0, |w| 1 + w as u8), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a model's load runs its warm-up for real after recording it
    /// (`Device::compile_by_recording`): on a hardware adapter, not on a software one, where a
    /// pass takes seconds (tests that force [`Self::wide`] there do not pay for it).
    pub fn warm_run_at_load(&self) -> bool {
        match self.warm_run.load(std::sync::atomic::Ordering::Relaxed) {
            0 => !self.adapter.software,
            w => w == 2,
        }
    }

    /// Forces [`Self::warm_run_at_load`] (`None`: from the adapter again), for tests.
    #[doc(hidden)]
    pub fn set_warm_run_at_load(&self, on: Option<bool>) {
        self.warm_run.store(on.map_or(0, |w| 1 + w as u8), std::sync::atomic::Ordering::Relaxed);
    }

    /// Forces [`Self::wide`] (`None`: from the adapter again), so tests run both paths on any adapter.
    #[doc(hidden)]
    pub fn set_wide(&self, wide: Option<bool>) {
        self.wide.store(wide.map_or(0, |w| 1 + w as u8), std::sync::atomic::Ordering::Relaxed);
    }

    /// Pretends the adapter's binding limit is `bytes`, so tests can exercise splitting.
    #[doc(hidden)]
    pub fn set_binding_limit(&self, bytes: u64) {
        self.binding_limit.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records `msg` as if the device had raised it: the next op fails with it. For tests of
    /// the CPU fallback, which cannot lose a real device on demand.
    #[doc(hidden)]
    pub fn inject_error(&self, msg: &str) {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| msg.to_string());
    }

    /// Makes the next op fail with `msg` as a programming error ([`Error::Backend`]), which
    /// must surface rather than fall back. For tests.
    #[doc(hidden)]
    pub fn inject_bug(&self, msg: &str) {
        self.bug.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| msg.to_string());
    }

    /// Returns (and clears) a device error raised since the last check.
    pub fn take_error(&self) -> Result<()> {
        if let Some(b) = self.bug.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(Error::Backend(b));
        }
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(Error::Device(format!("GPU error on {}: {e}", self.adapter.name))),
            None => Ok(()),
        }
    }
}

/// The browser's own description of its WebGPU adapter (`GPUAdapter.info`: vendor,
/// architecture, description; SwiftShader is Google's software fallback), which wgpu's
/// WebGPU backend leaves empty. `None` when the browser gives nothing.
#[cfg(target_arch = "wasm32")]
async fn browser_adapter_info() -> Option<(String, bool)> {
    use wasm_bindgen::JsCast;
    let get = |o: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(o, &k.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
    let gpu = get(&get(&js_sys::global(), "navigator")?, "gpu")?;
    let request = get(&gpu, "requestAdapter")?.dyn_into::<js_sys::Function>().ok()?;
    let promise = request.call0(&gpu).ok()?.dyn_into::<js_sys::Promise>().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok().filter(|a| !a.is_null())?;
    let info = get(&adapter, "info")?;
    let text = |k: &str| get(&info, k).and_then(|v| v.as_string()).unwrap_or_default();
    let parts: Vec<String> = [text("vendor"), text("architecture"), text("description")].into_iter().filter(|s| !s.is_empty()).collect();
    let fallback = get(&info, "isFallbackAdapter").and_then(|v| v.as_bool()).unwrap_or(false) || text("architecture") == "swiftshader";
    (!parts.is_empty()).then(|| (parts.join(" "), fallback))
}
