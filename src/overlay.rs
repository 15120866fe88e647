//! The pruning overlay as an image: the model's view (resized, centre-cropped) with its
//! patch grid drawn, kept patches as they are and pruned ones dimmed and hatched.

use image::{Rgb, RgbImage};

/// `view`: the cropped model input (e.g. 224×224); `grid`: patches per side; `kept`: the
/// original indices kept after the last step. `scale` enlarges the result for viewing.
pub fn draw(view: &RgbImage, grid: usize, kept: &[u32], scale: u32) -> RgbImage {
    let scale = scale.max(1);
    let (w, h) = (view.width() * scale, view.height() * scale);
    let grid = grid.max(1) as u32;
    let mut keep = vec![false; (grid * grid) as usize];
    for &i in kept {
        if let Some(k) = keep.get_mut(i as usize) {
            *k = true;
        }
    }
    RgbImage::from_fn(w, h, |x, y| {
        let p = view.get_pixel((x / scale).min(view.width() - 1), (y / scale).min(view.height() - 1)).0;
        let (col, row) = ((x * grid / w).min(grid - 1), (y * grid / h).min(grid - 1));
        let on_line = (x * grid) % w < grid || (y * grid) % h < grid;
        if keep[(row * grid + col) as usize] {
            if on_line {
                return Rgb([255, 255, 255]);
            }
            Rgb(p)
        } else {
            let hatch = (x + y) % (6 * scale) < scale;
            let dim = |c: u8| (c as u32 * 3 / 10 + 20) as u8;
            if hatch || on_line {
                Rgb([90, 90, 110])
            } else {
                Rgb([dim(p[0]), dim(p[1]), dim(p[2])])
            }
        }
    })
}
