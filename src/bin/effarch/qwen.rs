//! `effarch qwen`: describe an image with Qwen2.5-VL, pruning visual tokens before the
//! language model (the unpruned run first, for comparison).

use crate::common::{emit, parse_scorer, Common, DeviceArg, SampleArgs};
use clap::Args;
use effarch::models::lm::TextStream;
use effarch::models::qwen::{PrefillReport, QwenPrune, QwenVL};
use effarch::{Error, Result};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct QwenArgs {
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
    /// The pruning method: kq-norm (= kq-norm:key), kq-norm:query, kq-norm:both, random,
    /// divprune (in the vision tower's output), fastv or dart (inside the language model, --llm-layer).
    #[arg(long, alias = "method", default_value = "kq-norm")]
    scorer: String,
    /// Vision block whose projections score the tokens (default: the last full-attention block).
    #[arg(long)]
    block: Option<usize>,
    /// FastV: the language-model layer at which visual tokens are dropped (1 ..= layers − 1).
    #[arg(long, default_value_t = effarch::models::qwen::FASTV_LAYER)]
    llm_layer: usize,
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Prompt tokens (text + visual) allowed; the error says what the KV cache would take.
    #[arg(long, default_value_t = 16384)]
    max_prompt_tokens: usize,
    #[command(flatten)]
    sample: SampleArgs,
    #[command(flatten)]
    common: Common,
}

/// `--json`: the model and image, then one entry per run (unpruned, pruned).
#[derive(Serialize)]
struct QwenJson {
    device: String,
    load_ms: f64,
    grid: [usize; 2],
    scorer: String,
    runs: Vec<QwenRun>,
}

#[derive(Serialize)]
struct QwenRun {
    keep: f32,
    #[serde(flatten)]
    prefill: PrefillReport,
    tokens: Vec<u32>,
    text: String,
    decode_ms: f64,
    tokens_per_s: f64,
    stopped_at_eos: bool,
}

pub fn run(a: QwenArgs) -> Result<()> {
    let scorer = parse_scorer(&a.scorer, 0)?;
    if !(a.keep > 0.0 && a.keep <= 1.0) {
        return Err(Error::arg(format!("--keep must be in (0, 1], got {}", a.keep)));
    }
    let opts = a.sample.options(a.max_new_tokens)?;
    // Everything that can be checked before the model loads is checked here, the rest right
    // after it loads: an error always comes before any output.
    let bytes = std::fs::read(&a.image).map_err(|e| Error::io(a.image.display(), e))?;
    let decoded = effarch::image::decode(&bytes).map_err(|e| Error::arg(format!("{}: {e}", a.image.display())))?;
    let device = a.common.device_for(DeviceArg::Cpu)?;
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
    let prune = QwenPrune { scorer, keep: a.keep, block: a.block, llm_layer: Some(a.llm_layer) };
    m.prune_plan(Some(&prune))?;
    let img = effarch::models::qwen::processor::preprocess(&decoded, &m.cfg.vision, &m.processor)?;
    let ids = m.prompt_ids(&QwenVL::chat_prompt(&a.prompt), img.tokens(m.cfg.vision.spatial_merge_size))?;
    m.check_lengths(ids.len(), a.max_new_tokens, a.max_prompt_tokens)?;
    let json = a.common.json;
    let mut runs = Vec::new();
    let plans: Vec<Option<&QwenPrune>> = if a.keep < 1.0 { vec![None, Some(&prune)] } else { vec![None] };
    for p in plans {
        if !json {
            match p {
                Some(p) => eprintln!("--- keep {} of the visual tokens ({}):", p.keep, p.scorer),
                None => eprintln!("--- all visual tokens:"),
            }
        }
        let tok = m.tokenizer.as_ref();
        // Characters split over tokens are printed whole, with their last token.
        let mut stream = TextStream::default();
        let r = m.generate(&img, &a.prompt, p, &opts, |id| {
            if !json {
                if let Some(t) = tok {
                    print!("{}", stream.push(t, id));
                    let _ = std::io::stdout().flush();
                }
            }
        })?;
        if !json {
            println!("{}", stream.finish());
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
        runs.push(QwenRun {
            keep: p.map_or(1.0, |p| p.keep),
            prefill: r.prefill,
            tokens: r.tokens,
            text: r.text,
            decode_ms: r.decode_ms,
            tokens_per_s: r.tokens_per_s,
            stopped_at_eos: r.stopped_at_eos,
        });
    }
    if json {
        emit(&QwenJson { device: device.describe(), load_ms, grid: [img.grid_h, img.grid_w], scorer: scorer.to_string(), runs })?;
    }
    Ok(())
}
