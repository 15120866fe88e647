//! Compute pipelines, compiled once per kernel and cached, and the recording of dispatches:
//! one command buffer per [`GpuContext::BATCH`] ops, submitted before a read-back.

use super::{attention, copy, elementwise, linear_shaders, rope, rows, select, ssm, tome, GpuContext};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Kernel families beyond the ones every model uses (linear, copy, element-wise, row ops,
/// selection), for [`GpuContext::precompile`].
#[derive(Clone, Copy, Debug)]
pub enum Pipelines {
    Attention { head_dim: usize },
    Rope,
    Ssm,
}

impl GpuContext {
    /// Compiles the pipelines of the kernels `kinds` need now, at load, so that a model's first
    /// run does not stall while shaders compile (the usual WebGPU cold start). Returns the ms
    /// it took.
    pub fn precompile(&self, kinds: &[Pipelines]) -> f64 {
        let t0 = crate::clock::now_ms();
        let mut list = linear_shaders::pipelines(self.weights, self.f16_math());
        list.extend(copy::pipelines());
        list.extend(elementwise::pipelines());
        list.extend(rows::pipelines());
        list.extend(select::pipelines());
        list.extend(tome::pipelines());
        for k in kinds {
            match *k {
                Pipelines::Attention { head_dim } => list.extend(attention::pipelines(head_dim)),
                Pipelines::Rope => list.extend(rope::pipelines()),
                Pipelines::Ssm => list.extend(ssm::pipelines()),
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
    pub(super) fn flush_with(&self, extra: impl FnOnce(&mut wgpu::CommandEncoder)) {
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
}
