//! Zero-shot evaluation over a labelled image set: for each pruning method (scorer × keep),
//! top-1 / top-5 accuracy, agreement with the unpruned model, cos-sim to the unpruned
//! embedding, latency and FLOPs, so accuracy can be plotted against latency
//! (`effarch eval clip`). The text side is CLIP's zero-shot classifier: each class name in one
//! or more prompt templates, the normalised embeddings averaged over templates and normalised
//! again (as in CLIP's paper).

use crate::error::{Error, Result};
use crate::models::clip::Clip;
use crate::prune::{PruneConfig, Scorer};
use serde::{Deserialize, Serialize};

mod batch;
mod precision;
pub mod qwen;
pub use batch::{run_batch, run_batch_async};
pub use precision::{run_batch_precisions, summarize_precisions};

/// Image files the set may hold (by extension, case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "jfif"];
/// Classes a set may have (each is a text-tower pass per template).
pub const MAX_CLASSES: usize = crate::models::clip::MAX_LABELS;

/// A labelled image set: class names and `(path, class index)` items.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub items: Vec<Item>,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub path: std::path::PathBuf,
    pub label: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl Dataset {
    /// `--data DIR` (ImageFolder: one sub-folder per class, the folder's name is the label) or
    /// `--data FILE.csv` (`path,label` lines, paths relative to the file; a `path,label` header
    /// line is skipped).
    pub fn open(path: &std::path::Path) -> Result<Dataset> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path.display(), e))?;
        let d = if meta.is_dir() { Self::from_dir(path)? } else { Self::from_csv(path)? };
        if d.items.is_empty() {
            return Err(Error::arg(format!(
                "{}: no images found (expected sub-folders of {} files, or path,label lines)",
                path.display(),
                IMAGE_EXTENSIONS.join("/")
            )));
        }
        if d.classes.len() > MAX_CLASSES {
            return Err(Error::arg(format!("{}: {} classes, over the limit of {MAX_CLASSES}", path.display(), d.classes.len())));
        }
        Ok(d)
    }

    fn from_dir(dir: &std::path::Path) -> Result<Dataset> {
        let read = |d: &std::path::Path| -> Result<Vec<std::path::PathBuf>> {
            let mut v: Vec<_> = std::fs::read_dir(d).map_err(|e| Error::io(d.display(), e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            Ok(v)
        };
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for sub in read(dir)?.into_iter().filter(|p| p.is_dir()) {
            let name = sub.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let files: Vec<_> = read(&sub)?.into_iter().filter(|p| is_image(p)).collect();
            if files.is_empty() {
                continue;
            }
            let label = classes.len();
            classes.push(name);
            items.extend(files.into_iter().map(|path| Item { path, label }));
        }
        Ok(Dataset { classes, items })
    }

    fn from_csv(file: &std::path::Path) -> Result<Dataset> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file.display(), e))?;
        let base = file.parent().unwrap_or(std::path::Path::new("."));
        let mut classes: Vec<String> = Vec::new();
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("path,label")) {
                continue;
            }
            let Some((p, l)) = line.rsplit_once(',') else {
                return Err(Error::arg(format!("{} line {}: expected `path,label`, got {line:?}", file.display(), i + 1)));
            };
            let (p, l) = (p.trim(), l.trim());
            if p.is_empty() || l.is_empty() {
                return Err(Error::arg(format!("{} line {}: empty path or label", file.display(), i + 1)));
            }
            let label = match classes.iter().position(|c| c == l) {
                Some(k) => k,
                None => {
                    classes.push(l.to_string());
                    classes.len() - 1
                }
            };
            items.push(Item { path: base.join(p), label });
        }
        Ok(Dataset { classes, items })
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn is_image(p: &std::path::Path) -> bool {
    p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A class folder's name as words for a prompt: `golden_retriever` → `golden retriever`.
pub fn class_words(name: &str) -> String {
    name.replace(['_', '-'], " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The zero-shot classifier: `[classes, dim]`, for each class the normalised mean over
/// `templates` (each with one `{}`) of the normalised text embeddings.
pub fn text_classifier(clip: &Clip, classes: &[String], templates: &[String]) -> Result<Vec<f32>> {
    crate::tensor::block_on(text_classifier_async(clip, classes, templates))
}

/// [`text_classifier`] for callers that must not block (the browser on WebGPU).
pub async fn text_classifier_async(clip: &Clip, classes: &[String], templates: &[String]) -> Result<Vec<f32>> {
    if templates.is_empty() {
        return Err(Error::arg("give at least one prompt template"));
    }
    if let Some(t) = templates.iter().find(|t| t.matches("{}").count() != 1) {
        return Err(Error::arg(format!("template {t:?} must hold exactly one {{}} for the class name")));
    }
    let d = clip.config.projection_dim;
    let mut sum = vec![0f32; classes.len() * d];
    for t in templates {
        let prompts: Vec<String> = classes.iter().map(|c| t.replace("{}", &class_words(c))).collect();
        let e = clip.encode_text(&prompts)?.to_vec_f32_async().await?;
        for (acc, row) in sum.chunks_mut(d).zip(e.chunks(d)) {
            let n = norm(row);
            acc.iter_mut().zip(row).for_each(|(a, v)| *a += v / n);
        }
    }
    for row in sum.chunks_mut(d) {
        let n = norm(row);
        row.iter_mut().for_each(|v| *v /= n);
    }
    Ok(sum)
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12)
}

/// One evaluated method: `prune` None is the unpruned model.
#[derive(Clone, Debug)]
pub struct Method {
    pub name: String,
    pub keep: f32,
    pub prune: Option<PruneConfig>,
}

/// The methods of a sweep: the unpruned model first, then every scorer at every keep < 1.
/// `tome` merges as many tokens in all as each keep prunes, so that methods compare at the same
/// final token count (a fixed `tome:R` has no keep to compare at, and is refused).
pub fn methods(scorers: &[Scorer], keeps: &[f32], layers: &[usize]) -> Result<Vec<Method>> {
    let mut v = vec![Method { name: "unpruned".into(), keep: 1.0, prune: None }];
    for s in scorers {
        if let Scorer::Tome { r: Some(_) } = s {
            return Err(Error::arg(format!("`{s}`: an evaluation compares methods at each keep; use `tome`, which merges as many tokens as the keep prunes")));
        }
        for &k in keeps.iter().filter(|&&k| k < 1.0) {
            v.push(Method { name: s.to_string(), keep: k, prune: Some(PruneConfig::for_comparison(*s, k, layers)?) });
        }
    }
    Ok(v)
}

/// One image under one method: the top-5 class indices, cos-sim to the unpruned embedding,
/// and the method's ms for this image (its batch's time divided by the batch size).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub top5: Vec<u32>,
    pub cos: f32,
    pub ms: f64,
    pub flops_ratio: f64,
    /// Cos-sim to the f32 model's embedding under the same method ([`run_batch_precisions`];
    /// 1 for f32 itself and where one precision runs).
    #[serde(default = "one")]
    pub cos_f32: f32,
}

fn one() -> f32 {
    1.0
}

/// One image's outcomes, by method (in [`methods`] order): a line of the resume cache.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageResult {
    pub path: String,
    pub label: usize,
    pub outcomes: Vec<Outcome>,
}

