//! Compute pipelines, compiled once per kernel and cached (and compiled ahead, at load, by
//! recording a model's warm-up: [`GpuContext::compile_by_recording`]), and the recording of
//! dispatches: one command buffer per [`GpuContext::BATCH`] ops, submitted before a read-back.

use super::GpuContext;
use crate::error::{Error, Result};
use std::sync::Arc;

impl GpuContext {
    /// Runs `pass` (a model's warm-up: a run of everything the model can do, on small inputs)
    /// as a recording, so that the pipelines a first run needs are compiled at load, not while
    /// the user waits: every kernel it dispatches is compiled, nothing is encoded or run, and
    /// read-backs return zeros. A kernel whose choice among variants depends on shapes or on
    /// the device also compiles the variants other shapes would pick
    /// ([`Self::compile_alternatives`]). Only this thread records; others on the context run
    /// as usual. Returns the ms it took and what the pass returned.
    pub fn compile_by_recording(&self, pass: impl FnOnce() -> Result<()>) -> (f64, Result<()>) {
        use std::sync::atomic::Ordering::SeqCst;
        /// Ends the recording however `pass` ends (an error or a panic included).
        struct Stop<'a>(&'a GpuContext);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                *self.0.recorder.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.0.recording.store(false, SeqCst);
            }
        }
        let t0 = crate::clock::now_ms();
        let outer = {
            let mut r = self.recorder.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_some() {
                // Nested or concurrent: the outer recording stands (a second recorder would
                // make the first thread's work run for real).
                None
            } else {
                *r = Some(std::thread::current().id());
                self.recording.store(true, SeqCst);
                Some(Stop(self))
            }
        };
        let result = pass();
        drop(outer);
        (crate::clock::now_ms() - t0, result)
    }

    /// Whether this thread is recording ([`Self::compile_by_recording`]).
    pub fn recording(&self) -> bool {
        self.recording.load(std::sync::atomic::Ordering::Relaxed)
            && *self.recorder.lock().unwrap_or_else(|p| p.into_inner()) == Some(std::thread::current().id())
    }

    /// While recording, compiles what `list` gives too: the variants a kernel would pick for
    /// other shapes or another device width than the warm-up's (a kernel's own knowledge,
    /// kept in its file). Does nothing, and does not call `list`, otherwise.
    pub fn compile_alternatives<I: IntoIterator<Item = (&'static str, &'static str)>>(&self, list: impl FnOnce() -> I) {
        if self.recording() {
            for (name, src) in list() {
                self.pipeline(name, src);
            }
        }
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
                let pipeline = Arc::new(self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(name),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }));
                self.pipeline_names.lock().unwrap_or_else(|p| p.into_inner()).insert(Arc::as_ptr(&pipeline) as usize, name);
                pipeline
            })
            .clone()
    }
    /// Records one dispatch of `pipeline` over `bindings` (in binding order).
    pub fn dispatch(&self, pipeline: &wgpu::ComputePipeline, bindings: &[&wgpu::Buffer], groups: (u32, u32, u32)) -> Result<()> {
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::Device(format!("dispatch {groups:?} exceeds {max} workgroups per dimension")));
        }
        if self.recording() {
            // The pipeline is compiled (the caller made it); nothing runs in a recording.
            return Ok(());
        }
        let key = pipeline as *const wgpu::ComputePipeline as usize;
        let layout = {
            let mut layouts = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
            layouts.entry(key).or_insert_with(|| pipeline.get_bind_group_layout(0)).clone()
        };
        let entries: Vec<wgpu::BindGroupEntry> =
            bindings.iter().enumerate().map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() }).collect();
        let group = self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let p = pending.get_or_insert_with(|| Pending {
            enc: self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }),
            pass: None,
            n: 0,
        });
        let record = |pass: &mut wgpu::ComputePass<'_>| {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        };
        if self.profiling.load(std::sync::atomic::Ordering::Relaxed) {
            // A pass of its own, for its timestamps.
            p.pass = None;
            let names = self.pipeline_names.lock().unwrap_or_else(|p| p.into_inner());
            let name = names.get(&(pipeline as *const wgpu::ComputePipeline as usize)).copied().unwrap_or("?");
            drop(names);
            let enc = &mut p.enc;
            self.profile_pass(name, groups, |timestamp_writes| {
                record(&mut enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes }))
            });
        } else {
            let enc = &mut p.enc;
            record(
                p.pass.get_or_insert_with(|| enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None }).forget_lifetime()),
            );
        }
        p.n += 1;
        self.dispatches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if p.n >= Self::batch() {
            if let Some(p) = pending.take() {
                let mut enc = p.encoder();
                self.profile_resolve(&mut enc);
                self.queue.submit([enc.finish()]);
                self.submits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        drop(pending);
        self.take_error()
    }

    /// Ops recorded per command buffer before it is submitted (so the GPU starts on a long
    /// pass while the host records the rest).
    pub(super) const BATCH: usize = 48;

    /// [`Self::BATCH`], or `EFFARCH_GPU_SUBMIT_EVERY` ops (0: only at read-backs, one command
    /// buffer per forward), read once: for timing both on a real GPU (`scripts/gpu_bench.sh`).
    pub(super) fn batch() -> usize {
        static B: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *B.get_or_init(|| match std::env::var("EFFARCH_GPU_SUBMIT_EVERY").ok().and_then(|v| v.parse::<usize>().ok()) {
            Some(0) => usize::MAX,
            Some(n) => n,
            None => Self::BATCH,
        })
    }

    /// Submits the recorded ops, with `extra` (e.g. a read-back copy) recorded after them.
    pub(super) fn flush_with(&self, extra: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut enc = match pending.take() {
            Some(p) => p.encoder(),
            None => self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }),
        };
        extra(&mut enc);
        self.profile_resolve(&mut enc);
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

