//! Reading tensors back to the host: the one place that waits for the device.

use super::{GpuContext, GpuDtype, GpuTensor};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

impl GpuContext {
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
        if self.recording() {
            // A warm-up being recorded ran nothing: zeros of the right length let it go on.
            return Ok(vec![0; n]);
        }
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

/// A one-shot channel from wgpu's map callback to the awaiting reader, without pulling in
/// an async runtime.
pub(super) fn futures_oneshot<T: Send + 'static>() -> (impl FnOnce(T) + Send + 'static, OneShot<T>) {
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

pub(super) struct OneShot<T> {
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
