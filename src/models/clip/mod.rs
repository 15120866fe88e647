//! CLIP (HF `CLIPModel` layout, e.g. `openai/clip-vit-base-patch16`) with training-free
//! vision-token pruning.

pub mod config;
pub mod text;
pub mod tokenizer;
pub mod vision;

use crate::clock::Timings;
use crate::error::{Error, Result};
use crate::image::{decode, ClipPreprocess};
use crate::prune::PruneConfig;
use crate::tensor::{Device, Tensor};
use crate::weights::Weights;
pub use config::ClipConfig;
use image::RgbImage;
use serde::Serialize;
pub use text::TextModel;
pub use tokenizer::Tokenizer;
pub use vision::{VisionModel, VisionOutput};

/// Labels one zero-shot run takes (each is a full pass of the text tower).
pub const MAX_LABELS: usize = 1000;

pub struct Clip {
    pub config: ClipConfig,
    pub vision: VisionModel,
    pub text: Option<TextModel>,
    pub tokenizer: Option<Tokenizer>,
    pub logit_scale: f32,
    pub preprocess: ClipPreprocess,
    pub device: Device,
    /// Of the load, the ms spent compiling GPU pipelines (0 on the CPU); the rest is reading
    /// and uploading weights.
    pub compile_ms: f64,
}

/// What one run does besides the pruned forward pass.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub prune: Option<PruneConfig>,
    /// Zero-shot labels; empty for none.
    pub labels: Vec<String>,
    /// Also run the unpruned pass, for cos-sim and label probabilities to compare against.
    pub compare_unpruned: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct KeptStep {
    pub layer: usize,
    pub indices: Vec<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LabelProb {
    pub label: String,
    pub prob: f32,
}

/// One image's result, as the CLI's `--json` and the page see it.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub image_embeds: Vec<f32>,
    pub embed_norm: f32,
    pub cos_to_unpruned: Option<f32>,
    pub grid: usize,
    pub num_patches: usize,
    pub kept: Vec<KeptStep>,
    /// ToMe (`tome` method) only: for each patch, the token (1.., CLS is 0) it was merged into
    /// by the last layer; patches with equal values became one token.
    pub groups: Option<Vec<u32>>,
    pub tokens_per_layer: Vec<usize>,
    pub flops: f64,
    pub flops_unpruned: f64,
    pub timings_ms: serde_json::Map<String, serde_json::Value>,
    pub label_probs: Option<Vec<LabelProb>>,
    pub label_probs_unpruned: Option<Vec<LabelProb>>,
    pub device: String,
    /// Set when the GPU failed (device lost, out of memory) and the run was redone on the CPU.
    pub fallback: Option<String>,
}

/// One method of a comparison ([`Clip::compare_async`]).
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    pub scorer: String,
    pub keep: f32,
    pub kept: Vec<KeptStep>,
    /// ToMe and VisionZip: each patch's final token, as in [`RunReport::groups`].
    pub groups: Option<Vec<u32>>,
    /// Tokens (CLS included) after the last layer.
    pub tokens: usize,
    pub cos_to_unpruned: f32,
    pub flops_ratio: f64,
    pub label_probs: Option<Vec<LabelProb>>,
    /// What this method alone takes: the shared path up to its first pruning layer, plus its own layers.
    pub ms: f64,
}

/// Every method on one image at one keep, for the page's compare view.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    pub grid: usize,
    pub num_patches: usize,
    pub methods: Vec<MethodReport>,
    pub label_probs_unpruned: Option<Vec<LabelProb>>,
    /// The unpruned pass alone (shared part included).
    pub unpruned_ms: f64,
    /// The unpruned path (the embedding and every layer before a method's first pruning
    /// layer, and the unpruned pass's own), each layer run once for all.
    pub shared_ms: f64,
    /// The whole comparison (decode, text tower and every pass).
    pub total_ms: f64,
    /// The vision passes of the comparison: the shared part once, then each method's own.
    pub passes_ms: f64,
    /// The same passes run one after another, each from scratch: Σ ms over the methods and
    /// the unpruned pass.
    pub sequential_ms: f64,
    pub device: String,
    pub fallback: Option<String>,
}

