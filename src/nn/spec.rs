//! Networks as data: a network is a list of [`LayerSpec`]s, as a config's `[model]
//! layers` writes it (residual blocks and repeats nest lists), in the spirit of
//! PyTorch's `nn.Sequential`. The built-in `mlp`, `cnn` and `resnet` are such lists
//! (`nn::architecture`); [`build`] walks one into a [`Model`], checking every layer's
//! input, and [`to_toml`] writes one back.
//!
//! Layers are numbered in the order they are built, depth first, as in PyTorch's
//! flattened `nn.Sequential`: layer i's parameters are `i.weight`, `i.bias`.

use super::model::{drop_threshold, Layer, LayerKind, Model, Shape, Window};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Longest attention head and sequence `transformer.wgsl` takes.
const MAX_HEAD_DIM: usize = 128;
const MAX_TOKENS: usize = 1024;

/// A Linear layer's outputs: a count, or `"classes"`, the data's class count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Count(usize),
    Classes,
}

impl Serialize for Width {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Width::Count(n) => s.serialize_u64(*n as u64),
            Width::Classes => s.serialize_str("classes"),
        }
    }
}

impl<'de> Deserialize<'de> for Width {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Width, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Width;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a count or \"classes\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<Width, E> {
                usize::try_from(n)
                    .map(Width::Count)
                    .map_err(|_| E::custom(format!("{n} is too large")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<Width, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n} is negative")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Width, E> {
                match s {
                    "classes" => Ok(Width::Classes),
                    _ => Err(E::custom(format!("`{s}`: expected a count or \"classes\""))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn one() -> usize {
    1
}

fn yes() -> bool {
    true
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A convolution's settings; `channels`, if given, is checked against the input's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    pub outputs: usize,
    pub kernel: usize,
    #[serde(default = "one")]
    pub stride: usize,
    #[serde(default)]
    pub padding: usize,
    #[serde(default = "yes")]
    pub bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
}

/// A pool's square window: stride the kernel if not given, padding at most half the
/// kernel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub kernel: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub padding: usize,
}

/// One entry of a network's layer list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// y = x·Wᵀ + b (PyTorch's `Linear`). It reads a flat input, a one-channel image
    /// (the orders agree), or the network's input as stored (channels last); put
    /// `flatten` before it after a convolution. `inputs`, if given, is checked.
    Linear {
        outputs: Width,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<usize>,
    },
    /// A 2-D convolution with square kernel (PyTorch's `Conv2d`).
    Conv(ConvSpec),
    /// BatchNorm over the channels: `BatchNorm1d` on flat inputs, `BatchNorm2d` on images.
    Batchnorm,
    Relu,
    /// PyTorch's (exact, erf) GELU.
    Gelu,
    /// PyTorch's `Dropout(p)`: while training, each value zeroed with probability `p`
    /// (0 ≤ p < 1), the rest scaled by 1/(1 − p); the masks follow from the seed, the
    /// step and the sample, so a resumed run draws the same ones.
    Dropout {
        p: f64,
    },
    /// Maximum over square windows; the padding is never the maximum (PyTorch's
    /// `MaxPool2d`).
    MaxPool(PoolSpec),
    /// Mean over square windows, the padding counted as zeros (PyTorch's `AvgPool2d`).
    AvgPool(PoolSpec),
    /// The mean of each channel over the image (adaptive average pooling to 1×1,
    /// flattened): C features.
    GlobalAvgPool,
    /// An image to C·H·W features in PyTorch's (channel-major) order.
    Flatten,
    /// `body` plus a shortcut: the block's input (identity), or, with `shortcut`
    /// layers, their output, reading the output of the body's first `shortcut_from`
    /// layers (0: the block's input). Built as the body, the shortcut, then the sum.
    Residual {
        body: Vec<LayerSpec>,
        #[serde(default, skip_serializing_if = "is_zero")]
        shortcut_from: usize,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shortcut: Vec<LayerSpec>,
    },
    /// `layers`, `times` times over.
    Repeat {
        times: usize,
        layers: Vec<LayerSpec>,
    },
    /// A vision transformer's patch embedding: a `patch`×`patch` convolution with
    /// stride `patch` to `outputs` channels, its output read as a sequence of tokens
    /// (one per patch, row by row, as timm's `PatchEmbed`). On a sequence, `linear`
    /// acts on each token and `global_avg_pool` averages the tokens.
    PatchEmbed {
        outputs: usize,
        patch: usize,
    },
    /// A learned token put before the sequence (timm's `cls_token`).
    ClassToken,
    /// A learned embedding added to each token position (timm's `pos_embed`).
    PositionEmbedding,
    /// LayerNorm over each token's features (or over a flat input's features).
    Layernorm,
    /// Multi-head self-attention (timm's `Attention`): a `qkv` Linear to 3× the
    /// features on each token, scaled dot-product attention in `heads` heads, and a
    /// `proj` Linear back; three layers.
    Attention {
        heads: usize,
    },
    /// The class token's features: the sequence's first token.
    TakeClassToken,
}

impl LayerSpec {
    /// The entry's name as a config writes it.
    fn name(&self) -> &'static str {
        match self {
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Conv { .. } => "conv",
            LayerSpec::Batchnorm => "batchnorm",
            LayerSpec::Relu => "relu",
            LayerSpec::Gelu => "gelu",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::MaxPool { .. } => "max_pool",
            LayerSpec::AvgPool { .. } => "avg_pool",
            LayerSpec::GlobalAvgPool => "global_avg_pool",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Residual { .. } => "residual",
            LayerSpec::Repeat { .. } => "repeat",
            LayerSpec::PatchEmbed { .. } => "patch_embed",
            LayerSpec::ClassToken => "class_token",
            LayerSpec::PositionEmbedding => "position_embedding",
            LayerSpec::Layernorm => "layernorm",
            LayerSpec::Attention { .. } => "attention",
            LayerSpec::TakeClassToken => "take_class_token",
        }
    }
}

/// The model `list` describes for samples of shape `input` and `classes` classes
/// (`name` names it in errors); an error names the first layer whose input or
/// settings do not fit: its number, its kind and where it is in the list.
pub fn build(name: &str, list: &[LayerSpec], input: Shape, classes: usize) -> Result<Model> {
    let mut b = Builder {
        model: Model {
            input,
            classes,
            layers: Vec::new(),
            params: Default::default(),
            state: Default::default(),
            init: Default::default(),
        },
        name: name.to_string(),
        current: 0,
        shape: input,
        sequences: vec![false],
        path: Vec::new(),
    };
    b.list(list, "layers", 0)?;
    if b.shape != Shape::flat(classes) {
        return Err(Error::Shape(format!(
            "model {name}: the last layer gives {} but the data has {classes} classes",
            b.shape
        )));
    }
    Ok(b.model)
}

/// Appends layers, tracking the current activation and its shape.
struct Builder {
    model: Model,
    name: String,
    /// The activation the next layer reads, and its shape.
    current: usize,
    shape: Shape,
    /// Whether each activation is a token sequence (tokens = height × width, each
    /// of `channels` features) rather than an image or flat features.
    sequences: Vec<bool>,
    /// Where the entry being built is in the list, for errors.
    path: Vec<String>,
}

impl Builder {
    /// The entries of `list`, numbered from `first` in errors (`field[i]`).
    fn list(&mut self, list: &[LayerSpec], field: &str, first: usize) -> Result<()> {
        for (i, spec) in list.iter().enumerate().map(|(i, s)| (i + first, s)) {
            self.path.push(format!("{field}[{i}]"));
            self.entry(spec)?;
            self.path.pop();
        }
        Ok(())
    }

