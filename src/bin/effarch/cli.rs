//! `effarch clip …`, `effarch mamba …` and `effarch bench clip|mamba …`. Every command takes
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
    /// Show what the GPU drivers print while adapters are probed (hidden otherwise; also shown
    /// when RUST_LOG is set).
    #[arg(long, global = true)]
    verbose: bool,
}

static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs `f` (adapter probing) with stderr sent to /dev/null: on a machine without a GPU the
/// Vulkan loader and Mesa print errors (`XDG_RUNTIME_DIR is invalid…`) on a good run. Our own
/// messages come after, so nothing of ours is lost.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(unix)]
    if !VERBOSE.load(std::sync::atomic::Ordering::Relaxed) && std::env::var_os("RUST_LOG").is_none() {
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

#[derive(Subcommand)]
enum Cmd {
    /// Embed an image with CLIP, pruning vision tokens on the way.
    Clip(ClipArgs),
    /// Generate text with a Mamba LM (HF MambaForCausalLM layout), optionally with the MRSS proxy.
    Mamba(MambaArgs),
    /// Describe an image with Qwen2.5-VL, pruning visual tokens before the language model.
    Qwen(QwenArgs),
    /// The trained typeseg Mamba: our scan against its reference outputs, and MRSS's cost on real text
    /// (scripts/typeseg_check.py prepares the files).
    Typeseg(TypesegArgs),
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
    /// Mamba block vs attention block (d = 768): prefill and decode time against N (CPU, and GPU when present).
    Mamba(BenchMambaArgs),
    /// Qwen2.5-VL (3B widths, whole vision tower, 4 LM layers): prefill time vs visual-token keep ratio.
    Qwen(BenchQwenArgs),
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
            DeviceArg::Auto => Ok(quietly(Device::best)),
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Gpu => quietly(Device::gpu),
            DeviceArg::GpuF16 => quietly(|| effarch::tensor::block_on(Device::gpu_with(true))),
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

#[derive(Args)]
struct MambaArgs {
    /// A directory in the hub layout (config.json, model.safetensors, tokenizer.json) or a hub id.
    #[arg(long, default_value = "state-spaces/mamba-130m-hf")]
    model: String,
    /// The prompt (needs tokenizer.json).
    #[arg(long, conflicts_with = "prompt_ids")]
    prompt: Option<String>,
    /// The prompt as token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Option<Vec<u32>>,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[command(flatten)]
    sample: SampleArgs,
    /// MRSS threshold τ: runs of steps with Δ < τ update the state once (0 = the full scan).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    mrss_tau: f32,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct QwenArgs {
    /// A directory in the hub layout (config.json, model.safetensors.index.json + shards or
    /// model.safetensors, tokenizer.json, preprocessor_config.json) or a hub id.
    #[arg(long, default_value = "Qwen/Qwen2.5-VL-3B-Instruct")]
    model: String,
    #[arg(long)]
    image: PathBuf,
    #[arg(long, default_value = "Describe the image.")]
    prompt: String,
    /// Fraction of visual tokens kept, in (0, 1]. Below 1 the unpruned run is shown first.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    keep: f32,
    /// kq-norm (= kq-norm:key), kq-norm:query, kq-norm:both, random.
    #[arg(long, default_value = "kq-norm")]
    scorer: String,
    /// Vision block whose projections score the tokens (default: the last full-attention block).
    #[arg(long)]
    block: Option<usize>,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Prompt tokens (text + visual) allowed; the error says what the KV cache would take.
    #[arg(long, default_value_t = 16384)]
    max_prompt_tokens: usize,
    #[command(flatten)]
    sample: SampleArgs,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchQwenArgs {
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
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    #[arg(long)]
    json: bool,
}

/// Sampling settings shared by the generating commands.
#[derive(Args)]
struct SampleArgs {
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SampleArgs {
    fn options(&self, max_new_tokens: usize, tau: f32) -> Result<effarch::models::mamba::generate::SampleOptions> {
        let o = effarch::models::mamba::generate::SampleOptions {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed,
            max_new_tokens,
            eos: None,
            tau,
        };
        o.validate()?;
        Ok(o)
    }
}

#[derive(Args)]
struct TypesegArgs {
    /// The package's `mamba_al.npz` as safetensors, names unchanged (`CheckpointMambaBlock1D_0/Dense_0/kernel`).
    #[arg(long)]
    weights: PathBuf,
    /// Inputs and reference logits: `file{i}.tokens` `[L]`, `file{i}.logits` `[L, classes]`.
    #[arg(long)]
    check: PathBuf,
    /// MRSS thresholds to measure (0 = the full scan, always included).
    #[arg(long, default_value = "0,0.001,0.003,0.01,0.03,0.1", value_delimiter = ',')]
    taus: Vec<f32>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchMambaArgs {
    /// Sequence lengths N.
    #[arg(long, default_value = "256,512,1024,2048,4096,8192", value_delimiter = ',')]
    ns: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Decode steps timed per N.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Block width d.
    #[arg(long, default_value_t = 768)]
    hidden: usize,
    /// auto: the CPU, then the GPU too when a hardware adapter exists (one table each).
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    #[arg(long)]
    json: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    VERBOSE.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    let res = match cli.cmd {
        Cmd::Clip(a) => run_clip(a),
        Cmd::Mamba(a) => run_mamba(a),
        Cmd::Qwen(a) => run_qwen(a),
        Cmd::Typeseg(a) => run_typeseg(a),
        Cmd::Bench { which: BenchCmd::Clip(a) } => run_bench_clip(a),
        Cmd::Bench { which: BenchCmd::Mamba(a) } => run_bench_mamba(a),
        Cmd::Bench { which: BenchCmd::Qwen(a) } => run_bench_qwen(a),
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
    let mut scorer: Scorer = a.scorer.parse()?;
    if let Scorer::Random { seed } = &mut scorer {
        *seed = 0;
    }
    let spec = BenchSpec { keeps: a.keeps, batches: a.batches, iters: a.iters, scorer, layers: a.layer };
    spec.validate()?;
    let device = a.device.device()?;
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

fn run_mamba(a: MambaArgs) -> Result<()> {
    use effarch::models::mamba::generate::generate;
    use effarch::models::mamba::MambaLM;
    use std::io::Write;
    let opts = a.sample.options(a.max_new_tokens, a.mrss_tau)?;
    let optional: &[&str] = if a.prompt.is_some() { &[] } else { &["tokenizer.json"] };
    let required: Vec<&str> =
        if a.prompt.is_some() { vec!["config.json", "model.safetensors", "tokenizer.json"] } else { vec!["config.json", "model.safetensors"] };
    let dir = effarch::hub::resolve(&a.model, &required, optional)?;
    let (model, tok) = MambaLM::load_dir(&dir, &a.device.device()?)?;
    let prompt = match (&a.prompt, &a.prompt_ids) {
        (Some(p), _) => {
            let t = tok.as_ref().ok_or_else(|| Error::arg(format!("{} has no tokenizer.json: pass --prompt-ids", dir.display())))?;
            t.encode(p)?
        }
        (None, Some(ids)) => ids.clone(),
        (None, None) => return Err(Error::arg("give --prompt \"…\" or --prompt-ids 1,2,3")),
    };
    if prompt.is_empty() {
        return Err(Error::arg("the prompt is empty"));
    }
    let mut out = std::io::stdout();
    if !a.json {
        if let (Some(t), Some(_)) = (&tok, &a.prompt) {
            print!("{}", t.decode(&prompt));
        }
    }
    let report = generate(&model, &prompt, &opts, |id| {
        if !a.json {
            match &tok {
                Some(t) => print!("{}", t.decode(&[id])),
                None => print!(" {id}"),
            }
            let _ = out.flush();
        }
    })?;
    // MRSS's cost against the full scan, teacher-forced on the prompt and what was generated.
    let quality = if a.mrss_tau > 0.0 {
        let all: Vec<u32> = prompt.iter().chain(&report.tokens).copied().collect();
        Some(effarch::models::mamba::quality::mrss_quality(&model, &all, a.mrss_tau)?)
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&report).map_err(|e| Error::arg(e.to_string()))?;
        v["mrss_quality"] = serde_json::json!(quality);
        v["prompt_ids"] = serde_json::json!(prompt);
        v["text"] = serde_json::json!(tok.as_ref().map(|t| t.decode(&report.tokens)));
        v["mrss_tau"] = serde_json::json!(a.mrss_tau);
        v["device"] = serde_json::json!(model.device().describe());
        println!("{v}");
        return Ok(());
    }
    println!();
    eprintln!(
        "prompt {} tokens, prefill {:.1} ms; {} tokens in {:.1} ms ({:.1} tokens/s){}{}",
        report.prompt_tokens,
        report.prefill_ms,
        report.tokens.len(),
        report.decode_ms,
        report.tokens_per_s,
        if a.mrss_tau > 0.0 { format!("; MRSS τ = {} merged {:.1}% of state updates", a.mrss_tau, 100.0 * report.mrss_merged) } else { String::new() },
        if report.stopped_at_eos { "; stopped at EOS" } else { "" }
    );
    if let Some(q) = quality {
        eprintln!(
            "MRSS vs the full scan on these {} tokens: {:.1}% of updates merged ({:.1}% saved), top-1 agreement {:.1}%, mean KL {:.2e}, max |Δ logits| {:.2e} (rel {:.2e}), perplexity {:.3} vs {:.3}, time ratio {:.2}",
            q.tokens,
            100.0 * q.merged_fraction,
            100.0 * q.saved_fraction,
            100.0 * q.top1_agreement,
            q.mean_kl,
            q.max_abs_logit_error,
            q.rel_logit_error,
            q.perplexity_mrss,
            q.perplexity_full,
            q.time_ratio
        );
    }
    Ok(())
}

fn run_bench_mamba(a: BenchMambaArgs) -> Result<()> {
    use effarch::bench::mamba::{bench_mamba, MambaBenchSpec};
    let spec = MambaBenchSpec { ns: a.ns, iters: a.iters, steps: a.steps, hidden: a.hidden };
    spec.validate()?;
    let devices = match a.device {
        DeviceArg::Auto => match quietly(Device::best) {
            gpu @ Device::Gpu(_) => vec![Device::Cpu, gpu],
            cpu => vec![cpu],
        },
        other => vec![other.device()?],
    };
    let quiet = a.json;
    let mut runs = Vec::new();
    for device in &devices {
        if !quiet {
            eprintln!("{}:", device.describe());
        }
        let (rows, e) = bench_mamba(&spec, device, |line| {
            if !quiet {
                eprintln!("  {line}");
            }
        })?;
        runs.push(serde_json::json!({"device": device.describe(), "rows": rows, "exponents": e}));
        if quiet {
            continue;
        }
        println!("Mamba block vs attention block, d = {}, {}, median of {} rounds", spec.hidden, device.describe(), spec.iters);
        println!("{:>6} {:>14} {:>14} {:>16} {:>16}", "N", "mamba prefill", "attn prefill", "mamba ms/token", "attn ms/token");
        for r in &rows {
            println!("{:>6} {:>11.1} ms {:>11.1} ms {:>16.3} {:>16.3}", r.n, r.mamba_prefill_ms, r.attn_prefill_ms, r.mamba_decode_ms, r.attn_decode_ms);
        }
        println!(
            "fitted exponent (time ∝ N^e): prefill mamba {:.2}, attention {:.2}; decode mamba {:.2}, attention {:.2}",
            e.mamba_prefill, e.attn_prefill, e.mamba_decode, e.attn_decode
        );
    }
    if quiet {
        // The first run's fields at the top level, every device's under "runs".
        let mut v = runs[0].clone();
        v["hidden"] = serde_json::json!(spec.hidden);
        v["runs"] = serde_json::json!(runs);
        println!("{v}");
    }
    Ok(())
}

fn run_qwen(a: QwenArgs) -> Result<()> {
    use effarch::models::qwen::{QwenPrune, QwenVL};
    use std::io::Write;
    let scorer: Scorer = a.scorer.parse()?;
    if !(a.keep > 0.0 && a.keep <= 1.0) {
        return Err(Error::arg(format!("--keep must be in (0, 1], got {}", a.keep)));
    }
    let opts = a.sample.options(a.max_new_tokens, 0.0)?;
    // Everything that can be checked before the model loads is checked here, the rest right
    // after it loads: an error always comes before any output.
    let bytes = std::fs::read(&a.image).map_err(|e| Error::io(a.image.display(), e))?;
    let decoded = effarch::image::decode(&bytes).map_err(|e| Error::arg(format!("{}: {e}", a.image.display())))?;
    let device = a.device.device()?;
    // A hub id: the config, tokenizer and index first, then the shards the index names.
    let meta = ["config.json", "tokenizer.json"];
    let dir = effarch::hub::resolve(&a.model, &meta, &["preprocessor_config.json", "model.safetensors.index.json"])?;
    if !std::path::Path::new(&a.model).is_dir() {
        let shards = match effarch::models::qwen::shard_names(&dir)? {
            Some(s) => s,
            None => vec!["model.safetensors".into()],
        };
        effarch::hub::resolve(&a.model, &shards.iter().map(String::as_str).collect::<Vec<_>>(), &[])?;
    }
    let t0 = effarch::clock::now_ms();
    let m = QwenVL::load_dir(&dir, &device)?;
    let load_ms = effarch::clock::now_ms() - t0;
    let prune = QwenPrune { scorer, keep: a.keep, block: a.block };
    m.prune_plan(Some(&prune))?;
    let img = effarch::models::qwen::processor::preprocess(&decoded, &m.cfg.vision, &m.processor)?;
    let ids = m.prompt_ids(&QwenVL::chat_prompt(&a.prompt), img.tokens(m.cfg.vision.spatial_merge_size))?;
    m.check_lengths(ids.len(), a.max_new_tokens, a.max_prompt_tokens)?;
    let mut runs = Vec::new();
    let plans: Vec<Option<&QwenPrune>> = if a.keep < 1.0 { vec![None, Some(&prune)] } else { vec![None] };
    for p in plans {
        if !a.json {
            match p {
                Some(p) => eprintln!("--- keep {} of the visual tokens ({}):", p.keep, p.scorer),
                None => eprintln!("--- all visual tokens:"),
            }
        }
        let tok = m.tokenizer.as_ref();
        let r = m.generate(&img, &a.prompt, p, &opts, |id| {
            if !a.json {
                if let Some(t) = tok {
                    print!("{}", t.decode(&[id]));
                    let _ = std::io::stdout().flush();
                }
            }
        })?;
        if !a.json {
            println!();
            eprintln!(
                "visual tokens {} → {}, prompt {} tokens; vision {:.0} ms, LLM prefill {:.0} ms; {} tokens at {:.1} tokens/s",
                r.prefill.visual_tokens_before,
                r.prefill.visual_tokens_after,
                r.prefill.prompt_tokens,
                r.prefill.vision_ms,
                r.prefill.prefill_ms,
                r.tokens.len(),
                r.tokens_per_s
            );
        }
        runs.push(serde_json::json!({
            "keep": p.map_or(1.0, |p| p.keep), "visual_tokens_before": r.prefill.visual_tokens_before, "visual_tokens_after": r.prefill.visual_tokens_after,
            "kept": r.prefill.kept, "prompt_tokens": r.prefill.prompt_tokens, "vision_ms": r.prefill.vision_ms, "prefill_ms": r.prefill.prefill_ms,
            "tokens": r.tokens, "text": r.text, "decode_ms": r.decode_ms, "tokens_per_s": r.tokens_per_s, "stopped_at_eos": r.stopped_at_eos,
        }));
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"device": device.describe(), "load_ms": load_ms, "grid": [img.grid_h, img.grid_w], "scorer": scorer.to_string(), "runs": runs})
        );
    }
    Ok(())
}

fn run_bench_qwen(a: BenchQwenArgs) -> Result<()> {
    use effarch::bench::qwen::{bench_qwen, QwenBenchSpec};
    let d = QwenBenchSpec::default();
    let widths = match a.widths.as_deref() {
        None => d.widths,
        Some(&[a0, a1, a2, a3, a4, a5, a6]) => [a0, a1, a2, a3, a4, a5, a6],
        Some(w) => return Err(Error::arg(format!("--widths takes 7 numbers, got {}", w.len()))),
    };
    let spec = QwenBenchSpec { keeps: a.keeps, image: a.image, vision_depth: a.vision_depth, lm_layers: a.lm_layers, iters: a.iters, widths, vocab: d.vocab };
    let device = a.device.device()?;
    let quiet = a.json;
    let rows = bench_qwen(&spec, &device, |l| {
        if !quiet {
            eprintln!("  {l}");
        }
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"device": device.describe(), "image": spec.image, "vision_depth": spec.vision_depth, "lm_layers": spec.lm_layers, "rows": rows})
        );
        return Ok(());
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
    println!("{:>5} {:>8} {:>8} {:>11} {:>12} {:>8} {:>8}", "keep", "visual", "prompt", "vision ms", "prefill ms", "ratio", "tokens");
    for r in &rows {
        println!(
            "{:>5.2} {:>8} {:>8} {:>11.0} {:>12.1} {:>8.3} {:>8.3}",
            r.keep, r.visual_tokens, r.prompt_tokens, r.vision_ms, r.prefill_ms, r.prefill_ratio, r.token_ratio
        );
    }
    Ok(())
}

fn run_typeseg(a: TypesegArgs) -> Result<()> {
    use effarch::clock::now_ms;
    use effarch::models::mamba::quality::Compare;
    use effarch::models::mamba::typeseg::Typeseg;
    use effarch::weights::Weights;
    let model = Typeseg::load(&Weights::from_file(&a.weights)?, &Device::Cpu)?;
    let check = Weights::from_file(&a.check)?;
    let mut inputs = Vec::new();
    for i in 0.. {
        let Some(info) = check.info(&format!("file{i}.tokens")) else { break };
        let shape = info.shape.clone();
        let tokens: Vec<u32> = check.get_f32(&format!("file{i}.tokens"), &shape)?.iter().map(|&v| v as u32).collect();
        let want = check.get_f32(&format!("file{i}.logits"), &[tokens.len(), model.classes])?;
        inputs.push((tokens, want));
    }
    if inputs.is_empty() {
        return Err(Error::arg(format!("{}: no file0.tokens", a.check.display())));
    }
    let mut taus = vec![0.0f32];
    taus.extend(a.taus.iter().copied().filter(|&t| t != 0.0));
    let c = model.classes;
    let mut full: Vec<Vec<f32>> = Vec::new();
    let mut rows = Vec::new();
    let (mut ref_abs, mut ref_scale) = (0f32, 0f32);
    let mut base_ms = 0.0;
    for (ti, &tau) in taus.iter().enumerate() {
        let (mut runs, mut merged, mut updates) = (0u64, 0u64, 0u64);
        let mut cmp = Compare::default();
        let t0 = now_ms();
        for (fi, (tokens, want)) in inputs.iter().enumerate() {
            let (logits, st) = model.forward(tokens, tau)?;
            merged += st.merged;
            updates += st.updates;
            runs += st.runs;
            if ti == 0 {
                ref_abs = ref_abs.max(effarch::testing::max_abs_diff(&logits, want));
                ref_scale = ref_scale.max(want.iter().fold(0f32, |m, v| m.max(v.abs())));
                full.push(logits);
                continue;
            }
            cmp.add(&full[fi], &logits, c);
        }
        let ms = now_ms() - t0;
        if ti == 0 {
            base_ms = ms;
        }
        rows.push(serde_json::json!({
            "tau": tau,
            "merged_fraction": if updates > 0 { merged as f64 / updates as f64 } else { 0.0 },
            "saved_fraction": if updates > 0 { merged.saturating_sub(runs) as f64 / updates as f64 } else { 0.0 },
            "label_agreement": cmp.agreement(),
            "max_abs_logit_error": cmp.max_abs as f64,
            "rel_logit_error": if ti == 0 { 0.0 } else { cmp.rel_err() },
            "mean_kl": cmp.mean_kl(),
            "ms": ms,
            "time_ratio": ms / base_ms.max(1e-9),
        }));
    }
    let total: usize = inputs.iter().map(|(t, _)| t.len()).sum();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"files": inputs.len(), "bytes": total, "reference_max_abs": ref_abs, "reference_max_logit": ref_scale, "rows": rows})
        );
        return Ok(());
    }
    println!("typeseg Mamba on {} files ({total} bytes): max |Δ| vs the package's numpy reference {ref_abs:.3e} (logits up to {ref_scale:.1})", inputs.len());
    println!("{:>7} {:>9} {:>9} {:>10} {:>11} {:>10} {:>9} {:>7}", "tau", "merged", "saved", "agreement", "max |Δ|", "rel err", "KL", "time");
    for r in rows {
        println!(
            "{:>7.3} {:>8.1}% {:>8.1}% {:>9.2}% {:>11.3e} {:>10.2e} {:>9.2e} {:>7.3}",
            r["tau"].as_f64().unwrap_or(0.0),
            100.0 * r["merged_fraction"].as_f64().unwrap_or(0.0),
            100.0 * r["saved_fraction"].as_f64().unwrap_or(0.0),
            100.0 * r["label_agreement"].as_f64().unwrap_or(0.0),
            r["max_abs_logit_error"].as_f64().unwrap_or(0.0),
            r["rel_logit_error"].as_f64().unwrap_or(0.0),
            r["mean_kl"].as_f64().unwrap_or(0.0),
            r["time_ratio"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
