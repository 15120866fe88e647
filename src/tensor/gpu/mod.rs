//! GPU backend on wgpu (Vulkan/Metal/DX12 natively, WebGPU in the browser), with our own
//! WGSL kernels: one op per file, its launcher and its test side by side.
//!
//! Status: the context, buffers, pipeline cache and the first kernels. The `Tensor::Gpu`
//! variant joins the seam once every op the models use has a kernel here.
//!
//! Pipelines are cached per kernel because creating them is slow (especially in WebGPU).

pub mod attention;
pub mod copy;
pub mod elementwise;
pub mod linear;
pub mod rope;
pub mod rows;
pub mod select;
pub mod ssm;
pub mod tome;

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Which adapter a context runs on, for reports ("NVIDIA H200 (Vulkan)", software or not).
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub software: bool,
}

/// Kernel families beyond the ones every model uses (linear, copy, element-wise, row ops,
/// selection), for [`GpuContext::precompile`].
#[derive(Clone, Copy, Debug)]
pub enum Kernels {
    Attention { head_dim: usize },
    Rope,
    Ssm,
}

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
    pipelines: Mutex<HashMap<&'static str, Arc<wgpu::ComputePipeline>>>,
    pool: Arc<Mutex<BufferPool>>,
    binding_limit: std::sync::atomic::AtomicU64,
    /// Whether kernels split work to fill the device ([`Self::wide`]): 0 = from the adapter,
    /// 1 = no, 2 = yes (tests force each).
    wide: std::sync::atomic::AtomicU8,
    /// Dispatches recorded and command buffers submitted so far ([`Self::counters`]).
    dispatches: std::sync::atomic::AtomicU64,
    submits: std::sync::atomic::AtomicU64,
    /// Dispatches recorded but not yet submitted: one submit per [`Self::BATCH`] ops (or at
    /// a read-back) instead of one per op.
    pending: Mutex<Option<(wgpu::CommandEncoder, usize)>>,
    /// The first device error not yet reported (validation, out of memory, device loss).
    /// wgpu's default handler panics; ours records it and the next op returns it.
    error: Arc<Mutex<Option<String>>>,
    /// A bug injected by a test: the next op fails with [`Error::Backend`].
    bug: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({:?})", self.adapter)
    }
}

/// How a context stores linear weights (`LinearWeight`); activations and math stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuWeights {
    #[default]
    F32,
    /// Half the memory and bandwidth ([`GpuDtype::F16`]).
    F16,
    /// A quarter ([`GpuDtype::I8`]): the CPU's int8 weight scheme (symmetric, per output
    /// channel), dequantised as the kernel stages its tiles; activations stay f32.
    Int8,
}

/// Element type of a GPU buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuDtype {
    F32,
    U32,
    /// f16 pairs packed in 32-bit words (read with WGSL's `unpack2x16float`, so no
    /// `shader-f16` feature is needed). Linear weights only; rows have an even length.
    F16,
    /// int8 linear weights `[N, K]` (K a multiple of 4): the N per-row f32 scales, then the
    /// values four to a 32-bit word, little-endian along K (`w[j, k] = q · scale[j]`). No
    /// `packed_4x8_integer_dot_product` needed: the kernel unpacks with shifts.
    I8,
}

/// A storage buffer that goes back to its context's pool when the last tensor using it is
/// dropped (creating buffers is slow in WebGPU; a transformer asks for the same sizes in
/// every layer).
#[derive(Debug)]
pub struct PooledBuffer {
    buf: Option<wgpu::Buffer>,
    pool: Option<std::sync::Weak<Mutex<BufferPool>>>,
}

impl std::ops::Deref for PooledBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        // Some from creation until drop.
        self.buf.as_ref().expect("buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buf.take(), self.pool.as_ref().and_then(|p| p.upgrade())) {
            pool.lock().unwrap_or_else(|p| p.into_inner()).put(buf);
        }
    }
}

/// Idle buffers by exact size, up to [`BufferPool::MAX_IDLE`] bytes in all.
#[derive(Debug, Default)]
pub struct BufferPool {
    idle: HashMap<u64, Vec<wgpu::Buffer>>,
    idle_bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

impl BufferPool {
    const MAX_IDLE: u64 = 512 << 20;

    fn put(&mut self, buf: wgpu::Buffer) {
        let n = buf.size();
        if self.idle_bytes + n <= Self::MAX_IDLE {
            self.idle_bytes += n;
            self.idle.entry(n).or_default().push(buf);
        }
    }

    fn take(&mut self, bytes: u64) -> Option<wgpu::Buffer> {
        let b = self.idle.get_mut(&bytes)?.pop()?;
        self.idle_bytes -= bytes;
        Some(b)
    }
}

/// A row-major tensor in a storage buffer.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    pub buf: Arc<PooledBuffer>,
    pub shape: Vec<usize>,
    pub dtype: GpuDtype,
}