impl Clip {
    /// Builds the model from a parsed config and checkpoint. `with_text` also loads the text
    /// tower (needed for labels); the vision tower and projection are always loaded.
    pub fn load(config: ClipConfig, w: &Weights, device: &Device, with_text: bool) -> Result<Clip> {
        let vision = VisionModel::load(w, config.vision(), config.projection_dim, device)?;
        let text = if with_text { Some(TextModel::load(w, config.text(), config.projection_dim, device)?) } else { None };
        let logit_scale = if w.contains("logit_scale") { w.get_f32("logit_scale", &[])?.first().copied().unwrap_or(0.0) } else { (1.0f32 / 0.07).ln() };
        let mut clip = Clip {
            preprocess: ClipPreprocess::new(config.vision().image_size as u32),
            config,
            vision,
            text,
            tokenizer: None,
            logit_scale,
            device: device.clone(),
            compile_ms: 0.0,
        };
        // The GPU's pipelines compiled now, from what the warm-up dispatches, not in the first run.
        clip.compile_ms = device.compile_by_recording(|| crate::tensor::block_on(clip.warm_up()))?;
        Ok(clip)
    }

    /// Everything a run can do, once, on a blank image: the vision tower unpruned and with
    /// each vision method of [`crate::prune::METHODS`] (half the patches, from the first
    /// layer; ToMe in every layer), and the text tower on two labels. Recorded at load on a
    /// GPU, which compiles every pipeline it dispatches ([`Device::compile_by_recording`]): a
    /// new method or op is compiled ahead because it runs here, not because a list names it.
    pub async fn warm_up(&self) -> Result<()> {
        let s = self.config.vision().image_size;
        let pv = Tensor::from_f32(vec![0.0; 3 * s * s], &[1, 3, s, s], &self.device)?;
        let mut runs = vec![None];
        for m in crate::prune::METHODS.iter().filter(|m| m.tower == crate::prune::Tower::Vision) {
            runs.push(Some(PruneConfig::new(m.name.parse()?, 0.5, vec![0])?));
        }
        for prune in &runs {
            self.vision.forward_async(&pv, prune.as_ref(), &mut Timings::start()).await?.image_embeds.to_vec_f32_async().await?;
        }
        if let Some(text) = &self.text {
            // Two labels of different lengths (padded), ids inside any vocabulary.
            let top = text.cfg.vocab_size.saturating_sub(1) as u32;
            let ids = [vec![0, 1, 2], vec![0, 1]].map(|r| r.into_iter().map(|t| t.min(top)).collect::<Vec<u32>>());
            text.forward(&ids, 0)?.1.to_vec_f32_async().await?;
        }
        Ok(())
    }

    /// In the browser WebGPU compiles a pipeline in the GPU process after `createComputePipeline`
    /// returns, so the first run would wait for every compile (6–7× a warm run on SwiftShader).
    /// This runs [`Clip::warm_up`] for real at load and waits for it. Nothing on the CPU.
    pub async fn warm_up_async(&self) -> Result<()> {
        if !matches!(self.device, Device::Gpu(_)) {
            return Ok(());
        }
        self.warm_up().await
    }

    /// `[B, 3, S, S]` pixel values for decoded images.
    pub fn pixel_values(&self, images: &[RgbImage]) -> Result<Tensor> {
        let s = self.config.vision().image_size;
        let data: Vec<f32> = images.iter().flat_map(|im| self.preprocess.pixel_values(im)).collect();
        Tensor::from_f32(data, &[images.len(), 3, s, s], &self.device)
    }

