//! `eval clip --precision f32,int8,bf16`: the same sweep with one model per precision of the
//! linear layers, side by side on every batch, each precision's rows beside f32's (top-1, its
//! agreement with f32's top-1 under the same method, cos to f32's embedding).

use super::batch::{embed_batch_async, outcomes, Embedded};
use super::{summarize, EvalRow, ImageResult, Method};
use crate::error::Result;
use crate::models::clip::Clip;
use image::RgbImage;

/// Every method on a batch with each model (the f32 one first) and its text classifier: per
/// image, the outcomes of model 0's methods, then model 1's, …; each outcome's `cos_f32` is
/// to model 0's embedding under the same method.
pub fn run_batch_precisions(models: &[(&Clip, &[f32])], images: &[RgbImage], methods: &[Method]) -> Result<Vec<Vec<super::Outcome>>> {
    crate::tensor::block_on_for(models.iter().map(|(c, _)| &c.device), async {
        let mut res = vec![Vec::with_capacity(models.len() * methods.len()); images.len()];
        if images.is_empty() {
            return Ok(res);
        }
        let mut f32: Option<Embedded> = None;
        for &(clip, classifier) in models {
            let per = embed_batch_async(clip, images, methods).await?;
            let outs = outcomes(&per, f32.as_ref(), classifier, clip.config.projection_dim, images.len());
            res.iter_mut().zip(outs).for_each(|(r, o)| r.extend(o));
            f32.get_or_insert(per);
        }
        Ok(res)
    })
}

/// The rows of a sweep run by [`run_batch_precisions`]: each precision's rows (in `methods`
/// order), with its agreement and cos to the first precision's (f32's) under the same method.
pub fn summarize_precisions(methods: &[Method], precisions: &[&str], results: &[ImageResult]) -> Vec<EvalRow> {
    let m = methods.len();
    let n = results.len().max(1) as f64;
    let mut rows = Vec::with_capacity(m * precisions.len());
    for (pi, p) in precisions.iter().enumerate() {
        let part: Vec<ImageResult> = results.iter().map(|r| ImageResult { outcomes: r.outcomes[pi * m..(pi + 1) * m].to_vec(), ..r.clone() }).collect();
        for (mi, mut row) in summarize(methods, &part).into_iter().enumerate() {
            let agree = results.iter().filter(|r| r.outcomes[pi * m + mi].top5.first() == r.outcomes[mi].top5.first()).count();
            row.precision = Some(p.to_string());
            row.agree_f32 = Some(agree as f64 / n);
            row.cos_to_f32 = Some(results.iter().map(|r| r.outcomes[pi * m + mi].cos_f32 as f64).sum::<f64>() / n);
            rows.push(row);
        }
    }
    rows
}
