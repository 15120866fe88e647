//! Storage buffers: a pool by exact size (creating buffers is slow in WebGPU), uploads of
//! f32, u32, f16 and int8 data, output buffers, uniforms.

use super::{GpuContext, GpuDtype, GpuTensor};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

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

impl GpuContext {
    pub(super) fn check_size(&self, bytes: u64, what: &str) -> Result<()> {
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

    /// A uniform buffer holding `words`. Uniforms are never written after creation, so one
    /// buffer serves every op with the same parameters: they are kept by content (up to
    /// [`Self::UNIFORMS_KEPT`]; then the cache starts again), and a decoding step, which
    /// repeats the previous step's parameters op for op, creates none.
    pub fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        let mut cache = self.uniforms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = cache.get(words) {
            return b.clone();
        }
        if cache.len() >= Self::UNIFORMS_KEPT {
            cache.clear();
        }
        let b = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(words),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        cache.insert(words.to_vec(), b.clone());
        b
    }

    /// Uniform buffers kept by [`Self::uniform`] (≤ 64 bytes each): a Qwen prefill uses a
    /// few thousand distinct ones.
    pub(super) const UNIFORMS_KEPT: usize = 8192;

    /// Uniform buffers kept now (for tests).
    pub fn uniforms_kept(&self) -> usize {
        self.uniforms.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