    /// Token ids for each label (start/end tokens included).
    pub fn tokenize(&self, labels: &[String]) -> Result<Vec<Vec<u32>>> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| Error::Tokenizer("labels need a tokenizer (vocab.json + merges.txt or tokenizer.json)".into()))?;
        let max = self.text.as_ref().map_or(77, |t| t.cfg.max_position_embeddings);
        if labels.is_empty() || labels.iter().all(|l| l.trim().is_empty()) {
            return Err(Error::arg("the label list is empty"));
        }
        if labels.len() > MAX_LABELS {
            return Err(Error::arg(format!("{} labels, over the limit of {MAX_LABELS}", labels.len())));
        }
        Ok(labels.iter().map(|l| tok.encode(l, max)).collect())
    }

    /// `[labels, projection_dim]` text embeddings.
    pub fn encode_text(&self, labels: &[String]) -> Result<Tensor> {
        let ids = self.tokenize(labels)?;
        let text = self.text.as_ref().ok_or_else(|| Error::arg("labels need the text tower (load with text)"))?;
        let pad = self.tokenizer.as_ref().map_or(0, |t| t.eos);
        Ok(text.forward(&ids, pad)?.1)
    }

    /// softmax(exp(logit_scale) · cos(image, label)) over the labels.
    pub fn label_probs(&self, image_embed: &[f32], text_embeds: &[f32]) -> Result<Vec<f32>> {
        let t = text_embeds;
        let d = image_embed.len();
        let scale = self.logit_scale.exp();
        let n = if d == 0 { 0 } else { t.len() / d };
        let logits: Vec<f32> = (0..n).map(|i| scale * cosine(image_embed, &t[i * d..(i + 1) * d])).collect();
        Ok(softmax(&logits))
    }

    /// Decode, preprocess, run (pruned, and unpruned when asked), score labels.
    pub fn run(&self, image_bytes: &[u8], opts: &RunOptions) -> Result<RunReport> {
        crate::tensor::block_on_for([&self.device], self.run_async(image_bytes, opts))
    }

    /// [`Clip::run`] for callers that must not block (the browser on WebGPU).
    pub async fn run_async(&self, image_bytes: &[u8], opts: &RunOptions) -> Result<RunReport> {
        let mut t = Timings::start();
        let img = decode(image_bytes)?;
        t.lap("decode");
        self.run_image_async(&img, opts, t).await
    }

    pub fn run_image(&self, img: &RgbImage, opts: &RunOptions, t: Timings) -> Result<RunReport> {
        crate::tensor::block_on_for([&self.device], self.run_image_async(img, opts, t))
    }

    pub async fn run_image_async(&self, img: &RgbImage, opts: &RunOptions, mut t: Timings) -> Result<RunReport> {
        let text = if opts.labels.is_empty() {
            None
        } else {
            let te = self.encode_text(&opts.labels)?.to_vec_f32_async().await?;
            t.lap("text");
            Some(te)
        };
        let pv = self.pixel_values(std::slice::from_ref(img))?;
        t.lap("preprocess");
        let out = self.vision.forward_async(&pv, opts.prune.as_ref(), &mut t).await?;
        let embeds = out.image_embeds.to_vec_f32_async().await?;
        crate::error::check_finite("image_embeds", &embeds)?;
        t.lap("readback");
        let total = t.total();
        let probs = match &text {
            Some(te) => Some(self.label_probs(&embeds, te)?),
            None => None,
        };
        let pruned = opts.prune.as_ref().is_some_and(|p| !p.is_identity());
        let t_compare = crate::clock::now_ms();
        let (cos, probs_unpruned) = if opts.compare_unpruned && pruned {
            let full = self.vision.forward_async(&pv, None, &mut Timings::start()).await?.image_embeds.to_vec_f32_async().await?;
            let p = match &text {
                Some(te) => Some(self.label_probs(&full, te)?),
                None => None,
            };
            (Some(cosine(&embeds, &full)), p)
        } else if opts.compare_unpruned {
            (Some(1.0), probs.clone())
        } else {
            (None, None)
        };
        let with_labels = |p: Option<Vec<f32>>| p.map(|p| opts.labels.iter().zip(p).map(|(l, prob)| LabelProb { label: l.clone(), prob }).collect());
        let mut timings = serde_json::Map::new();
        for (name, ms) in &t.stages {
            timings.insert(name.clone(), serde_json::json!(ms));
        }
        // `total` is the one pass whose result is shown (decode to read-back, the text tower
        // included); the unpruned comparison pass that follows is `compare` (0 when none ran).
        timings.insert("total".into(), serde_json::json!(total));
        timings.insert("compare".into(), serde_json::json!(if opts.compare_unpruned && pruned { crate::clock::now_ms() - t_compare } else { 0.0 }));
        Ok(RunReport {
            embed_norm: embeds.iter().map(|x| x * x).sum::<f32>().sqrt(),
            image_embeds: embeds,
            cos_to_unpruned: cos,
            grid: self.config.vision().grid(),
            num_patches: self.config.vision().num_patches(),
            kept: out.steps.iter().map(|s| KeptStep { layer: s.layer, indices: s.kept[0].clone() }).collect(),
            groups: out.groups.first().cloned(),
            tokens_per_layer: out.tokens_per_layer,
            flops: out.flops,
            flops_unpruned: out.flops_unpruned,
            timings_ms: timings,
            label_probs: with_labels(probs),
            label_probs_unpruned: with_labels(probs_unpruned),
            device: self.device.describe(),
            fallback: None,
        })
    }
}

