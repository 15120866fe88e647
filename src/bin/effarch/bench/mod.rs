//! `effarch bench clip|mamba|qwen`: benchmarks with full-size random-weight models (no download).

use crate::common::{emit, parse_scorer, Common, DeviceArg};
use clap::{Args, Subcommand};
use effarch::bench::qwen::{bench_qwen, QwenBenchRow, QwenBenchSpec};
use effarch::bench::{self, BenchSpec};
use effarch::{Error, Result};
use mamba::{run_mamba, run_mamba_lm, run_scan, BenchMambaArgs, BenchMambaLmArgs, BenchScanArgs};
use serde::Serialize;

mod mamba;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// ViT-B/16 vision tower: ms/img at several keep ratios and batch sizes.
    Clip(BenchClipArgs),
    /// Mamba block vs attention block (d = 768): prefill and decode time against N (CPU, and GPU when present).
    Mamba(BenchMambaArgs),
    /// A whole Mamba LM from a checkpoint (e.g. mamba-130m): prefill and decode tokens/s at each prompt length and MRSS τ, with the scan's share.
    MambaLm(BenchMambaLmArgs),
    /// Qwen2.5-VL (3B widths, whole vision tower, 4 LM layers): prefill time vs visual-token keep ratio.
    Qwen(BenchQwenArgs),
    /// The CPU GEMM engine: each micro-kernel alone, then ViT-B/16's and a decode step's products against the gemm crate.
    Gemm(BenchGemmArgs),
    /// Mamba's selective scan on the GPU (mamba-130m's 1536 channels × 16 states): the sequential kernel against the chunked parallel one, with their largest difference.
    Scan(BenchScanArgs),
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Clip(a) => run_clip(a),
        BenchCmd::Mamba(a) => run_mamba(a),
        BenchCmd::MambaLm(a) => run_mamba_lm(a),
        BenchCmd::Qwen(a) => run_qwen(a),
        BenchCmd::Gemm(a) => run_gemm(a),
        BenchCmd::Scan(a) => run_scan(a),
    }
}

#[derive(Args)]
pub struct BenchClipArgs {
    #[arg(long, default_value = "1,0.9,0.7,0.5,0.3", value_delimiter = ',')]
    keeps: Vec<f32>,
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    batches: Vec<usize>,
    /// Timed rounds per setting (after one warm-up).
    #[arg(long, default_value_t = 7)]
    iters: usize,
    /// Methods timed side by side (comma-separated; one unpruned baseline for all), any of
    /// `prune::METHODS`' vision methods, e.g. `kq-norm,cls-attn,tome`.
    #[arg(long, default_value = "kq-norm", value_delimiter = ',')]
    scorer: Vec<String>,
    #[arg(long, default_value = "1", value_delimiter = ',')]
    layer: Vec<usize>,
    /// Also time another engine on the same random checkpoint in this process (unpruned, each
    /// batch): `candle` = candle-transformers' CLIP vision tower (a build with `--features peer-candle`).
    #[arg(long)]
    peer: Option<String>,
    /// After the timed rounds, one more pass of each setting with the GPU's timestamp queries:
    /// each kernel's GPU time, the idle gaps and the host's recording time (`--device gpu`).
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    common: Common,
}

/// One batch of a peer engine, beside ours.
#[derive(Serialize)]
struct PeerRow {
    engine: String,
    batch: usize,
    ms_median: f64,
    /// Our unpruned ms/img / the peer's.
    effarch_ratio: f64,
}

/// `--json` with `--peer`: our rows and the peer's.
#[derive(Serialize)]
struct ClipPeerJson<'a> {
    rows: &'a [bench::BenchRow],
    #[serde(skip_serializing_if = "<[PeerRow]>::is_empty")]
    peer: &'a [PeerRow],
    #[serde(skip_serializing_if = "<[bench::CompareRow]>::is_empty")]
    compare: &'a [bench::CompareRow],
}

