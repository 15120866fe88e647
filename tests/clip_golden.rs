//! CLIP against HF transformers on the committed tiny fixture (tests/fixtures/clip-tiny).
#![cfg(not(target_arch = "wasm32"))]

use effarch::clock::Timings;
use effarch::prune::{KqWhich, PruneConfig, Scorer};
use effarch::tensor::Device;
use effarch::testing::{max_abs_diff, ClipFixture};
use std::path::Path;

const TOL: f32 = 1e-4;

fn fixture() -> ClipFixture {
    ClipFixture::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")).expect("fixture loads")
}

#[test]
fn preprocessing_matches_pil_clip_processor() {
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let res = fx.check_preprocess(&clip).unwrap();
    assert_eq!(res.len(), 4);
    for (name, d) in res {
        println!("preprocess {name}: max |Δ| = {d:e}");
        assert!(d <= 1e-5, "{name}: max |Δ| {d} (PIL bicubic must match exactly on lossless input)");
    }
}

#[test]
fn jpeg_preprocessing_equals_pil() {
    // Our JPEG decoder reproduces libjpeg-turbo (PIL's) pixel for pixel, so the processor's
    // output on a JPEG is PIL's as it is on lossless input.
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("www/samples/chelsea-cat.jpg")).unwrap();
    let got = clip.preprocess.pixel_values(&effarch::image::decode(&bytes).unwrap());
    let (want, _) = fx.expect("pixel_values_jpeg_cat").unwrap();
    let d = max_abs_diff(&got, &want);
    println!("jpeg preprocess: max |Δ| = {d:e}");
    assert!(d <= 1e-5, "max |Δ| {d}");
}

#[test]
fn towers_match_transformers() {
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    for (name, d) in fx.check_towers(&clip).unwrap() {
        println!("{name}: max |Δ| = {d:e}");
        let tol = if name == "logits_per_image" { 1e-3 } else { TOL };
        assert!(d <= tol, "{name}: max |Δ| {d} > {tol}");
    }
}

#[test]
fn pruning_matches_torch_reference() {
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let res = fx.check_pruning(&clip).unwrap();
    assert_eq!(res.len(), 8);
    for r in res {
        println!("{}: kept equal {}, scores {:e}, embeds {:e}, hidden {:e}", r.name, r.kept_equal, r.scores, r.image_embeds, r.last_hidden_state);
        assert!(r.kept_equal, "{}: kept indices differ from the torch reference", r.name);
        assert!(r.scores <= TOL && r.image_embeds <= TOL && r.last_hidden_state <= TOL, "{r:?}");
    }
}

/// Token Merging against the torch reference written from the paper (bipartite soft matching,
/// size-weighted averaging, proportional attention): token counts, the merge map, outputs.
#[test]
fn tome_matches_torch_reference() {
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let res = effarch::tensor::block_on(fx.check_tome_async(&clip)).unwrap();
    assert_eq!(res.len(), 4);
    for r in res {
        println!(
            "{}: tokens equal {}, merge map equal {}, embeds {:e}, hidden {:e}",
            r.name, r.tokens_equal, r.groups_equal, r.image_embeds, r.last_hidden_state
        );
        assert!(r.tokens_equal && r.groups_equal, "{r:?}");
        assert!(r.image_embeds <= TOL && r.last_hidden_state <= TOL, "{r:?}");
    }
    // Merging nothing is the plain tower, bit for bit (no proportional attention before a merge).
    let pv = fx.expect_tensor("pixel_values", &Device::cpu()).unwrap();
    let full = clip.vision.forward(&pv, None, &mut Timings::start()).unwrap();
    let none = clip.vision.forward(&pv, Some(&PruneConfig::new(Scorer::Tome { r: None }, 1.0, vec![0]).unwrap()), &mut Timings::start()).unwrap();
    assert_eq!(none.image_embeds.to_vec_f32().unwrap(), full.image_embeds.to_vec_f32().unwrap());
    assert_eq!(none.groups[0], (1..=196).collect::<Vec<u32>>());
    let e = clip
        .vision
        .forward(&pv, Some(&PruneConfig::new(Scorer::Tome { r: Some(99) }, 1.0, vec![0]).unwrap()), &mut Timings::start())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--tome-r 99"), "{e}");
}

