//! Turning a grid into pictures: the colour map and its scale, contour lines (marching
//! squares), and a PNG rendering with the overlays and a colour bar. The desktop app
//! uses the same colour map, scale and contours, so both show the same picture.

use super::grid::{Grid, Metric};
use crate::canvas::{Align, Canvas, BLACK, WHITE};

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

/// What a figure says around the picture.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labels {
    pub title: String,
    pub x: String,
    pub y: String,
}

/// A short label for a value on the colour bar.
fn value_label(v: f32) -> String {
    if v != 0.0 && (v.abs() < 0.01 || v.abs() >= 1000.0) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

/// Round tick positions (1, 2 or 5 × 10^k apart) in [lo, hi], about `target` of them,
/// and the decimals their labels need.
pub fn ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, usize) {
    let raw = ((hi - lo) / target.max(1) as f64).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), decimals)
}

const TWA_COLOUR: [u8; 3] = [230, 60, 40];
const MARK_COLOUR: [u8; 3] = [40, 120, 255];
const GREY: [u8; 3] = [90, 90, 90];

/// The heatmap of `grid`'s `metric`, `size` pixels square (bilinear between grid
/// points, y upwards), with white contour lines at 8 levels: RGB bytes and the scale.
pub fn heatmap(grid: &Grid, metric: Metric, size: usize) -> (Vec<u8>, ColorScale) {
    let n = grid.spec.n;
    let values = grid.values(metric);
    let scale = ColorScale::fit(&values, metric);
    let mut canvas = Canvas::new(size, size);
    draw_heatmap(&mut canvas, &values, n, &scale, (0, 0), (size, size));
    (canvas.rgb, scale)
}

/// The heatmap of the n × n `values` into the `w` × `h` rectangle at `origin`.
fn draw_heatmap(
    canvas: &mut Canvas,
    values: &[f32],
    n: usize,
    scale: &ColorScale,
    origin: (usize, usize),
    (w, h): (usize, usize),
) {
    let (cx, cy) = (
        (w - 1) as f32 / (n - 1) as f32,
        (h - 1) as f32 / (n - 1) as f32,
    );
    let (ox, oy) = (origin.0 as i64, origin.1 as i64);
    for py in 0..h {
        for px in 0..w {
            let gx = px as f32 / cx;
            let gy = (h - 1 - py) as f32 / cy;
            let (i, j) = ((gx as usize).min(n - 2), (gy as usize).min(n - 2));
            let (fx, fy) = (gx - i as f32, gy - j as f32);
            let v = |a: usize, b: usize| scale.position(values[b * n + a]);
            let t = (1.0 - fy) * ((1.0 - fx) * v(i, j) + fx * v(i + 1, j))
                + fy * ((1.0 - fx) * v(i, j + 1) + fx * v(i + 1, j + 1));
            canvas.put(ox + px as i64, oy + py as i64, colormap(t));
        }
    }
    let to_pixel = |g: [f32; 2]| {
        [
            origin.0 as f32 + g[0] * cx,
            origin.1 as f32 + (h - 1) as f32 - g[1] * cy,
        ]
    };
    for level in scale.levels(8) {
        for [a, b] in contour(values, n, level) {
            canvas.line(to_pixel(a), to_pixel(b), WHITE);
        }
    }
}