/// candle-transformers' `ClipVisionTransformer` + projection at ViT-B/16 on the same random
/// safetensors, ms/img (median of `iters`, after one warm-up).
#[cfg(feature = "peer-candle")]
fn candle_peer(batches: &[usize], iters: usize) -> Result<Vec<(usize, f64)>> {
    use candle_core::Module;
    use candle_transformers::models::clip::{
        text_model::Activation,
        vision_model::{ClipVisionConfig, ClipVisionTransformer},
    };
    let cfg = effarch::models::clip::ClipConfig::vit_b16();
    let bytes = bench::random_clip_safetensors(&cfg);
    let dev = candle_core::Device::Cpu;
    let vb = candle_nn::VarBuilder::from_buffered_safetensors(bytes, candle_core::DType::F32, &dev)?;
    let v = cfg.vision();
    let c = ClipVisionConfig {
        embed_dim: v.hidden_size,
        activation: Activation::QuickGelu,
        intermediate_size: v.intermediate_size,
        num_hidden_layers: v.num_hidden_layers,
        num_attention_heads: v.num_attention_heads,
        projection_dim: cfg.projection_dim,
        num_channels: v.num_channels,
        image_size: v.image_size,
        patch_size: v.patch_size,
    };
    let tower = ClipVisionTransformer::new(vb.pp("vision_model"), &c)?;
    let proj = candle_nn::linear_no_bias(v.hidden_size, cfg.projection_dim, vb.pp("visual_projection"))?;
    let mut out = Vec::new();
    for &b in batches {
        let x = candle_core::Tensor::randn(0f32, 1.0, (b, 3, v.image_size, v.image_size), &dev)?;
        let run = || -> Result<f64> {
            let t0 = std::time::Instant::now();
            proj.forward(&tower.forward(&x)?)?.to_vec2::<f32>()?;
            Ok(t0.elapsed().as_secs_f64() * 1e3 / b as f64)
        };
        run()?;
        let times = (0..iters).map(|_| run()).collect::<Result<Vec<_>>>()?;
        out.push((b, bench::median(times)));
    }
    Ok(out)
}

#[cfg(not(feature = "peer-candle"))]
fn candle_peer(_: &[usize], _: usize) -> Result<Vec<(usize, f64)>> {
    Err(Error::arg("--peer candle needs a build with the candle-transformers peer: cargo build --release --features peer-candle"))
}