/// DivPrune and VisionZip against their official selection logic
/// (`tests/fixtures/make_methods_fixtures.py`): kept patches, VisionZip's merge map, outputs.
#[test]
fn divprune_and_visionzip_match_their_official_logic() {
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let res = effarch::tensor::block_on(fx.check_methods_async(&clip)).unwrap();
    assert_eq!(res.len(), 5);
    for r in res {
        println!("{}: kept equal {}, merge map equal {}, embeds {:e}, hidden {:e}", r.name, r.kept_equal, r.groups_equal, r.image_embeds, r.last_hidden_state);
        assert!(r.kept_equal && r.groups_equal, "{r:?}");
        assert!(r.image_embeds <= TOL && r.last_hidden_state <= TOL, "{r:?}");
    }
}

#[test]
fn keep_one_is_bit_identical_to_unpruned() {
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let pv = fx.expect_tensor("pixel_values", &Device::cpu()).unwrap();
    let full = clip.vision.forward(&pv, None, &mut Timings::start()).unwrap();
    for scorer in [Scorer::KqNorm(KqWhich::Key), Scorer::ClsAttn, Scorer::Random { seed: 3 }, Scorer::DivPrune, Scorer::VisionZip] {
        let layers = if scorer == Scorer::VisionZip { vec![2] } else { vec![0, 2] };
        let cfg = PruneConfig::new(scorer, 1.0, layers).unwrap();
        let p = clip.vision.forward(&pv, Some(&cfg), &mut Timings::start()).unwrap();
        assert_eq!(p.image_embeds.to_vec_f32().unwrap(), full.image_embeds.to_vec_f32().unwrap());
        assert_eq!(p.last_hidden_state.to_vec_f32().unwrap(), full.last_hidden_state.to_vec_f32().unwrap());
        assert_eq!(p.flops, p.flops_unpruned);
    }
}

#[test]
fn pruning_invariants_hold() {
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let pv = fx.expect_tensor("pixel_values", &Device::cpu()).unwrap();
    let np = clip.config.vision().num_patches();
    for keep in [0.9f32, 0.5, 0.3, 0.01] {
        let cfg = PruneConfig::new(Scorer::KqNorm(KqWhich::Key), keep, vec![1, 2]).unwrap();
        let out = clip.vision.forward(&pv, Some(&cfg), &mut Timings::start()).unwrap();
        let k1 = effarch::prune::n_keep(keep, np);
        let k2 = effarch::prune::n_keep(keep, k1);
        assert_eq!(out.tokens_per_layer, vec![np + 1, np + 1, k1 + 1, k2 + 1]);
        assert_eq!(out.last_hidden_state.shape(), vec![4, k2 + 1, 48]);
        for (s, k) in out.steps.iter().zip([k1, k2]) {
            for row in &s.kept {
                assert_eq!(row.len(), k);
                assert!(row.windows(2).all(|w| w[0] < w[1]), "kept indices ascending and unique");
                assert!(row.iter().all(|&i| (i as usize) < np));
            }
        }
        // the second step keeps a subset of the first
        for (a, b) in out.steps[0].kept.iter().zip(&out.steps[1].kept) {
            assert!(b.iter().all(|i| a.contains(i)));
        }
        assert!(out.flops < out.flops_unpruned);
    }
}

