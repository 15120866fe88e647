//! The warm-up: everything a generation can do, once, on a blank image. Recorded at load on a
//! GPU, which compiles every pipeline it dispatches (`Device::compile_by_recording`), so the
//! first request does not wait for shader compiles.

use super::processor::ImagePatches;
use super::{QwenPrune, QwenVL};
use crate::error::Result;
use crate::prune::{Scorer, METHODS};

impl QwenVL {
    /// A prefill of a short prompt around a blank image one merge unit wider and taller than
    /// an attention window (so it has whole and partial windows, as real images do), unpruned
    /// and with each pruning method this model takes (half the visual tokens), and one
    /// decoding step after each.
    pub async fn warm_up(&self) -> Result<()> {
        let v = &self.cfg.vision;
        let m = v.spatial_merge_size.max(1);
        // At most 9 units a side: the kernels are the same for any size past a window.
        let side = (v.window_units().min(8) + 1) * m;
        let patch = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
        let img = ImagePatches { pixels: vec![0.0; side * side * patch], grid_h: side, grid_w: side };
        let pad = self.cfg.image_token_id;
        // A few text tokens (any but the image's pad) around the image's pads.
        let mut text = (0..self.cfg.text.vocab_size as u32).filter(|&t| t != pad);
        let (a, b) = (text.next().unwrap_or(0), text.next().unwrap_or(0));
        let mut ids = vec![a];
        ids.extend(std::iter::repeat_n(pad, img.tokens(m)));
        ids.extend([b, a]);
        let mut runs = vec![None];
        for method in METHODS {
            let p = QwenPrune::new(method.name.parse::<Scorer>()?, 0.5);
            if self.prune_plan(Some(&p)).is_ok() {
                runs.push(Some(p));
            }
        }
        for prune in &runs {
            let mut pre = self.prefill_async(&ids, &img, prune.as_ref(), false).await?;
            self.step_async(a, &mut pre.cache).await?;
        }
        Ok(())
    }
}