#[derive(Args)]
pub struct BenchQwenArgs {
    #[arg(long, default_value = "1,0.5,0.25", value_delimiter = ',')]
    keeps: Vec<f32>,
    /// Image side in pixels (a multiple of 28).
    #[arg(long, default_value_t = 448)]
    image: usize,
    #[arg(long, default_value_t = 32)]
    vision_depth: usize,
    #[arg(long, default_value_t = 4)]
    lm_layers: usize,
    #[arg(long, default_value_t = 2)]
    iters: usize,
    /// Widths as vision hidden, vision MLP, vision heads, text hidden, text MLP, heads, KV heads (default: the 3B's).
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<usize>>,
    /// Pruning methods timed side by side at each keep < 1: kq-norm, random, divprune, fastv, dart.
    #[arg(long, alias = "method", default_value = "kq-norm", value_delimiter = ',')]
    methods: Vec<String>,
    /// FastV's and DART's language-model layer.
    #[arg(long, default_value_t = effarch::models::qwen::FASTV_LAYER)]
    llm_layer: usize,
    /// Tokens decoded greedily after each timed prefill (decode ms/token and tokens/s; 0: none).
    #[arg(long, default_value_t = 0)]
    decode: usize,
    /// After the timed rounds, one prefill and one decoding step of each setting with the GPU's
    /// timestamp queries: each kernel's GPU time and the idle gaps (`--device gpu`).
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct BenchGemmArgs {
    #[arg(long, default_value_t = 15)]
    iters: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn run_gemm(a: BenchGemmArgs) -> Result<()> {
    let r = effarch::bench::gemm::bench_gemm(a.iters, progress(a.json))?;
    if a.json {
        return emit(&r);
    }
    println!("CPU GEMM engine, {} threads, median of {} runs", r.threads, a.iters);
    println!("{:<26} {:>8} {:>4} {:>12} {:>9} {:>7}", "micro-kernel (1 thread, L1)", "MR x NR", "", "GFLOP/s", "peak", "of peak");
    for t in &r.tiles {
        let (peak, of) = t.peak_gflops.map_or(("-".into(), "-".into()), |p| (format!("{p:.1}"), format!("{:.0}%", 100.0 * t.gflops / p)));
        println!("{:<26} {:>4}x{:<3} {:>4} {:>12.1} {:>9} {:>7}", t.kernel, t.mr, t.nr, "", t.gflops, peak, of);
    }
    println!("{:<18} {:>16} {:<24} {:>9} {:>11} {:>7}", "product", "M x N x K", "kernel", "GFLOP/s", "gemm crate", "ratio");
    for g in &r.rows {
        println!(
            "{:<18} {:>16} {:<24} {:>9.1} {:>11.1} {:>7.3}",
            g.shape,
            format!("{}x{}x{}", g.m, g.n, g.k),
            g.kernel,
            g.gflops,
            g.gemm_crate_gflops,
            g.ratio
        );
    }
    Ok(())
}

/// A progress callback: lines to stderr unless the output is JSON.
pub(super) fn progress(quiet: bool) -> impl FnMut(&str) {
    move |line: &str| {
        if !quiet {
            eprintln!("  {line}");
        }
    }
}

fn run_clip(a: BenchClipArgs) -> Result<()> {
    let scorers = a.scorer.iter().map(|s| parse_scorer(s, 0)).collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = scorers.iter().map(|s| s.to_string()).collect();
    let spec = BenchSpec { keeps: a.keeps, batches: a.batches, iters: a.iters, scorers, layers: a.layer, profile: a.profile };
    spec.validate()?;
    if a.profile && !matches!(a.common.device_or(DeviceArg::Auto), DeviceArg::Gpu | DeviceArg::GpuF16) {
        return Err(Error::arg("--profile times GPU kernels: use it with --device gpu"));
    }
    match a.peer.as_deref() {
        None | Some("candle") => {}
        Some(other) => return Err(Error::arg(format!("--peer {other}: the peer engine is `candle`"))),
    }
    let precisions = a.common.precisions_f32_first();
    let dev = a.common.device_or(if precisions.len() > 1 { DeviceArg::Cpu } else { DeviceArg::Auto });
    let devices = precisions.iter().map(|&p| dev.device_with(p)).collect::<Result<Vec<_>>>()?;
    let device = devices[devices.len() - 1].clone();
    let quiet = a.common.json;
    let mut models = Vec::new();
    for d in &devices {
        if !quiet {
            eprintln!("building ViT-B/16 with random weights on {} ...", d.describe());
        }
        models.push(bench::random_vit_b16(d)?);
    }
    let rows = bench::bench_clips(&models.iter().collect::<Vec<_>>(), &spec, progress(quiet))?;
    // Several methods: also the compare view's shared pass against the passes one by one.
    let compare = if spec.scorers.len() > 1 { bench::bench_compare(&models[0], &spec)? } else { Vec::new() };
    let peer = match a.peer {
        Some(_) => {
            drop(models);
            candle_peer(&spec.batches, spec.iters)?
                .into_iter()
                .map(|(batch, ms)| {
                    let ours = rows.iter().find(|r| r.batch == batch && r.keep >= 1.0 && r.precision == "f32").map_or(f64::NAN, |r| r.ms_median);
                    PeerRow { engine: "candle-transformers 0.11".into(), batch, ms_median: ms, effarch_ratio: ours / ms }
                })
                .collect()
        }
        None => Vec::new(),
    };
    if quiet {
        return if a.peer.is_some() || !compare.is_empty() { emit(&ClipPeerJson { rows: &rows, peer: &peer, compare: &compare }) } else { emit(&rows) };
    }
    println!("ViT-B/16 vision tower, {} , {} at layer(s) {:?}, median of {} rounds", device.describe(), names.join(", "), spec.layers, spec.iters);
    println!(
        "{:>5} {:>9} {:>12} {:>5} {:>10} {:>7} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "batch", "precision", "method", "keep", "ms/img", "ratio", "FLOP bound", "dispatches", "first/warm", "× f32", "cos to f32"
    );
    for r in &rows {
        let d = r.dispatches.map_or("-".to_string(), |d| d.to_string());
        println!(
            "{:>5} {:>9} {:>12} {:>5.2} {:>10.1} {:>7.3} {:>10.3} {:>10} {:>10.2} {:>8.3} {:>10.6}",
            r.batch,
            r.precision,
            r.scorer,
            r.keep,
            r.ms_median,
            r.ratio,
            r.flop_ratio,
            d,
            r.first_ms / r.ms_median,
            r.f32_ratio,
            r.cos_to_f32
        );
    }
    for r in rows.iter().filter(|r| r.profile.is_some()) {
        println!("\nbatch {} {} {} keep {:.2}:", r.batch, r.precision, r.scorer, r.keep);
        print!("{}", r.profile.as_ref().map_or(String::new(), |p| p.table()));
    }
    for c in &compare {
        println!(
            "compare view, batch {} keep {:.2}: {} methods + unpruned in one pass sharing the early layers {:.1} ms/img, one after another {:.1} ms/img: {:.3}×",
            c.batch, c.keep, c.methods, c.shared_ms, c.sequential_ms, c.ratio
        );
    }
    for p in &peer {
        println!("{} batch {}: {:.1} ms/img unpruned; effarch / {} = {:.3}", p.engine, p.batch, p.ms_median, p.engine, p.effarch_ratio);
    }
    Ok(())
}

#[derive(Serialize)]
struct QwenJson<'a> {
    device: String,
    image: usize,
    vision_depth: usize,
    lm_layers: usize,
    rows: &'a [QwenBenchRow],
}

fn run_qwen(a: BenchQwenArgs) -> Result<()> {
    let d = QwenBenchSpec::default();
    let widths = match a.widths.as_deref() {
        None => d.widths,
        Some(&[a0, a1, a2, a3, a4, a5, a6]) => [a0, a1, a2, a3, a4, a5, a6],
        Some(w) => return Err(Error::arg(format!("--widths takes 7 numbers, got {}", w.len()))),
    };
    let methods = a.methods.iter().map(|s| parse_scorer(s, 0)).collect::<Result<Vec<_>>>()?;
    let spec = QwenBenchSpec {
        keeps: a.keeps,
        image: a.image,
        vision_depth: a.vision_depth,
        lm_layers: a.lm_layers,
        iters: a.iters,
        methods,
        llm_layer: a.llm_layer,
        widths,
        vocab: d.vocab,
        decode: a.decode,
        profile: a.profile,
    };
    let device = a.common.device_for(DeviceArg::Cpu)?;
    if a.profile && !matches!(device, effarch::tensor::Device::Gpu(_)) {
        return Err(Error::arg("--profile times GPU kernels: use it with --device gpu"));
    }
    let quiet = a.common.json;
    let rows = bench_qwen(&spec, &device, progress(quiet))?;
    if quiet {
        return emit(&QwenJson { device: device.describe(), image: spec.image, vision_depth: spec.vision_depth, lm_layers: spec.lm_layers, rows: &rows });
    }
    println!(
        "Qwen2.5-VL widths {:?}, vision depth {}, {} LM layers, {}×{} image, {}, median of {}",
        spec.widths,
        spec.vision_depth,
        spec.lm_layers,
        spec.image,
        spec.image,
        device.describe(),
        spec.iters
    );
    println!(
        "{:>12} {:>5} {:>8} {:>8} {:>11} {:>12} {:>8} {:>8} {:>8}",
        "method", "keep", "visual", "prompt", "vision ms", "prefill ms", "ratio", "tokens", "FLOPs"
    );
    for r in &rows {
        println!(
            "{:>12} {:>5.2} {:>8} {:>8} {:>11.0} {:>12.1} {:>8.3} {:>8.3} {:>8.3}",
            r.method, r.keep, r.visual_tokens, r.prompt_tokens, r.vision_ms, r.prefill_ms, r.prefill_ratio, r.token_ratio, r.flops_ratio
        );
    }
    for r in &rows {
        if let Some(d) = r.decode_ms_per_token {
            println!("{} keep {:.2}: decode {:.2} ms/token ({:.1} tokens/s)", r.method, r.keep, d, 1e3 / d);
        }
    }
    for r in &rows {
        for (what, p) in [("prefill", &r.profile), ("one decoding step", &r.decode_profile)] {
            if let Some(p) = p {
                println!("\n{} keep {:.2} {what}:\n{}", r.method, r.keep, p.table());
            }
        }
    }
    Ok(())
}
