//! `effarch mamba`: generate text with a Mamba LM (HF `MambaForCausalLM` layout), optionally
//! with the MRSS proxy and its measured cost.

use crate::common::{emit, Common, DeviceArg, SampleArgs};
use clap::Args;
use effarch::models::lm::TextStream;
use effarch::models::mamba::generate::{check_tau, generate, GenerateReport};
use effarch::models::mamba::quality::{mrss_quality, MrssQuality};
use effarch::models::mamba::MambaLM;
use effarch::{Error, Result};
use serde::Serialize;
use std::io::Write;

#[derive(Args)]
pub struct MambaArgs {
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
    #[command(flatten)]
    common: Common,
}

/// `--json`: the generation's report, MRSS's measured cost, and what ran.
#[derive(Serialize)]
struct MambaJson<'a> {
    #[serde(flatten)]
    report: &'a GenerateReport,
    mrss_quality: Option<MrssQuality>,
    prompt_ids: &'a [u32],
    text: Option<String>,
    mrss_tau: f32,
    device: String,
}

pub fn run(a: MambaArgs) -> Result<()> {
    let opts = a.sample.options(a.max_new_tokens)?;
    check_tau(a.mrss_tau)?;
    let optional: &[&str] = if a.prompt.is_some() { &[] } else { &["tokenizer.json"] };
    let required: Vec<&str> =
        if a.prompt.is_some() { vec!["config.json", "model.safetensors", "tokenizer.json"] } else { vec!["config.json", "model.safetensors"] };
    let dir = effarch::hub::resolve(&a.model, &required, optional)?;
    let (model, tok) = MambaLM::load_dir(&dir, &a.common.device_for(DeviceArg::Auto)?)?;
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
    let json = a.common.json;
    let mut out = std::io::stdout();
    if !json {
        if let (Some(t), Some(_)) = (&tok, &a.prompt) {
            print!("{}", t.decode(&prompt));
        }
    }
    // Characters split over tokens are printed whole, with their last token.
    let mut stream = TextStream::default();
    let report = generate(&model, &prompt, &opts, a.mrss_tau, |id| {
        if !json {
            match &tok {
                Some(t) => print!("{}", stream.push(t, id)),
                None => print!(" {id}"),
            }
            let _ = out.flush();
        }
    })?;
    if !json {
        print!("{}", stream.finish());
    }
    // MRSS's cost against the full scan, teacher-forced on the prompt and what was generated.
    let quality = if a.mrss_tau > 0.0 {
        let all: Vec<u32> = prompt.iter().chain(&report.tokens).copied().collect();
        Some(mrss_quality(&model, &all, a.mrss_tau)?)
    } else {
        None
    };
    if json {
        return emit(&MambaJson {
            report: &report,
            mrss_quality: quality,
            prompt_ids: &prompt,
            text: tok.as_ref().map(|t| t.decode(&report.tokens)),
            mrss_tau: a.mrss_tau,
            device: model.device().describe(),
        });
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
