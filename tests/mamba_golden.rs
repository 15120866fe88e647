//! Mamba against transformers' `MambaForCausalLM` on a tiny random checkpoint
//! (`tests/fixtures/make_mamba_fixtures.py`), step decoding against one full pass, the MRSS
//! proxy, and bad input.

#![cfg(not(target_arch = "wasm32"))]

use effarch::models::mamba::{MambaConfig, MambaLM};
use effarch::tensor::Device;
use effarch::testing::max_abs_diff;
use effarch::weights::Weights;
use std::path::Path;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mamba-tiny"))
}

fn model() -> MambaLM {
    MambaLM::load_dir(dir(), &Device::cpu()).unwrap().0
}

fn expected() -> (Vec<Vec<u32>>, Vec<f32>, Vec<f32>) {
    let w = Weights::from_file(&dir().join("expected.safetensors")).unwrap();
    let ids_shape = w.info("input_ids").unwrap().shape.clone();
    let ids: Vec<u32> = w.get_f32("input_ids", &ids_shape).unwrap().iter().map(|&v| v as u32).collect();
    let rows = ids.chunks(ids_shape[1]).map(|r| r.to_vec()).collect();
    let ls = w.info("logits").unwrap().shape.clone();
    let hs = w.info("last_hidden_state").unwrap().shape.clone();
    (rows, w.get_f32("logits", &ls).unwrap(), w.get_f32("last_hidden_state", &hs).unwrap())
}

#[test]
fn logits_match_transformers() {
    let m = model();
    let (ids, logits, hidden) = expected();
    let mut st = m.new_state(ids.len()).unwrap();
    let out = m.forward(&ids, &mut st, 0.0).unwrap();
    let (dl, dh) = (max_abs_diff(&out.logits, &logits), max_abs_diff(&out.hidden, &hidden));
    println!("mamba logits: max |Δ| = {dl:e}, last_hidden_state: max |Δ| = {dh:e}");
    assert!(dl <= 1e-4 && dh <= 1e-4, "logits {dl}, hidden {dh}");
    assert_eq!(out.stats.merged, 0, "τ = 0 merges nothing");
}

#[test]
fn prefill_then_steps_equals_one_full_pass() {
    let m = model();
    let (ids, _, _) = expected();
    let v = m.cfg.vocab_size;
    let mut full_state = m.new_state(2).unwrap();
    let full = m.forward(&ids, &mut full_state, 0.0).unwrap();
    let split = 9;
    let mut st = m.new_state(2).unwrap();
    let pre = m.forward(&ids.iter().map(|r| r[..split].to_vec()).collect::<Vec<_>>(), &mut st, 0.0).unwrap();
    let len = ids[0].len();
    let mut worst = 0f32;
    for b in 0..2 {
        worst = worst.max(max_abs_diff(&pre.logits[b * split * v..(b + 1) * split * v], &full.logits[b * len * v..(b * len + split) * v]));
    }
    for t in split..len {
        let step = m.forward(&ids.iter().map(|r| vec![r[t]]).collect::<Vec<_>>(), &mut st, 0.0).unwrap();
        for b in 0..2 {
            worst = worst.max(max_abs_diff(&step.logits[b * v..(b + 1) * v], &full.logits[(b * len + t) * v..(b * len + t + 1) * v]));
        }
    }
    println!("prefill + steps vs full pass: max |Δ| = {worst:e}");
    assert!(worst <= 1e-5, "{worst}");
    assert_eq!(st.position, full_state.position);
}