/// The command buffer being recorded: its encoder, the compute pass its dispatches share (wgpu
/// orders the dispatches of one pass by their usage scopes, with the barriers they need; a
/// profile gives each dispatch a pass of its own, for its timestamps), and its dispatches.
pub(crate) struct Pending {
    enc: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
    n: usize,
}

impl Pending {
    /// The encoder, its open pass ended.
    fn encoder(mut self) -> wgpu::CommandEncoder {
        drop(self.pass.take());
        self.enc
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::{linear::linear, test_context};

    /// A model's load records its warm-up; on a hardware GPU it then runs it once for real, so
    /// the first pass finds its buffers allocated and touched; on a software adapter (a pass
    /// there takes seconds) it does not, even with the wide policy forced.
    #[test]
    fn a_hardware_gpu_runs_the_warm_up_for_real_at_load() {
        let ctx = test_context();
        let device = crate::tensor::Device::Gpu(ctx.clone());
        let x = ctx.upload(&[1.0; 9 * 16], &[9, 16]).unwrap();
        let w = ctx.upload(&[0.5; 4 * 16], &[4, 16]).unwrap();
        ctx.set_wide(Some(true));
        assert!(!ctx.warm_run_at_load(), "lavapipe is a software adapter");
        for wide in [false, true] {
            // `wide`: as on a hardware GPU.
            ctx.set_warm_run_at_load(wide.then_some(true));
            let (runs, recorded) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
            let before = ctx.counters();
            device
                .compile_by_recording(|| {
                    runs.set(runs.get() + 1);
                    recorded.set(recorded.get() + ctx.recording() as u32);
                    assert_eq!(ctx.read_blocking(&linear(&ctx, &x, &w, None)?)?, vec![if ctx.recording() { 0.0 } else { 8.0 }; 9 * 4]);
                    Ok(())
                })
                .unwrap();
            assert_eq!((runs.get(), recorded.get()), (1 + wide as u32, 1), "wide {wide}");
            assert_eq!(ctx.counters().1 > before.1, wide, "a submit only when the warm-up ran for real");
        }
        ctx.set_warm_run_at_load(None);
        ctx.set_wide(None);
    }

    /// Uniform buffers are kept by content: the same parameters give the same buffer (never
    /// written again, so sharing it is safe), other parameters another; products that reuse
    /// them stay right.
    #[test]
    fn uniforms_are_kept_by_content() {
        let ctx = test_context();
        let (a, b, c) = (ctx.uniform(&[7, 77, 777, 1]), ctx.uniform(&[7, 77, 777, 1]), ctx.uniform(&[7, 77, 777, 2]));
        assert!(a == b && a != c);
        let x = ctx.upload(&[1.0; 3 * 40], &[3, 40]).unwrap();
        let w = ctx.upload(&[0.25; 5 * 40], &[5, 40]).unwrap();
        for _ in 0..3 {
            assert_eq!(ctx.read_blocking(&linear(&ctx, &x, &w, None).unwrap()).unwrap(), vec![10.0; 3 * 5]);
        }
        assert!(ctx.uniforms_kept() >= 2);
    }

    /// A recording compiles what it dispatches (and the variants other shapes would pick), runs
    /// nothing, reads back zeros; another thread on the same context meanwhile runs for real,
    /// and after the recording every run does, compiling nothing more.
    #[test]
    fn a_recording_compiles_and_runs_nothing() {
        let ctx = test_context();
        let x = ctx.upload(&[1.0; 9 * 16], &[9, 16]).unwrap();
        let w = ctx.upload(&[0.5; 4 * 16], &[4, 16]).unwrap();
        let counters = ctx.counters();
        let (_, r) = ctx.compile_by_recording(|| {
            assert!(ctx.recording());
            assert_eq!(ctx.read_blocking(&linear(&ctx, &x, &w, None)?)?, vec![0.0; 9 * 4]);
            std::thread::scope(|s| {
                s.spawn(|| {
                    assert!(!ctx.recording());
                    assert_eq!(ctx.read_blocking(&linear(&ctx, &x, &w, None).unwrap()).unwrap(), vec![8.0; 9 * 4]);
                });
            });
            Ok(())
        });
        r.unwrap();
        assert!(!ctx.recording());
        // The other thread's product ran (its dispatches and one submit); the recording's did not.
        let (d, s) = ctx.counters();
        assert!(d > counters.0 && s == counters.1 + 1, "{counters:?} → {:?}", (d, s));
        // The tiled kernel, the few-row one and split K's reduce, from one 9-row product.
        let compiled = ctx.pipeline_count();
        assert!(compiled >= 3, "{compiled}");
        let few = ctx.upload(&[1.0; 2 * 16], &[2, 16]).unwrap();
        for (input, rows) in [(&x, 9), (&few, 2)] {
            assert_eq!(ctx.read_blocking(&linear(&ctx, input, &w, None).unwrap()).unwrap(), vec![8.0; rows * 4]);
        }
        assert_eq!(ctx.pipeline_count(), compiled, "a shape the recording did not see compiled a pipeline");
    }
}