    /// An error about the next layer, described as `what`.
    fn error(&self, what: &str, problem: String) -> Error {
        Error::Shape(format!(
            "model {}: layer {} ({what}) {problem} (at {})",
            self.name,
            self.model.layers.len(),
            self.path.join("."),
        ))
    }

    /// The next layer's expected input does not match what reaches it.
    fn mismatch(&self, what: &str, expected: String) -> Error {
        self.error(
            what,
            format!("expects {expected} but gets {}", self.shown()),
        )
    }

    /// Whether the current activation is a token sequence.
    fn sequence(&self) -> bool {
        self.sequences[self.current]
    }

    /// The current activation's shape in words.
    fn shown(&self) -> String {
        if self.sequence() {
            format!(
                "{} tokens of {} features",
                self.shape.spatial(),
                self.shape.channels
            )
        } else {
            self.shape.to_string()
        }
    }

    /// (features, tokens) of the current sequence, or an error for layer `what`.
    fn tokens(&self, what: &str) -> Result<(usize, usize)> {
        if !self.sequence() {
            return Err(self.mismatch(what, "a token sequence (after `patch_embed`)".into()));
        }
        Ok((self.shape.channels, self.shape.spatial()))
    }

    /// Refuses a token sequence for layer `what`, which needs an image.
    fn image_only(&self, what: &str) -> Result<()> {
        if self.sequence() {
            return Err(self.mismatch(what, "an image".into()));
        }
        Ok(())
    }

