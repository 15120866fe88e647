//! Every method on one batch of images: each one's embeddings, then per image its top-5
//! classes, cos to the unpruned embedding (and to f32's, for the precision comparison), ms
//! and FLOPs.

use super::{Method, Outcome};
use crate::clock::{now_ms, Timings};
use crate::error::Result;
use crate::models::clip::Clip;
use image::RgbImage;

/// Runs every method on a batch of decoded images (of the same labels order).
pub fn run_batch(clip: &Clip, images: &[RgbImage], methods: &[Method], classifier: &[f32]) -> Result<Vec<Vec<Outcome>>> {
    crate::tensor::block_on_for([&clip.device], run_batch_async(clip, images, methods, classifier))
}

/// [`run_batch`] for callers that must not block (the browser on WebGPU).
pub async fn run_batch_async(clip: &Clip, images: &[RgbImage], methods: &[Method], classifier: &[f32]) -> Result<Vec<Vec<Outcome>>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let per_method = embed_batch_async(clip, images, methods).await?;
    Ok(outcomes(&per_method, None, classifier, clip.config.projection_dim, images.len()))
}

/// Each method's embeddings of a batch (`[images, d]`), with its ms per image and FLOPs ratio.
pub(super) type Embedded = Vec<(Vec<f32>, f64, f64)>;

pub(super) async fn embed_batch_async(clip: &Clip, images: &[RgbImage], methods: &[Method]) -> Result<Embedded> {
    let pv = clip.pixel_values(images)?;
    let mut per_method = Vec::with_capacity(methods.len());
    for m in methods {
        let t0 = now_ms();
        let out = clip.vision.forward_async(&pv, m.prune.as_ref(), &mut Timings::start()).await?;
        let e = out.image_embeds.to_vec_f32_async().await?;
        let ms = (now_ms() - t0) / images.len().max(1) as f64;
        crate::error::check_finite("image_embeds", &e)?;
        per_method.push((e, ms, out.flops / out.flops_unpruned.max(1.0)));
    }
    Ok(per_method)
}

/// Per image, each method's outcome: top-5 against `classifier`, cos to the first method's
/// embedding, and to `f32`'s embedding under the same method where given.
pub(super) fn outcomes(per_method: &Embedded, f32: Option<&Embedded>, classifier: &[f32], d: usize, n: usize) -> Vec<Vec<Outcome>> {
    let classes = classifier.len() / d.max(1);
    let base = &per_method[0].0;
    let mut res = vec![Vec::with_capacity(per_method.len()); n];
    for (mi, (e, ms, fr)) in per_method.iter().enumerate() {
        for (i, r) in res.iter_mut().enumerate() {
            let v = &e[i * d..(i + 1) * d];
            let mut scores: Vec<(f32, u32)> = classifier.chunks(d).enumerate().map(|(c, t)| (dot(v, t), c as u32)).collect();
            scores.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let top5 = scores.iter().take(5.min(classes)).map(|s| s.1).collect();
            let cos_f32 = f32.map_or(1.0, |f| crate::models::clip::cosine(v, &f[mi].0[i * d..(i + 1) * d]));
            r.push(Outcome { top5, cos: crate::models::clip::cosine(v, &base[i * d..(i + 1) * d]), ms: *ms, flops_ratio: *fr, cos_f32 });
        }
    }
    res
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
