//! The model description: a sequence of layers over one flat parameter store (built
//! from a layer list by [`super::spec::build`]), with PyTorch's initialisation.
//! Nothing here touches the GPU.
//!
//! Activations are batch-major and channels-last: one sample is an H × W × C block
//! (an MLP's features are a 1 × 1 × F image). Layer i writes activation i + 1 and
//! reads activation `input` (usually i); a residual `Add` also reads `other`.
//! Parameters are named `i.weight`, `i.bias` (layer index i as in `nn.Sequential`)
//! with PyTorch's shapes: Linear [out, in], Conv2d [out, in, k, k], so checkpoints of
//! the sequential models (`mlp`, `cnn`) load into PyTorch unchanged.

use super::params::ParamTable;
pub use crate::data::Shape;
use crate::rng::Rng;

/// Geometry of a 2-D window op (convolution or pooling) on an input image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub input: Shape,
    /// Window height and width.
    pub kernel: (usize, usize),
    pub stride: usize,
    pub padding: usize,
}

impl Window {
    /// A pool's kernel, and its stride and padding where they are not the defaults.
    fn describe_pool(&self) -> String {
        let mut s = self.kernel.0.to_string();
        if self.stride != self.kernel.0 {
            s += &format!(" stride {}", self.stride);
        }
        if self.padding > 0 {
            s += &format!(" padding {}", self.padding);
        }
        s
    }

    /// Output height and width.
    pub fn out_hw(&self) -> (usize, usize) {
        let o = |n: usize, k: usize| (n + 2 * self.padding - k) / self.stride + 1;
        (
            o(self.input.height, self.kernel.0),
            o(self.input.width, self.kernel.1),
        )
    }
}

/// What a layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// y = x·Wᵀ + b on each of `tokens` positions per sample (1 for a flat input);
    /// weight [outputs, inputs] at `param_off`, bias [outputs] after it.
    Linear {
        inputs: usize,
        outputs: usize,
        tokens: usize,
    },
    /// 2-D convolution to `outputs` channels (im2col, then the Linear product):
    /// weight [outputs, channels, k, k] at `param_off`, bias [outputs] after it if `bias`.
    Conv {
        window: Window,
        outputs: usize,
        bias: bool,
    },
    /// BatchNorm over `features` channels, each normalised over batch × `spatial`
    /// values (BatchNorm1d for spatial = 1, BatchNorm2d otherwise); γ, β at
    /// `param_off`; running and saved batch statistics (4 × features) at `state_off`.
    BatchNorm { features: usize, spatial: usize },
    /// y = max(x, 0) over `features` values per sample.
    Relu { features: usize },
    /// y = x·Φ(x) (PyTorch's exact GELU) over `features` values per sample.
    Gelu { features: usize },
    /// Dropout while training (and re-estimating BatchNorm, as PyTorch's train mode):
    /// a value is dropped where its hash is below `threshold` (p = threshold / 2³²),
    /// the rest scaled by 1/(1 − p); `salt` (the layer's number) tells the layers'
    /// masks apart. The identity in evaluation.
    Dropout {
        features: usize,
        threshold: u32,
        salt: u32,
    },
    /// Maximum over each window (no padding).
    MaxPool { window: Window },
    /// Mean over each window (no padding); a global average pool is the whole image.
    AvgPool { window: Window },
    /// H × W × C to C·H·W features in PyTorch's (channel-major) order.
    Flatten { input: Shape },
    /// y = x + activation `other` (a residual connection), `features` values per sample.
    Add { features: usize, other: usize },
    /// LayerNorm over the `features` values of each of `tokens` positions per sample
    /// (ε = 1e-5); γ, β [features] at `param_off`.
    LayerNorm { features: usize, tokens: usize },
    /// A learned class token put before `tokens` tokens of `features`: tokens + 1 out;
    /// the token [1, 1, features] at `param_off` (timm's `cls_token`).
    ClassToken { features: usize, tokens: usize },
    /// y = x + a learned embedding [1, tokens, features] at `param_off` (`pos_embed`).
    PositionEmbedding { features: usize, tokens: usize },
    /// Multi-head scaled dot-product self-attention over `tokens` tokens: the input is
    /// q, k, v side by side per token (3·features, each `heads` heads of
    /// features/heads, as timm's `qkv` Linear writes them), the output the heads'
    /// results side by side (`features`).
    Attention {
        features: usize,
        tokens: usize,
        heads: usize,
    },
    /// The first of `tokens` tokens (the class token): `features` values per sample.
    TakeClassToken { features: usize, tokens: usize },
}