    fn shape_of(&self, index: usize) -> Shape {
        self.model.act_shape(index)
    }

    /// Appends a layer whose output is a sequence where its input is.
    fn push(&mut self, kind: LayerKind, output: Shape, param_off: usize, state_off: usize) {
        let sequence = self.sequence();
        self.push_as(kind, output, param_off, state_off, sequence);
    }

    fn push_as(
        &mut self,
        kind: LayerKind,
        output: Shape,
        param_off: usize,
        state_off: usize,
        sequence: bool,
    ) {
        self.sequences.push(sequence);
        self.model.layers.push(Layer {
            kind,
            input: self.current,
            output,
            param_off,
            state_off,
        });
        self.current = self.model.layers.len();
        self.shape = output;
    }

    /// Read activation `index` next.
    fn branch_from(&mut self, index: usize) {
        self.current = index;
        self.shape = self.shape_of(index);
    }

    fn param(&mut self, name: &str, shape: Vec<usize>) -> usize {
        let layer = self.model.layers.len();
        self.model.params.push(format!("{layer}.{name}"), shape)
    }

    fn entry(&mut self, spec: &LayerSpec) -> Result<()> {
        match *spec {
            LayerSpec::Linear { outputs, inputs } => self.linear(outputs, inputs),
            LayerSpec::Conv(conv) => self.conv(conv),
            LayerSpec::Batchnorm => {
                self.batchnorm();
                Ok(())
            }
            LayerSpec::Relu | LayerSpec::Gelu => {
                let shape = self.shape;
                let features = shape.len();
                let kind = match spec {
                    LayerSpec::Relu => LayerKind::Relu { features },
                    _ => LayerKind::Gelu { features },
                };
                self.push(kind, shape, 0, 0);
                Ok(())
            }
            LayerSpec::Dropout { p } => {
                let what = format!("Dropout p = {p}");
                if !(0.0..1.0).contains(&p) {
                    return Err(self.error(&what, "needs 0 ≤ p < 1".into()));
                }
                let shape = self.shape;
                let kind = LayerKind::Dropout {
                    features: shape.len(),
                    threshold: drop_threshold(p),
                    salt: self.model.layers.len() as u32,
                };
                self.push(kind, shape, 0, 0);
                Ok(())
            }
            LayerSpec::MaxPool(pool) => self.pool(pool, true),
            LayerSpec::AvgPool(pool) => self.pool(pool, false),
            LayerSpec::GlobalAvgPool => {
                let window = Window {
                    input: self.shape,
                    kernel: (self.shape.height, self.shape.width),
                    stride: 1,
                    padding: 0,
                };
                let shape = Shape::flat(self.shape.channels);
                self.push_as(LayerKind::AvgPool { window }, shape, 0, 0, false);
                Ok(())
            }
            LayerSpec::Flatten => {
                self.image_only("Flatten")?;
                let input = self.shape;
                self.push(LayerKind::Flatten { input }, Shape::flat(input.len()), 0, 0);
                Ok(())
            }
            LayerSpec::PatchEmbed { outputs, patch } => {
                let conv = ConvSpec {
                    outputs,
                    kernel: patch,
                    stride: patch,
                    padding: 0,
                    bias: true,
                    channels: None,
                };
                self.conv(conv)?;
                let last = self.sequences.len() - 1;
                self.sequences[last] = true;
                Ok(())
            }
            LayerSpec::ClassToken => {
                let (features, tokens) = self.tokens("ClassToken")?;
                let off = self.param("cls_token", vec![1, 1, features]);
                let kind = LayerKind::ClassToken { features, tokens };
                self.push(kind, Shape::image(tokens + 1, 1, features), off, 0);
                Ok(())
            }
            LayerSpec::PositionEmbedding => {
                let (features, tokens) = self.tokens("PositionEmbedding")?;
                let off = self.param("pos_embed", vec![1, tokens, features]);
                let kind = LayerKind::PositionEmbedding { features, tokens };
                let shape = self.shape;
                self.push(kind, shape, off, 0);
                Ok(())
            }
            LayerSpec::Layernorm => self.layernorm(),
            LayerSpec::Attention { heads } => self.attention(heads),
            LayerSpec::TakeClassToken => {
                let (features, tokens) = self.tokens("TakeClassToken")?;
                let kind = LayerKind::TakeClassToken { features, tokens };
                self.push_as(kind, Shape::flat(features), 0, 0, false);
                Ok(())
            }
            LayerSpec::Residual {
                ref body,
                shortcut_from,
                ref shortcut,
            } => self.residual(body, shortcut_from, shortcut),
            LayerSpec::Repeat { times, ref layers } => {
                if times == 0 || layers.is_empty() {
                    return Err(self.error(
                        "repeat",
                        "needs times ≥ 1 and a non-empty layers list".into(),
                    ));
                }
                let at = self.path.pop().unwrap_or_default();
                for t in 1..=times {
                    self.path.push(format!("{at} (time {t} of {times})"));
                    self.list(layers, "layers", 0)?;
                    self.path.pop();
                }
                self.path.push(at);
                Ok(())
            }
        }
    }

