//! Wall-clock stage timings that work natively and in the browser (main thread or worker).

/// Milliseconds since an arbitrary origin, sub-millisecond where the platform allows.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let perf = js_sys::Reflect::get(&js_sys::global(), &"performance".into()).ok();
        let now = perf.as_ref().and_then(|p| js_sys::Reflect::get(p, &"now".into()).ok());
        match (perf, now.and_then(|f| f.dyn_into::<js_sys::Function>().ok())) {
            (Some(p), Some(f)) => f.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now),
            _ => js_sys::Date::now(),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        use std::time::Instant;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
    }
}

/// Named stages in order, each with its duration in ms.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    #[serde(skip)]
    last: f64,
    pub stages: Vec<(String, f64)>,
}

impl Timings {
    pub fn start() -> Self {
        Timings { last: now_ms(), stages: Vec::new() }
    }

    /// Ends the current stage under `name` and starts the next.
    pub fn lap(&mut self, name: &str) {
        let now = now_ms();
        self.stages.push((name.to_string(), now - self.last));
        self.last = now;
    }

    pub fn total(&self) -> f64 {
        self.stages.iter().map(|(_, ms)| ms).sum()
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.stages.iter().find(|(n, _)| n == name).map(|(_, ms)| *ms)
    }
}
