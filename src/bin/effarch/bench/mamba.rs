//! `effarch bench mamba|mamba-lm|scan`: the Mamba block against attention, a whole Mamba LM,
//! and the GPU scan kernels.

use super::progress;
use crate::common::{emit, quietly, Common, DeviceArg};
use clap::Args;
use effarch::bench::mamba::{bench_mamba, bench_mamba_lm, Exponents, MambaBenchRow, MambaBenchSpec, MambaLmBenchRow, MambaLmBenchSpec};
use effarch::models::mamba::MambaLM;
use effarch::tensor::{Device, Precision};
use effarch::{Error, Result};
use serde::Serialize;

#[derive(Args)]
pub struct BenchMambaArgs {
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
    /// (`--device auto`: the CPU, then the GPU too when a hardware adapter exists, one table each.)
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct BenchMambaLmArgs {
    /// A directory in the hub layout (config.json, model.safetensors), a hub id, or `random`:
    /// mamba-130m's widths and depth with random weights (nothing to download).
    #[arg(long)]
    model: String,
    /// Prompt lengths (tokens) prefilled in one call each.
    #[arg(long, default_value = "512,2048", value_delimiter = ',')]
    prompt_lens: Vec<usize>,
    /// Tokens decoded greedily after each prompt.
    #[arg(long, default_value_t = 128)]
    decode: usize,
    /// Timed rounds (after one warm-up), every setting once per round.
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// MRSS thresholds τ timed side by side (0 = the full scan).
    #[arg(long, default_value = "0", value_delimiter = ',', allow_hyphen_values = true)]
    mrss_tau: Vec<f32>,
    /// After the timed rounds, one prefill and one decoding step of each setting with the GPU's
    /// timestamp queries: each kernel's GPU time and the idle gaps (`--device gpu`).
    #[arg(long)]
    profile: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct BenchScanArgs {
    /// Sequence lengths (steps of one sequence).
    #[arg(long, default_value = "512,2048", value_delimiter = ',')]
    lens: Vec<usize>,
    #[arg(long, default_value_t = 1536)]
    channels: usize,
    #[arg(long, default_value_t = 16)]
    state: usize,
    /// Timed rounds per kernel (after one run that also checks the outputs).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    #[command(flatten)]
    common: Common,
}

pub(super) fn run_scan(a: BenchScanArgs) -> Result<()> {
    let device = match a.common.device_or(DeviceArg::Auto) {
        DeviceArg::Auto => quietly(Device::best),
        other => other.device()?,
    };
    let rows = effarch::bench::mamba::bench_scan(&device, &a.lens, a.channels, a.state, a.iters, progress(a.common.json))?;
    if a.common.json {
        return emit(&serde_json::json!({ "device": device.describe(), "channels": a.channels, "state": a.state, "rows": rows }));
    }
    println!("selective scan (τ = 0), {} channels × {} states, {}, median of {}", a.channels, a.state, device.describe(), a.iters);
    println!(
        "{:>6} {:>14} {:>12} {:>7} {:>8} {:>16} {:>7} {:>15} {:>7} {:>10}",
        "L", "sequential ms", "chunked ms", "chunks", "speedup", "wide-chunked ms", "chunks", "64-step ms", "chunks", "max |Δ|"
    );
    for r in &rows {
        println!(
            "{:>6} {:>14.1} {:>12.1} {:>7} {:>7.2}x {:>16.1} {:>7} {:>15.1} {:>7} {:>10.1e}",
            r.len, r.sequential_ms, r.chunked_ms, r.chunks, r.speedup, r.chunked_wide_ms, r.wide_chunks, r.chunked_fine_ms, r.fine_chunks, r.max_abs_diff
        );
    }
    Ok(())
}

/// One device's table.
#[derive(Serialize)]
struct MambaRun {
    device: String,
    rows: Vec<MambaBenchRow>,
    exponents: Exponents,
}

/// `--json`: the first device's table at the top level, every device's under `runs`.
#[derive(Serialize)]
struct MambaJson<'a> {
    #[serde(flatten)]
    first: &'a MambaRun,
    hidden: usize,
    runs: &'a [MambaRun],
}

pub(super) fn run_mamba(a: BenchMambaArgs) -> Result<()> {
    let spec = MambaBenchSpec { ns: a.ns, iters: a.iters, steps: a.steps, hidden: a.hidden };
    spec.validate()?;
    let precision = a.common.precision()?;
    let devices = match a.common.device_or(DeviceArg::Auto) {
        DeviceArg::Auto if precision == Precision::F32 => match quietly(Device::best) {
            gpu @ Device::Gpu(_) => vec![Device::cpu(), gpu],
            cpu => vec![cpu],
        },
        other => vec![other.device_with(precision)?],
    };
    let quiet = a.common.json;
    let mut runs = Vec::new();
    for device in &devices {
        if !quiet {
            eprintln!("{}:", device.describe());
        }
        let (rows, e) = bench_mamba(&spec, device, progress(quiet))?;
        if !quiet {
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
        runs.push(MambaRun { device: device.describe(), rows, exponents: e });
    }
    if quiet {
        let first = runs.first().ok_or_else(|| Error::arg("no device to run on"))?;
        return emit(&MambaJson { first, hidden: spec.hidden, runs: &runs });
    }
    Ok(())
}

/// `--json` of `bench mamba-lm`.
#[derive(Serialize)]
struct MambaLmJson<'a> {
    device: String,
    precision: String,
    rows: &'a [MambaLmBenchRow],
}

pub(super) fn run_mamba_lm(a: BenchMambaLmArgs) -> Result<()> {
    let spec = MambaLmBenchSpec { prompt_lens: a.prompt_lens, decode: a.decode, iters: a.iters, taus: a.mrss_tau, profile: a.profile };
    let device = a.common.device_for(DeviceArg::Cpu)?;
    if a.profile && !matches!(device, Device::Gpu(_)) {
        return Err(Error::arg("--profile times GPU kernels: use it with --device gpu"));
    }
    let (model, name) = if a.model == "random" {
        (effarch::bench::mamba::random_mamba_130m(&device)?, "random mamba-130m widths".to_string())
    } else {
        let dir = effarch::hub::resolve(&a.model, &["config.json", "model.safetensors"], &[])?;
        (MambaLM::load_dir(&dir, &device)?.0, dir.display().to_string())
    };
    spec.validate(model.cfg.vocab_size)?;
    let quiet = a.common.json;
    if !quiet {
        eprintln!("{name}: {} layers, width {}, {}", model.cfg.num_hidden_layers, model.cfg.hidden_size, device.describe());
    }
    let rows = bench_mamba_lm(&model, &spec, progress(quiet))?;
    if quiet {
        return emit(&MambaLmJson { device: device.describe(), precision: a.common.precision()?.name().to_string(), rows: &rows });
    }
    println!("{} , {} decoded tokens, median of {} rounds", device.describe(), spec.decode, spec.iters);
    println!(
        "{:>6} {:>7} {:>12} {:>14} {:>10} {:>14} {:>14} {:>10}",
        "τ", "prompt", "prefill tok/s", "prefill scan", "merged", "decode tok/s", "decode scan", "merged"
    );
    for r in &rows {
        println!(
            "{:>6} {:>7} {:>12.1} {:>13.1}% {:>9.1}% {:>14.1} {:>13.1}% {:>9.1}%",
            r.mrss_tau,
            r.prompt_tokens,
            r.prefill_tokens_per_s,
            100.0 * r.prefill_scan_ms / r.prefill_ms,
            100.0 * r.prefill_merged,
            r.decode_tokens_per_s,
            100.0 * r.decode_scan_ms_per_token / r.decode_ms_per_token,
            100.0 * r.decode_merged
        );
    }
    for r in &rows {
        for (what, p) in [("prefill", &r.prefill_profile), ("one decoding step", &r.decode_profile)] {
            if let Some(p) = p {
                println!("\nτ {} prompt {} {what}:\n{}", r.mrss_tau, r.prompt_tokens, p.table());
            }
        }
    }
    Ok(())
}