/// One method's figures over the set.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EvalRow {
    pub scorer: String,
    /// The keep ratio as given (`0.7`, not f32's 0.699999988).
    pub keep: f64,
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
    /// Share of images whose top-1 class equals the unpruned model's.
    pub agree_top1: f64,
    pub cos_to_unpruned: f64,
    pub ms_per_img: f64,
    pub images_per_s: f64,
    pub flops_ratio: f64,
    /// The precision of the linear layers (`eval clip --precision f32,int8,bf16`; null where
    /// one precision ran).
    pub precision: Option<String>,
    /// Share of images whose top-1 class equals the f32 model's under the same method (null
    /// where one precision ran).
    pub agree_f32: Option<f64>,
    /// Mean cos-sim of the embeddings to the f32 model's under the same method (null where one
    /// precision ran).
    pub cos_to_f32: Option<f64>,
}

/// The rows of a finished (or partial) sweep.
pub fn summarize(methods: &[Method], results: &[ImageResult]) -> Vec<EvalRow> {
    let n = results.len().max(1) as f64;
    methods
        .iter()
        .enumerate()
        .map(|(mi, m)| {
            let (mut t1, mut t5, mut agree, mut cos, mut ms, mut fr) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            for r in results {
                let (o, base) = (&r.outcomes[mi], &r.outcomes[0]);
                t1 += (o.top5.first() == Some(&(r.label as u32))) as u8 as f64;
                t5 += o.top5.contains(&(r.label as u32)) as u8 as f64;
                agree += (o.top5.first() == base.top5.first()) as u8 as f64;
                cos += o.cos as f64;
                ms += o.ms;
                fr += o.flops_ratio;
            }
            let ms_per_img = ms / n;
            EvalRow {
                scorer: m.name.clone(),
                keep: (m.keep as f64 * 1e6).round() / 1e6,
                images: results.len(),
                top1: t1 / n,
                top5: t5 / n,
                agree_top1: agree / n,
                cos_to_unpruned: cos / n,
                ms_per_img,
                images_per_s: if ms_per_img > 0.0 { 1000.0 / ms_per_img } else { 0.0 },
                flops_ratio: fr / n,
                precision: None,
                agree_f32: None,
                cos_to_f32: None,
            }
        })
        .collect()
}

