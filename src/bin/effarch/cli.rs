//! `effarch clip …` and `effarch bench clip …`. Every command takes
//! `--json` for one machine-readable object on stdout.

use clap::{Args, Parser, Subcommand, ValueEnum};
use effarch::bench::{self, BenchSpec};
use effarch::models::clip::{self, RunOptions};
use effarch::prune::{PruneConfig, Scorer};
use effarch::tensor::Device;
use effarch::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "effarch", version, about = "Efficient neural architectures: CLIP token pruning and friends")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Embed an image with CLIP, pruning vision tokens on the way.
    Clip(ClipArgs),
    /// Benchmarks with full-size random-weight models (no download).
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// ViT-B/16 vision tower: ms/img at several keep ratios and batch sizes.
    Clip(BenchClipArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// The GPU when a hardware adapter exists, else the CPU.
    Auto,
    Cpu,
    /// The first GPU adapter (software ones included); an error when there is none.
    Gpu,
    /// The GPU with linear weights stored as f16 (math in f32).
    #[value(name = "gpu-f16")]
    GpuF16,
}

impl DeviceArg {
    fn device(self) -> Result<Device> {
        match self {
            DeviceArg::Auto => Ok(Device::best()),
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Gpu => Device::gpu(),
            DeviceArg::GpuF16 => effarch::tensor::block_on(Device::gpu_with(true)),
        }
    }
}

#[derive(Args)]
struct PruneArgs {
    /// Fraction of patch tokens kept at each pruning layer, in (0, 1].
    #[arg(long, default_value_t = 0.7)]
    keep: f32,
    /// kq-norm (= kq-norm:key), kq-norm:query, kq-norm:both, cls-attn, random.
    #[arg(long, default_value = "kq-norm")]
    scorer: String,
    /// Pruning layer(s), 0-based: `1`, or a progressive schedule `3,6,9`.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    layer: Vec<usize>,
    /// Seed of the `random` scorer.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl PruneArgs {
    fn scorer(&self) -> Result<Scorer> {
        let mut s: Scorer = self.scorer.parse()?;
        if let Scorer::Random { seed } = &mut s {
            *seed = self.seed;
        }
        Ok(s)
    }
    fn config(&self) -> Result<PruneConfig> {
        PruneConfig::new(self.scorer()?, self.keep, self.layer.clone())
    }
}

