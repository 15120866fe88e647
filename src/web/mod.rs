//! The wasm-bindgen API: what the page's worker (and any other page, via the npm package in
//! `pkg/`) calls. Errors come back as JS `Error`s with the core's message; nothing panics.

mod bench;
mod clip;
mod device;
mod eval;
pub mod mamba;
mod types;

pub use bench::{bench_clip, bench_gemm};
pub use clip::{is_linear_weight, n_keep, pruning_method, pruning_methods, quantize_checkpoint, ClipSession};
pub use device::{auto_choice, cpu_device, default_device};
pub(crate) use device::{describe_with, device_for, device_measured, AutoChoice};
pub use eval::eval_summary;

use serde::Serialize;
use wasm_bindgen::prelude::*;

/// `initThreadPool(n)`: starts rayon's pool on `n` Web Workers (the threaded build only;
/// call it once, before any model runs, from a worker or a cross-origin-isolated page).
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threads the CPU path runs on: the pool's size in the threaded build, else 1.
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    crate::tensor::cpu::simd::threads()
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

pub(crate) fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A JS options object (`undefined` or `null` = every default) as `T`; a field of the wrong
/// type is an error that says so.
pub(crate) fn parse_options<T: serde::de::DeserializeOwned + Default>(v: JsValue) -> Result<T, JsError> {
    if v.is_undefined() || v.is_null() {
        Ok(T::default())
    } else {
        serde_wasm_bindgen::from_value(v).map_err(|e| js_err(format!("bad options: {e}")))
    }
}

pub(crate) fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_err)
}

/// `fetch(url)` → bytes, from the page or a worker; HTTP errors name the URL and status.
pub(crate) async fn fetch_bytes(url: &str) -> Result<Vec<u8>, JsError> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let fail = |what: &str| js_err(format!("{url}: {what}"));
    let global = js_sys::global();
    let fetch = js_sys::Reflect::get(&global, &"fetch".into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok()).ok_or_else(|| fail("no fetch here"))?;
    let promise = fetch.call1(&global, &url.into()).map_err(|_| fail("fetch failed"))?.dyn_into::<js_sys::Promise>().map_err(|_| fail("fetch failed"))?;
    let resp = JsFuture::from(promise).await.map_err(|e| fail(&format!("could not reach the host ({})", js_sys::Error::from(e).message())))?;
    let field = |k: &str| js_sys::Reflect::get(&resp, &k.into()).unwrap_or(JsValue::UNDEFINED);
    if field("ok").as_bool() != Some(true) {
        return Err(fail(&format!("HTTP {}", field("status").as_f64().unwrap_or(0.0))));
    }
    let read = field("arrayBuffer").dyn_into::<js_sys::Function>().map_err(|_| fail("no body"))?;
    let buf = read.call0(&resp).map_err(|_| fail("no body"))?.dyn_into::<js_sys::Promise>().map_err(|_| fail("no body"))?;
    let buf = JsFuture::from(buf).await.map_err(|_| fail("reading the body failed"))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

pub(crate) fn busy() -> JsError {
    js_err("the model is busy with another run; wait for it to finish")
}
