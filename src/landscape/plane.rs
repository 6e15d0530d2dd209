//! A 2-D plane through the coefficient space of the samples, in the coordinates β of
//! the subspace's orthonormal basis P (so distances equal distances between weight
//! vectors): a point (x, y) of the plane is origin + x·u + y·v with u, v orthonormal.

use crate::error::{Error, Result};

/// Which plane to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneKind {
    /// Through the SWA point (origin), the TWA point (on the x axis) and the last
    /// sample, orthonormalised (affine coordinates as in mode-connectivity plots).
    SwaTwaLast,
    /// Through the SWA point along the two leading principal directions of the samples.
    Pca,
}

impl std::str::FromStr for PlaneKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "swa-twa-last" => Ok(PlaneKind::SwaTwaLast),
            "pca" => Ok(PlaneKind::Pca),
            _ => Err(format!("unknown plane `{s}` (swa-twa-last or pca)")),
        }
    }
}

impl PlaneKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PlaneKind::SwaTwaLast => "swa-twa-last",
            PlaneKind::Pca => "pca",
        }
    }
}

/// The points a plane is built from, in subspace coordinates.
#[derive(Clone, Debug)]
pub struct Anchors {
    /// Every sample, in sampling order.
    pub samples: Vec<Vec<f64>>,
    /// The SWA point (the mean of the samples).
    pub swa: Vec<f64>,
    /// The TWA point, if known.
    pub twa: Option<Vec<f64>>,
}

impl Anchors {
    /// Anchors from the samples' coordinates; SWA is their mean.
    pub fn new(samples: Vec<Vec<f64>>, twa: Option<Vec<f64>>) -> Anchors {
        let n = samples.len().max(1) as f64;
        let dim = samples.first().map_or(0, Vec::len);
        let mut swa = vec![0.0; dim];
        for s in &samples {
            for (m, v) in swa.iter_mut().zip(s) {
                *m += v / n;
            }
        }
        Anchors { samples, swa, twa }
    }

    /// Coordinates of Σ_i α_i w_i from averaging coefficients α over the samples (the
    /// inverse of `Subspace::averaging_coefficients` on the span).
    pub fn combine(&self, alpha: &[f64]) -> Vec<f64> {
        assert_eq!(alpha.len(), self.samples.len(), "coefficients vs samples");
        let mut beta = vec![0.0; self.swa.len()];
        for (a, c) in alpha.iter().zip(&self.samples) {
            for (b, v) in beta.iter_mut().zip(c) {
                *b += a * v;
            }
        }
        beta
    }
}

/// An affine plane: origin + x·u + y·v.
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub kind: PlaneKind,
    pub origin: Vec<f64>,
    pub u: Vec<f64>,
    pub v: Vec<f64>,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

/// `a` minus its components along the unit vectors `basis`, normalised; None if
/// nothing is left relative to `scale`.
fn orthonormalised(mut a: Vec<f64>, basis: &[&[f64]], scale: f64) -> Option<Vec<f64>> {
    for _ in 0..2 {
        for b in basis {
            let c = dot(&a, b);
            a.iter_mut().zip(*b).for_each(|(x, y)| *x -= c * y);
        }
    }
    let n = norm(&a);
    (n > 1e-9 * scale.max(f64::MIN_POSITIVE)).then(|| a.into_iter().map(|x| x / n).collect())
}