#[derive(Args)]
struct ClipArgs {
    /// A model directory (config.json + model.safetensors) or a hub id.
    #[arg(long, default_value = "openai/clip-vit-base-patch16")]
    model: String,
    /// The image file (PNG, JPEG, GIF, WebP, BMP).
    #[arg(long)]
    image: PathBuf,
    #[command(flatten)]
    prune: PruneArgs,
    /// Comma-separated zero-shot labels, e.g. "a cat,a dog".
    #[arg(long)]
    labels: Option<String>,
    /// Write the pruning overlay as a PNG.
    #[arg(long)]
    overlay: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchClipArgs {
    #[arg(long, default_value = "1,0.9,0.7,0.5,0.3", value_delimiter = ',')]
    keeps: Vec<f32>,
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    batches: Vec<usize>,
    /// Timed rounds per setting (after one warm-up).
    #[arg(long, default_value_t = 7)]
    iters: usize,
    #[arg(long, default_value = "kq-norm")]
    scorer: String,
    #[arg(long, default_value = "1", value_delimiter = ',')]
    layer: Vec<usize>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    #[arg(long)]
    json: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Clip(a) => run_clip(a),
        Cmd::Bench { which: BenchCmd::Clip(a) } => run_bench_clip(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_clip(a: ClipArgs) -> Result<()> {
    // Validate everything cheap before loading hundreds of MB.
    let prune = a.prune.config()?;
    let labels: Vec<String> = match &a.labels {
        None => Vec::new(),
        Some(l) => {
            let v: Vec<String> = l.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            if v.is_empty() {
                return Err(Error::arg("--labels is empty: give comma-separated labels such as \"a cat,a dog\""));
            }
            v
        }
    };
    let bytes = std::fs::read(&a.image).map_err(|e| Error::io(a.image.display(), e))?;
    let device = a.device.device()?;

    let t0 = effarch::clock::now_ms();
    let mut files = vec!["config.json", "model.safetensors"];
    if !labels.is_empty() {
        files.push("vocab.json");
        files.push("merges.txt");
    }
    let dir = effarch::hub::resolve(&a.model, &files, &[])?;
    let mut session = clip::open_dir(&dir, &device, !labels.is_empty())?;
    let load_ms = effarch::clock::now_ms() - t0;
    prune.validate(session.clip.vision.num_layers())?;

    let opts = RunOptions { prune: Some(prune.clone()), labels, compare_unpruned: true };
    let report = session.run(&bytes, &opts)?;
    if let Some(why) = &report.fallback {
        eprintln!("warning: {why}");
    }
    let model = &session.clip;

    if let Some(path) = &a.overlay {
        let img = effarch::image::decode(&bytes)?;
        let view = model.preprocess.crop_view(&img);
        let kept = report.kept.last().map(|s| s.indices.clone()).unwrap_or_else(|| (0..report.num_patches as u32).collect());
        effarch::overlay::draw(&view, report.grid, &kept, 2).save(path).map_err(|e| Error::Image(format!("cannot write overlay {}: {e}", path.display())))?;
    }

    if a.json {
        let mut v = serde_json::to_value(&report).map_err(|e| Error::arg(e.to_string()))?;
        v["load_ms"] = serde_json::json!(load_ms);
        v["scorer"] = serde_json::json!(prune.scorer.to_string());
        v["keep"] = serde_json::json!(prune.keep);
        println!("{v}");
        return Ok(());
    }
    println!("model       {} ({} layers, {}x{} patches), loaded in {load_ms:.0} ms", dir.display(), model.vision.num_layers(), report.grid, report.grid);
    println!("device      {}", report.device);
    println!("pruning     {} keep {} at layer(s) {:?}", prune.scorer, prune.keep, prune.layers);
    for s in &report.kept {
        println!("  layer {:>2}: kept {}/{} patches", s.layer, s.indices.len(), report.num_patches);
    }
    println!("tokens      per layer {:?}", report.tokens_per_layer);
    println!("FLOPs       {:.2} G of {:.2} G unpruned ({:.3})", report.flops / 1e9, report.flops_unpruned / 1e9, report.flops / report.flops_unpruned);
    println!("embedding   norm {:.4}, cos-sim to unpruned {:.5}", report.embed_norm, report.cos_to_unpruned.unwrap_or(1.0));
    if let Some(p) = &report.label_probs {
        let un = report.label_probs_unpruned.clone().unwrap_or_default();
        println!("labels      pruned   unpruned");
        for (i, lp) in p.iter().enumerate() {
            println!("  {:>6.2}%  {:>6.2}%  {}", lp.prob * 100.0, un.get(i).map_or(f32::NAN, |u| u.prob * 100.0), lp.label);
        }
    }
    println!("timings ms");
    for (k, v) in &report.timings_ms {
        println!("  {k:<12} {:>8.2}", v.as_f64().unwrap_or(0.0));
    }
    if let Some(p) = &a.overlay {
        println!("overlay     {}", p.display());
    }
    Ok(())
}

fn run_bench_clip(a: BenchClipArgs) -> Result<()> {
    let device = a.device.device()?;
    let mut scorer: Scorer = a.scorer.parse()?;
    if let Scorer::Random { seed } = &mut scorer {
        *seed = 0;
    }
    let spec = BenchSpec { keeps: a.keeps, batches: a.batches, iters: a.iters, scorer, layers: a.layer };
    for &k in &spec.keeps {
        PruneConfig::new(scorer, k, spec.layers.clone())?;
    }
    let quiet = a.json;
    if !quiet {
        eprintln!("building ViT-B/16 with random weights on {} ...", device.describe());
    }
    let model = bench::random_vit_b16(&device)?;
    let rows = bench::bench_clip(&model, &spec, |line| {
        if !quiet {
            eprintln!("  {line}");
        }
    })?;
    if a.json {
        println!("{}", serde_json::to_string(&rows).map_err(|e| Error::arg(e.to_string()))?);
        return Ok(());
    }
    println!("ViT-B/16 vision tower, {} , scorer {} at layer(s) {:?}, median of {} rounds", device.describe(), scorer, spec.layers, spec.iters);
    println!("{:>5} {:>5} {:>10} {:>7} {:>10}", "batch", "keep", "ms/img", "ratio", "FLOP bound");
    for r in rows {
        println!("{:>5} {:>5.2} {:>10.1} {:>7.3} {:>10.3}", r.batch, r.keep, r.ms_median, r.ratio, r.flop_ratio);
    }
    Ok(())
}