    fn linear(&mut self, outputs: Width, inputs: Option<usize>) -> Result<()> {
        let (features, tokens) = if self.sequence() {
            (self.shape.channels, self.shape.spatial())
        } else {
            (self.shape.len(), 1)
        };
        let outputs = match outputs {
            Width::Count(n) => n,
            Width::Classes => self.model.classes,
        };
        let what = LayerKind::Linear {
            inputs: inputs.unwrap_or(features),
            outputs,
            tokens,
        }
        .describe();
        if outputs == 0 {
            return Err(self.error(&what, "needs at least 1 output".into()));
        }
        if inputs.is_some_and(|n| n != features) {
            return Err(self.mismatch(&what, format!("{} features", inputs.unwrap_or(0))));
        }
        let flat_order = self.shape.channels == 1 || self.shape.spatial() == 1;
        if !flat_order && self.current != 0 && !self.sequence() {
            return Err(self.mismatch(&what, "flat features (put `flatten` before it)".into()));
        }
        let off = self.param("weight", vec![outputs, features]);
        self.param("bias", vec![outputs]);
        let kind = LayerKind::Linear {
            inputs: features,
            outputs,
            tokens,
        };
        let shape = if self.sequence() {
            Shape::image(tokens, 1, outputs)
        } else {
            Shape::flat(outputs)
        };
        self.push(kind, shape, off, 0);
        Ok(())
    }

    fn layernorm(&mut self) -> Result<()> {
        let (features, tokens) = if self.sequence() {
            (self.shape.channels, self.shape.spatial())
        } else if self.shape.spatial() == 1 {
            (self.shape.channels, 1)
        } else {
            return Err(self.mismatch("LayerNorm", "tokens or flat features".into()));
        };
        let off = self.param("weight", vec![features]);
        self.param("bias", vec![features]);
        let shape = self.shape;
        self.push(LayerKind::LayerNorm { features, tokens }, shape, off, 0);
        Ok(())
    }

    /// The `qkv` Linear, the attention and the `proj` Linear.
    fn attention(&mut self, heads: usize) -> Result<()> {
        let what = format!("Attention {heads} heads");
        let (features, tokens) = self.tokens(&what)?;
        let head_dim = features.checked_div(heads).unwrap_or(0);
        if heads == 0 || head_dim * heads != features || head_dim > MAX_HEAD_DIM {
            return Err(self.error(
                &what,
                format!(
                    "needs the {features} features to split into heads of at most {MAX_HEAD_DIM}"
                ),
            ));
        }
        if tokens > MAX_TOKENS {
            return Err(self.mismatch(&what, format!("at most {MAX_TOKENS} tokens")));
        }
        self.linear(Width::Count(3 * features), None)?;
        let kind = LayerKind::Attention {
            features,
            tokens,
            heads,
        };
        self.push(kind, Shape::image(tokens, 1, features), 0, 0);
        self.linear(Width::Count(features), None)
    }