#[test]
fn mrss_merges_slow_steps_and_reports_its_cost() {
    let m = model();
    let (ids, _, _) = expected();
    let v = m.cfg.vocab_size;
    let full = m.forward(&ids, &mut m.new_state(2).unwrap(), 0.0).unwrap();
    let exact = m.forward(&ids, &mut m.new_state(2).unwrap(), 0.0).unwrap();
    assert_eq!(full.logits, exact.logits, "τ = 0 is the full scan, bit for bit");
    let mut last = 0.0;
    for tau in [0.001f32, 0.01, 0.05] {
        let approx = m.forward(&ids, &mut m.new_state(2).unwrap(), tau).unwrap();
        let f = approx.stats.merged_fraction();
        let err = max_abs_diff(&approx.logits, &full.logits);
        let top1 = full.logits.chunks(v).zip(approx.logits.chunks(v)).filter(|(a, b)| argmax(a) == argmax(b)).count() as f64 / (full.logits.len() / v) as f64;
        println!("τ = {tau}: merged {:.1}% of updates, max |Δ logits| {err:e}, top-1 agreement {:.1}%", 100.0 * f, 100.0 * top1);
        assert!(f >= last, "a larger τ merges at least as much");
        last = f;
    }
    assert!(last > 0.0, "the fixture's small time steps get merged");
    // The report every MRSS run gets: τ = 0 costs nothing, τ > 0 is measured.
    use effarch::models::mamba::quality::mrss_quality;
    let q0 = mrss_quality(&m, &ids[0], 0.0).unwrap();
    assert!(q0.top1_agreement == 1.0 && q0.mean_kl == 0.0 && q0.max_abs_logit_error == 0.0 && q0.perplexity_full == q0.perplexity_mrss, "{q0:?}");
    let q = mrss_quality(&m, &ids[0], 0.05).unwrap();
    println!("τ = 0.05 on one sequence: {q:?}");
    assert!(q.merged_fraction > 0.0 && q.max_abs_logit_error > 0.0 && q.mean_kl >= 0.0 && q.top1_agreement <= 1.0 && q.perplexity_mrss.is_finite(), "{q:?}");
    assert!(m.forward(&ids, &mut m.new_state(2).unwrap(), -0.1).unwrap_err().to_string().contains("tau"));
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

#[test]
fn bad_input_names_what_is_wrong() {
    let m = model();
    let e = m.forward(&[vec![]], &mut m.new_state(1).unwrap(), 0.0).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = m.forward(&[vec![1, 5000]], &mut m.new_state(1).unwrap(), 0.0).unwrap_err().to_string();
    assert!(e.contains("5000") && e.contains("vocabulary"), "{e}");
    // A checkpoint without one of the mixer's tensors.
    let w = Weights::from_file(&dir().join("model.safetensors")).unwrap();
    let kept: Vec<(String, Vec<usize>, Vec<f32>)> = w
        .names()
        .filter(|n| *n != "backbone.layers.1.mixer.dt_proj.bias")
        .map(|n| {
            let shape = w.info(n).unwrap().shape.clone();
            (n.to_string(), shape.clone(), w.get_f32(n, &shape).unwrap())
        })
        .collect();
    let stripped = Weights::from_bytes("model.safetensors", effarch::weights::serialize_f32(&kept)).unwrap();
    let cfg = MambaConfig::from_json("config.json", &std::fs::read_to_string(dir().join("config.json")).unwrap()).unwrap();
    let e = MambaLM::load(cfg, &stripped, &Device::cpu()).err().unwrap().to_string();
    assert!(e.contains("backbone.layers.1.mixer.dt_proj.bias"), "{e}");
    let e = MambaConfig::from_json("config.json", r#"{"model_type": "clip"}"#).unwrap_err().to_string();
    assert!(e.contains("mamba"), "{e}");
    let e = MambaConfig::from_json("config.json", r#"{"model_type": "mamba", "intermediate_size": 0}"#).unwrap_err().to_string();
    assert!(e.contains("intermediate_size"), "{e}");
}

#[test]
fn generation_is_deterministic_and_streams() {
    use effarch::models::lm::SampleOptions;
    use effarch::models::mamba::generate::generate;
    let m = model();
    let prompt = vec![5u32, 17, 42];
    let mut streamed = Vec::new();
    let greedy = generate(&m, &prompt, &SampleOptions { max_new_tokens: 8, eos: Some(u32::MAX), ..Default::default() }, 0.0, |t| streamed.push(t)).unwrap();
    assert_eq!(greedy.tokens.len(), 8);
    assert_eq!(streamed, greedy.tokens);
    // Greedy = argmax of the full pass over prompt + generated tokens.
    let mut all = prompt.clone();
    all.extend(&greedy.tokens[..7]);
    let full = m.forward(&[all.clone()], &mut m.new_state(1).unwrap(), 0.0).unwrap();
    let v = m.cfg.vocab_size;
    for (i, &tok) in greedy.tokens.iter().enumerate() {
        let row = &full.logits[(prompt.len() - 1 + i) * v..(prompt.len() + i) * v];
        assert_eq!(argmax(row) as u32, tok, "greedy token {i}");
    }
    let o = SampleOptions { temperature: 0.8, top_k: 20, top_p: 0.9, seed: 7, max_new_tokens: 10, eos: Some(u32::MAX) };
    let a = generate(&m, &prompt, &o, 0.0, |_| {}).unwrap();
    let b = generate(&m, &prompt, &o, 0.0, |_| {}).unwrap();
    assert_eq!(a.tokens, b.tokens, "same seed, same tokens");
    assert!(generate(&m, &[], &o, 0.0, |_| {}).is_err());
}

/// The GPT-NeoX-style byte-level BPE gives the `tokenizers` library's ids, and decodes back.
#[test]
fn tokenizer_matches_hf_tokenizers() {
    let (_, tok) = MambaLM::load_dir(dir(), &Device::cpu()).unwrap();
    let tok = tok.expect("tokenizer.json");
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap();
    for case in meta["tokenized"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let got = tok.encode(text).unwrap();
        assert_eq!(got, want, "{text:?}");
        assert_eq!(tok.decode(&got), text);
    }
    assert_eq!(tok.token_id("<|endoftext|>"), Some(0));
}

/// The same model on `Device::Gpu` (our WGSL kernels: RMSNorm, SiLU, softplus, the conv and
/// the scan): logits against transformers' ≤ 1e-3, prefill + steps against one pass, MRSS
/// against the CPU's counts, generation equal to the CPU's.
#[test]
fn gpu_matches_transformers_and_cpu() {
    use effarch::models::lm::SampleOptions;
    use effarch::models::mamba::generate::generate;
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    println!("device: {}", gpu.describe());
    let (m, cpu) = (MambaLM::load_dir(dir(), &gpu).unwrap().0, model());
    let (ids, logits, hidden) = expected();
    let out = m.forward(&ids, &mut m.new_state(2).unwrap(), 0.0).unwrap();
    let (dl, dh) = (max_abs_diff(&out.logits, &logits), max_abs_diff(&out.hidden, &hidden));
    println!("gpu mamba logits: max |Δ| = {dl:e}, last_hidden_state: max |Δ| = {dh:e}");
    assert!(dl <= 1e-3 && dh <= 1e-3, "logits {dl}, hidden {dh}");
    // Prefill then steps.
    let (v, len, split) = (m.cfg.vocab_size, ids[0].len(), 9);
    let mut st = m.new_state(2).unwrap();
    m.forward(&ids.iter().map(|r| r[..split].to_vec()).collect::<Vec<_>>(), &mut st, 0.0).unwrap();
    let mut worst = 0f32;
    for t in split..len {
        let step = m.forward(&ids.iter().map(|r| vec![r[t]]).collect::<Vec<_>>(), &mut st, 0.0).unwrap();
        for b in 0..2 {
            worst = worst.max(max_abs_diff(&step.logits[b * v..(b + 1) * v], &out.logits[(b * len + t) * v..(b * len + t + 1) * v]));
        }
    }
    println!("gpu prefill + steps vs full pass: max |Δ| = {worst:e}");
    assert!(worst <= 1e-4, "{worst}");
    // MRSS: the same merge decisions as the CPU (Δ is far from τ in this fixture) and outputs close.
    for tau in [0.01f32, 0.05] {
        let (g, c) = (m.forward(&ids, &mut m.new_state(2).unwrap(), tau).unwrap(), cpu.forward(&ids, &mut cpu.new_state(2).unwrap(), tau).unwrap());
        let d = max_abs_diff(&g.logits, &c.logits);
        println!("gpu τ = {tau}: {:?} (cpu {:?}), logits max |Δ| vs cpu {d:e}", g.stats, c.stats);
        assert_eq!(g.stats.updates, c.stats.updates);
        assert!((g.stats.merged as i64 - c.stats.merged as i64).abs() as f64 <= 0.01 * c.stats.merged as f64, "{:?} vs {:?}", g.stats, c.stats);
        assert!(g.stats.merged > 0 && d <= 1e-3, "{d}");
    }
    let o = SampleOptions { max_new_tokens: 8, eos: Some(u32::MAX), ..Default::default() };
    let (g, c) = (generate(&m, &[5, 17, 42], &o, 0.0, |_| {}).unwrap(), generate(&cpu, &[5, 17, 42], &o, 0.0, |_| {}).unwrap());
    assert_eq!(g.tokens, c.tokens, "greedy generation on the GPU equals the CPU's");
}

/// A prompt longer than one prefill chunk runs in chunks with the state carried: the first
/// generated token is the argmax of one pass over the whole prompt, and an over-long prompt is
/// an error naming the limit.
#[test]
fn long_prompts_prefill_in_chunks() {
    use effarch::models::lm::SampleOptions;
    use effarch::models::mamba::generate::{generate, MAX_PROMPT_TOKENS, SCAN_PREFILL_CHUNK};
    let m = model();
    let v = m.cfg.vocab_size;
    let prompt: Vec<u32> = (0..SCAN_PREFILL_CHUNK + 700).map(|i| ((i * 7919) % v) as u32).collect();
    let r = generate(&m, &prompt, &SampleOptions { max_new_tokens: 1, eos: Some(u32::MAX), ..Default::default() }, 0.0, |_| {}).unwrap();
    let mut state = m.new_state(1).unwrap();
    let all = m.forward(&[prompt.clone()], &mut state, 0.0).unwrap().logits;
    let last = &all[(prompt.len() - 1) * v..];
    let want = last.iter().enumerate().fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32;
    assert_eq!(r.tokens, vec![want]);
    let long = vec![1u32; MAX_PROMPT_TOKENS + 1];
    let e = generate(&m, &long, &SampleOptions::default(), 0.0, |_| {}).unwrap_err().to_string();
    assert!(e.contains("over the limit"), "{e}");
}

/// The probe behind `auto` in the page: one mixer block per decoded token, on each backend.
#[test]
fn the_backend_probe_times_one_block_on_cpu_and_gpu() {
    use effarch::models::mamba::probe_layer_ms;
    let json = std::fs::read_to_string(dir().join("config.json")).unwrap();
    let cfg = MambaConfig::from_json("config.json", &json).unwrap();
    let w = Weights::from_file(&dir().join("model.safetensors")).unwrap();
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    for d in [Device::cpu(), gpu] {
        let ms = effarch::tensor::block_on(probe_layer_ms(&cfg, &w, d.clone())).unwrap();
        println!("{}: {ms:.3} ms per block and token", d.describe());
        assert!(ms > 0.0 && ms.is_finite(), "{ms}");
    }
}

/// A vocabulary larger than the GPU's storage-binding limit (mamba-130m's tied 50280 × 768
/// table is 154 MB; WebGPU's default limit is 128 MiB): the embedding is gathered on the host
/// and the tied LM head runs in row blocks, with the CPU's logits. The limit is lowered so the
/// tiny fixture's 300 × 32 table (38 KB) exceeds it.
#[test]
fn a_vocabulary_over_the_binding_limit_gives_the_cpus_logits() {
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    let Device::Gpu(ctx) = &gpu else { unreachable!() };
    ctx.set_binding_limit(16 << 10);
    assert!(ctx.upload(&[0.0; 300 * 32], &[300, 32]).unwrap_err().to_string().contains("limit"), "the table must exceed the lowered limit");
    let (m, cpu) = (MambaLM::load_dir(dir(), &gpu).unwrap().0, model());
    let ids = vec![vec![5u32, 17, 42, 7, 299]];
    let (g, c) = (m.forward(&ids, &mut m.new_state(1).unwrap(), 0.0).unwrap(), cpu.forward(&ids, &mut cpu.new_state(1).unwrap(), 0.0).unwrap());
    ctx.set_binding_limit(0);
    let d = max_abs_diff(&g.logits, &c.logits);
    println!("logits with a 16 KiB binding limit: max |Δ| vs cpu {d:e}");
    assert_eq!(g.logits.len(), 5 * 300);
    assert!(d <= 1e-4, "{d}");
}

/// Loading compiles every pipeline generation needs (prefill, steps, MRSS): none is added by a run.
#[test]
fn loading_compiles_every_pipeline_generation_needs() {
    use effarch::models::lm::SampleOptions;
    use effarch::models::mamba::generate::generate;
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    let Device::Gpu(ctx) = &gpu else { unreachable!() };
    let m = MambaLM::load_dir(dir(), &gpu).unwrap().0;
    let loaded = ctx.pipeline_count();
    // The warm-up the load recorded runs without error (a failing one would compile less).
    let (_, warm) = ctx.compile_by_recording(|| effarch::tensor::block_on(m.warm_up()));
    warm.unwrap();
    assert_eq!(ctx.pipeline_count(), loaded);
    let o = SampleOptions { max_new_tokens: 3, ..Default::default() };
    generate(&m, &[5, 17, 42, 7, 9, 11, 13, 2, 4], &o, 0.05, |_| {}).unwrap();
    generate(&m, &[5, 17], &o, 0.0, |_| {}).unwrap();
    assert_eq!(ctx.pipeline_count(), loaded, "a run compiled pipelines the load did not");
}

/// MRSS against an independent reference (`tests/fixtures/make_generation_fixtures.py`'s
/// `mrss_reference`, numpy written from the definition, not from our loop): one scan at
/// mamba-130m's widths (1536 channels × 16 states, 64 steps, seeded inputs) at τ = 0, 0.05 and
/// 0.12, on the CPU and the GPU: the merged and run counts exactly, the outputs and final state
/// within 1e-4 of their scale (every step's RMS and 256 sampled values).
#[test]
fn mrss_matches_an_independent_reference_at_130m_widths() {
    use effarch::tensor::ssm::ScanInputs;
    use effarch::tensor::Tensor;
    use effarch::testing::{seeded_weights, SeededTensor};
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generation/mrss-130m.json")).unwrap())
            .unwrap();
    let man: Vec<SeededTensor> = serde_json::from_value(fx["manifest"].clone()).unwrap();
    let w = seeded_weights(&man, fx["seed"].as_u64().unwrap()).unwrap();
    let (l, c, n) = (fx["len"].as_u64().unwrap() as usize, fx["channels"].as_u64().unwrap() as usize, fx["state"].as_u64().unwrap() as usize);
    let get = |name: &str, shape: &[usize]| w.get_f32(name, shape).unwrap();
    let (x, dt, bc, d) = (get("x", &[l, c]), get("dt", &[l, c]), get("bc", &[l, 2 * n]), get("d", &[c]));
    // [C, N + 1]: A = −(1 + (c + k) mod N), then D.
    let ad: Vec<f32> = (0..c).flat_map(|ch| (0..n).map(move |k| -(1.0 + ((ch + k) % n) as f32)).chain(std::iter::once(d[ch]))).collect();
    let summary_error = |got: &[f32], cols: usize, want: &serde_json::Value| -> f32 {
        let rms: Vec<f32> = got.chunks(cols).map(|r| (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64).sqrt() as f32).collect();
        let sample: Vec<f32> = (0..256).map(|i| got[(i * 7919) % got.len()]).collect();
        let (wr, ws): (Vec<f32>, Vec<f32>) = (serde_json::from_value(want["rms"].clone()).unwrap(), serde_json::from_value(want["sample"].clone()).unwrap());
        let scale = wr.iter().fold(0f32, |m, v| m.max(v.abs()));
        max_abs_diff(&rms, &wr).max(max_abs_diff(&sample, &ws)) / scale
    };
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3, "τ cases in mrss-130m.json");
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    for dev in [Device::cpu(), gpu] {
        for case in cases {
            let tau = case["tau"].as_f64().unwrap() as f32;
            let t = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, &dev).unwrap();
            let (xt, dtt, proj, adt, h) =
                (t(&x, &[1, l, c]), t(&dt, &[1, l, c]), t(&bc, &[1, l, 2 * n]), t(&ad, &[c, n + 1]), t(&vec![0.0; c * n], &[1, c, n]));
            let (y, h, st) = Tensor::selective_scan(&ScanInputs { x: &xt, dt: &dtt, proj: &proj, b_off: 0, ad: &adt, h: &h }, tau).unwrap();
            let st = st.to_vec_f32().unwrap();
            let (updates, merged, runs) = st.chunks(3).fold((0u64, 0u64, 0u64), |(u, m, r), s| (u + s[0] as u64, m + s[1] as u64, r + s[2] as u64));
            let (ey, eh) = (summary_error(&y.to_vec_f32().unwrap(), c, &case["y"]), summary_error(&h.to_vec_f32().unwrap(), n, &case["h"]));
            println!(
                "{} MRSS τ {tau}: merged {merged}/{updates} (ref {}), runs {runs} (ref {}), y {ey:.1e}, h {eh:.1e} of scale",
                dev.name(),
                case["merged"],
                case["runs"]
            );
            assert_eq!(
                (updates, merged, runs),
                (case["updates"].as_u64().unwrap(), case["merged"].as_u64().unwrap(), case["runs"].as_u64().unwrap()),
                "{} τ {tau}: counts",
                dev.name()
            );
            assert!(ey <= 1e-4 && eh <= 1e-4, "{} τ {tau}: y {ey:.2e}, h {eh:.2e} of their scale", dev.name());
        }
    }
}