impl GpuTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("effarch"),
                required_features: if shader_f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() },
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
        }))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Arc<GpuContext>> {
        pollster::block_on(Self::new())
    }

    /// Compiles the pipelines of the kernels `kinds` need now, at load, so that a model's first
    /// run does not stall while shaders compile (the usual WebGPU cold start). Returns the ms
    /// it took.
    pub fn precompile(&self, kinds: &[Kernels]) -> f64 {
        let t0 = crate::clock::now_ms();
        let mut list = linear::kernels(self.weights, self.f16_math());
        list.extend(copy::kernels());
        list.extend(elementwise::kernels());
        list.extend(rows::kernels());
        list.extend(select::kernels());
        list.extend(tome::kernels());
        for k in kinds {
            match *k {
                Kernels::Attention { head_dim } => list.extend(attention::kernels(head_dim)),
                Kernels::Rope => list.extend(rope::kernels()),
                Kernels::Ssm => list.extend(ssm::kernels()),
            }
        }
        for (name, src) in list {
            self.pipeline(name, src);
        }
        crate::clock::now_ms() - t0
    }

    /// Pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The compute pipeline of `name`, compiled once from `wgsl` (entry point `main`).
    pub fn pipeline(&self, name: &'static str, wgsl: &str) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(name)
            .or_insert_with(|| {
                let module =
                    self.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(wgsl.into()) });
                Arc::new(self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }))
            })
            .clone()
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

    fn check_size(&self, bytes: u64, what: &str) -> Result<()> {
        let max = self.max_binding();
        if bytes > max {
            return Err(Error::Device(format!("{what}: {bytes} bytes exceed the adapter's storage buffer limit of {max}")));
        }
        Ok(())
    }

    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        self.upload_words(bytemuck::cast_slice(data), shape, GpuDtype::F32)
    }

    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Result<GpuTensor> {
        self.upload_words(data, shape, GpuDtype::U32)
    }

    /// Uploads `[rows, cols]` values as packed f16 (`cols` even).
    pub fn upload_f16(&self, data: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        if shape.len() != 2 || shape[1] % 2 != 0 || data.len() != shape[0] * shape[1] {
            return Err(Error::arg(format!("f16 upload needs [rows, even cols] filled by the data, got {shape:?} for {} values", data.len())));
        }
        let words: Vec<u32> =
            data.chunks_exact(2).map(|p| half::f16::from_f32(p[0]).to_bits() as u32 | ((half::f16::from_f32(p[1]).to_bits() as u32) << 16)).collect();
        self.buffer_of(&words, shape, GpuDtype::F16)
    }

    /// int8 weights `q` `[N, K]` (K a multiple of 4) with their per-row `scales`, as
    /// [`GpuDtype::I8`] lays them out.
    pub fn upload_i8(&self, q: &[i8], scales: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        if shape.len() != 2 || shape[1] % 4 != 0 || q.len() != shape[0] * shape[1] || scales.len() != shape[0] {
            return Err(Error::arg(format!(
                "int8 upload needs [rows, cols (a multiple of 4)] filled by the data and one scale a row, got {shape:?} for {} values and {} scales",
                q.len(),
                scales.len()
            )));
        }
        let mut words: Vec<u32> = scales.iter().map(|s| s.to_bits()).collect();
        words.extend(q.chunks_exact(4).map(|c| u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])));
        self.buffer_of(&words, shape, GpuDtype::I8)
    }

    fn upload_words(&self, data: &[u32], shape: &[usize], dtype: GpuDtype) -> Result<GpuTensor> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(Error::arg(format!("{} values do not fill shape {shape:?}", data.len())));
        }
        self.buffer_of(data, shape, dtype)
    }

    /// A storage buffer holding `words` (one word when empty: WebGPU has no empty bindings),
    /// as a tensor of `shape` and `dtype` (the caller has checked they describe the words).
    fn buffer_of(&self, words: &[u32], shape: &[usize], dtype: GpuDtype) -> Result<GpuTensor> {
        self.check_size((words.len().max(1) * 4) as u64, "upload")?;
        let contents: &[u8] = if words.is_empty() { &[0u8; 4] } else { bytemuck::cast_slice(words) };
        let buf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        });
        Ok(GpuTensor { buf: Arc::new(PooledBuffer { buf: Some(buf), pool: None }), shape: shape.to_vec(), dtype })
    }

    pub fn empty(&self, shape: &[usize]) -> Result<GpuTensor> {
        self.empty_like(shape, GpuDtype::F32)
    }

    /// An output buffer, from the pool when one of the size is idle. Its contents are
    /// undefined: every kernel writes each element of its output.
    pub fn empty_like(&self, shape: &[usize], dtype: GpuDtype) -> Result<GpuTensor> {
        let bytes = (shape.iter().product::<usize>().max(1) * 4) as u64;
        self.check_size(bytes, "allocation")?;
        let reused = {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            let b = pool.take(bytes);
            if b.is_some() {
                pool.hits += 1
            } else {
                pool.misses += 1
            }
            b
        };
        let buf = reused.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let pool = Some(Arc::downgrade(&self.pool));
        Ok(GpuTensor { buf: Arc::new(PooledBuffer { buf: Some(buf), pool }), shape: shape.to_vec(), dtype })
    }

    /// `(hits, misses)` of the buffer pool so far.
    pub fn pool_stats(&self) -> (u64, u64) {
        let p = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        (p.hits, p.misses)
    }

    pub fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(words),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// Records one dispatch of `pipeline` over `bindings` (in binding order).
    pub fn dispatch(&self, pipeline: &wgpu::ComputePipeline, bindings: &[&wgpu::Buffer], groups: (u32, u32, u32)) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::Device(format!("dispatch {groups:?} exceeds {max} workgroups per dimension")));
        }
        let layout = pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> =
            bindings.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (enc, n) = pending.get_or_insert_with(|| (self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }), 0));
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        }
        *n += 1;
        self.dispatches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if *n >= Self::BATCH {
            if let Some((enc, _)) = pending.take() {
                self.queue.submit([enc.finish()]);
                self.submits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        drop(pending);
        self.take_error()
    }

    /// Ops recorded per command buffer before it is submitted.
    const BATCH: usize = 48;

    /// Submits the recorded ops, with `extra` (e.g. a read-back copy) recorded after them.
    fn flush_with(&self, extra: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut enc = match pending.take() {
            Some((enc, _)) => enc,
            None => self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }),
        };
        extra(&mut enc);
        self.queue.submit([enc.finish()]);
        self.submits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Dispatches `items` invocations of a 1-D kernel with workgroup size `wg`, split over
    /// x and y so no dimension passes the per-dimension limit (kernels index
    /// `gid.x + gid.y · num_workgroups.x · wg`).
    pub fn dispatch_1d(&self, name: &'static str, wgsl: &str, bindings: &[&wgpu::Buffer], items: usize, wg: usize) -> Result<()> {
        let groups = items.div_ceil(wg.max(1)) as u32;
        let gx = groups.clamp(1, 32768);
        self.dispatch(&self.pipeline(name, wgsl), bindings, (gx, groups.div_ceil(gx), 1))
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

    /// Reads an f32 tensor back to the host (the one place that waits for the device).
    pub async fn read(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_slice(&self.read_words(t).await?).to_vec())
    }

    pub async fn read_u32(&self, t: &GpuTensor) -> Result<Vec<u32>> {
        self.read_words(t).await
    }

    async fn read_words(&self, t: &GpuTensor) -> Result<Vec<u32>> {
        if matches!(t.dtype, GpuDtype::F16 | GpuDtype::I8) {
            return Err(Error::Backend(format!("reading back packed {:?} weights is not supported", t.dtype)));
        }
        let n = t.len();
        let bytes = (n.max(1) * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.flush_with(|enc| enc.copy_buffer_to_buffer(&t.buf, 0, &staging, 0, bytes));
        let (tx, rx) = futures_oneshot();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| tx(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Device(format!("GPU poll failed: {e}")))?;
        rx.await.map_err(|e| Error::Device(format!("GPU read-back failed: {e}")))?;
        self.take_error()?;
        let data = staging.slice(..).get_mapped_range().map_err(|e| Error::Device(format!("GPU read-back map failed: {e:?}")))?;
        let out: Vec<u32> = bytemuck::cast_slice::<u8, u32>(&data)[..n].to_vec();
        drop(data);
        staging.unmap();
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        pollster::block_on(self.read(t))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32_blocking(&self, t: &GpuTensor) -> Result<Vec<u32>> {
        pollster::block_on(self.read_u32(t))
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

/// A one-shot channel from wgpu's map callback to the awaiting reader, without pulling in
/// an async runtime.
fn futures_oneshot<T: Send + 'static>() -> (impl FnOnce(T) + Send + 'static, OneShot<T>) {
    let slot = Arc::new(Mutex::new((None, None::<std::task::Waker>)));
    let tx_slot = slot.clone();
    let tx = move |v: T| {
        let mut s = tx_slot.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = Some(v);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    };
    (tx, OneShot { slot })
}

struct OneShot<T> {
    slot: Arc<Mutex<(Option<T>, Option<std::task::Waker>)>>,
}

impl<T> std::future::Future for OneShot<T> {
    type Output = T;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<T> {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.0.take() {
            Some(v) => std::task::Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

/// The context every kernel test runs on. No adapter fails the test: a GPU test never passes
/// by skipping.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) fn test_context() -> Arc<GpuContext> {
    GpuContext::new_blocking().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers for lavapipe)")
}
