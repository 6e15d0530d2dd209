//! Which network to build: `[model]` of a config. A built-in architecture (`mlp`,
//! `cnn`, `resnet`) with its few numbers, or `layers`, a list written out; the
//! built-ins are turned into their lists here, and every list is built by
//! [`super::spec::build`].

use super::model::{Init, Model, Shape};
use super::names::Names;
use super::spec::{ConvSpec, LayerSpec, PoolSpec, Width};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which network family to build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Linear → (BatchNorm) → ReLU per hidden width, then a Linear head.
    #[default]
    Mlp,
    /// Two conv–BN–ReLU–max-pool stages for 28 × 28 grey images, then 3136 → 256 → classes.
    Cnn,
    /// Pre-activation ResNet (depth 6n + 2) for 32 × 32 images.
    Resnet,
    /// The list in `[model] layers`.
    Layers,
}

impl Arch {
    /// The name a config writes.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "mlp",
            Arch::Cnn => "cnn",
            Arch::Resnet => "resnet",
            Arch::Layers => "layers",
        }
    }
}

/// The network to build. Input shape and `classes` come from the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    /// MLP: widths of the hidden layers.
    pub hidden: Vec<usize>,
    /// MLP: BatchNorm after every hidden Linear.
    pub batchnorm: bool,
    /// ResNet: depth 6n + 2 (8, 14, 20, 32, …).
    pub depth: usize,
    /// ResNet: channels of the first stage (doubled at each of the next two).
    pub width: usize,
    /// Layers: the network as a list (see [`super::spec::LayerSpec`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<super::spec::LayerSpec>,
    /// How the weights start (`pytorch`, `fan-out`, `fan-in-zero-linear`, `vit`).
    #[serde(skip_serializing_if = "is_pytorch")]
    pub init: Init,
    /// The tensors' names (`index`, `torchvision-resnet`, `timm-vit`, `twa-vgg`,
    /// `twa-preresnet`, `twa-wide-resnet`).
    #[serde(skip_serializing_if = "is_index")]
    pub names: Names,
}

fn is_index(names: &Names) -> bool {
    *names == Names::Index
}

fn is_pytorch(init: &Init) -> bool {
    *init == Init::Pytorch
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            arch: Arch::Mlp,
            hidden: vec![256, 256],
            batchnorm: true,
            depth: 20,
            width: 16,
            layers: Vec::new(),
            init: Init::Pytorch,
            names: Names::Index,
        }
    }
}

impl Model {
    /// The model `config` describes for samples of shape `input` and `classes`
    /// classes; an error names the first layer whose input does not fit.
    pub fn build(config: &ModelConfig, input: Shape, classes: usize) -> Result<Model> {
        let model = super::spec::build(config.arch.name(), &config.layer_list()?, input, classes)?;
        let model = Model {
            init: config.init,
            ..model
        };
        super::names::rename(model, config.names)
    }

    /// An MLP for `inputs` features and `classes` classes.
    pub fn mlp(config: &ModelConfig, inputs: usize, classes: usize) -> Model {
        let config = ModelConfig {
            arch: Arch::Mlp,
            ..config.clone()
        };
        Model::build(&config, Shape::flat(inputs), classes)
            .expect("an MLP chains for any input width")
    }
}

