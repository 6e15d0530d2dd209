//! Turning a grid into pictures: the colour map and its scale, contour lines (marching
//! squares), and a PNG rendering with the overlays and a colour bar. The desktop app
//! uses the same colour map, scale and contours, so both show the same picture.

use super::grid::{Grid, Metric};

/// Viridis at nine evenly spaced stops.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

/// The colour of `t` ∈ [0, 1] (clamped); NaN maps to grey.
pub fn colormap(t: f32) -> [u8; 3] {
    if t.is_nan() {
        return [128, 128, 128];
    }
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let k = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - k as f32;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    std::array::from_fn(|c| (a[c] as f32 + f * (b[c] as f32 - a[c] as f32)).round() as u8)
}

/// Maps values of a metric to [0, 1]: linear or logarithmic between `lo` and `hi`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorScale {
    pub lo: f32,
    pub hi: f32,
    pub log: bool,
}

impl ColorScale {
    /// From the finite values: the minimum to the 95th percentile (far-off points
    /// with huge losses would otherwise flatten the picture), log for losses.
    pub fn fit(values: &[f32], metric: Metric) -> ColorScale {
        let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f32::total_cmp);
        let log = metric.logarithmic() && v.first().is_some_and(|&lo| lo > 0.0);
        let (lo, hi) = match (
            v.first(),
            v.get(((v.len() as f32 * 0.95) as usize).min(v.len().saturating_sub(1))),
        ) {
            (Some(&lo), Some(&hi)) if hi > lo => (lo, hi),
            (Some(&lo), _) => (lo, lo + 1e-6_f32.max(lo.abs() * 1e-3)),
            _ => (0.0, 1.0),
        };
        ColorScale { lo, hi, log }
    }

    /// Position of `value` on the scale (not clamped; NaN stays NaN).
    pub fn position(&self, value: f32) -> f32 {
        if self.log {
            (value.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (value - self.lo) / (self.hi - self.lo)
        }
    }

    /// The value at position `t`.
    pub fn value_at(&self, t: f32) -> f32 {
        if self.log {
            (self.lo.ln() + t * (self.hi.ln() - self.lo.ln())).exp()
        } else {
            self.lo + t * (self.hi - self.lo)
        }
    }

    /// `count` contour levels evenly spaced on the scale, strictly inside it.
    pub fn levels(&self, count: usize) -> Vec<f32> {
        (1..=count)
            .map(|k| self.value_at(k as f32 / (count + 1) as f32))
            .collect()
    }
}

/// Contour segments of `values` (n × n, row-major) at `level`, in grid index
/// coordinates (i along x, j along y), by marching squares.
pub fn contour(values: &[f32], n: usize, level: f32) -> Vec<[[f32; 2]; 2]> {
    let mut out = Vec::new();
    let at = |i: usize, j: usize| values[j * n + i];
    for j in 0..n.saturating_sub(1) {
        for i in 0..n - 1 {
            // Corners counter-clockwise from (i, j).
            let corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
            let v = corners.map(|(a, b)| at(a, b));
            if v.iter().any(|x| !x.is_finite()) {
                continue;
            }
            let mut crossings = Vec::with_capacity(4);
            for e in 0..4 {
                let (a, b) = (e, (e + 1) % 4);
                if (v[a] < level) != (v[b] < level) {
                    let t = (level - v[a]) / (v[b] - v[a]);
                    let (pa, pb) = (corners[a], corners[b]);
                    crossings.push([
                        pa.0 as f32 + t * (pb.0 as f32 - pa.0 as f32),
                        pa.1 as f32 + t * (pb.1 as f32 - pa.1 as f32),
                    ]);
                }
            }
            match crossings.len() {
                2 => out.push([crossings[0], crossings[1]]),
                4 => {
                    out.push([crossings[0], crossings[1]]);
                    out.push([crossings[2], crossings[3]]);
                }
                _ => {}
            }
        }
    }
    out
}