    fn conv(&mut self, spec: ConvSpec) -> Result<()> {
        let ConvSpec {
            outputs,
            kernel,
            stride,
            padding,
            bias,
            channels,
        } = spec;
        let declared = channels.unwrap_or(self.shape.channels);
        let window = Window {
            input: Shape {
                channels: declared,
                ..self.shape
            },
            kernel: (kernel, kernel),
            stride,
            padding,
        };
        let kind = LayerKind::Conv {
            window,
            outputs,
            bias,
        };
        let what = kind.describe();
        self.image_only(&what)?;
        if outputs == 0 || kernel == 0 || stride == 0 {
            return Err(self.error(&what, "needs outputs, kernel and stride ≥ 1".into()));
        }
        let fits =
            self.shape.height + 2 * padding >= kernel && self.shape.width + 2 * padding >= kernel;
        if self.shape.channels != declared || !fits {
            return Err(self.mismatch(
                &what,
                format!(
                    "{declared} channels of at least {kernel}×{kernel} (with padding {padding})"
                ),
            ));
        }
        let off = self.param("weight", vec![outputs, declared, kernel, kernel]);
        if bias {
            self.param("bias", vec![outputs]);
        }
        let (h, w) = window.out_hw();
        self.push(kind, Shape::image(h, w, outputs), off, 0);
        Ok(())
    }

    fn batchnorm(&mut self) {
        let (features, spatial) = (self.shape.channels, self.shape.spatial());
        let layer = self.model.layers.len();
        let off = self.param("weight", vec![features]);
        self.param("bias", vec![features]);
        let state = &mut self.model.state;
        let state_off = state.push(format!("{layer}.running_mean"), vec![features]);
        state.push(format!("{layer}.running_var"), vec![features]);
        state.reserve(2 * features);
        let shape = self.shape;
        self.push(
            LayerKind::BatchNorm { features, spatial },
            shape,
            off,
            state_off,
        );
    }

    fn pool(&mut self, spec: PoolSpec, max: bool) -> Result<()> {
        let PoolSpec {
            kernel,
            stride,
            padding,
        } = spec;
        let window = Window {
            input: self.shape,
            kernel: (kernel, kernel),
            stride: stride.unwrap_or(kernel),
            padding,
        };
        let kind = if max {
            LayerKind::MaxPool { window }
        } else {
            LayerKind::AvgPool { window }
        };
        let what = kind.describe();
        self.image_only(&what)?;
        if kernel == 0 || window.stride == 0 || 2 * padding > kernel {
            return Err(self.error(
                &what,
                "needs kernel and stride ≥ 1 and padding ≤ kernel / 2".into(),
            ));
        }
        if self.shape.height + 2 * padding < kernel || self.shape.width + 2 * padding < kernel {
            return Err(self.mismatch(
                &what,
                format!("an image of at least {kernel}×{kernel} (with padding {padding})"),
            ));
        }
        let (h, w) = window.out_hw();
        self.push(kind, Shape::image(h, w, self.shape.channels), 0, 0);
        Ok(())
    }

