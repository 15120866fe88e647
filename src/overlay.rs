//! The pruning overlay as an image: the model's view (resized, centre-cropped) with its
//! patch grid drawn, kept patches as they are and pruned ones dimmed and hatched; and the
//! merging overlay (ToMe): patches merged into one token tinted with one colour, outlined.

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

/// A distinct colour for group `g` (golden-angle hues, alternating lightness), the same as the
/// page's (`www/ui.js` `groupColour`).
pub fn group_colour(g: u32) -> [u8; 3] {
    let h = (g as f32 * 137.508) % 360.0;
    let l = if g % 2 == 0 { 0.55 } else { 0.42 };
    hsl_to_rgb(h, 0.75, l)
}

fn hsl_to_rgb(h: f32, s: f32, l: f32) -> [u8; 3] {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [r, g, b].map(|v| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8)
}

/// The merging overlay: `groups[p]` is the token patch `p` ended in. Patches that share a token
/// with others are tinted with the token's colour and outlined where the token changes; a patch
/// that is still a token of its own is shown as it is.
pub fn draw_groups(view: &RgbImage, grid: usize, groups: &[u32], scale: u32) -> RgbImage {
    let scale = scale.max(1);
    let (w, h) = (view.width() * scale, view.height() * scale);
    let grid = grid.max(1) as u32;
    let mut count = std::collections::HashMap::new();
    for &g in groups {
        *count.entry(g).or_insert(0u32) += 1;
    }
    let group = |col: u32, row: u32| groups.get((row * grid + col) as usize).copied();
    RgbImage::from_fn(w, h, |x, y| {
        let p = view.get_pixel((x / scale).min(view.width() - 1), (y / scale).min(view.height() - 1)).0;
        let (col, row) = ((x * grid / w).min(grid - 1), (y * grid / h).min(grid - 1));
        let g = group(col, row);
        let merged = g.is_some_and(|g| count.get(&g).copied().unwrap_or(0) > 1);
        // A border where the next patch right or below belongs to another token.
        let right_edge = (x + 1) * grid / w != x * grid / w || x + 1 == w;
        let bottom_edge = (y + 1) * grid / h != y * grid / h || y + 1 == h;
        let border = (right_edge && col + 1 < grid && group(col + 1, row) != g) || (bottom_edge && row + 1 < grid && group(col, row + 1) != g);
        match g {
            Some(g) if merged => {
                let c = group_colour(g);
                if border {
                    return Rgb([20, 20, 28]);
                }
                Rgb([0, 1, 2].map(|i| ((p[i] as u32 * 45 + c[i] as u32 * 55) / 100) as u8))
            }
            _ if border => Rgb([20, 20, 28]),
            _ => Rgb(p),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_patches_share_a_tint_and_singletons_stay() {
        let view = RgbImage::from_pixel(4, 4, Rgb([200, 200, 200]));
        // 2×2 grid: patches 0 and 3 merged into token 5, 1 and 2 alone.
        let out = draw_groups(&view, 2, &[5, 1, 2, 5], 1);
        assert_eq!(out.get_pixel(0, 0), out.get_pixel(2, 2));
        assert_ne!(out.get_pixel(0, 0).0, [200, 200, 200]);
        assert_eq!(out.get_pixel(2, 0).0, [200, 200, 200]);
        assert_ne!(group_colour(1), group_colour(2));
    }
}