/// Render `grid`'s `metric` as a figure for a report: the [`heatmap`] with contours,
/// `size` pixels wide and as high as the plane's y range makes it at equal scales;
/// samples (small white dots, the last one larger), SWA (white square), the TWA path
/// and point (red) and marked points (blue) over it; a frame with ticks in weight-space
/// distance, the axis labels and title of `labels`, a legend of the markers and a
/// labelled colour bar.
pub fn render_png(
    grid: &Grid,
    metric: Metric,
    overlay: &Overlay,
    labels: &Labels,
    size: usize,
) -> Vec<u8> {
    let n = grid.spec.n;
    let spec = &grid.spec;
    let values = grid.values(metric);
    let scale = ColorScale::fit(&values, metric);
    let (xr, yr) = (spec.x.1 - spec.x.0, spec.y.1 - spec.y.0);
    let (w, h) = (
        size,
        ((size as f64 * yr / xr).round() as usize).clamp(size / 4, 2 * size),
    );
    let text = (size as f32 / 40.0).clamp(11.0, 18.0);
    let (left, top) = ((5.5 * text) as usize, (3.0 * text) as usize);
    let (right, bottom) = ((8.5 * text) as usize, (6.0 * text) as usize);
    let mut canvas = Canvas::new(left + w + right, top + h + bottom);
    draw_heatmap(&mut canvas, &values, n, &scale, (left, top), (w, h));
    let to_pixel = |p: [f64; 2]| {
        [
            left as f32 + ((p[0] - spec.x.0) / xr * (w - 1) as f64) as f32,
            top as f32 + (h - 1) as f32 - ((p[1] - spec.y.0) / yr * (h - 1) as f64) as f32,
        ]
    };
    for (k, s) in overlay.samples.iter().enumerate() {
        let last = k + 1 == overlay.samples.len();
        let r = if last { 5.0 } else { 2.5 };
        canvas.disc(to_pixel(*s), r, WHITE, BLACK);
    }
    for pair in overlay.trajectory.windows(2) {
        canvas.line(to_pixel(pair[0]), to_pixel(pair[1]), TWA_COLOUR);
    }
    if let Some(p) = overlay.swa {
        canvas.square(to_pixel(p), 5, WHITE, BLACK);
    }
    if let Some(p) = overlay.twa {
        canvas.disc(to_pixel(p), 6.0, TWA_COLOUR, BLACK);
    }
    for m in &overlay.marks {
        canvas.disc(to_pixel(*m), 4.0, MARK_COLOUR, BLACK);
    }
    // Frame, ticks and their labels.
    let (l, t, r, b) = (
        left as f32 - 1.0,
        top as f32 - 1.0,
        (left + w) as f32,
        (top + h) as f32,
    );
    for (a, z) in [
        ([l, t], [r, t]),
        ([r, t], [r, b]),
        ([r, b], [l, b]),
        ([l, b], [l, t]),
    ] {
        canvas.line(a, z, BLACK);
    }
    let (xs, x_decimals) = ticks(spec.x.0, spec.x.1, 6);
    for x in xs {
        let px = to_pixel([x, spec.y.0])[0];
        canvas.line([px, b], [px, b + 5.0], BLACK);
        let label = format!("{x:.x_decimals$}");
        canvas.text(px, b + 6.0 + text, &label, text, Align::Centre, BLACK);
    }
    let (ys, y_decimals) = ticks(spec.y.0, spec.y.1, (6 * h / w).max(3));
    for y in ys {
        let py = to_pixel([spec.x.0, y])[1];
        canvas.line([l - 5.0, py], [l, py], BLACK);
        let label = format!("{y:.y_decimals$}");
        canvas.text(l - 8.0, py + 0.35 * text, &label, text, Align::End, BLACK);
    }
    let centre_x = (l + r) / 2.0;
    canvas.text(
        centre_x,
        b + 2.6 * text,
        &labels.x,
        text,
        Align::Centre,
        BLACK,
    );
    canvas.vertical_text(
        1.1 * text,
        (t + b) / 2.0,
        &labels.y,
        text,
        Align::Centre,
        BLACK,
    );
    canvas.text(
        centre_x,
        1.9 * text,
        &labels.title,
        1.15 * text,
        Align::Centre,
        BLACK,
    );
    draw_legend(&mut canvas, overlay, [l, b + 4.4 * text], text);
    // Colour bar: low at the bottom, five labelled ticks, the metric's name above.
    let (bx, bw) = (r + 0.8 * text, (text as i64).max(12));
    for py in 0..h {
        let at = 1.0 - py as f32 / (h - 1) as f32;
        let y = (top + py) as i64;
        canvas.fill((bx as i64, y), (bx as i64 + bw, y + 1), colormap(at));
    }
    let bar_end = bx + bw as f32;
    for k in 0..5 {
        let at = k as f32 / 4.0;
        let py = top as f32 + (1.0 - at) * (h - 1) as f32;
        canvas.line([bar_end, py], [bar_end + 4.0, py], BLACK);
        let label = value_label(scale.value_at(at));
        canvas.text(
            bar_end + 6.0,
            py + 0.35 * text,
            &label,
            text,
            Align::Start,
            BLACK,
        );
    }
    let name = if scale.log {
        format!("{} (log)", metric.label())
    } else {
        metric.label().to_string()
    };
    canvas.text(bx, t - 0.5 * text, &name, text, Align::Start, BLACK);
    encode_png(canvas.width, canvas.height, &canvas.rgb)
}

/// One row of marker explanations starting at `at` (the row's top left).
fn draw_legend(canvas: &mut Canvas, overlay: &Overlay, at: [f32; 2], text: f32) {
    let y = at[1] + 0.5 * text;
    let mut x = at[0] + 6.0;
    let mut entry = |canvas: &mut Canvas, label: &str, draw: &dyn Fn(&mut Canvas, [f32; 2])| {
        draw(canvas, [x, y]);
        canvas.text(x + 10.0, y + 0.35 * text, label, text, Align::Start, GREY);
        x += 10.0 + Canvas::text_width(label, text) + 1.2 * text;
    };
    if !overlay.samples.is_empty() {
        entry(canvas, "samples", &|c, p| c.disc(p, 2.5, WHITE, BLACK));
        entry(canvas, "last sample", &|c, p| c.disc(p, 5.0, WHITE, BLACK));
    }
    if overlay.swa.is_some() {
        entry(canvas, "SWA", &|c, p| c.square(p, 5, WHITE, BLACK));
    }
    if overlay.twa.is_some() {
        entry(canvas, "TWA", &|c, p| c.disc(p, 6.0, TWA_COLOUR, BLACK));
    }
    if overlay.trajectory.len() > 1 {
        entry(canvas, "TWA's path", &|c, p| {
            c.line([p[0] - 6.0, p[1]], [p[0] + 6.0, p[1]], TWA_COLOUR)
        });
    }
    if !overlay.marks.is_empty() {
        entry(canvas, "evaluated", &|c, p| {
            c.disc(p, 4.0, MARK_COLOUR, BLACK)
        });
    }
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
