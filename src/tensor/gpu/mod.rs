//! GPU backend on wgpu (Vulkan/Metal/DX12 natively, WebGPU in the browser), with our own
//! WGSL kernels: one op per file, its launcher and its test side by side.
//!
//! Around the ops: the context (adapter, device, limits, error slot: `context.rs`), the
//! buffer pool and uploads (`buffers.rs`), the pipeline cache and the recording of dispatches
//! into command buffers (`pipelines.rs`), and the read-back (`readback.rs`). Pipelines are
//! cached per kernel because creating them is slow (especially in WebGPU), and compiled at a
//! model's load by recording its warm-up (`GpuContext::compile_by_recording`): no list of
//! kernels is kept by hand.

pub mod attention;
mod buffers;
mod context;
pub mod copy;
pub mod elementwise;
pub mod linear;
mod linear_shaders;
mod pipelines;
mod profile;
mod readback;
pub mod rope;
pub mod rows;
pub mod select;
pub mod ssm;
pub mod tome;
mod wgsl;

pub use buffers::{BufferPool, PooledBuffer};
pub use context::GpuContext;
pub use profile::{GpuProfile, KernelTime};

use std::sync::Arc;

/// Which adapter a context runs on, for reports ("NVIDIA H200 (Vulkan)", software or not).
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub software: bool,
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

/// The context every kernel test runs on. No adapter fails the test: a GPU test never passes
/// by skipping.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) fn test_context() -> Arc<GpuContext> {
    GpuContext::new_blocking().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers for lavapipe)")
}
