//! Which device a session runs on: `auto` measured or by rule, the page's labels.

use super::{js_err, to_js};
use crate::tensor::{Choice, Device, Figure};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// The device a model made now with backend "auto" would run on, e.g. "gpu (wgpu, SwiftShader
/// Device (Subzero), BrowserWebGpu, software adapter)" or "cpu (candle-core, wasm simd128)".
#[wasm_bindgen(js_name = defaultDevice)]
pub async fn default_device() -> String {
    Device::best_async().await.describe()
}

/// What backend "auto" picks and why: `{device, reason}`, with `reason` set when a software
/// WebGPU adapter (SwiftShader, a fallback adapter) was passed over for the CPU.
#[wasm_bindgen(js_name = autoChoice)]
pub async fn auto_choice() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Auto {
        device: String,
        reason: Option<String>,
        /// The browser's GPU adapter ("SwiftShader Device (Subzero), software"), or null: the
        /// page keys its cache of measured choices by it.
        adapter: Option<String>,
    }
    // One adapter request for both answers.
    let gpu = crate::tensor::gpu::GpuContext::new().await;
    let adapter = gpu.as_ref().ok().map(|c| format!("{}{}", c.adapter.name, if c.adapter.software { ", software" } else { "" }));
    let (d, reason) = Device::by_rule(gpu, crate::tensor::Precision::F32);
    to_js(&Auto { device: d.describe(), reason, adapter })
}

/// Whether the CPU path is what this build runs without a GPU ("cpu (candle-core, wasm simd128)").
#[wasm_bindgen(js_name = cpuDevice)]
pub fn cpu_device() -> String {
    Device::cpu().describe()
}

/// The measured `auto` choice a session was made with, as the page and the npm package see it:
/// `{backend, reason, figures: [{backend, label, ms_per_layer, software, error}]}`.
#[derive(Serialize, Clone)]
pub(crate) struct AutoChoice {
    backend: &'static str,
    reason: String,
    figures: Vec<Figure>,
}

impl AutoChoice {
    fn new(c: &Choice) -> Self {
        AutoChoice { backend: if matches!(c.device, Device::Gpu(_)) { "webgpu" } else { "cpu" }, reason: c.reason.clone(), figures: c.figures.clone() }
    }
}

/// [`device_for`], except that `"auto"` chooses by measurement: `probe` times one layer of the
/// model about to be loaded on each backend ([`Device::choose_measured_at`]).
pub(crate) async fn device_measured<F, Fut>(backend: &str, precision: Option<&str>, probe: F) -> Result<(Device, Option<AutoChoice>), JsError>
where
    F: FnMut(Device) -> Fut,
    Fut: std::future::Future<Output = crate::Result<f64>>,
{
    match backend {
        "" | "auto" => {
            let c = Device::choose_measured_at(parse_precision(precision)?, probe).await;
            Ok((c.device.clone(), Some(AutoChoice::new(&c))))
        }
        other => Ok((device_for(other, precision).await?, None)),
    }
}

/// A precision from JS: `"f32"` (the default when absent), `"int8"`, `"bf16"` (the CPU only),
/// or `"auto"` (int8 where this build has a vector int8 kernel: [`crate::tensor::auto_precision`]).
pub(crate) fn parse_precision(p: Option<&str>) -> Result<crate::tensor::Precision, JsError> {
    match p.map(str::trim) {
        None | Some("") => Ok(crate::tensor::Precision::F32),
        Some("auto") => Ok(crate::tensor::auto_precision()),
        Some(s) => crate::tensor::Precision::parse(s).map_err(|e| js_err(format!("{e} (or auto)"))),
    }
}

/// A session's device description, with the figures behind a measured `auto` choice.
pub(crate) fn describe_with(device: &Device, auto: Option<&AutoChoice>) -> String {
    match auto {
        Some(a) => format!("{} (auto: {})", device.describe(), a.reason),
        None => device.describe(),
    }
}

/// `"auto"` (WebGPU when the browser has a hardware adapter, else the CPU), `"webgpu"` (an error
/// when there is no adapter) or `"cpu"`, with the linear layers in `precision`
/// ([`parse_precision`]: on WebGPU f32 or int8 weights; int8 on the CPU is the SIMD128 int8
/// kernel). `"cpu-int8"` (older links) is `"cpu"` in int8.
pub(crate) async fn device_for(backend: &str, precision: Option<&str>) -> Result<Device, JsError> {
    use crate::tensor::{gpu::GpuContext, Precision};
    let p = parse_precision(if backend == "cpu-int8" { Some("int8") } else { precision })?;
    match backend {
        "" | "auto" => Ok(Device::by_rule(GpuContext::new_with(Device::gpu_weights_for(p)).await, p).0),
        "webgpu" | "gpu" if p == Precision::Bf16 => Err(js_err("precision bf16 is a CPU precision; WebGPU holds f32 or int8 weights")),
        "webgpu" | "gpu" => Device::gpu_with(Device::gpu_weights_for(p)).await.map_err(js_err),
        "cpu" | "cpu-int8" => Ok(Device::cpu_with(p)),
        other => Err(js_err(format!("unknown backend `{other}` (auto, webgpu, cpu)"))),
    }
}
