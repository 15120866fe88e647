//! `effarch eval clip`: zero-shot accuracy per pruning method (scorer × keep) over a labelled
//! image set, against latency; JSON, CSV and an SVG chart; resumable.

use crate::common::{emit, parse_scorer, Common, DeviceArg};
use clap::{Args, Subcommand};
use effarch::eval::{self, qwen as qwen_eval, Dataset, EvalRow, ImageResult};
use effarch::models::clip;
use effarch::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum EvalCmd {
    /// Zero-shot top-1/top-5 of CLIP per pruning scorer and keep ratio over an image set
    /// (ImageFolder directory or path,label CSV), with latency and FLOPs.
    Clip(EvalClipArgs),
    /// Visual question answering with Qwen2.5-VL per pruning method and keep over a JSONL set
    /// of {image, question, answers}: exact-match and contains-answer accuracy, agreement with
    /// the unpruned answer, prefill ms and decode tokens/s.
    Qwen(EvalQwenArgs),
}

#[derive(Args)]
pub struct EvalQwenArgs {
    /// A Qwen2.5-VL directory in the hub layout or a hub id.
    #[arg(long, default_value = "Qwen/Qwen2.5-VL-3B-Instruct")]
    model: String,
    /// `questions.jsonl`: one `{"image": path relative to the file, "question": "...",
    /// "answers": ["...", ...]}` per line.
    #[arg(long)]
    data: PathBuf,
    /// Keep ratios; 1 is the unpruned model (always evaluated, the reference).
    #[arg(long, default_value = "1,0.5,0.25", value_delimiter = ',')]
    keeps: Vec<f32>,
    /// Methods: kq-norm, random, divprune, fastv, dart.
    #[arg(long, default_value = "kq-norm,random,divprune,fastv,dart", value_delimiter = ',')]
    methods: Vec<String>,
    /// FastV's and DART's language-model layer.
    #[arg(long, default_value_t = effarch::models::qwen::FASTV_LAYER)]
    llm_layer: usize,
    /// Answer tokens generated (greedy).
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
    /// Evaluate only the first N questions.
    #[arg(long)]
    limit: Option<usize>,
    /// Write results.json, results.csv and accuracy_vs_prefill.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct EvalClipArgs {
    /// A model directory (config.json, model.safetensors, vocab.json, merges.txt) or a hub id.
    #[arg(long, default_value = "openai/clip-vit-base-patch16")]
    model: String,
    /// The image set: a directory with one sub-folder per class (the folder name is the
    /// label), or a CSV file of `path,label` lines.
    #[arg(long)]
    data: PathBuf,
    /// Prompt template(s) with `{}` for the class name; several are averaged (repeat the flag).
    #[arg(long = "template", default_value = "a photo of a {}.")]
    templates: Vec<String>,
    /// Keep ratios; 1 is the unpruned model (always evaluated, the reference).
    #[arg(long, default_value = "1,0.9,0.7,0.5,0.3", value_delimiter = ',')]
    keeps: Vec<f32>,
    /// Methods (comma-separated; default: each CLIP method once, as `prune::compared_methods`
    /// lists them — kq-norm, cls-attn, random, tome, divprune, visionzip). Every scorer prunes
    /// at the first of several --layers, to the final count of the others; tome merges in every
    /// layer, as many tokens as each keep prunes.
    #[arg(long, value_delimiter = ',')]
    scorers: Vec<String>,
    /// Pruning layer(s), 0-based.
    #[arg(long, default_value = "1", value_delimiter = ',')]
    layers: Vec<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Evaluate only the first N images (in the set's order).
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the `random` scorer.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write results.json, results.csv, latency_vs_accuracy.svg and the per-image cache here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the per-image cache in --out instead of starting over (same settings).
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    common: Common,
}

/// The settings a cache belongs to (its first line).
#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct CacheKey {
    model: String,
    data: String,
    templates: Vec<String>,
    methods: Vec<(String, f32)>,
    layers: Vec<usize>,
    batch: usize,
    device: String,
    /// `--precision` lists: the precisions side by side (empty for one).
    #[serde(default)]
    precisions: Vec<String>,
}

