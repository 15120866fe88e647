//! Where tensors live and ops run ([`Device`]), and [`block_on`] for async model code.

use super::gpu::GpuContext;
#[cfg(target_arch = "wasm32")]
use crate::error::Error;
use crate::error::Result;
use std::sync::Arc;

/// Where tensors live and ops run.
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// candle-core on the host: gemm with AVX/FMA natively, SIMD128 in wasm.
    #[default]
    Cpu,
    /// wgpu with our WGSL kernels: Vulkan/Metal/DX12 natively, WebGPU in the browser.
    Gpu(Arc<GpuContext>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Device {
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
        match GpuContext::new().await {
            Ok(c) if c.adapter.software => (
                Device::Cpu,
                Some(format!("{} is a software GPU adapter ({}), slower than the CPU path: auto runs on the CPU", c.adapter.name, c.adapter.backend)),
            ),
            Ok(c) => (Device::Gpu(c), None),
            Err(_) => (Device::Cpu, None),
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

    /// A GPU device that stores linear weights as f16 (`f16 = true`) or f32.
    pub async fn gpu_with(f16: bool) -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new_with(f16).await?))
    }

    /// A short human-readable name for reports ("cpu (candle-core, avx2+fma)").
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu (candle-core, {})", super::cpu::simd_name()),
            Device::Gpu(c) => format!(
                "gpu (wgpu, {}, {}{}{})",
                c.adapter.name,
                c.adapter.backend,
                if c.adapter.software { ", software adapter" } else { "" },
                if c.f16_weights { ", f16 weights" } else { "" }
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu(_) => "gpu",
        }
    }
}

/// Runs model code written once as `async` (it awaits only read-backs) to completion from
/// synchronous code. Natively this waits for the device. In the browser nothing may block:
/// a CPU future is ready on its first poll, and one still waiting for WebGPU is an error
/// that points to the async API.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
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
