//! An RGB raster to draw report pictures on (the landscape figure, the confusion
//! matrix): pixels, lines, discs, squares and anti-aliased text in the font egui ships
//! (Ubuntu Light), horizontal or turned a quarter anticlockwise.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use std::sync::OnceLock;

pub const WHITE: [u8; 3] = [255, 255, 255];
pub const BLACK: [u8; 3] = [0, 0, 0];

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        FontRef::try_from_slice(epaint_default_fonts::UBUNTU_LIGHT).expect("egui's shipped font")
    })
}

/// Text placement relative to the anchor point: which part of the text sits on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Start,
    Centre,
    End,
}

/// An RGB raster (white when new).
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    /// A white `width` × `height` raster.
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            rgb: vec![255; width * height * 3],
        }
    }

    /// Set one pixel (outside the raster: ignored).
    pub fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        self.blend(x, y, c, 1.0);
    }

    /// Mix `c` into one pixel with weight `a` ∈ [0, 1] (outside the raster: ignored).
    fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f32) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let k = (y as usize * self.width + x as usize) * 3;
            for (p, &v) in self.rgb[k..k + 3].iter_mut().zip(&c) {
                *p = (*p as f32 + a.clamp(0.0, 1.0) * (v as f32 - *p as f32)).round() as u8;
            }
        }
    }

    /// A one-pixel line from `a` to `b`.
    pub fn line(&mut self, a: [f32; 2], b: [f32; 2], c: [u8; 3]) {
        let steps = ((b[0] - a[0]).abs().max((b[1] - a[1]).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let t = s as f32 / steps as f32;
            let x = a[0] + t * (b[0] - a[0]);
            let y = a[1] + t * (b[1] - a[1]);
            self.put(x.round() as i64, y.round() as i64, c);
        }
    }

    /// A filled rectangle [x0, x1) × [y0, y1).
    pub fn fill(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.put(x, y, c);
            }
        }
    }

    /// A disc of radius `r` with a one-pixel edge.
    pub fn disc(&mut self, p: [f32; 2], r: f32, fill: [u8; 3], edge: [u8; 3]) {
        let ri = r.ceil() as i64 + 1;
        let (cx, cy) = (p[0].round() as i64, p[1].round() as i64);
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                let d = ((dx * dx + dy * dy) as f32).sqrt();
                if d <= r - 1.0 {
                    self.put(cx + dx, cy + dy, fill);
                } else if d <= r + 0.5 {
                    self.put(cx + dx, cy + dy, edge);
                }
            }
        }
    }

    /// A square of half-side `r` with a one-pixel edge.
    pub fn square(&mut self, p: [f32; 2], r: i64, fill: [u8; 3], edge: [u8; 3]) {
        let (cx, cy) = (p[0].round() as i64, p[1].round() as i64);
        for dy in -r..=r {
            for dx in -r..=r {
                let c = if dx.abs() == r || dy.abs() == r {
                    edge
                } else {
                    fill
                };
                self.put(cx + dx, cy + dy, c);
            }
        }
    }

    /// Width in pixels of `s` at a height of `px` pixels.
    pub fn text_width(s: &str, px: f32) -> f32 {
        let font = font().as_scaled(PxScale::from(px));
        s.chars().map(|c| font.h_advance(font.glyph_id(c))).sum()
    }

    /// `s` at `px` pixels high, its baseline at `y`, placed along x by `align`.
    pub fn text(&mut self, x: f32, y: f32, s: &str, px: f32, align: Align, c: [u8; 3]) {
        self.draw_text(s, px, align, c, |dx, dy| (x + dx, y + dy));
    }

    /// `s` turned a quarter anticlockwise (read from bottom to top), its baseline at
    /// `x`, placed along y by `align` around `y`.
    pub fn vertical_text(&mut self, x: f32, y: f32, s: &str, px: f32, align: Align, c: [u8; 3]) {
        self.draw_text(s, px, align, c, |dx, dy| (x + dy, y - dx));
    }

    /// Rasterise `s` with its baseline from (0, 0) along +x, aligned by `align`, each
    /// pixel (dx, dy) of that layout drawn at `place(dx, dy)`.
    fn draw_text(
        &mut self,
        s: &str,
        px: f32,
        align: Align,
        c: [u8; 3],
        place: impl Fn(f32, f32) -> (f32, f32),
    ) {
        let scale = PxScale::from(px);
        let font = font().as_scaled(scale);
        let width = Self::text_width(s, px);
        let mut pen = match align {
            Align::Start => 0.0,
            Align::Centre => -width / 2.0,
            Align::End => -width,
        };
        for ch in s.chars() {
            let id = font.glyph_id(ch);
            let glyph = id.with_scale_and_position(scale, ab_glyph::point(pen, 0.0));
            pen += font.h_advance(id);
            if let Some(outline) = font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                outline.draw(|gx, gy, coverage| {
                    let (x, y) = place(bounds.min.x + gx as f32, bounds.min.y + gy as f32);
                    self.blend(x.round() as i64, y.round() as i64, c, coverage);
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_inks_pixels_within_its_box() {
        let mut canvas = Canvas::new(120, 40);
        canvas.text(60.0, 30.0, "loss 0.25", 16.0, Align::Centre, BLACK);
        let width = Canvas::text_width("loss 0.25", 16.0);
        let inked: Vec<(usize, usize)> = (0..40)
            .flat_map(|y| (0..120).map(move |x| (x, y)))
            .filter(|&(x, y)| canvas.rgb[(y * 120 + x) * 3] < 128)
            .collect();
        assert!(inked.len() > 50, "{} dark pixels", inked.len());
        for (x, y) in inked {
            assert!((x as f32 - 60.0).abs() <= width / 2.0 + 1.0 && (14..=34).contains(&y));
        }
    }
}