impl LayerKind {
    /// Values per sample of the activation the layer reads.
    pub fn input_len(&self) -> usize {
        match *self {
            LayerKind::Linear { inputs, tokens, .. } => tokens * inputs,
            LayerKind::Conv { window, .. }
            | LayerKind::MaxPool { window }
            | LayerKind::AvgPool { window } => window.input.len(),
            LayerKind::BatchNorm { features, spatial } => features * spatial,
            LayerKind::Relu { features }
            | LayerKind::Gelu { features }
            | LayerKind::Dropout { features, .. }
            | LayerKind::Add { features, .. } => features,
            LayerKind::Flatten { input } => input.len(),
            LayerKind::LayerNorm { features, tokens }
            | LayerKind::ClassToken { features, tokens }
            | LayerKind::PositionEmbedding { features, tokens }
            | LayerKind::TakeClassToken { features, tokens } => tokens * features,
            LayerKind::Attention {
                features, tokens, ..
            } => tokens * 3 * features,
        }
    }

    /// Trainable parameters of the layer (from its `param_off`).
    pub fn param_len(&self) -> usize {
        match *self {
            LayerKind::Linear {
                inputs, outputs, ..
            } => (inputs + 1) * outputs,
            LayerKind::Conv {
                window,
                outputs,
                bias,
            } => {
                let taps = window.input.channels * window.kernel.0 * window.kernel.1;
                (taps + bias as usize) * outputs
            }
            LayerKind::BatchNorm { features, .. } | LayerKind::LayerNorm { features, .. } => {
                2 * features
            }
            LayerKind::ClassToken { features, .. } => features,
            LayerKind::PositionEmbedding { features, tokens } => tokens * features,
            _ => 0,
        }
    }

    /// Whether the layer has trainable parameters.
    pub fn has_params(&self) -> bool {
        self.param_len() > 0
    }

    /// A short description for messages, e.g. `Conv2d 1→32 3×3`.
    pub fn describe(&self) -> String {
        match *self {
            LayerKind::Linear {
                inputs,
                outputs,
                tokens: 1,
            } => format!("Linear {inputs}→{outputs}"),
            LayerKind::Linear {
                inputs,
                outputs,
                tokens,
            } => format!("Linear {inputs}→{outputs} on {tokens} tokens"),
            LayerKind::Conv {
                window, outputs, ..
            } => format!(
                "Conv2d {}→{outputs} {}×{} stride {}",
                window.input.channels, window.kernel.0, window.kernel.1, window.stride
            ),
            LayerKind::BatchNorm { features, spatial } => {
                format!("BatchNorm{}d {features}", if spatial > 1 { 2 } else { 1 })
            }
            LayerKind::Relu { .. } => "ReLU".into(),
            LayerKind::Gelu { .. } => "GELU".into(),
            LayerKind::Dropout { threshold, .. } => format!("Dropout p = {}", drop_rate(threshold)),
            LayerKind::MaxPool { window } => format!("MaxPool {}", window.describe_pool()),
            LayerKind::AvgPool { window } => format!("AvgPool {}", window.describe_pool()),
            LayerKind::Flatten { .. } => "Flatten".into(),
            LayerKind::Add { other, .. } => format!("Add (activation {other})"),
            LayerKind::LayerNorm { features, .. } => format!("LayerNorm {features}"),
            LayerKind::ClassToken { .. } => "ClassToken".into(),
            LayerKind::PositionEmbedding { tokens, .. } => {
                format!("PositionEmbedding {tokens} tokens")
            }
            LayerKind::Attention { heads, .. } => format!("Attention {heads} heads"),
            LayerKind::TakeClassToken { .. } => "TakeClassToken".into(),
        }
    }
}

/// Dropout's threshold for a drop probability `p` in [0, 1): p·2³², rounded.
pub fn drop_threshold(p: f64) -> u32 {
    (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// The drop probability of a threshold (to six decimals, as written).
pub fn drop_rate(threshold: u32) -> f64 {
    (threshold as f64 / 4_294_967_296.0 * 1e6).round() / 1e6
}

/// The factor kept values are scaled by: 1/(1 − p) for the threshold's p, in f32.
pub fn keep_scale(threshold: u32) -> f32 {
    (1.0 / (1.0 - threshold as f64 / 4_294_967_296.0)) as f32
}

/// One layer, the activation it reads, its output shape, and where its parameters
/// and state live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub kind: LayerKind,
    /// Index of the activation this layer reads (0 = the input batch).
    pub input: usize,
    pub output: Shape,
    pub param_off: usize,
    pub state_off: usize,
}

impl Layer {
    /// Values per sample of the layer's output.
    pub fn outputs(&self) -> usize {
        self.output.len()
    }
}

/// LayerNorm's ε, as PyTorch's default.
pub const LN_EPS: f32 = 1e-5;

/// How a model's weights start: as the reference code of its architecture initialises
/// them (BatchNorm and LayerNorm always γ = 1, β = 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// PyTorch's defaults: Linear and Conv2d weights and biases U(±1/√fan_in).
    #[default]
    Pytorch,
    /// Convolutions N(0, 2/fan_out) with fan_out = k·k·outputs (Kaiming-normal, fan
    /// out: torchvision's ResNets, the TWA code's VGG16BN and PreResNets), their
    /// biases 0; Linear as PyTorch.
    FanOut,
    /// Convolutions N(0, 2/fan_in) with fan_in = k·k·inputs (Kaiming-normal, fan
    /// in), their biases 0, Linear weights and biases 0 (the TWA code's WideResNet).
    FanInZeroLinear,
    /// timm's ViT: Linear weights N(0, 0.02²) and biases 0; convolutions as PyTorch.
    Vit,
}