impl Plane {
    /// The plane of `kind` through `anchors`.
    pub fn build(kind: PlaneKind, anchors: &Anchors) -> Result<Plane> {
        if anchors.samples.len() < 2 {
            return Err(Error::Config(format!(
                "a plane needs at least 2 samples, got {}",
                anchors.samples.len()
            )));
        }
        let scale = norm(&anchors.swa);
        let origin = anchors.swa.clone();
        let last = anchors.samples.last().expect("checked above");
        let (u, v) = match kind {
            PlaneKind::SwaTwaLast => {
                let twa = anchors.twa.as_ref().ok_or_else(|| {
                    Error::Config("the swa-twa-last plane needs the TWA point (--twa)".into())
                })?;
                let u = orthonormalised(sub(twa, &origin), &[], scale).ok_or_else(|| {
                    Error::Config(
                        "the TWA point coincides with the SWA point; use the pca plane".into(),
                    )
                })?;
                let v = orthonormalised(sub(last, &origin), &[&u], scale).ok_or_else(|| {
                    Error::Config(
                        "SWA, TWA and the last sample lie on one line; use the pca plane".into(),
                    )
                })?;
                (u, v)
            }
            PlaneKind::Pca => {
                let centred: Vec<Vec<f64>> =
                    anchors.samples.iter().map(|s| sub(s, &origin)).collect();
                let dim = origin.len();
                let mut cov = vec![0.0; dim * dim];
                for c in &centred {
                    for i in 0..dim {
                        for j in 0..dim {
                            cov[i * dim + j] += c[i] * c[j];
                        }
                    }
                }
                let (values, vectors) = symmetric_eigen(cov, dim);
                let mut order: Vec<usize> = (0..dim).collect();
                order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
                if dim < 2 || values[order[1]] <= 1e-18 * values[order[0]].max(f64::MIN_POSITIVE) {
                    return Err(Error::Config(
                        "the samples span fewer than 2 directions; no PCA plane".into(),
                    ));
                }
                let column = |k: usize| (0..dim).map(|i| vectors[i * dim + k]).collect();
                (column(order[0]), column(order[1]))
            }
        };
        Ok(Plane { kind, origin, u, v })
    }

    /// Plane coordinates of the orthogonal projection of `beta` onto the plane.
    pub fn project(&self, beta: &[f64]) -> [f64; 2] {
        let d = sub(beta, &self.origin);
        [dot(&d, &self.u), dot(&d, &self.v)]
    }

    /// Subspace coordinates of the plane point (x, y).
    pub fn point(&self, x: f64, y: f64) -> Vec<f64> {
        (0..self.origin.len())
            .map(|i| self.origin[i] + x * self.u[i] + y * self.v[i])
            .collect()
    }
}

/// Eigen-decomposition of a symmetric `n × n` matrix (row-major) by cyclic Jacobi
/// rotations: (eigenvalues, eigenvectors as the columns of an n × n matrix).
pub fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let total: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-30 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_reconstructs_a_symmetric_matrix() {
        let n = 5;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = ((i * 7 + j * 3) % 11) as f64 - 4.5;
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        let (w, v) = symmetric_eigen(a.clone(), n);
        for i in 0..n {
            for j in 0..n {
                let r: f64 = (0..n).map(|k| v[i * n + k] * w[k] * v[j * n + k]).sum();
                assert!(
                    (r - a[i * n + j]).abs() < 1e-9,
                    "({i},{j}): {r} vs {}",
                    a[i * n + j]
                );
            }
        }
    }

    #[test]
    fn planes_are_orthonormal_and_pass_through_their_anchors() {
        let samples = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 2.0, 0.0],
            vec![0.0, 0.0, 3.0],
            vec![1.0, 1.0, 0.5],
        ];
        let anchors = Anchors::new(samples, Some(vec![0.2, 1.5, 1.0]));
        for kind in [PlaneKind::SwaTwaLast, PlaneKind::Pca] {
            let p = Plane::build(kind, &anchors).unwrap();
            assert!((dot(&p.u, &p.u) - 1.0).abs() < 1e-12);
            assert!((dot(&p.v, &p.v) - 1.0).abs() < 1e-12);
            assert!(dot(&p.u, &p.v).abs() < 1e-12);
            assert_eq!(p.project(&anchors.swa), [0.0, 0.0]);
        }
        let p = Plane::build(PlaneKind::SwaTwaLast, &anchors).unwrap();
        for anchor in [
            anchors.twa.as_ref().unwrap(),
            anchors.samples.last().unwrap(),
        ] {
            let [x, y] = p.project(anchor);
            let back = p.point(x, y);
            assert!(back.iter().zip(anchor).all(|(a, b)| (a - b).abs() < 1e-12));
        }
        let same = Anchors::new(anchors.samples.clone(), Some(anchors.swa.clone()));
        assert!(Plane::build(PlaneKind::SwaTwaLast, &same).is_err());
    }
}