/// `results.csv`: a header and one line per row.
pub fn csv(rows: &[EvalRow]) -> String {
    let mut s = String::from("scorer,keep,images,top1,top5,agree_top1,cos_to_unpruned,ms_per_img,images_per_s,flops_ratio,precision,agree_f32,cos_to_f32\n");
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in rows {
        s += &format!(
            "{},{},{},{:.6},{:.6},{:.6},{:.6},{:.4},{:.4},{:.6},{},{},{}\n",
            r.scorer,
            r.keep,
            r.images,
            r.top1,
            r.top5,
            r.agree_top1,
            r.cos_to_unpruned,
            r.ms_per_img,
            r.images_per_s,
            r.flops_ratio,
            r.precision.as_deref().unwrap_or(""),
            opt(r.agree_f32),
            opt(r.cos_to_f32)
        );
    }
    s
}

/// `latency_vs_accuracy.svg`: two panels, top-1 accuracy against ms/img and against keep, one
/// line per scorer, the unpruned model as a marked point (a dashed line in the right panel).
pub fn svg(rows: &[EvalRow], title: &str) -> String {
    svg_labeled(rows, title, "top-1 accuracy", "ms per image")
}

/// [`svg`] with other axis names: `top1` is plotted as `y_label`, `ms_per_img` as `x_label`.
pub fn svg_labeled(rows: &[EvalRow], title: &str, y_label: &str, x_label: &str) -> String {
    const COLORS: [&str; 6] = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];
    let (w, h, pad) = (460.0, 320.0, 48.0);
    let base = rows.iter().find(|r| r.scorer == "unpruned");
    let scorers: Vec<&str> = rows.iter().map(|r| r.scorer.as_str()).filter(|s| *s != "unpruned").fold(Vec::new(), |mut v, s| {
        if !v.contains(&s) {
            v.push(s);
        }
        v
    });
    let max_ms = rows.iter().map(|r| r.ms_per_img).fold(0.0f64, f64::max).max(1e-9) * 1.05;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"12\" y=\"20\" font-size=\"14\">{}</text>\n",
        2.0 * w,
        h + 30.0,
        xml(title)
    );
    for (panel, (xlabel, xmax)) in [(x_label, max_ms), ("keep ratio", 1.0)].into_iter().enumerate() {
        let ox = panel as f64 * w;
        let (x0, y0, x1, y1) = (ox + pad, 30.0 + h - pad, ox + w - 16.0, 30.0 + 16.0);
        let px = |x: f64| x0 + (x / xmax).clamp(0.0, 1.0) * (x1 - x0);
        let py = |y: f64| y0 - y.clamp(0.0, 1.0) * (y0 - y1);
        out += &format!("<g><line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#333\"/><line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#333\"/>\n");
        for i in 0..=4 {
            let f = i as f64 / 4.0;
            out += &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.2}</text>", x0 - 4.0, py(f) + 4.0, f);
            out += &format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                px(f * xmax),
                y0 + 16.0,
                if panel == 0 {
                    format!(
                        "{:.*}",
                        if xmax < 10.0 {
                            2
                        } else if xmax < 100.0 {
                            1
                        } else {
                            0
                        },
                        f * xmax
                    )
                } else {
                    format!("{f:.2}")
                }
            );
        }
        out += &format!("<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{xlabel}</text>", (x0 + x1) / 2.0, y0 + 32.0);
        out += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {:.1} {:.1})\">{y_label}</text>\n",
            ox + 14.0,
            (y0 + y1) / 2.0,
            ox + 14.0,
            (y0 + y1) / 2.0
        );
        let x_of = |r: &EvalRow| if panel == 0 { r.ms_per_img } else { r.keep };
        for (si, s) in scorers.iter().enumerate() {
            let c = COLORS[si % COLORS.len()];
            let mut pts: Vec<&EvalRow> = rows.iter().filter(|r| r.scorer == *s).chain(base).collect();
            pts.sort_by(|a, b| x_of(a).total_cmp(&x_of(b)));
            let path: Vec<String> = pts.iter().map(|r| format!("{:.1},{:.1}", px(x_of(r)), py(r.top1))).collect();
            out += &format!("<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n", path.join(" "));
            for r in pts.iter().filter(|r| r.scorer == *s) {
                out += &format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"><title>{} keep {}: top-1 {:.3}, {:.1} ms</title></circle>\n",
                    px(x_of(r)),
                    py(r.top1),
                    xml(s),
                    r.keep,
                    r.top1,
                    r.ms_per_img
                );
            }
            out += &format!("<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{c}\">{}</text>\n", x0 + 8.0, y1 + 14.0 + 14.0 * si as f64, xml(s));
        }
        if let Some(b) = base {
            out += &format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"#111\"><title>unpruned: top-1 {:.3}, {:.1} ms</title></rect><text x=\"{:.1}\" y=\"{:.1}\">unpruned</text>\n",
                px(x_of(b)) - 4.0,
                py(b.top1) - 4.0,
                b.top1,
                b.ms_per_img,
                px(x_of(b)) - 60.0,
                py(b.top1) - 8.0
            );
        }
        out += "</g>\n";
    }
    out + "</svg>\n"
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str, keep: f32, top1: f64, ms: f64) -> EvalRow {
        EvalRow {
            scorer: s.into(),
            keep: keep as f64,
            images: 4,
            top1,
            top5: 1.0,
            agree_top1: 1.0,
            cos_to_unpruned: 1.0,
            ms_per_img: ms,
            images_per_s: 1000.0 / ms,
            flops_ratio: keep as f64,
            ..Default::default()
        }
    }

    #[test]
    fn summary_counts_top1_top5_and_agreement() {
        let m = methods(&["kq-norm".parse().unwrap()], &[1.0, 0.5], &[1]).unwrap();
        assert_eq!(m.iter().map(|m| (m.name.as_str(), m.keep)).collect::<Vec<_>>(), vec![("unpruned", 1.0), ("kq-norm:key", 0.5)]);
        let t = methods(&["tome".parse().unwrap()], &[0.5, 0.7], &[1]).unwrap();
        assert_eq!(t.iter().map(|m| (m.name.as_str(), m.keep)).collect::<Vec<_>>(), vec![("unpruned", 1.0), ("tome", 0.5), ("tome", 0.7)]);
        assert!(methods(&["tome:8".parse().unwrap()], &[0.5], &[1]).unwrap_err().to_string().contains("use `tome`"));
        let o = |top5: Vec<u32>, ms| Outcome { top5, cos: 0.5, ms, flops_ratio: 1.0, cos_f32: 1.0 };
        let results = vec![
            ImageResult { path: "a".into(), label: 0, outcomes: vec![o(vec![0, 1], 10.0), o(vec![1, 0], 6.0)] },
            ImageResult { path: "b".into(), label: 1, outcomes: vec![o(vec![0, 2], 10.0), o(vec![0, 2], 4.0)] },
        ];
        let rows = summarize(&m, &results);
        assert_eq!((rows[0].top1, rows[0].top5, rows[0].agree_top1), (0.5, 0.5, 1.0));
        assert_eq!((rows[1].top1, rows[1].top5, rows[1].agree_top1), (0.0, 0.5, 0.5));
        assert_eq!(rows[1].ms_per_img, 5.0);
        assert_eq!(rows[1].images_per_s, 200.0);
        assert!(csv(&rows).lines().nth(2).unwrap().starts_with("kq-norm:key,0.5,2,0.000000,0.500000,0.500000"));
    }

    #[test]
    fn the_chart_has_a_line_per_scorer_and_the_unpruned_point() {
        let rows = vec![row("unpruned", 1.0, 0.8, 100.0), row("kq-norm", 0.7, 0.78, 75.0), row("kq-norm", 0.5, 0.7, 55.0), row("random", 0.5, 0.5, 55.0)];
        let s = svg(&rows, "a <set>");
        assert_eq!(s.matches("<polyline").count(), 4, "2 scorers × 2 panels");
        assert_eq!(s.matches(">unpruned</text>").count(), 2);
        assert!(s.contains("a &lt;set&gt;") && s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn class_names_become_words() {
        assert_eq!(class_words("golden_retriever"), "golden retriever");
        assert_eq!(class_words("  tench-fish "), "tench fish");
    }
}
