//! A confusion matrix of a classifier on a labelled split: counts, per-class accuracy
//! (recall), CSV and a PNG heatmap (rows: true class, columns: predicted class, each
//! row coloured by its fraction so rare classes read as well as common ones).

use crate::canvas::{Align, Canvas};
use crate::landscape::render::{colormap, encode_png};

/// `counts[t * classes + p]`: samples of true class t predicted as p.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    pub classes: usize,
    pub counts: Vec<u64>,
}

impl Confusion {
    /// Count `(label, predicted)` pairs; both must be below `classes`.
    #[track_caller]
    pub fn new(classes: usize, labels: &[u32], predicted: &[usize]) -> Confusion {
        assert_eq!(labels.len(), predicted.len(), "labels vs predictions");
        let mut counts = vec![0; classes * classes];
        for (&t, &p) in labels.iter().zip(predicted) {
            counts[t as usize * classes + p] += 1;
        }
        Confusion { classes, counts }
    }

    /// Samples of true class `t`.
    pub fn support(&self, t: usize) -> u64 {
        self.row(t).iter().sum()
    }

    fn row(&self, t: usize) -> &[u64] {
        &self.counts[t * self.classes..(t + 1) * self.classes]
    }

    /// Fraction of class `t` predicted correctly (NaN for a class with no sample).
    pub fn class_accuracy(&self, t: usize) -> f64 {
        self.row(t)[t] as f64 / self.support(t) as f64
    }

    /// Fraction of all samples predicted correctly.
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes).map(|t| self.row(t)[t]).sum();
        correct as f64 / self.counts.iter().sum::<u64>().max(1) as f64
    }

    /// `true\predicted,0,1,…` then one row per true class.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("true\\predicted");
        (0..self.classes).for_each(|p| out.push_str(&format!(",{p}")));
        out.push('\n');
        for t in 0..self.classes {
            out.push_str(&t.to_string());
            self.row(t)
                .iter()
                .for_each(|c| out.push_str(&format!(",{c}")));
            out.push('\n');
        }
        out
    }

    /// PNG: one cell per (true, predicted) pair coloured by the row fraction (viridis),
    /// class numbers along the top (predicted) and the left (true), the count in each
    /// cell large enough to hold it.
    pub fn to_png(&self) -> Vec<u8> {
        let n = self.classes;
        let cell = (640 / n.max(1)).clamp(4, 48);
        let margin = 28;
        let side = margin + n * cell + 4;
        let mut canvas = Canvas::new(side, side);
        for t in 0..n {
            let support = self.support(t).max(1) as f32;
            for p in 0..n {
                let count = self.row(t)[p];
                let colour = colormap(count as f32 / support);
                let (x0, y0) = ((margin + p * cell) as i64, (margin + t * cell) as i64);
                for y in 0..cell as i64 - 1 {
                    for x in 0..cell as i64 - 1 {
                        canvas.put(x0 + x, y0 + y, colour);
                    }
                }
                let text = count.to_string();
                let px = (cell as f32 * 0.4).clamp(8.0, 16.0);
                if Canvas::text_width(&text, px) + 3.0 <= cell as f32 {
                    let ink = if count as f32 / support > 0.6 {
                        [0, 0, 0]
                    } else {
                        [255, 255, 255]
                    };
                    let (x, y) = (x0 as f32 + cell as f32 / 2.0, y0 as f32 + cell as f32 / 2.0);
                    canvas.text(x, y + 0.35 * px, &text, px, Align::Centre, ink);
                }
            }
        }
        if cell >= 12 {
            for k in 0..n {
                let at = (margin + k * cell) as f32 + cell as f32 / 2.0;
                let label = k.to_string();
                canvas.text(at, 20.0, &label, 14.0, Align::Centre, [0, 0, 0]);
                let x = margin as f32 - 6.0;
                canvas.text(x, at + 5.0, &label, 14.0, Align::End, [0, 0, 0]);
            }
        }
        encode_png(canvas.width, canvas.height, &canvas.rgb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accuracies_and_csv() {
        let labels = [0u32, 0, 1, 1, 1, 2];
        let predicted = [0usize, 1, 1, 1, 0, 2];
        let c = Confusion::new(3, &labels, &predicted);
        assert_eq!(c.counts, vec![1, 1, 0, 1, 2, 0, 0, 0, 1]);
        assert_eq!(c.class_accuracy(0), 0.5);
        assert!((c.class_accuracy(1) - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(
            c.to_csv(),
            "true\\predicted,0,1,2\n0,1,1,0\n1,1,2,0\n2,0,0,1\n"
        );
        assert!(c.to_png().starts_with(b"\x89PNG"));
    }
}