/// Points drawn over the landscape, in plane coordinates.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    pub samples: Vec<[f64; 2]>,
    pub swa: Option<[f64; 2]>,
    pub twa: Option<[f64; 2]>,
    /// TWA's path while training, in order.
    pub trajectory: Vec<[f64; 2]>,
    /// Points evaluated on request.
    pub marks: Vec<[f64; 2]>,
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
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let k = (y as usize * self.width + x as usize) * 3;
            self.rgb[k..k + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, a: [f32; 2], b: [f32; 2], c: [u8; 3]) {
        let steps = ((b[0] - a[0]).abs().max((b[1] - a[1]).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let t = s as f32 / steps as f32;
            let x = a[0] + t * (b[0] - a[0]);
            let y = a[1] + t * (b[1] - a[1]);
            self.put(x.round() as i64, y.round() as i64, c);
        }
    }

    fn disc(&mut self, p: [f32; 2], r: f32, fill: [u8; 3], edge: [u8; 3]) {
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

    fn square(&mut self, p: [f32; 2], r: i64, fill: [u8; 3], edge: [u8; 3]) {
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

    /// Text in a 3×5 pixel font scaled by `scale` (digits and . - e + only).
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.put(
                                    x + (k as i64 * 4 + col) * scale + sx,
                                    y + r as i64 * scale + sy,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Rows (3 bits each, left bit first) of a 3×5 glyph.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        'e' => [0, 7, 7, 4, 7],
        _ => [0; 5],
    }
}

/// A short label for a value on the colour bar.
fn label(v: f32) -> String {
    if v != 0.0 && (v.abs() < 0.01 || v.abs() >= 1000.0) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
const TWA_COLOUR: [u8; 3] = [230, 60, 40];
const MARK_COLOUR: [u8; 3] = [40, 120, 255];

/// The heatmap of `grid`'s `metric`, `size` pixels square (bilinear between grid
/// points, y upwards), with white contour lines at 8 levels: RGB bytes and the scale.
pub fn heatmap(grid: &Grid, metric: Metric, size: usize) -> (Vec<u8>, ColorScale) {
    let n = grid.spec.n;
    let values = grid.values(metric);
    let scale = ColorScale::fit(&values, metric);
    let mut canvas = Canvas::new(size, size);
    draw_heatmap(&mut canvas, &values, n, &scale, size);
    (canvas.rgb, scale)
}

fn draw_heatmap(canvas: &mut Canvas, values: &[f32], n: usize, scale: &ColorScale, size: usize) {
    let cell = (size - 1) as f32 / (n - 1) as f32;
    for py in 0..size {
        for px in 0..size {
            let gx = px as f32 / cell;
            let gy = (size - 1 - py) as f32 / cell;
            let (i, j) = ((gx as usize).min(n - 2), (gy as usize).min(n - 2));
            let (fx, fy) = (gx - i as f32, gy - j as f32);
            let v = |a: usize, b: usize| scale.position(values[b * n + a]);
            let t = (1.0 - fy) * ((1.0 - fx) * v(i, j) + fx * v(i + 1, j))
                + fy * ((1.0 - fx) * v(i, j + 1) + fx * v(i + 1, j + 1));
            canvas.put(px as i64, py as i64, colormap(t));
        }
    }
    let to_pixel = |g: [f32; 2]| [g[0] * cell, (size - 1) as f32 - g[1] * cell];
    for level in scale.levels(8) {
        for [a, b] in contour(values, n, level) {
            canvas.line(to_pixel(a), to_pixel(b), WHITE);
        }
    }
}

/// Render `grid`'s `metric` as a PNG, `size` pixels square plus a colour bar: the
/// [`heatmap`] with contours, samples (small white dots, the last one larger), SWA
/// (white square), the TWA trajectory and point (red), and marked points (blue).
pub fn render_png(grid: &Grid, metric: Metric, overlay: &Overlay, size: usize) -> Vec<u8> {
    let n = grid.spec.n;
    let values = grid.values(metric);
    let scale = ColorScale::fit(&values, metric);
    let bar = 90;
    let mut canvas = Canvas::new(size + bar, size);
    draw_heatmap(&mut canvas, &values, n, &scale, size);
    let cell = (size - 1) as f32 / (n - 1) as f32;
    let to_pixel = |g: [f32; 2]| [g[0] * cell, (size - 1) as f32 - g[1] * cell];
    let spec = &grid.spec;
    let plane_to_pixel = |p: [f64; 2]| {
        let gx = (p[0] - spec.x.0) / (spec.x.1 - spec.x.0) * (n - 1) as f64;
        let gy = (p[1] - spec.y.0) / (spec.y.1 - spec.y.0) * (n - 1) as f64;
        to_pixel([gx as f32, gy as f32])
    };
    for (k, s) in overlay.samples.iter().enumerate() {
        let last = k + 1 == overlay.samples.len();
        canvas.disc(
            plane_to_pixel(*s),
            if last { 5.0 } else { 2.5 },
            WHITE,
            BLACK,
        );
    }
    for w in overlay.trajectory.windows(2) {
        canvas.line(plane_to_pixel(w[0]), plane_to_pixel(w[1]), TWA_COLOUR);
    }
    if let Some(p) = overlay.swa {
        canvas.square(plane_to_pixel(p), 5, WHITE, BLACK);
    }
    if let Some(p) = overlay.twa {
        canvas.disc(plane_to_pixel(p), 6.0, TWA_COLOUR, BLACK);
    }
    for m in &overlay.marks {
        canvas.disc(plane_to_pixel(*m), 4.0, MARK_COLOUR, BLACK);
    }
    // Colour bar: low at the bottom, five labels.
    let (bx, bw) = (size + 8, 16);
    for py in 0..size {
        let t = 1.0 - py as f32 / (size - 1) as f32;
        for px in bx..bx + bw {
            canvas.put(px as i64, py as i64, colormap(t));
        }
    }
    for k in 0..5 {
        let t = k as f32 / 4.0;
        let py = ((1.0 - t) * (size - 1) as f32) as i64;
        let y = (py - 5).clamp(0, size as i64 - 10);
        canvas.line(
            [(bx + bw) as f32, py as f32],
            [(bx + bw + 3) as f32, py as f32],
            BLACK,
        );
        canvas.text(
            (bx + bw + 6) as i64,
            y.max(0),
            &label(scale.value_at(t)),
            2,
            BLACK,
        );
    }
    encode_png(canvas.width, canvas.height, &canvas.rgb)
}

/// PNG bytes of an RGB image (in memory, so only invalid sizes could fail).
pub fn encode_png(width: usize, height: usize, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .expect("PNG header of a non-empty image");
        writer
            .write_image_data(rgb)
            .expect("PNG data matching the header");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contours_of_a_plane_are_straight() {
        // f(i, j) = i: the level 1.5 crosses every cell row at i = 1.5.
        let n = 4;
        let values: Vec<f32> = (0..n * n).map(|k| (k % n) as f32).collect();
        let segments = contour(&values, n, 1.5);
        assert_eq!(segments.len(), n - 1);
        assert!(segments.iter().flatten().all(|p| (p[0] - 1.5).abs() < 1e-6));
    }

    #[test]
    fn colour_scale_round_trips() {
        let s = ColorScale::fit(&[0.1, 0.5, 2.0, f32::INFINITY], Metric::TestLoss);
        assert!(s.log);
        for t in [0.0, 0.3, 1.0] {
            assert!((s.position(s.value_at(t)) - t).abs() < 1e-5);
        }
        assert_eq!(colormap(0.0), VIRIDIS[0]);
        assert_eq!(colormap(1.0), VIRIDIS[8]);
    }
}
