//! What an averaging method produced: the weights, their test numbers and the
//! averaging coefficients α over the samples.

use super::subspace::Dropped;
use serde::Serialize;

/// Averaging coefficients of one block of explicit per-layer TWA.
#[derive(Clone, Debug, Serialize)]
pub struct BlockAlpha {
    pub block: String,
    pub alpha: Vec<f64>,
}

/// What one averaging method produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Averaged {
    pub method: String,
    pub test_acc: f64,
    pub test_loss: f64,
    pub seconds: f64,
    /// Averaging coefficients over the selected samples (w = Σ αᵢ wᵢ); with
    /// per-layer coefficients, their mean over the parameters.
    pub alpha: Vec<f64>,
    /// Per-layer coefficients: α of each block.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpha_per_block: Vec<BlockAlpha>,
    /// Bytes the subspace held on the device (P, or the stored directions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subspace_bytes: Option<usize>,
    #[serde(skip)]
    pub params: Vec<f32>,
    #[serde(skip)]
    pub state: Vec<f32>,
}

/// Result of [`train_twa`]: the outcome and the samples Gram–Schmidt left out.
pub struct TwaRun {
    pub outcome: Averaged,
    pub dropped: Vec<Dropped>,
    pub rank: usize,
}
