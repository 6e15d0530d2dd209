//! The grid of plane points a landscape is evaluated on, its coarse-to-fine order, and
//! the values found so far (with the coarser levels standing in for points not yet
//! evaluated).

use crate::train::Part;

/// What a landscape shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Mean cross-entropy on a fixed training batch.
    TrainLoss,
    /// Mean cross-entropy on a fixed test batch.
    TestLoss,
    /// Error rate (1 − accuracy) on the same fixed test batch.
    TestError,
}

impl Metric {
    /// Every metric, in menu order.
    pub const ALL: [Metric; 3] = [Metric::TrainLoss, Metric::TestLoss, Metric::TestError];

    /// The split whose fixed batch is evaluated.
    pub fn part(self) -> Part {
        match self {
            Metric::TrainLoss => Part::Train,
            Metric::TestLoss | Metric::TestError => Part::Test,
        }
    }

    /// The metric's value from a point's mean loss and accuracy.
    pub fn value(self, loss: f32, acc: f32) -> f32 {
        match self {
            Metric::TrainLoss | Metric::TestLoss => loss,
            Metric::TestError => 1.0 - acc,
        }
    }

    /// Human-readable name.
    pub fn label(self) -> &'static str {
        match self {
            Metric::TrainLoss => "train loss",
            Metric::TestLoss => "test loss",
            Metric::TestError => "test error",
        }
    }

    /// Whether colours follow the logarithm of the value (losses span decades).
    pub fn logarithmic(self) -> bool {
        !matches!(self, Metric::TestError)
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "train-loss" => Ok(Metric::TrainLoss),
            "test-loss" => Ok(Metric::TestLoss),
            "test-error" => Ok(Metric::TestError),
            _ => Err(format!(
                "unknown metric `{s}` (train-loss, test-loss or test-error)"
            )),
        }
    }
}

/// An `n × n` grid over the rectangle `x × y` of plane coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct GridSpec {
    pub n: usize,
    pub x: (f64, f64),
    pub y: (f64, f64),
}

impl GridSpec {
    /// A grid covering `points` with a margin of `margin` times the larger extent on
    /// every side.
    pub fn around(points: &[[f64; 2]], n: usize, margin: f64) -> GridSpec {
        let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
        for p in points {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        if !lo[0].is_finite() {
            (lo, hi) = ([-1.0; 2], [1.0; 2]);
        }
        let extent = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-6);
        let pad = margin * extent;
        GridSpec {
            n: n.max(2),
            x: (lo[0] - pad, hi[0] + pad),
            y: (lo[1] - pad, hi[1] + pad),
        }
    }

    /// The same spec with the shorter side widened (about its centre) to at least
    /// `ratio` of the longer one, so that a picture at equal scales is not a sliver.
    pub fn with_aspect(mut self, ratio: f64) -> GridSpec {
        let (w, h) = (self.x.1 - self.x.0, self.y.1 - self.y.0);
        let widen = |(a, b): (f64, f64), to: f64| {
            let centre = 0.5 * (a + b);
            (centre - 0.5 * to, centre + 0.5 * to)
        };
        if h < ratio * w {
            self.y = widen(self.y, ratio * w);
        } else if w < ratio * h {
            self.x = widen(self.x, ratio * h);
        }
        self
    }

    /// Plane coordinates of grid point (i, j): column i, row j.
    pub fn coord(&self, i: usize, j: usize) -> [f64; 2] {
        let t = |k: usize, (a, b): (f64, f64)| a + (b - a) * k as f64 / (self.n - 1) as f64;
        [t(i, self.x), t(j, self.y)]
    }

    /// Strides of the coarse-to-fine levels: the first has at least 8 points per
    /// side, each next one halves the stride, the last is 1.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = 1;
        while (self.n - 1) / (2 * s) >= 7 {
            s *= 2;
        }
        let mut out = vec![s];
        while s > 1 {
            s /= 2;
            out.push(s);
        }
        out
    }

    /// The points (i, j) first evaluated at `stride` (those on coarser levels are not
    /// repeated), row by row.
    pub fn level_points(&self, stride: usize, coarser: Option<usize>) -> Vec<(usize, usize)> {
        let on = |k: usize, s: usize| k.is_multiple_of(s);
        (0..self.n)
            .step_by(stride)
            .flat_map(|j| (0..self.n).step_by(stride).map(move |i| (i, j)))
            .filter(|&(i, j)| coarser.is_none_or(|c| !(on(i, c) && on(j, c))))
            .collect()
    }
}

/// Loss and accuracy at the grid points evaluated so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub spec: GridSpec,
    /// Row-major (`j * n + i`); NaN where not evaluated yet.
    pub loss: Vec<f32>,
    pub acc: Vec<f32>,
    /// The finest stride completed (1 when the grid is complete).
    pub stride: usize,
}

impl Grid {
    /// An empty grid.
    pub fn new(spec: GridSpec) -> Grid {
        let len = spec.n * spec.n;
        Grid {
            stride: usize::MAX,
            loss: vec![f32::NAN; len],
            acc: vec![f32::NAN; len],
            spec,
        }
    }

    /// Whether every point is evaluated.
    pub fn complete(&self) -> bool {
        self.stride == 1
    }

    /// The value of `metric` at (i, j), or at the nearest evaluated point of the
    /// finest completed level if (i, j) is not evaluated yet.
    pub fn value(&self, metric: Metric, i: usize, j: usize) -> f32 {
        let n = self.spec.n;
        let at = |i: usize, j: usize| metric.value(self.loss[j * n + i], self.acc[j * n + i]);
        let v = at(i, j);
        if !v.is_nan() || self.stride == usize::MAX {
            return v;
        }
        let s = self.stride;
        let snap = |k: usize| ((k + s / 2) / s * s).min((n - 1) / s * s);
        at(snap(i), snap(j))
    }

    /// Every value of `metric`, row-major, coarse levels standing in for missing points.
    pub fn values(&self, metric: Metric) -> Vec<f32> {
        let n = self.spec.n;
        (0..n * n)
            .map(|k| self.value(metric, k % n, k / n))
            .collect()
    }

    /// CSV with a header: x, y, loss, accuracy per evaluated point.
    pub fn to_csv(&self) -> String {
        let n = self.spec.n;
        let mut out = String::from("i,j,x,y,loss,accuracy\n");
        for j in 0..n {
            for i in 0..n {
                let k = j * n + i;
                if self.loss[k].is_nan() {
                    continue;
                }
                let [x, y] = self.spec.coord(i, j);
                out.push_str(&format!(
                    "{i},{j},{x},{y},{},{}\n",
                    self.loss[k], self.acc[k]
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_cover_every_point_once() {
        for n in [2, 9, 17, 33, 40] {
            let spec = GridSpec::around(&[[0.0, 0.0], [1.0, 2.0]], n, 0.1);
            let strides = spec.strides();
            assert_eq!(*strides.last().unwrap(), 1);
            let mut seen = vec![0; n * n];
            let mut coarser = None;
            for &s in &strides {
                for (i, j) in spec.level_points(s, coarser) {
                    seen[j * n + i] += 1;
                }
                coarser = Some(s);
            }
            assert!(seen.iter().all(|&c| c == 1), "n = {n}");
        }
        let spec = GridSpec::around(&[[0.0, 0.0]], 33, 0.1);
        assert_eq!(spec.strides(), vec![4, 2, 1]);
        assert_eq!(spec.level_points(4, None).len(), 81);
    }
}