impl Clip {
    /// Runs every method in `methods` (one image, the unpruned pass beside them) sharing the
    /// patch embedding and the layers before the earliest pruning layer; zero-shot labels
    /// when given.
    pub async fn compare_async(&self, image_bytes: &[u8], methods: &[PruneConfig], labels: &[String]) -> Result<CompareReport> {
        let t0 = crate::clock::now_ms();
        if methods.is_empty() {
            return Err(Error::arg("compare: no methods given"));
        }
        let img = decode(image_bytes)?;
        let text = if labels.is_empty() { None } else { Some(self.encode_text(labels)?.to_vec_f32_async().await?) };
        let pv = self.pixel_values(std::slice::from_ref(&img))?;
        let mut configs: Vec<Option<PruneConfig>> = vec![None];
        configs.extend(methods.iter().cloned().map(Some));
        let many = self.vision.forward_many_async(&pv, &configs).await?;
        let outs = &many.outs;
        let mut embeds = Vec::with_capacity(outs.len());
        for o in outs {
            let e = o.image_embeds.to_vec_f32_async().await?;
            crate::error::check_finite("image_embeds", &e)?;
            embeds.push(e);
        }
        let probs = |e: &[f32]| -> Result<Option<Vec<LabelProb>>> {
            Ok(match &text {
                Some(te) => Some(labels.iter().zip(self.label_probs(e, te)?).map(|(l, prob)| LabelProb { label: l.clone(), prob }).collect()),
                None => None,
            })
        };
        let mut reports = Vec::with_capacity(methods.len());
        for (i, p) in methods.iter().enumerate() {
            let (o, e) = (&outs[i + 1], &embeds[i + 1]);
            reports.push(MethodReport {
                scorer: p.scorer.to_string(),
                keep: p.keep,
                kept: o.steps.iter().map(|s| KeptStep { layer: s.layer, indices: s.kept[0].clone() }).collect(),
                groups: o.groups.first().cloned(),
                tokens: o.last_hidden_state.dim(1)?,
                cos_to_unpruned: cosine(e, &embeds[0]),
                flops_ratio: o.flops / o.flops_unpruned,
                label_probs: probs(e)?,
                ms: many.pass_ms(i + 1),
            });
        }
        let v = self.config.vision();
        Ok(CompareReport {
            grid: v.grid(),
            num_patches: v.num_patches(),
            methods: reports,
            label_probs_unpruned: probs(&embeds[0])?,
            unpruned_ms: many.pass_ms(0),
            shared_ms: many.shared_ms,
            total_ms: crate::clock::now_ms() - t0,
            passes_ms: many.passes_ms(),
            sequential_ms: many.sequential_ms(),
            device: self.device.describe(),
            fallback: None,
        })
    }
}

/// A loaded model that survives its GPU: when a run fails with [`Error::Device`] (device lost,
/// out of memory, a limit; never a bug, which surfaces as it is), the model is rebuilt on the CPU from the weights it was loaded
/// from, the run is redone there, and every later report says why in `fallback`.
pub struct ClipSession {
    pub clip: Clip,
    weights: Weights,
    with_text: bool,
    fallback: Option<String>,
}

impl ClipSession {
    pub fn new(config: ClipConfig, weights: Weights, device: &Device, with_text: bool) -> Result<ClipSession> {
        let (clip, fallback) = match Clip::load(config.clone(), &weights, device, with_text) {
            Err(Error::Device(msg)) if matches!(device, Device::Gpu(_)) => (
                Clip::load(config, &weights, &Device::cpu_with(device.precision()), with_text)?,
                Some(format!("{}: loading failed ({msg}); running on the CPU", device.describe())),
            ),
            r => (r?, None),
        };
        Ok(ClipSession { clip, weights, with_text, fallback })
    }