/// BatchNorm constants, as PyTorch's defaults.
pub const BN_EPS: f32 = 1e-5;
/// Running-statistics momentum, as PyTorch's default.
pub const BN_MOMENTUM: f32 = 0.1;

/// A built model: layers, the parameter table and the state (running-stat) table.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Shape of one input sample.
    pub input: Shape,
    pub classes: usize,
    pub layers: Vec<Layer>,
    /// Trainable parameters (length D).
    pub params: ParamTable,
    /// BatchNorm running statistics (named) and saved batch statistics (scratch).
    pub state: ParamTable,
    /// How [`Model::init_params`] starts the weights.
    pub init: Init,
}

impl Model {
    /// Number of trainable parameters D.
    pub fn num_params(&self) -> usize {
        self.params.len
    }

    /// Shape of activation `index` (0 = the input).
    pub fn act_shape(&self, index: usize) -> Shape {
        match index {
            0 => self.input,
            i => self.layers[i - 1].output,
        }
    }

    /// Initial parameters as [`Model::init`] says; by default as PyTorch initialises
    /// them: Linear and Conv2d weight and bias U(−1/√fan_in, 1/√fan_in)
    /// (Kaiming-uniform with a = √5). BatchNorm and LayerNorm γ = 1, β = 0; as timm's
    /// ViT: the class token N(0, 10⁻⁶), the position embedding N(0, 0.02²).
    pub fn init_params(&self, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut w = vec![0.0f32; self.params.len];
        for layer in &self.layers {
            let at = layer.param_off;
            let (fan_in, len) = match layer.kind {
                LayerKind::Linear {
                    inputs, outputs, ..
                } if self.init == Init::Vit => {
                    for v in &mut w[at..at + inputs * outputs] {
                        *v = rng.normal(0.02);
                    }
                    continue;
                }
                // Zero weights and biases, as the store starts.
                LayerKind::Linear { .. } if self.init == Init::FanInZeroLinear => continue,
                LayerKind::Linear {
                    inputs, outputs, ..
                } => (inputs, outputs * inputs + outputs),
                LayerKind::Conv {
                    window, outputs, ..
                } if matches!(self.init, Init::FanOut | Init::FanInZeroLinear) => {
                    let taps = window.kernel.0 * window.kernel.1;
                    let (fan_in, fan_out) = (window.input.channels * taps, outputs * taps);
                    let fan = if self.init == Init::FanOut {
                        fan_out
                    } else {
                        fan_in
                    };
                    let std = (2.0 / fan as f32).sqrt();
                    for v in &mut w[at..at + outputs * fan_in] {
                        *v = rng.normal(std);
                    }
                    continue;
                }
                LayerKind::Conv {
                    window,
                    outputs,
                    bias,
                } => {
                    let fan_in = window.input.channels * window.kernel.0 * window.kernel.1;
                    (fan_in, outputs * fan_in + if bias { outputs } else { 0 })
                }
                LayerKind::BatchNorm { features, .. } | LayerKind::LayerNorm { features, .. } => {
                    w[layer.param_off..layer.param_off + features].fill(1.0);
                    continue;
                }
                LayerKind::ClassToken { features, .. } => {
                    for v in &mut w[layer.param_off..layer.param_off + features] {
                        *v = rng.normal(1e-6);
                    }
                    continue;
                }
                LayerKind::PositionEmbedding { features, tokens } => {
                    for v in &mut w[layer.param_off..layer.param_off + tokens * features] {
                        *v = rng.normal(0.02);
                    }
                    continue;
                }
                _ => continue,
            };
            let bound = 1.0 / (fan_in as f32).sqrt();
            for v in &mut w[layer.param_off..layer.param_off + len] {
                *v = rng.uniform(-bound, bound);
            }
        }
        w
    }

    /// Initial state: running mean 0, running variance 1.
    pub fn init_state(&self) -> Vec<f32> {
        let mut s = vec![0.0f32; self.state.len];
        for layer in &self.layers {
            if let LayerKind::BatchNorm { features, .. } = layer.kind {
                s[layer.state_off + features..layer.state_off + 2 * features].fill(1.0);
            }
        }
        s
    }
}
