//! The model description: a sequence of layers over one flat parameter store, built
//! from a config, with PyTorch's initialisation. Nothing here touches the GPU.
//!
//! MLP: input → [Linear → (BatchNorm) → ReLU] per hidden width → Linear → logits.
//! Layer i is named `i` as in `nn.Sequential`, so `0.weight` is the first Linear's
//! [out, in] weight and checkpoints load into PyTorch unchanged.

use super::params::ParamTable;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// The network to build. `input` and `classes` come from the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Widths of the hidden layers.
    pub hidden: Vec<usize>,
    /// BatchNorm after every hidden Linear.
    pub batchnorm: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            hidden: vec![256, 256],
            batchnorm: true,
        }
    }
}

/// What a layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// y = x·Wᵀ + b; weight [outputs, inputs] at `param_off`, bias [outputs] after it.
    Linear { inputs: usize, outputs: usize },
    /// BatchNorm1d over `features`; γ, β at `param_off`; running stats and saved
    /// batch statistics (4 × features) at `state_off`.
    BatchNorm { features: usize },
    /// y = max(x, 0).
    Relu { features: usize },
}

/// One layer and where its parameters and state live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub kind: LayerKind,
    pub param_off: usize,
    pub state_off: usize,
}

impl Layer {
    /// Width of the layer's output.
    pub fn outputs(&self) -> usize {
        match self.kind {
            LayerKind::Linear { outputs, .. } => outputs,
            LayerKind::BatchNorm { features } | LayerKind::Relu { features } => features,
        }
    }
}

/// BatchNorm constants, as PyTorch's defaults.
pub const BN_EPS: f32 = 1e-5;
/// Running-statistics momentum, as PyTorch's default.
pub const BN_MOMENTUM: f32 = 0.1;

/// A built model: layers, the parameter table and the state (running-stat) table.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub inputs: usize,
    pub classes: usize,
    pub layers: Vec<Layer>,
    /// Trainable parameters (length D).
    pub params: ParamTable,
    /// BatchNorm running statistics (named) and saved batch statistics (scratch).
    pub state: ParamTable,
}

impl Model {
    /// An MLP for `inputs` features and `classes` classes.
    pub fn mlp(config: &ModelConfig, inputs: usize, classes: usize) -> Model {
        let mut model = Model {
            inputs,
            classes,
            layers: Vec::new(),
            params: ParamTable::default(),
            state: ParamTable::default(),
        };
        let mut width = inputs;
        for &hidden in &config.hidden {
            model.push_linear(width, hidden);
            if config.batchnorm {
                model.push_batchnorm(hidden);
            }
            model.push(LayerKind::Relu { features: hidden }, 0, 0);
            width = hidden;
        }
        model.push_linear(width, classes);
        model
    }

    fn push(&mut self, kind: LayerKind, param_off: usize, state_off: usize) {
        self.layers.push(Layer {
            kind,
            param_off,
            state_off,
        });
    }

    fn push_linear(&mut self, inputs: usize, outputs: usize) {
        let name = self.layers.len();
        let off = self
            .params
            .push(format!("{name}.weight"), vec![outputs, inputs]);
        self.params.push(format!("{name}.bias"), vec![outputs]);
        self.push(LayerKind::Linear { inputs, outputs }, off, 0);
    }

    fn push_batchnorm(&mut self, features: usize) {
        let name = self.layers.len();
        let off = self.params.push(format!("{name}.weight"), vec![features]);
        self.params.push(format!("{name}.bias"), vec![features]);
        let state_off = self
            .state
            .push(format!("{name}.running_mean"), vec![features]);
        self.state
            .push(format!("{name}.running_var"), vec![features]);
        self.state.reserve(2 * features);
        self.push(LayerKind::BatchNorm { features }, off, state_off);
    }

    /// Number of trainable parameters D.
    pub fn num_params(&self) -> usize {
        self.params.len
    }

    /// Initial parameters as PyTorch initialises them: Linear weight and bias
    /// U(−1/√in, 1/√in) (Kaiming-uniform with a = √5), BatchNorm γ = 1, β = 0.
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut w = vec![0.0f32; self.params.len];
        for layer in &self.layers {
            match layer.kind {
                LayerKind::Linear { inputs, outputs } => {
                    let bound = 1.0 / (inputs as f32).sqrt();
                    let len = outputs * inputs + outputs;
                    for v in &mut w[layer.param_off..layer.param_off + len] {
                        *v = rng.uniform(-bound, bound);
                    }
                }
                LayerKind::BatchNorm { features } => {
                    w[layer.param_off..layer.param_off + features].fill(1.0);
                }
                LayerKind::Relu { .. } => {}
            }
        }
        w
    }

    /// Initial state: running mean 0, running variance 1.
    pub fn init_state(&self) -> Vec<f32> {
        let mut s = vec![0.0f32; self.state.len];
        for layer in &self.layers {
            if let LayerKind::BatchNorm { features } = layer.kind {
                s[layer.state_off + features..layer.state_off + 2 * features].fill(1.0);
            }
        }
        s
    }
}