/// The same golden checks with every op on the GPU (lavapipe's software Vulkan in CI; a
/// missing adapter fails the test).
#[test]
fn towers_and_pruning_on_gpu_match_transformers_and_cpu() {
    let fx = fixture();
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    println!("device: {}", gpu.describe());
    let clip = fx.clip(&gpu).unwrap();
    for (name, d) in fx.check_towers(&clip).unwrap() {
        println!("gpu {name}: max |Δ| = {d:e}");
        assert!(d <= 1e-3, "gpu {name}: max |Δ| {d} > 1e-3");
    }
    for r in fx.check_pruning(&clip).unwrap() {
        println!("gpu {}: kept equal {}, scores {:e}, embeds {:e}, hidden {:e}", r.name, r.kept_equal, r.scores, r.image_embeds, r.last_hidden_state);
        assert!(r.kept_equal, "gpu {}: kept indices differ from the torch reference", r.name);
        assert!(r.scores <= 1e-3 && r.image_embeds <= 1e-3 && r.last_hidden_state <= 1e-3, "{r:?}");
    }
    for r in effarch::tensor::block_on(fx.check_tome_async(&clip)).unwrap() {
        println!(
            "gpu {}: tokens equal {}, merge map equal {}, embeds {:e}, hidden {:e}",
            r.name, r.tokens_equal, r.groups_equal, r.image_embeds, r.last_hidden_state
        );
        assert!(r.tokens_equal && r.groups_equal, "gpu {r:?}");
        assert!(r.image_embeds <= 1e-3 && r.last_hidden_state <= 1e-3, "gpu {r:?}");
    }
    for r in effarch::tensor::block_on(fx.check_methods_async(&clip)).unwrap() {
        println!(
            "gpu {}: kept equal {}, merge map equal {}, embeds {:e}, hidden {:e}",
            r.name, r.kept_equal, r.groups_equal, r.image_embeds, r.last_hidden_state
        );
        assert!(r.kept_equal && r.groups_equal, "gpu {r:?}");
        assert!(r.image_embeds <= 1e-3 && r.last_hidden_state <= 1e-3, "gpu {r:?}");
    }
    let cpu_clip = fx.clip(&Device::cpu()).unwrap();
    for (scorer, equal) in effarch::tensor::block_on(effarch::testing::compare_scorers_async(&fx, &cpu_clip, &clip)).unwrap() {
        assert!(equal, "{scorer}: GPU kept other tokens than the CPU");
    }
    // Later layers and passes reuse the buffers earlier ones released.
    let Device::Gpu(ctx) = &gpu else { unreachable!() };
    let (hits, misses) = ctx.pool_stats();
    println!("buffer pool: {hits} hits, {misses} misses");
    assert!(hits > misses, "buffer pool: {hits} hits, {misses} misses");
}

/// The fixture, the GPU context and a session on it (vision tower only).
fn gpu_session() -> (ClipFixture, std::sync::Arc<effarch::tensor::gpu::GpuContext>, effarch::models::clip::ClipSession) {
    use effarch::models::clip::{ClipConfig, ClipSession};
    let fx = fixture();
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    let Device::Gpu(ctx) = &gpu else { unreachable!() };
    let cfg = ClipConfig::from_json("config.json", &fx.config).unwrap();
    let w = effarch::weights::Weights::from_bytes("model.safetensors", fx.model.clone()).unwrap();
    let s = ClipSession::new(cfg, w, &gpu, false).unwrap();
    (fx, ctx.clone(), s)
}

/// A GPU failure mid-session (injected: a real device cannot be lost on demand) falls back to
/// the CPU, says why in the report, and gives the CPU's answer.
#[test]
fn gpu_failure_falls_back_to_cpu_with_a_message() {
    use effarch::models::clip::RunOptions;
    let (fx, ctx, mut s) = gpu_session();
    let opts = RunOptions { prune: Some(PruneConfig::new("kq-norm".parse().unwrap(), 0.5, vec![1]).unwrap()), ..Default::default() };
    let on_gpu = s.run(&fx.images[0].1, &opts).unwrap();
    assert!(on_gpu.fallback.is_none() && on_gpu.device.starts_with("gpu"), "{:?}", on_gpu.device);
    ctx.inject_error("device lost (test)");
    let r = s.run(&fx.images[0].1, &opts).unwrap();
    let why = r.fallback.clone().expect("a fallback message");
    assert!(why.contains("device lost (test)") && why.contains("CPU"), "{why}");
    assert!(r.device.starts_with("cpu"), "{}", r.device);
    assert_eq!(r.kept[0].indices, on_gpu.kept[0].indices);
    assert!(effarch::testing::max_abs_diff(&r.image_embeds, &on_gpu.image_embeds) < 1e-3);
}

/// f16 weights on the GPU against transformers' f32 outputs, with their own tolerance: f16
/// keeps 11 significant bits, so outputs move by ~1e-3 of their magnitude with f32 math, and
/// by a few 1e-3 with f16 math too (where the adapter has shader-f16, as lavapipe does: tiles
/// staged in f16, each 16-deep K tile summed in f16).
#[test]
fn f16_weights_on_gpu_stay_close_to_f32() {
    let fx = fixture();
    let gpu =
        effarch::tensor::block_on(Device::gpu_with(effarch::tensor::GpuWeights::F16)).expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    assert!(gpu.describe().contains("f16 weights"), "{}", gpu.describe());
    f16_check(&fx, &gpu);
    // f16 math where a hardware GPU would use it (lavapipe has shader-f16; it is used on wide devices).
    let Device::Gpu(c) = &gpu else { unreachable!() };
    c.set_wide(Some(true));
    assert!(gpu.describe().contains("f16 weights and math"), "{}", gpu.describe());
    f16_check(&fx, &gpu);
}

