//! `effarch typeseg`: the trained typeseg Mamba, our scan against the package's reference
//! outputs, and MRSS's cost on real text (scripts/typeseg_check.py prepares the files).

use crate::common::emit;
use clap::Args;
use effarch::clock::now_ms;
use effarch::models::mamba::quality::Compare;
use effarch::models::mamba::typeseg::Typeseg;
use effarch::tensor::Device;
use effarch::weights::Weights;
use effarch::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct TypesegArgs {
    /// The package's `mamba_al.npz` as safetensors, names unchanged (`CheckpointMambaBlock1D_0/Dense_0/kernel`).
    #[arg(long)]
    weights: PathBuf,
    /// Inputs and reference logits: `file{i}.tokens` `[L]`, `file{i}.logits` `[L, classes]`;
    /// optionally an independent MRSS reference's logits at τ, `file{i}.logits@{τ}`.
    #[arg(long)]
    check: PathBuf,
    /// MRSS thresholds to measure (0 = the full scan, always included).
    #[arg(long, default_value = "0,0.001,0.003,0.01,0.03,0.1", value_delimiter = ',')]
    taus: Vec<f32>,
    /// Timed rounds: each runs every τ in turn over all files; times and ratios are the
    /// medians over rounds of each round's own (so a slow spell of a shared machine shows as
    /// one round's outlier, not as a false ratio). Outputs are checked in the first.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct TypesegJson {
    files: usize,
    bytes: usize,
    /// Our full scan against the package's numpy reference.
    reference_max_abs: f32,
    reference_max_logit: f32,
    rows: Vec<TauRow>,
}

/// MRSS at one τ against our full scan.
#[derive(Serialize)]
struct TauRow {
    tau: f32,
    merged_fraction: f64,
    saved_fraction: f64,
    label_agreement: f64,
    max_abs_logit_error: f64,
    rel_logit_error: f64,
    mean_kl: f64,
    ms: f64,
    time_ratio: f64,
    /// `rounds` rounds were timed: `ms`, `scan_ms` and the ratios are medians over them.
    rounds: usize,
    /// Of `ms`, the selective scan's (CPU kernel) time, and its ratio to the full scan's.
    scan_ms: f64,
    scan_time_ratio: f64,
    /// Our MRSS logits against the independent MRSS reference's (`file{i}.logits@{τ}` in the
    /// check file), when it has them: max |Δ| and the reference's largest |logit|, over the
    /// `mrss_reference_files` files it covers.
    mrss_reference_files: usize,
    /// Our merged fraction over those files (to set beside the reference's count).
    mrss_reference_merged_fraction: Option<f64>,
    mrss_reference_max_abs: Option<f64>,
    mrss_reference_max_logit: Option<f64>,
}

