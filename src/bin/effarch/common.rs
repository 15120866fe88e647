//! What every command shares: `--device` and `--json` ([`Common`]), pruning and sampling
//! arguments, quiet adapter probing, and [`emit`], which prints a typed report.

use clap::{Args, ValueEnum};
use effarch::models::lm::SampleOptions;
use effarch::prune::{PruneConfig, Scorer};
use effarch::tensor::{Device, GpuWeights, Precision};
use effarch::{Error, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `--verbose`: show what the GPU drivers print while adapters are probed.
pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// Runs `f` (adapter probing) with stderr sent to /dev/null: on a machine without a GPU the
/// Vulkan loader and Mesa print errors (`XDG_RUNTIME_DIR is invalid…`) on a good run. Our own
/// messages come after, so nothing of ours is lost.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(unix)]
    if !VERBOSE.load(Ordering::Relaxed) && std::env::var_os("RUST_LOG").is_none() {
        use std::io::Write;
        let _ = std::io::stderr().flush();
        // SAFETY: plain fd calls on fd 2 and fds we opened; each is checked before use.
        unsafe {
            let saved = libc::dup(2);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if saved >= 0 && null >= 0 && libc::dup2(null, 2) >= 0 {
                libc::close(null);
                let r = f();
                libc::dup2(saved, 2);
                libc::close(saved);
                return r;
            }
            for fd in [saved, null] {
                if fd >= 0 {
                    libc::close(fd);
                }
            }
        }
    }
    f()
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    /// The GPU when a hardware adapter exists, else the CPU.
    Auto,
    Cpu,
    /// The first GPU adapter (software ones included); an error when there is none.
    Gpu,
    /// The GPU with linear weights stored as f16 (math in f32).
    #[value(name = "gpu-f16")]
    GpuF16,
}

/// `--precision`: how the linear layers are held and multiplied (the CPU: every choice; a GPU:
/// f32 or int8 weights).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// f32, exact to rounding against transformers (the default).
    F32,
    /// int8 weights per output channel and activations per row, int32 sums (changes the numbers:
    /// cos to f32 ≥ 0.999 at ViT-B/16 size).
    Int8,
    /// bf16 weights and activations, f32 sums (PyTorch's bf16 numbers; AMX-BF16 or AVX-512
    /// BF16 where the CPU has them, else the f32 kernels; half the weight memory; cos to f32
    /// ≥ 0.9999 at ViT-B/16 size).
    Bf16,
    /// The fastest precision this CPU has a SIMD kernel for whose accuracy test passes: int8
    /// where the int8 engine has a vector kernel (AVX2, wasm SIMD128), else f32.
    Auto,
}

impl PrecisionArg {
    pub fn precision(self) -> Precision {
        match self {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Int8 => Precision::Int8,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::Auto => effarch::tensor::auto_precision(),
        }
    }
}

impl DeviceArg {
    /// The device, its CPU linear layers in f32.
    pub fn device(self) -> Result<Device> {
        self.device_with(Precision::F32)
    }

    /// The device with its linear layers in `p`: on a GPU f32 or int8 weights (bf16 there,
    /// or int8 with `gpu-f16`, is an error that says so).
    pub fn device_with(self, p: Precision) -> Result<Device> {
        let gpu = |w: GpuWeights| quietly(|| effarch::tensor::block_on(Device::gpu_with(w)));
        match (self, p) {
            (DeviceArg::Auto, Precision::F32) => Ok(quietly(Device::best)),
            (DeviceArg::Auto, p) | (DeviceArg::Cpu, p) => Ok(Device::cpu_with(p)),
            (DeviceArg::Gpu, Precision::F32) => gpu(GpuWeights::F32),
            (DeviceArg::Gpu, Precision::Int8) => gpu(GpuWeights::Int8),
            (DeviceArg::GpuF16, Precision::F32) => gpu(GpuWeights::F16),
            (DeviceArg::Gpu | DeviceArg::GpuF16, p) => Err(Error::arg(format!(
                "--precision {} on --device {}: the GPU path has f32 and int8 weights (--device gpu), and f16 weights (--device gpu-f16)",
                p.name(),
                if matches!(self, DeviceArg::Gpu) { "gpu" } else { "gpu-f16" }
            ))),
        }
    }
}