fn f16_check(fx: &ClipFixture, gpu: &Device) {
    let math = gpu.describe().contains("f16 weights and math");
    let tol = if math { 5e-3 } else { 2e-3 };
    let clip = fx.clip(gpu).unwrap();
    for (name, d) in fx.check_towers(&clip).unwrap() {
        let scale = fx.expect(&name).map(|(v, _)| v.iter().fold(0f32, |m, x| m.max(x.abs()))).unwrap_or(0.0);
        println!("gpu f16 (math {math}) {name}: max |Δ| = {d:e} (max |x| {scale})");
        assert!(d <= tol * scale, "gpu f16 (math {math}) {name}: max |Δ| {d} > {tol} · {scale}");
    }
    let mut same = 0;
    let res = fx.check_pruning(&clip).unwrap();
    for r in &res {
        println!("gpu f16 (math {math}) {}: kept equal {}, embeds {:e}, flip (margin, score Δ) {:?}", r.name, r.kept_equal, r.image_embeds, r.flip);
        if r.kept_equal {
            same += 1;
            assert!(r.image_embeds <= 1e-2, "{r:?}");
        } else {
            // A token that changed sides must have been a near-tie: its reference score within
            // twice this step's score error of the cut.
            let (margin, delta) = r.flip.expect("kept tokens differ at some step");
            assert!(margin <= 2.0 * delta, "gpu f16 (math {math}) {}: a token {margin} from the cut changed sides (scores off by {delta})", r.name);
        }
    }
    // Near-ties may flip under f16 rounding; most cases keep exactly the same tokens.
    assert!(same * 2 >= res.len(), "only {same}/{} pruning cases kept the reference's tokens", res.len());
}

/// A programming error on the GPU path (injected) surfaces as an error: it is not hidden as a
/// silent CPU fallback; only device failures (`Error::Device`) fall back.
#[test]
fn gpu_bug_surfaces_instead_of_falling_back() {
    use effarch::error::Error;
    use effarch::models::clip::RunOptions;
    let (fx, ctx, mut s) = gpu_session();
    ctx.inject_bug("kept index 999 out of range (test)");
    match s.run(&fx.images[0].1, &RunOptions::default()) {
        Err(Error::Backend(m)) => assert!(m.contains("(test)"), "{m}"),
        other => panic!("expected the bug to surface, got {:?}", other.map(|r| r.device)),
    }
    assert!(s.fallback().is_none(), "a bug must not make the session leave the GPU");
    assert!(s.run(&fx.images[0].1, &RunOptions::default()).unwrap().device.starts_with("gpu"));
}

/// `auto` by measurement, as the page and the npm package make a session: one encoder layer of
/// the model timed on each backend; a software adapter (lavapipe in CI) is passed over
/// whatever it measures.
#[test]
fn auto_times_one_layer_on_each_backend() {
    use effarch::models::clip::{vision::probe_layer_ms, ClipConfig};
    use effarch::weights::Weights;
    let fx = fixture();
    let cfg = ClipConfig::from_json("config.json", &fx.config).unwrap();
    let w = Weights::from_bytes("model.safetensors", fx.model.clone()).unwrap();
    let c = effarch::tensor::block_on(async { Ok(Device::choose_measured(|d| probe_layer_ms(&w, cfg.vision(), d)).await) }).unwrap();
    println!("auto: {} → {}", c.reason, c.device.describe());
    assert_eq!(c.figures.len(), 2, "a GPU adapter and the CPU measured: {}", c.reason);
    for f in &c.figures {
        assert!(f.ms_per_layer.is_some_and(|ms| ms > 0.0 && ms.is_finite()), "{f:?}");
    }
    let (g, cpu) = (&c.figures[0], &c.figures[1]);
    assert_eq!((g.backend, cpu.backend), ("webgpu", "cpu"));
    let gpu_wins = !g.software && g.ms_per_layer < cpu.ms_per_layer;
    assert_eq!(matches!(c.device, Device::Gpu(_)), gpu_wins, "{}", c.reason);
    assert!(c.reason.contains("ms/layer"), "{}", c.reason);
}