    /// Why the session left the GPU, if it did.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    pub fn run(&mut self, image_bytes: &[u8], opts: &RunOptions) -> Result<RunReport> {
        let device = self.clip.device.clone();
        crate::tensor::block_on_for([&device], self.run_async(image_bytes, opts))
    }

    pub async fn run_async(&mut self, image_bytes: &[u8], opts: &RunOptions) -> Result<RunReport> {
        let first = self.clip.run_async(image_bytes, opts).await;
        let mut report = match first {
            Err(Error::Device(msg)) if matches!(self.clip.device, Device::Gpu(_)) => {
                self.fall_back(&msg)?;
                self.clip.run_async(image_bytes, opts).await?
            }
            r => r?,
        };
        report.fallback = self.fallback.clone();
        Ok(report)
    }

    /// [`Clip::compare_async`], falling back to the CPU as [`ClipSession::run_async`] does.
    pub async fn compare_async(&mut self, image_bytes: &[u8], methods: &[PruneConfig], labels: &[String]) -> Result<CompareReport> {
        let mut report = match self.clip.compare_async(image_bytes, methods, labels).await {
            Err(Error::Device(msg)) if matches!(self.clip.device, Device::Gpu(_)) => {
                self.fall_back(&msg)?;
                self.clip.compare_async(image_bytes, methods, labels).await?
            }
            r => r?,
        };
        report.fallback = self.fallback.clone();
        Ok(report)
    }

    /// Rebuilds the model on the CPU (tokenizer kept) and records why.
    pub fn fall_back(&mut self, why: &str) -> Result<()> {
        let was = self.clip.device.describe();
        let mut cpu = Clip::load(self.clip.config.clone(), &self.weights, &Device::cpu_with(self.clip.device.precision()), self.with_text)?;
        cpu.tokenizer = self.clip.tokenizer.take();
        cpu.preprocess = self.clip.preprocess.clone();
        self.clip = cpu;
        self.fallback = Some(format!("{was} failed ({why}); running on the CPU"));
        Ok(())
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

pub fn softmax(x: &[f32]) -> Vec<f32> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Loading from a directory laid out as on the hub (native builds).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_dir(dir: &std::path::Path, device: &Device, with_text: bool) -> Result<Clip> {
    open_dir(dir, device, with_text).map(|s| s.clip)
}

/// [`load_dir`] as a [`ClipSession`], which falls back to the CPU when the GPU fails.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_dir(dir: &std::path::Path, device: &Device, with_text: bool) -> Result<ClipSession> {
    let cfg_path = dir.join("config.json");
    let json = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(cfg_path.display(), e))?;
    let config = ClipConfig::from_json(&cfg_path.display().to_string(), &json)?;
    let w = Weights::from_file(&dir.join("model.safetensors"))?;
    let mut s = ClipSession::new(config, w, device, with_text)?;
    // transformers' processor backend (torchvision unless the file names the PIL class).
    let pp = dir.join("preprocessor_config.json");
    if let Ok(text) = std::fs::read_to_string(&pp) {
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::Config { file: pp.display().to_string(), msg: format!("not valid JSON: {e}") })?;
        s.clip.preprocess.resample = crate::image::Resample::from_config(&v);
    }
    if with_text {
        s.clip.tokenizer = load_tokenizer(dir)?;
    }
    Ok(s)
}

#[cfg(not(target_arch = "wasm32"))]
fn load_tokenizer(dir: &std::path::Path) -> Result<Option<Tokenizer>> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| Error::io(dir.join(name).display(), e));
    if dir.join("vocab.json").exists() && dir.join("merges.txt").exists() {
        return Tokenizer::from_vocab_merges(&read("vocab.json")?, &read("merges.txt")?).map(Some);
    }
    if dir.join("tokenizer.json").exists() {
        return Tokenizer::from_tokenizer_json(&read("tokenizer.json")?).map(Some);
    }
    Ok(None)
}