/// `--device` and `--json`, flattened into every command that runs a model.
#[derive(Args)]
pub struct Common {
    /// Where to run [default: auto; cpu for `qwen` and `bench qwen`].
    #[arg(long, value_enum)]
    pub device: Option<DeviceArg>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Precision of the linear layers: f32 (default), int8, bf16, or auto (`bench clip` and
    /// `eval clip` take a list, e.g. f32,int8,bf16, run side by side). With int8 or bf16 `--device auto` means
    /// the CPU; `--device gpu` takes f32 and int8 (int8 weights, f32 activations).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32")]
    pub precision: Vec<PrecisionArg>,
}

impl Common {
    /// The device asked for, or `default`.
    pub fn device_or(&self, default: DeviceArg) -> DeviceArg {
        self.device.unwrap_or(default)
    }

    /// The one precision asked for (an error when a list was given to a command that runs one).
    pub fn precision(&self) -> Result<Precision> {
        match self.precision[..] {
            [p] => Ok(p.precision()),
            _ => Err(Error::arg("--precision takes one value here (only `bench clip` and `eval clip` take a list)")),
        }
    }

    /// The precisions of a list, f32 first (every other is measured against it), each once.
    pub fn precisions_f32_first(&self) -> Vec<Precision> {
        let mut v = vec![Precision::F32];
        for p in self.precision.iter().map(|p| p.precision()) {
            if !v.contains(&p) {
                v.push(p);
            }
        }
        v
    }

    /// The device asked for (or `default`) with the precision asked for.
    pub fn device_for(&self, default: DeviceArg) -> Result<Device> {
        self.device_or(default).device_with(self.precision()?)
    }
}

/// Prints `report` as one line of JSON. Through `serde_json::Value`, as the commands always
/// have: f32 fields print as their f64 value.
pub fn emit<T: Serialize>(report: &T) -> Result<()> {
    let v = serde_json::to_value(report).map_err(|e| Error::arg(format!("cannot write the JSON report: {e}")))?;
    println!("{v}");
    Ok(())
}

#[derive(Args)]
pub struct PruneArgs {
    /// Fraction of patch tokens kept at each pruning layer, in (0, 1].
    #[arg(long, default_value_t = 0.7)]
    pub keep: f32,
    /// kq-norm (= kq-norm:key), kq-norm:query, kq-norm:both, cls-attn, random, divprune
    /// (DivPrune: the most diverse tokens), visionzip (VisionZip: dominant tokens by CLS
    /// attention + merged contextual tokens; one --layer); or tome (Token Merging in every
    /// layer: as many merges as leave the patches --keep would, or --tome-r per layer; --layer
    /// does not apply). Qwen2.5-VL: kq-norm, random, divprune, fastv, dart.
    #[arg(long, default_value = "kq-norm")]
    pub scorer: String,
    /// With --scorer tome: tokens merged in every layer (instead of deriving it from --keep).
    #[arg(long)]
    pub tome_r: Option<usize>,
    /// Pruning layer(s), 0-based: `1`, or a progressive schedule `3,6,9`.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    pub layer: Vec<usize>,
    /// Seed of the `random` scorer.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl PruneArgs {
    pub fn config(&self) -> Result<PruneConfig> {
        let mut s = parse_scorer(&self.scorer, self.seed)?;
        match (&mut s, self.tome_r) {
            (Scorer::Tome { r }, Some(tr)) => *r = Some(tr),
            (_, Some(_)) => return Err(effarch::Error::arg(format!("--tome-r applies to --scorer tome, not {s}"))),
            _ => {}
        }
        PruneConfig::new(s, self.keep, self.layer.clone())
    }
}

/// A scorer name; `random` takes `seed`.
pub fn parse_scorer(name: &str, seed: u64) -> Result<Scorer> {
    let mut s: Scorer = name.parse()?;
    if let Scorer::Random { seed: sd } = &mut s {
        *sd = seed;
    }
    Ok(s)
}

/// Sampling settings shared by the generating commands.
#[derive(Args)]
pub struct SampleArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SampleArgs {
    pub fn options(&self, max_new_tokens: usize) -> Result<SampleOptions> {
        let o = SampleOptions { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p, seed: self.seed, max_new_tokens, eos: None };
        o.validate()?;
        Ok(o)
    }
}