/// The `[model]` section of a shipped preset (`assets/presets/NAME.toml`), read here
/// so that this layer's tests need nothing from the run layer above it.
#[cfg(test)]
pub(crate) fn preset_model(name: &str) -> ModelConfig {
    #[derive(Deserialize)]
    struct File {
        model: ModelConfig,
    }
    let path = format!("{}/assets/presets/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("a shipped preset");
    toml::from_str::<File>(&text).expect("a valid preset").model
}

impl ModelConfig {
    /// The network as a layer list: `layers` itself, or the built-in architecture's.
    pub fn layer_list(&self) -> Result<Vec<LayerSpec>> {
        if self.arch != Arch::Layers && !self.layers.is_empty() {
            return Err(Error::Config(format!(
                "model.layers is read with arch = \"layers\" only (arch is \"{}\")",
                self.arch.name()
            )));
        }
        match self.arch {
            Arch::Layers if self.layers.is_empty() => Err(Error::Config(
                "arch = \"layers\" needs a non-empty model.layers list".into(),
            )),
            Arch::Layers => Ok(self.layers.clone()),
            Arch::Mlp => mlp(&self.hidden, self.batchnorm),
            Arch::Cnn => Ok(cnn()),
            Arch::Resnet => resnet(self.depth, self.width),
        }
    }
}

fn linear(outputs: Width, inputs: Option<usize>) -> LayerSpec {
    LayerSpec::Linear { outputs, inputs }
}

/// A bias-free square convolution's settings.
fn conv_spec(outputs: usize, kernel: usize, stride: usize, padding: usize) -> ConvSpec {
    ConvSpec {
        outputs,
        kernel,
        stride,
        padding,
        bias: false,
        channels: None,
    }
}

/// A bias-free square convolution.
fn conv(outputs: usize, kernel: usize, stride: usize, padding: usize) -> LayerSpec {
    LayerSpec::Conv(conv_spec(outputs, kernel, stride, padding))
}

/// Linear → (BatchNorm) → ReLU per hidden width, then a Linear to the classes.
fn mlp(hidden: &[usize], batchnorm: bool) -> Result<Vec<LayerSpec>> {
    if hidden.contains(&0) {
        return Err(Error::Config("hidden widths must be at least 1".into()));
    }
    let mut list = Vec::new();
    for &h in hidden {
        list.push(linear(Width::Count(h), None));
        if batchnorm {
            list.push(LayerSpec::Batchnorm);
        }
        list.push(LayerSpec::Relu);
    }
    list.push(linear(Width::Classes, None));
    Ok(list)
}

/// The `cnn` of the conv-nets issue, as PyTorch would declare it: Conv2d(1, 32, 3,
/// padding 1) → BN → ReLU → MaxPool(2) → Conv2d(32, 64, 3, padding 1) → BN → ReLU →
/// MaxPool(2) → Flatten → Linear(3136, 256) → BN → ReLU → Linear(256, classes).
fn cnn() -> Vec<LayerSpec> {
    let stage = |channels, outputs| {
        [
            LayerSpec::Conv(ConvSpec {
                channels: Some(channels),
                ..conv_spec(outputs, 3, 1, 1)
            }),
            LayerSpec::Batchnorm,
            LayerSpec::Relu,
            LayerSpec::MaxPool(PoolSpec {
                kernel: 2,
                stride: None,
                padding: 0,
            }),
        ]
    };
    let mut list = Vec::from(stage(1, 32));
    list.extend(stage(32, 64));
    list.extend([
        LayerSpec::Flatten,
        linear(Width::Count(256), Some(3136)),
        LayerSpec::Batchnorm,
        LayerSpec::Relu,
        linear(Width::Classes, Some(256)),
    ]);
    list
}

/// Pre-activation ResNet-(6n + 2): conv 3×3 → `width`, three stages of n blocks
/// (`width`, 2·`width`, 4·`width` channels, stride 2 into the last two; BN → ReLU →
/// conv → BN → ReLU → conv, with a 1×1 conv of the pre-activation as the shortcut
/// where the shape changes), BN → ReLU → global average pool → Linear.
fn resnet(depth: usize, width: usize) -> Result<Vec<LayerSpec>> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) || width == 0 {
        return Err(Error::Config(format!(
            "resnet depth must be 6n + 2 with n ≥ 1 (8, 14, 20, …) and width ≥ 1; got depth {depth} width {width}"
        )));
    }
    let blocks = (depth - 2) / 6;
    let block = |outputs, stride, projection: bool| LayerSpec::Residual {
        body: vec![
            LayerSpec::Batchnorm,
            LayerSpec::Relu,
            conv(outputs, 3, stride, 1),
            LayerSpec::Batchnorm,
            LayerSpec::Relu,
            conv(outputs, 3, 1, 1),
        ],
        shortcut_from: if projection { 2 } else { 0 },
        shortcut: if projection {
            vec![conv(outputs, 1, stride, 0)]
        } else {
            Vec::new()
        },
    };
    let mut list = vec![conv(width, 3, 1, 1)];
    for stage in 0..3 {
        let outputs = width << stage;
        let rest = if stage == 0 {
            blocks
        } else {
            list.push(block(outputs, 2, true));
            blocks - 1
        };
        if rest > 0 {
            list.push(LayerSpec::Repeat {
                times: rest,
                layers: vec![block(outputs, 1, false)],
            });
        }
    }
    list.extend([
        LayerSpec::Batchnorm,
        LayerSpec::Relu,
        LayerSpec::GlobalAvgPool,
        linear(Width::Classes, None),
    ]);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::model::LayerKind;

    #[test]
    fn cnn_shapes_chain_on_28x28_and_name_the_layer_otherwise() {
        let config = ModelConfig {
            arch: Arch::Cnn,
            ..Default::default()
        };
        let m = Model::build(&config, Shape::image(28, 28, 1), 10).unwrap();
        assert_eq!(m.layers.len(), 13);
        assert_eq!(m.act_shape(8), Shape::image(7, 7, 64));
        assert_eq!(m.params.entries[0].shape, vec![32, 1, 3, 3]);
        let err = Model::build(&config, Shape::image(32, 32, 1), 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 9 (Linear 3136→256)") && err.contains("4096 features"),
            "{err}"
        );
        let err = Model::build(&config, Shape::image(32, 32, 3), 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 0 (Conv2d 1→32") && err.contains("32×32×3"),
            "{err}"
        );
    }

    #[test]
    fn resnet_blocks_add_matching_shapes() {
        let config = ModelConfig {
            arch: Arch::Resnet,
            depth: 8,
            ..Default::default()
        };
        let m = Model::build(&config, Shape::image(32, 32, 3), 10).unwrap();
        let adds: Vec<_> = m
            .layers
            .iter()
            .filter(|l| matches!(l.kind, LayerKind::Add { .. }))
            .collect();
        assert_eq!(adds.len(), 3);
        assert_eq!(m.layers.last().unwrap().output, Shape::flat(10));
        assert_eq!(adds[2].output, Shape::image(8, 8, 64));
        // ResNet-20 on CIFAR-10 has about 0.27 M parameters.
        let r20 = Model::build(
            &ModelConfig {
                depth: 20,
                ..config.clone()
            },
            Shape::image(32, 32, 3),
            10,
        )
        .unwrap();
        assert!(
            (260_000..280_000).contains(&r20.num_params()),
            "{}",
            r20.num_params()
        );
        let bad = ModelConfig { depth: 9, ..config };
        assert!(Model::build(&bad, Shape::image(32, 32, 3), 10).is_err());
    }

    fn parse(list: &str) -> std::result::Result<ModelConfig, toml::de::Error> {
        toml::from_str(&format!("arch = \"layers\"\nlayers = {list}\n"))
    }

    fn build_error(list: &str, input: Shape) -> String {
        Model::build(&parse(list).unwrap(), input, 10)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_error_names_the_layer_its_kind_and_where_it_is_in_the_list() {
        let image = Shape::image(28, 28, 1);
        let err = build_error(
            r#"["flatten", { linear = { outputs = 10, inputs = 100 } }]"#,
            image,
        );
        assert!(
            err.ends_with(
                "model layers: layer 1 (Linear 100→10) expects 100 features but gets 784 \
                 features (at layers[1])"
            ),
            "{err}"
        );
        let err = build_error(
            r#"[{ repeat = { times = 2, layers = [
                { residual = { body = [{ conv = { outputs = 4, kernel = 3, padding = 1 } }] } },
            ] } }, "global_avg_pool", { linear = { outputs = "classes" } }]"#,
            image,
        );
        assert!(
            err.contains("model layers: layer 1 (Add (activation 0)) adds the body's 28×28×4 and the shortcut's 28×28×1")
                && err.ends_with("(at layers[0] (time 1 of 2).layers[0])"),
            "{err}"
        );
        let err = build_error(
            r#"[{ conv = { outputs = 4, kernel = 3 } }, { linear = { outputs = 10 } }]"#,
            image,
        );
        assert!(err.contains("layer 1 (Linear 2704→10) expects flat features (put `flatten` before it) but gets 26×26×4"), "{err}");
        let err = build_error(r#"[{ max_pool = { kernel = 30 } }]"#, image);
        assert!(
            err.contains(
                "layer 0 (MaxPool 30) expects an image of at least 30×30 (with padding 0)"
            ),
            "{err}"
        );
        let err = build_error(r#"[{ conv = { outputs = 4, kernel = 0 } }]"#, image);
        assert!(
            err.contains("needs outputs, kernel and stride ≥ 1"),
            "{err}"
        );
        let err = build_error(r#"["flatten", { linear = { outputs = 7 } }]"#, image);
        assert!(
            err.contains("the last layer gives 7 features but the data has 10 classes"),
            "{err}"
        );
    }

    #[test]
    fn token_layers_need_a_sequence_and_image_layers_refuse_one() {
        let image = Shape::image(8, 8, 3);
        let err = build_error(r#"[{ attention = { heads = 2 } }]"#, image);
        assert!(
            err.contains("layer 0 (Attention 2 heads) expects a token sequence (after `patch_embed`) but gets 8×8×3"),
            "{err}"
        );
        let err = build_error(
            r#"[{ patch_embed = { outputs = 6, patch = 2 } }, { conv = { outputs = 4, kernel = 1 } }]"#,
            image,
        );
        assert!(
            err.contains("layer 1 (Conv2d 6→4 1×1 stride 1) expects an image but gets 16 tokens of 6 features"),
            "{err}"
        );
        let err = build_error(
            r#"[{ patch_embed = { outputs = 6, patch = 2 } }, { attention = { heads = 4 } }]"#,
            image,
        );
        assert!(
            err.contains("needs the 6 features to split into heads of at most 128"),
            "{err}"
        );
        // Linear acts on each token; the class token adds one; taking it ends the
        // sequence.
        let config = parse(
            r#"[{ patch_embed = { outputs = 6, patch = 2 } }, "class_token",
                "position_embedding", { linear = { outputs = 5 } }, "layernorm",
                "take_class_token", { linear = { outputs = "classes" } }]"#,
        )
        .unwrap();
        let model = Model::build(&config, image, 10).unwrap();
        assert_eq!(model.act_shape(2), Shape::image(17, 1, 6));
        assert_eq!(model.act_shape(4), Shape::image(17, 1, 5));
        assert_eq!(model.act_shape(6), Shape::flat(5));
        let names: Vec<_> = model
            .params
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "0.weight",
                "0.bias",
                "1.cls_token",
                "2.pos_embed",
                "3.weight",
                "3.bias",
                "4.weight",
                "4.bias",
                "6.weight",
                "6.bias"
            ]
        );
        assert_eq!(
            model.num_params(),
            12 * 6 + 6 + 6 + 17 * 6 + 6 * 5 + 5 + 10 + 5 * 10 + 10
        );
    }

    #[test]
    fn weights_start_as_the_reference_code_initialises_them() {
        use crate::nn::model::LayerKind;
        // (mean, standard deviation, largest magnitude) of a slice.
        let stats = |v: &[f32]| {
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            let max = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
            (mean, var.sqrt(), max)
        };
        let preset = |name: &str, classes| {
            let config = preset_model(name);
            let model = Model::build(&config, Shape::image(32, 32, 3), classes).unwrap();
            let w = model.init_params(3);
            (model, w)
        };
        // VGG16-BN: N(0, 2/(3·3·out)) convolutions with zero biases, BatchNorm 1 and 0.
        let (model, w) = preset("vgg16-bn", 10);
        let conv = &model.layers[3];
        assert!(matches!(conv.kind, LayerKind::Conv { outputs: 64, .. }));
        let weights = 64 * 64 * 9;
        let (mean, std, _) = stats(&w[conv.param_off..conv.param_off + weights]);
        let want = (2.0f64 / (9.0 * 64.0)).sqrt();
        assert!(
            mean.abs() < 0.1 * want && (std / want - 1.0).abs() < 0.03,
            "{std} vs {want}"
        );
        assert!(w[conv.param_off + weights..conv.param_off + weights + 64]
            .iter()
            .all(|&b| b == 0.0));
        let bn = &model.layers[1];
        assert!(w[bn.param_off..bn.param_off + 64].iter().all(|&g| g == 1.0));
        // WRN-28-10: N(0, 2/fan_in) convolutions; the classifier starts at zero.
        let (model, w) = preset("wrn-28-10", 100);
        let conv = &model.layers[0];
        let (_, std, _) = stats(&w[conv.param_off..conv.param_off + 16 * 27]);
        let want = (2.0f64 / 27.0).sqrt();
        assert!((std / want - 1.0).abs() < 0.15, "{std} vs {want}");
        let head = model.layers.last().unwrap();
        assert!(w[head.param_off..].iter().all(|&v| v == 0.0));
        // The ViT: Linear N(0, 0.02²) with zero biases; the patch embedding as PyTorch.
        let (model, w) = preset("vit", 100);
        let qkv = model
            .layers
            .iter()
            .find(|l| matches!(l.kind, LayerKind::Linear { outputs: 576, .. }))
            .unwrap();
        let (_, std, _) = stats(&w[qkv.param_off..qkv.param_off + 192 * 576]);
        assert!((std / 0.02 - 1.0).abs() < 0.02, "{std}");
        let bias = qkv.param_off + 192 * 576;
        assert!(w[bias..bias + 576].iter().all(|&b| b == 0.0));
        let (_, _, max) = stats(&w[0..48 * 192]);
        assert!(max <= 1.0 / 48f64.sqrt());
    }

    #[test]
    fn a_list_is_read_strictly() {
        let err = parse(r#"[{ conv = { outputs = 4, kernal = 3 } }]"#).unwrap_err();
        assert!(err.to_string().contains("kernal"), "{err}");
        let err = parse(r#"["softmax"]"#).unwrap_err();
        assert!(err.to_string().contains("softmax"), "{err}");
        let err = parse(r#"[{ linear = { outputs = "all" } }]"#).unwrap_err();
        assert!(
            err.to_string().contains("expected a count or \"classes\""),
            "{err}"
        );
        let err = parse(r#"[{ linear = { outputs = -3 } }]"#).unwrap_err();
        assert!(err.to_string().contains("-3 is negative"), "{err}");
        // A list beside a built-in architecture, or none with arch = "layers".
        let config = ModelConfig {
            layers: vec![LayerSpec::Relu],
            ..ModelConfig::default()
        };
        let err = config.layer_list().unwrap_err().to_string();
        assert!(
            err.contains("arch = \"layers\" only (arch is \"mlp\")"),
            "{err}"
        );
        let config = ModelConfig {
            arch: Arch::Layers,
            ..ModelConfig::default()
        };
        assert!(config.layer_list().is_err());
    }

    #[test]
    fn classes_and_declared_inputs_fill_in() {
        let config = parse(
            r#"[{ linear = { outputs = 5, inputs = 12 } }, "relu", { linear = { outputs = "classes" } }]"#,
        )
        .unwrap();
        let model = Model::build(&config, Shape::image(2, 2, 3), 3).unwrap();
        let names: Vec<_> = model
            .params
            .entries
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
        assert_eq!(model.num_params(), 12 * 5 + 5 + 5 * 3 + 3);
        assert_eq!(model.layers[2].output, Shape::flat(3));
    }
}