/// `bench clip` counts the GPU dispatches and submits of one forward pass (what fixed
/// per-dispatch costs a real GPU pays), and reports none on the CPU.
#[test]
fn bench_counts_dispatches_on_the_gpu() {
    use effarch::bench::{bench_clip, BenchSpec};
    let fx = fixture();
    let spec = BenchSpec { keeps: vec![1.0, 0.5], batches: vec![1], iters: 1, ..BenchSpec::default() };
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    let rows = bench_clip(&fx.clip(&gpu).unwrap(), &spec, |_| {}).unwrap();
    let layers = fx.clip(&Device::cpu()).unwrap().vision.num_layers() as u64;
    for r in &rows {
        let (d, s) = (r.dispatches.unwrap(), r.submits.unwrap());
        println!("keep {}: {d} dispatches, {s} submits per forward ({} layers)", r.keep, layers);
        assert!(d >= 4 * layers && s >= 1 && s <= d, "{r:?}");
    }
    assert!(rows[1].dispatches > rows[0].dispatches, "pruning adds its scoring and selection dispatches: {rows:?}");
    let cpu = bench_clip(&fx.clip(&Device::cpu()).unwrap(), &spec, |_| {}).unwrap();
    assert!(cpu.iter().all(|r| r.dispatches.is_none() && r.submits.is_none()));
}

/// Loading compiles every pipeline a run needs (no shader compile stalls the first run): the
/// golden towers, every pruning case and every ToMe case on a fresh GPU context add none.
#[test]
fn loading_compiles_every_pipeline_a_run_needs() {
    let fx = fixture();
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    let Device::Gpu(ctx) = &gpu else { unreachable!() };
    assert_eq!(ctx.pipeline_count(), 0);
    let clip = fx.clip(&gpu).unwrap();
    let loaded = ctx.pipeline_count();
    assert!(loaded > 0);
    // The warm-up the load recorded runs without error (a failing one would compile less).
    let (_, warm) = ctx.compile_by_recording(|| effarch::tensor::block_on(clip.warm_up()));
    warm.unwrap();
    assert_eq!(ctx.pipeline_count(), loaded);
    fx.check_towers(&clip).unwrap();
    fx.check_pruning(&clip).unwrap();
    effarch::tensor::block_on(fx.check_tome_async(&clip)).unwrap();
    assert_eq!(ctx.pipeline_count(), loaded, "a run compiled pipelines the load did not");
}

/// The TypeScript declarations the wasm build ships (`src/web/types.rs`) name every field of
/// the report a run returns, and every scorer the parser takes: they are hand-written, so
/// this fails when a field or scorer is added to the Rust side only.
#[test]
fn typescript_declarations_cover_the_report_and_the_scorers() {
    use effarch::models::clip::RunOptions;
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/types.rs")).unwrap();
    let block = |name: &str| -> String {
        let start = src.find(&format!("export interface {name} {{")).unwrap_or_else(|| panic!("no `interface {name}` in src/web/types.rs"));
        let body = &src[start..];
        body[..body.find("\n}").unwrap()].to_string()
    };
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let opts = RunOptions {
        prune: Some(PruneConfig::new(Scorer::Tome { r: None }, 0.5, vec![0]).unwrap()),
        labels: vec!["a cat".into(), "a dog".into()],
        compare_unpruned: true,
    };
    let report = clip.run(&fx.images[0].1, &opts).unwrap();
    let v = serde_json::to_value(&report).unwrap();
    let ts = block("RunReport");
    let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(fields.len() >= 15, "report fields: {fields:?}");
    for k in fields {
        assert!(ts.contains(&format!("\n  {k}:")) || ts.contains(&format!("\n  {k}?:")), "RunReport's TypeScript declaration lacks `{k}`");
    }
    for k in v["timings_ms"].as_object().unwrap().keys().filter(|k| !k.starts_with("block_")) {
        assert!(ts.contains(k.as_str()), "RunReport's timings_ms documentation lacks `{k}`");
    }
    let opts_ts = block("RunOptions");
    let vision = effarch::prune::METHODS.iter().filter(|m| m.tower == effarch::prune::Tower::Vision).map(|m| m.name);
    for s in vision.chain(["kq-norm:key"]) {
        assert!(s.parse::<Scorer>().is_ok(), "{s} parses");
        assert!(opts_ts.contains(&format!("\"{s}\"")), "RunOptions' scorer list lacks \"{s}\"");
    }
}