    fn residual(
        &mut self,
        body: &[LayerSpec],
        shortcut_from: usize,
        shortcut: &[LayerSpec],
    ) -> Result<()> {
        if body.is_empty() || shortcut_from > body.len() {
            return Err(self.error(
                "residual",
                format!(
                    "needs a non-empty body and shortcut_from ≤ its {} layers",
                    body.len()
                ),
            ));
        }
        if shortcut_from > 0 && shortcut.is_empty() {
            return Err(self.error(
                "residual",
                "has shortcut_from but no shortcut layers".into(),
            ));
        }
        let block_input = self.current;
        self.list(&body[..shortcut_from], "body", 0)?;
        let branch = self.current;
        self.list(&body[shortcut_from..], "body", shortcut_from)?;
        let main = self.current;
        let other = if shortcut.is_empty() {
            block_input
        } else {
            self.branch_from(branch);
            self.list(shortcut, "shortcut", 0)?;
            self.current
        };
        self.branch_from(main);
        let features = self.shape.len();
        let kind = LayerKind::Add { features, other };
        let other_shape = self.shape_of(other);
        if other_shape != self.shape {
            return Err(self.error(
                &kind.describe(),
                format!(
                    "adds the body's {} and the shortcut's {other_shape}",
                    self.shape
                ),
            ));
        }
        let shape = self.shape;
        self.push(kind, shape, 0, 0);
        Ok(())
    }
}

/// `list` as a TOML array, one layer per line, nested lists indented: valid TOML 1.0
/// (newlines only inside arrays).
pub fn to_toml(list: &[LayerSpec]) -> String {
    let mut out = String::new();
    write_list(&mut out, list, 0);
    out
}

fn write_list(out: &mut String, list: &[LayerSpec], depth: usize) {
    let indent = "    ".repeat(depth + 1);
    out.push_str("[\n");
    for spec in list {
        out.push_str(&indent);
        write_spec(out, spec, depth + 1);
        out.push_str(",\n");
    }
    out.push_str(&"    ".repeat(depth));
    out.push(']');
}

fn write_spec(out: &mut String, spec: &LayerSpec, depth: usize) {
    let fields: Vec<(&str, String)> = match spec {
        LayerSpec::Batchnorm
        | LayerSpec::Relu
        | LayerSpec::Gelu
        | LayerSpec::GlobalAvgPool
        | LayerSpec::Flatten
        | LayerSpec::ClassToken
        | LayerSpec::PositionEmbedding
        | LayerSpec::Layernorm
        | LayerSpec::TakeClassToken => {
            out.push_str(&format!("\"{}\"", spec.name()));
            return;
        }
        LayerSpec::Dropout { p } => vec![("p", format!("{p:?}"))],
        LayerSpec::PatchEmbed { outputs, patch } => vec![
            ("outputs", outputs.to_string()),
            ("patch", patch.to_string()),
        ],
        LayerSpec::Attention { heads } => vec![("heads", heads.to_string())],
        LayerSpec::Linear { outputs, inputs } => {
            let mut f = vec![(
                "outputs",
                match outputs {
                    Width::Count(n) => n.to_string(),
                    Width::Classes => "\"classes\"".into(),
                },
            )];
            f.extend(inputs.map(|n| ("inputs", n.to_string())));
            f
        }
        LayerSpec::Conv(c) => {
            let mut f = vec![
                ("outputs", c.outputs.to_string()),
                ("kernel", c.kernel.to_string()),
                ("stride", c.stride.to_string()),
                ("padding", c.padding.to_string()),
                ("bias", c.bias.to_string()),
            ];
            f.extend(c.channels.map(|n| ("channels", n.to_string())));
            f
        }
        LayerSpec::MaxPool(p) | LayerSpec::AvgPool(p) => {
            let mut f = vec![("kernel", p.kernel.to_string())];
            f.extend(p.stride.map(|n| ("stride", n.to_string())));
            if p.padding > 0 {
                f.push(("padding", p.padding.to_string()));
            }
            f
        }
        LayerSpec::Residual {
            body,
            shortcut_from,
            shortcut,
        } => {
            let mut f = vec![("body", nested(body, depth))];
            if *shortcut_from > 0 {
                f.push(("shortcut_from", shortcut_from.to_string()));
            }
            if !shortcut.is_empty() {
                f.push(("shortcut", nested(shortcut, depth)));
            }
            f
        }
        LayerSpec::Repeat { times, layers } => {
            vec![
                ("times", times.to_string()),
                ("layers", nested(layers, depth)),
            ]
        }
    };
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    out.push_str(&format!(
        "{{ {} = {{ {} }} }}",
        spec.name(),
        fields.join(", ")
    ));
}

fn nested(list: &[LayerSpec], depth: usize) -> String {
    let mut s = String::new();
    write_list(&mut s, list, depth);
    s
}