pub fn run(a: TypesegArgs) -> Result<()> {
    let model = Typeseg::load(&Weights::from_file(&a.weights)?, &Device::cpu())?;
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
    if a.rounds == 0 {
        return Err(Error::arg("--rounds 0: at least one round is needed"));
    }
    let mut taus = vec![0.0f32];
    taus.extend(a.taus.iter().copied().filter(|&t| t != 0.0));
    let c = model.classes;
    let mut full: Vec<Vec<f32>> = Vec::new();
    let mut rows = Vec::new();
    let (mut ref_abs, mut ref_scale) = (0f32, 0f32);
    let (mut base_ms, mut base_scan) = (0.0, 0.0);
    for (ti, &tau) in taus.iter().enumerate() {
        let (mut runs, mut merged, mut updates) = (0u64, 0u64, 0u64);
        let mut cmp = Compare::default();
        let (mut mrss_ref, mut mrss_scale, mut mrss_files, mut ref_merged, mut ref_updates) = (0f32, 0f32, 0usize, 0u64, 0u64);
        let mut our_logits = Vec::new();
        let mut file_stats = Vec::new();
        let (t0, s0) = (now_ms(), effarch::tensor::ssm::cpu_scan_ms());
        for (fi, (tokens, want)) in inputs.iter().enumerate() {
            let (logits, st) = model.forward(tokens, tau)?;
            merged += st.merged;
            updates += st.updates;
            file_stats.push((st.merged, st.updates));
            runs += st.runs;
            if ti == 0 {
                ref_abs = ref_abs.max(effarch::num::max_abs_diff(&logits, want));
                ref_scale = ref_scale.max(want.iter().fold(0f32, |m, v| m.max(v.abs())));
                full.push(logits);
                continue;
            }
            cmp.add(&full[fi], &logits, c);
            our_logits.push(logits);
        }
        let (ms, scan_ms) = (now_ms() - t0, effarch::tensor::ssm::cpu_scan_ms() - s0);
        // Outside the timing: the independent reference of the merged scan, where given.
        for (fi, logits) in our_logits.iter().enumerate() {
            let name = format!("file{fi}.logits@{tau}");
            if let Some(info) = check.info(&name) {
                let want = check.get_f32(&name, &info.shape.clone())?;
                mrss_ref = mrss_ref.max(effarch::num::max_abs_diff(logits, &want));
                mrss_scale = want.iter().fold(mrss_scale, |m, v| m.max(v.abs()));
                mrss_files += 1;
                ref_merged += file_stats[fi].0;
                ref_updates += file_stats[fi].1;
            }
        }
        if ti == 0 {
            (base_ms, base_scan) = (ms, scan_ms);
        }
        let frac = |n: u64| if updates > 0 { n as f64 / updates as f64 } else { 0.0 };
        rows.push(TauRow {
            tau,
            merged_fraction: frac(merged),
            saved_fraction: frac(merged.saturating_sub(runs)),
            label_agreement: cmp.agreement(),
            max_abs_logit_error: cmp.max_abs as f64,
            rel_logit_error: if ti == 0 { 0.0 } else { cmp.rel_err() },
            mean_kl: cmp.mean_kl(),
            ms,
            time_ratio: ms / base_ms.max(1e-9),
            rounds: 1,
            scan_ms,
            scan_time_ratio: scan_ms / base_scan.max(1e-9),
            mrss_reference_files: mrss_files,
            mrss_reference_merged_fraction: (ref_updates > 0).then(|| ref_merged as f64 / ref_updates as f64),
            mrss_reference_max_abs: (mrss_files > 0).then_some(mrss_ref as f64),
            mrss_reference_max_logit: (mrss_files > 0).then_some(mrss_scale as f64),
        });
    }
    // Further rounds: timing only, every τ in turn; per τ the median of each round's time and
    // of its ratio to that round's full scan.
    if a.rounds > 1 {
        let mut times: Vec<Vec<(f64, f64)>> = rows.iter().map(|r| vec![(r.ms, r.scan_ms)]).collect();
        for _ in 1..a.rounds {
            for (ti, &tau) in taus.iter().enumerate() {
                let (t0, s0) = (now_ms(), effarch::tensor::ssm::cpu_scan_ms());
                for (tokens, _) in &inputs {
                    model.forward(tokens, tau)?;
                }
                times[ti].push((now_ms() - t0, effarch::tensor::ssm::cpu_scan_ms() - s0));
            }
        }
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (ti, r) in rows.iter_mut().enumerate() {
            let per = |f: fn(&(f64, f64)) -> f64| times[ti].iter().map(f).collect::<Vec<f64>>();
            let ratio = |f: fn(&(f64, f64)) -> f64| times[ti].iter().zip(&times[0]).map(|(x, b)| f(x) / f(b).max(1e-9)).collect::<Vec<f64>>();
            (r.ms, r.scan_ms, r.rounds) = (med(per(|t| t.0)), med(per(|t| t.1)), a.rounds);
            (r.time_ratio, r.scan_time_ratio) = (med(ratio(|t| t.0)), med(ratio(|t| t.1)));
        }
    }
    let total: usize = inputs.iter().map(|(t, _)| t.len()).sum();
    if a.json {
        return emit(&TypesegJson { files: inputs.len(), bytes: total, reference_max_abs: ref_abs, reference_max_logit: ref_scale, rows });
    }
    println!("typeseg Mamba on {} files ({total} bytes): max |Δ| vs the package's numpy reference {ref_abs:.3e} (logits up to {ref_scale:.1})", inputs.len());
    println!("{:>7} {:>9} {:>9} {:>10} {:>11} {:>10} {:>9} {:>7} {:>7}", "tau", "merged", "saved", "agreement", "max |Δ|", "rel err", "KL", "time", "scan");
    for r in rows {
        println!(
            "{:>7.3} {:>8.1}% {:>8.1}% {:>9.2}% {:>11.3e} {:>10.2e} {:>9.2e} {:>7.3} {:>7.3}",
            r.tau,
            100.0 * r.merged_fraction,
            100.0 * r.saved_fraction,
            100.0 * r.label_agreement,
            r.max_abs_logit_error,
            r.rel_logit_error,
            r.mean_kl,
            r.time_ratio,
            r.scan_time_ratio
        );
    }
    Ok(())
}
