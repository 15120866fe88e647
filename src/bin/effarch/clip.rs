//! `effarch clip`: embed an image with CLIP, pruning vision tokens on the way.

use crate::common::{emit, Common, DeviceArg, PruneArgs};
use clap::Args;
use effarch::models::clip::{self, RunOptions, RunReport};
use effarch::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct ClipArgs {
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
    /// Write the pruning overlay as a PNG (with --scorer tome: the merged groups in colours).
    #[arg(long)]
    overlay: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// `--json`: the run's report, then how long loading took and the pruning settings.
#[derive(Serialize)]
struct ClipJson<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    load_ms: f64,
    /// Of `load_ms`, the GPU pipeline compiles (0 on the CPU); the rest is reading and uploading weights.
    compile_ms: f64,
    scorer: String,
    keep: f32,
}

pub fn run(a: ClipArgs) -> Result<()> {
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
    let device = a.common.device_for(DeviceArg::Auto)?;

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
        let drawn = match &report.groups {
            Some(g) => effarch::overlay::draw_groups(&view, report.grid, g, 2),
            None => effarch::overlay::draw(&view, report.grid, &kept, 2),
        };
        drawn.save(path).map_err(|e| Error::Image(format!("cannot write overlay {}: {e}", path.display())))?;
    }

    if a.common.json {
        return emit(&ClipJson { report: &report, load_ms, compile_ms: session.clip.compile_ms, scorer: prune.scorer.to_string(), keep: prune.keep });
    }
    let compile = if model.compile_ms > 0.0 { format!(" ({:.0} ms of it compiling GPU pipelines)", model.compile_ms) } else { String::new() };
    println!(
        "model       {} ({} layers, {}x{} patches), loaded in {load_ms:.0} ms{compile}",
        dir.display(),
        model.vision.num_layers(),
        report.grid,
        report.grid
    );
    println!("device      {}", report.device);
    match &report.groups {
        Some(g) => {
            let tokens = g.iter().collect::<std::collections::BTreeSet<_>>().len();
            println!("merging     {} (keep {}): {} patches in {tokens} tokens after the last layer", prune.scorer, prune.keep, report.num_patches);
        }
        None => println!("pruning     {} keep {} at layer(s) {:?}", prune.scorer, prune.keep, prune.layers),
    }
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