/// The compare view's pass: every method with the shared embedding and prefix gives what its
/// own run gives (kept patches, merge map, tokens, cos to unpruned, label probabilities,
/// FLOPs), and its report is what the TypeScript declarations say.
#[test]
fn compare_shares_the_prefix_and_equals_separate_runs() {
    use effarch::models::clip::RunOptions;
    let fx = fixture();
    let mut clip = fx.clip(&Device::cpu()).unwrap();
    clip.tokenizer = Some(effarch::models::clip::Tokenizer::from_vocab_merges(&fx.vocab, &fx.merges).unwrap());
    let labels: Vec<String> = vec!["a cat".into(), "a dog".into()];
    let layers = [1usize, 2];
    let methods: Vec<PruneConfig> =
        effarch::prune::compared_methods().iter().map(|s| PruneConfig::for_comparison(s.parse().unwrap(), 0.5, &layers).unwrap()).collect();
    assert_eq!(methods.len(), 6);
    let image = &fx.images[0].1;
    let r = effarch::tensor::block_on(clip.compare_async(image, &methods, &labels)).unwrap();
    assert_eq!(r.methods.len(), 6);
    for (m, p) in r.methods.iter().zip(&methods) {
        let own = clip.run(image, &RunOptions { prune: Some(p.clone()), labels: labels.clone(), compare_unpruned: true }).unwrap();
        let own_kept: Vec<Vec<u32>> = own.kept.iter().map(|k| k.indices.clone()).collect();
        let kept: Vec<Vec<u32>> = m.kept.iter().map(|k| k.indices.clone()).collect();
        println!("{} keep {}: {} tokens, cos {:.5}, FLOPs {:.3}, {:.1} ms", m.scorer, m.keep, m.tokens, m.cos_to_unpruned, m.flops_ratio, m.ms);
        assert_eq!(kept, own_kept, "{}", m.scorer);
        assert_eq!(m.groups, own.groups, "{}", m.scorer);
        assert!((m.cos_to_unpruned - own.cos_to_unpruned.unwrap()).abs() < 1e-5, "{}: {} vs {:?}", m.scorer, m.cos_to_unpruned, own.cos_to_unpruned);
        assert!((m.flops_ratio - own.flops / own.flops_unpruned).abs() < 1e-9, "{}", m.scorer);
        let (a, b) = (m.label_probs.as_ref().unwrap(), own.label_probs.as_ref().unwrap());
        assert!(a.iter().zip(b).all(|(x, y)| (x.prob - y.prob).abs() < 1e-5));
    }
    // Each layer of the shared path runs once: the passes take less than one after another.
    assert!(r.passes_ms < r.sequential_ms, "{} vs {}", r.passes_ms, r.sequential_ms);
    assert!(r.shared_ms > 0.0 && r.total_ms >= r.passes_ms && r.label_probs_unpruned.is_some());
    // VisionZip at several layers compresses once, at the first, to about the others' count.
    let z = &r.methods[5];
    assert_eq!((z.scorer.as_str(), z.kept.len(), z.kept[0].layer), ("visionzip", 1, 1));
    assert!(z.tokens.abs_diff(r.methods[0].tokens) <= 1, "{} vs {}", z.tokens, r.methods[0].tokens);
    assert_eq!(r.methods[3].tokens, r.methods[0].tokens, "ToMe merges to the same count");
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/types.rs")).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    for (name, obj) in [("CompareReport", &v), ("MethodReport", &v["methods"][0])] {
        let start = src.find(&format!("export interface {name} {{")).unwrap();
        let ts = &src[start..start + src[start..].find("\n}").unwrap()];
        for k in obj.as_object().unwrap().keys() {
            assert!(ts.contains(&format!("\n  {k}:")), "{name}'s TypeScript declaration lacks `{k}`");
        }
    }
}
