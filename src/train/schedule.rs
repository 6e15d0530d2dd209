//! Learning-rate schedules, as functions of the epoch and the step inside it.

use serde::{Deserialize, Serialize};

/// How the learning rate changes over a run of `epochs` epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// ×0.1 at 50 % and again at 75 % of the epochs (per epoch).
    Step,
    /// Half a cosine from the base LR to 0 (per step).
    Cosine,
    /// The base LR throughout.
    Constant,
    /// Linear decay from the base LR to 0: lr·(1 − t/T) (per step).
    Linear,
    /// Linear warm-up from 0 over the first tenth of the steps, then half a cosine
    /// to 0 (per step).
    #[serde(rename = "warmup-cosine")]
    WarmupCosine,
}

/// Fraction of a run's steps that [`Schedule::WarmupCosine`] warms up over.
const WARMUP: f64 = 0.1;

impl Schedule {
    /// LR at `step` (0-based) of `epoch` (0-based), with `steps` steps per epoch.
    pub fn lr(self, base: f64, epoch: usize, epochs: usize, step: usize, steps: usize) -> f64 {
        let t = (epoch * steps + step) as f64 / (epochs * steps).max(1) as f64;
        match self {
            Schedule::Step => {
                let e = epoch as f64;
                let total = epochs as f64;
                let mut lr = base;
                if e >= 0.5 * total {
                    lr *= 0.1;
                }
                if e >= 0.75 * total {
                    lr *= 0.1;
                }
                lr
            }
            Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            Schedule::Constant => base,
            Schedule::Linear => base * (1.0 - t),
            Schedule::WarmupCosine if t < WARMUP => {
                base * (epoch * steps + step + 1) as f64 / (WARMUP * (epochs * steps) as f64).ceil()
            }
            Schedule::WarmupCosine => {
                let u = (t - WARMUP) / (1.0 - WARMUP);
                base * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn step_drops_at_half_and_three_quarters() {
        let lrs: Vec<f64> = (0..20)
            .map(|e| Schedule::Step.lr(0.1, e, 20, 0, 10))
            .collect();
        assert!((lrs[9] - 0.1).abs() < 1e-12);
        assert!((lrs[10] - 0.01).abs() < 1e-12);
        assert!((lrs[14] - 0.01).abs() < 1e-12);
        assert!((lrs[15] - 0.001).abs() < 1e-12);
    }

    #[test]
    fn cosine_and_linear_end_near_zero() {
        assert!((Schedule::Cosine.lr(1.0, 0, 4, 0, 10) - 1.0).abs() < 1e-12);
        assert!(Schedule::Cosine.lr(1.0, 3, 4, 9, 10) < 0.01);
        assert!((Schedule::Linear.lr(1.0, 2, 4, 0, 10) - 0.5).abs() < 1e-12);
        assert_eq!(Schedule::Constant.lr(0.3, 3, 4, 9, 10), 0.3);
    }

    #[test]
    fn warmup_rises_linearly_to_the_base_then_follows_a_cosine() {
        // 2 epochs of 50 steps: 10 warm-up steps.
        let lrs: Vec<f64> = (0..100)
            .map(|s| Schedule::WarmupCosine.lr(2.0, s / 50, 2, s % 50, 50))
            .collect();
        assert!((lrs[0] - 0.2).abs() < 1e-12);
        assert!((lrs[9] - 2.0).abs() < 1e-12);
        assert!((lrs[10] - 2.0).abs() < 1e-12);
        assert!((lrs[55] - 1.0).abs() < 1e-12);
        assert!(lrs[99] < 0.01);
        assert!(lrs[10..].windows(2).all(|w| w[1] <= w[0]));
    }
}