/// `--json` and results.json: the settings, then one row per method.
#[derive(Serialize)]
struct EvalJson<'a> {
    config: EvalConfig<'a>,
    rows: &'a [EvalRow],
}

#[derive(Serialize)]
struct EvalConfig<'a> {
    model: &'a str,
    data: String,
    images: usize,
    classes: usize,
    templates: &'a [String],
    layers: &'a [usize],
    batch: usize,
    device: String,
    /// Images whose results came from the cache (`--resume`).
    resumed: usize,
}

const CACHE: &str = "cache.jsonl";

pub fn run(cmd: EvalCmd) -> Result<()> {
    match cmd {
        EvalCmd::Clip(a) => clip_eval(a),
        EvalCmd::Qwen(a) => qwen_eval(a),
    }
}

/// `eval qwen --json` and results.json.
#[derive(Serialize)]
struct QwenEvalJson<'a> {
    model: &'a str,
    data: String,
    questions: usize,
    device: String,
    rows: &'a [qwen_eval::QwenEvalRow],
    /// Per question, every method's answer (in the rows' order).
    answers: Vec<Vec<String>>,
}

fn qwen_eval(a: EvalQwenArgs) -> Result<()> {
    use effarch::models::qwen::{processor, QwenVL};
    if let Some(k) = a.keeps.iter().find(|k| !k.is_finite() || **k <= 0.0 || **k > 1.0) {
        return Err(Error::arg(format!("--keeps: {k} is not in (0, 1]")));
    }
    if a.max_new_tokens == 0 {
        return Err(Error::arg("--max-new-tokens must be at least 1"));
    }
    let scorers = a.methods.iter().map(|s| parse_scorer(s, 0)).collect::<Result<Vec<_>>>()?;
    let methods = qwen_eval::methods(&scorers, &a.keeps, a.llm_layer);
    let mut questions = qwen_eval::read_questions(&a.data)?;
    if let Some(n) = a.limit {
        questions.truncate(n.max(1));
    }
    // Every image decodes before the model loads: a bad one is an error naming it.
    let images = questions
        .iter()
        .map(|q| {
            let bytes = std::fs::read(&q.image).map_err(|e| Error::io(q.image.display(), e))?;
            effarch::image::decode(&bytes).map_err(|e| Error::arg(format!("{}: {e}", q.image.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let device = a.common.device_for(DeviceArg::Cpu)?;
    let dir = effarch::hub::resolve(&a.model, &["config.json", "tokenizer.json"], &["preprocessor_config.json", "model.safetensors.index.json"])?;
    if !Path::new(&a.model).is_dir() {
        let shards = effarch::models::qwen::shard_names(&dir)?.unwrap_or_else(|| vec!["model.safetensors".into()]);
        effarch::hub::resolve(&a.model, &shards.iter().map(String::as_str).collect::<Vec<_>>(), &[])?;
    }
    let m = QwenVL::load_dir(&dir, &device)?;
    for me in &methods {
        m.prune_plan(me.prune.as_ref())?;
    }
    let bar = ProgressBar::new(questions.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} questions · ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    if a.common.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut outcomes = Vec::with_capacity(questions.len());
    for (q, img) in questions.iter().zip(&images) {
        let patches = processor::preprocess(img, &m.cfg.vision, &m.processor).map_err(|e| Error::arg(format!("{}: {e}", q.image.display())))?;
        // The prompt and answer within the model's context, as `qwen` checks.
        let n_ids = m.prompt_ids(&QwenVL::chat_prompt(&q.question), patches.tokens(m.cfg.vision.spatial_merge_size))?.len();
        m.check_lengths(n_ids, a.max_new_tokens, 16384).map_err(|e| Error::arg(format!("{}: {e}", q.image.display())))?;
        outcomes.push(qwen_eval::run_question(&m, &patches, q, &methods, a.max_new_tokens)?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let rows = qwen_eval::summarize(&methods, &outcomes);
    let report = QwenEvalJson {
        model: &a.model,
        data: a.data.display().to_string(),
        questions: questions.len(),
        device: device.describe(),
        rows: &rows,
        answers: outcomes.iter().map(|o| o.iter().map(|x| x.answer.clone()).collect()).collect(),
    };
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
        let json = serde_json::to_string_pretty(&report).map_err(|e| Error::arg(format!("results.json: {e}")))?;
        write(dir, "results.json", &json)?;
        write(dir, "results.csv", &qwen_eval::csv(&rows))?;
        let title = format!("{} on {} ({} questions)", a.model, a.data.display(), questions.len());
        write(dir, "accuracy_vs_prefill.svg", &qwen_eval::svg(&rows, &title))?;
    }
    if a.common.json {
        return emit(&report);
    }
    println!("{} questions, {} on {}", questions.len(), a.model, device.describe());
    println!("{:<12} {:>5} {:>7} {:>9} {:>7} {:>11} {:>9} {:>7}", "method", "keep", "exact", "contains", "agree", "prefill ms", "tok/s", "FLOPs");
    for r in &rows {
        println!(
            "{:<12} {:>5.2} {:>7.3} {:>9.3} {:>7.3} {:>11.1} {:>9.1} {:>7.3}",
            r.method, r.keep, r.exact, r.contains, r.agree, r.prefill_ms, r.tokens_per_s, r.flops_ratio
        );
    }
    if let Some(dir) = &a.out {
        println!("wrote {0}/results.json, {0}/results.csv, {0}/accuracy_vs_prefill.svg", dir.display());
    }
    Ok(())
}

fn clip_eval(a: EvalClipArgs) -> Result<()> {
    // Everything cheap first: arguments, the set, the cache.
    if a.batch == 0 {
        return Err(Error::arg("--batch must be at least 1"));
    }
    if let Some(k) = a.keeps.iter().find(|k| !k.is_finite() || **k <= 0.0 || **k > 1.0) {
        return Err(Error::arg(format!("--keeps: {k} is not in (0, 1]")));
    }
    if a.resume && a.out.is_none() {
        return Err(Error::arg("--resume needs --out DIR (the cache lives there)"));
    }
    let names: Vec<String> = if a.scorers.is_empty() { effarch::prune::compared_methods().into_iter().map(String::from).collect() } else { a.scorers.clone() };
    let scorers = names.iter().map(|s| parse_scorer(s, a.seed)).collect::<Result<Vec<_>>>()?;
    let methods = eval::methods(&scorers, &a.keeps, &a.layers)?;
    let mut data = Dataset::open(&a.data)?;
    if let Some(n) = a.limit {
        data.items.truncate(n);
    }
    // One model per precision when a list is given (f32 first, on the CPU unless asked), else one.
    let (devices, precisions): (Vec<effarch::tensor::Device>, Vec<&str>) = if a.common.precision.len() > 1 {
        let ps = a.common.precisions_f32_first();
        let dev = a.common.device_or(DeviceArg::Cpu);
        (ps.iter().map(|&p| dev.device_with(p)).collect::<Result<_>>()?, ps.iter().map(|p| p.name()).collect())
    } else {
        (vec![a.common.device_for(DeviceArg::Auto)?], Vec::new())
    };
    let device = devices.iter().map(|d| d.describe()).collect::<Vec<_>>().join(" | ");
    let key = CacheKey {
        model: a.model.clone(),
        data: a.data.display().to_string(),
        templates: a.templates.clone(),
        methods: methods.iter().map(|m| (m.name.clone(), m.keep)).collect(),
        layers: a.layers.clone(),
        batch: a.batch,
        device: device.clone(),
        precisions: precisions.iter().map(|p| p.to_string()).collect(),
    };
    let mut done: Vec<ImageResult> = match (&a.out, a.resume) {
        (Some(dir), true) => read_cache(dir, &key)?,
        _ => Vec::new(),
    };
    let resumed = done.len();
    let mut cache = match &a.out {
        Some(dir) => Some(open_cache(dir, &key, &done)?),
        None => None,
    };

    let dir = effarch::hub::resolve(&a.model, &["config.json", "model.safetensors", "vocab.json", "merges.txt"], &[])?;
    let sessions = devices.iter().map(|d| clip::open_dir(&dir, d, true)).collect::<Result<Vec<_>>>()?;
    let model = &sessions[0].clip;
    for m in &methods {
        if let Some(p) = &m.prune {
            p.validate(model.vision.num_layers())?;
        }
    }
    let classifiers = sessions.iter().map(|s| eval::text_classifier(&s.clip, &data.classes, &a.templates)).collect::<Result<Vec<_>>>()?;
    let models: Vec<(&clip::Clip, &[f32])> = sessions.iter().zip(&classifiers).map(|(s, c)| (&s.clip, c.as_slice())).collect();
    let run_batch = |images: &[image::RgbImage]| {
        if precisions.is_empty() {
            eval::run_batch(model, images, &methods, &classifiers[0])
        } else {
            eval::run_batch_precisions(&models, images, &methods)
        }
    };

    let seen: std::collections::HashSet<String> = done.iter().map(|r| r.path.clone()).collect();
    let todo: Vec<&eval::Item> = data.items.iter().filter(|it| !seen.contains(&it.path.display().to_string())).collect();
    let bar = ProgressBar::new(data.items.len() as u64).with_position(resumed as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} images · {per_sec} · ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    if a.common.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    // The next batch is decoded and preprocessed on rayon's pool while the model runs this one.
    // Each image, or the error naming its file.
    let decode = |batch: &[&eval::Item]| -> Vec<Result<image::RgbImage>> {
        batch
            .par_iter()
            .map(|it| {
                let bytes = std::fs::read(&it.path).map_err(|e| Error::io(it.path.display(), e))?;
                effarch::image::decode(&bytes).map_err(|e| Error::arg(format!("{}: {e}", it.path.display())))
            })
            .collect()
    };
    let batches: Vec<&[&eval::Item]> = todo.chunks(a.batch).collect();
    let mut next = batches.first().map(|b| decode(b));
    for (bi, batch) in batches.iter().enumerate() {
        let images = next.take().unwrap_or_default().into_iter().collect::<Result<Vec<_>>>()?;
        let (outcomes, following) = rayon::join(|| run_batch(&images), || batches.get(bi + 1).map(|b| decode(b)));
        next = following;
        for (it, outs) in batch.iter().zip(outcomes?) {
            let r = ImageResult { path: it.path.display().to_string(), label: it.label, outcomes: outs };
            if let Some(f) = cache.as_mut() {
                let line = serde_json::to_string(&r).map_err(|e| Error::arg(format!("cache line: {e}")))?;
                writeln!(f, "{line}").map_err(|e| Error::io(CACHE, e))?;
            }
            done.push(r);
        }
        if let Some(f) = cache.as_mut() {
            f.flush().map_err(|e| Error::io(CACHE, e))?;
        }
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();

    // Rows in the set's order of images (resumed ones included).
    let rows = if precisions.is_empty() { eval::summarize(&methods, &done) } else { eval::summarize_precisions(&methods, &precisions, &done) };
    let report = EvalJson {
        config: EvalConfig {
            model: &a.model,
            data: a.data.display().to_string(),
            images: done.len(),
            classes: data.classes.len(),
            templates: &a.templates,
            layers: &a.layers,
            batch: a.batch,
            device: device.clone(),
            resumed,
        },
        rows: &rows,
    };
    if let Some(dir) = &a.out {
        let json = serde_json::to_string_pretty(&report).map_err(|e| Error::arg(format!("results.json: {e}")))?;
        write(dir, "results.json", &json)?;
        write(dir, "results.csv", &eval::csv(&rows))?;
        let title = format!("{} on {} ({} images, {} classes), pruning at layer(s) {:?}", a.model, a.data.display(), done.len(), data.classes.len(), a.layers);
        // Side by side, each precision but the first has its own lines.
        let named: Vec<eval::EvalRow> = rows
            .iter()
            .map(|r| match &r.precision {
                Some(p) if p != "f32" => eval::EvalRow { scorer: format!("{} {p}", r.scorer), ..r.clone() },
                _ => r.clone(),
            })
            .collect();
        write(dir, "latency_vs_accuracy.svg", &eval::svg(&named, &title))?;
    }
    if a.common.json {
        return emit(&report);
    }
    println!(
        "{} images, {} classes, {} on {}{}",
        done.len(),
        data.classes.len(),
        a.model,
        device,
        if resumed > 0 { format!(" ({resumed} from the cache)") } else { String::new() }
    );
    let side = !precisions.is_empty();
    let head =
        format!("{:<14} {:>5} {:>7} {:>7} {:>8} {:>8} {:>9} {:>7} {:>7}", "scorer", "keep", "top-1", "top-5", "agree", "cos", "ms/img", "img/s", "FLOPs");
    if side {
        println!("{:<9} {head} {:>9} {:>9}", "precision", "agree f32", "cos f32");
    } else {
        println!("{head}");
    }
    for r in &rows {
        let line = format!(
            "{:<14} {:>5.2} {:>7.3} {:>7.3} {:>8.3} {:>8.5} {:>9.2} {:>7.1} {:>7.3}",
            r.scorer, r.keep, r.top1, r.top5, r.agree_top1, r.cos_to_unpruned, r.ms_per_img, r.images_per_s, r.flops_ratio
        );
        match (&r.precision, r.agree_f32, r.cos_to_f32) {
            (Some(p), Some(ag), Some(cos)) => println!("{p:<9} {line} {ag:>9.3} {cos:>9.6}"),
            _ => println!("{line}"),
        }
    }
    if let Some(dir) = &a.out {
        println!("wrote {0}/results.json, {0}/results.csv, {0}/latency_vs_accuracy.svg", dir.display());
    }
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| Error::io(p.display(), e))
}

/// The cached results of an earlier run with the same settings.
fn read_cache(dir: &Path, key: &CacheKey) -> Result<Vec<ImageResult>> {
    let p = dir.join(CACHE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(p.display(), e)),
    };
    let mut lines = text.lines();
    let head: CacheKey = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| Error::arg(format!("{}: not a cache of `effarch eval clip` (first line)", p.display())))?;
    if &head != key {
        return Err(Error::arg(format!("{}: made with other settings ({head:?}); run without --resume to start over", p.display())));
    }
    // A line cut short by an interruption is dropped (that image is run again).
    let per_image = key.methods.len() * key.precisions.len().max(1);
    Ok(lines.filter_map(|l| serde_json::from_str::<ImageResult>(l).ok()).filter(|r| r.outcomes.len() == per_image).collect())
}

/// Writes the cache afresh: the settings line, then the results kept from an earlier run (a
/// line cut short by an interruption is gone), open for the new ones to be appended.
fn open_cache(dir: &Path, key: &CacheKey, kept: &[ImageResult]) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let p = dir.join(CACHE);
    let mut s = serde_json::to_string(key).map_err(|e| Error::arg(e.to_string()))? + "\n";
    for r in kept {
        s += &(serde_json::to_string(r).map_err(|e| Error::arg(e.to_string()))? + "\n");
    }
    let mut f = std::fs::File::create(&p).map_err(|e| Error::io(p.display(), e))?;
    f.write_all(s.as_bytes()).map_err(|e| Error::io(p.display(), e))?;
    Ok(f)
}
