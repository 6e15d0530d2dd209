//! The reference code's tensor names: a built model's parameters and running
//! statistics renamed from layer numbers (`3.weight`, as a flattened `nn.Sequential`)
//! to the names the `state_dict` of the network's reference implementation uses, so
//! that our model files load there with `load_state_dict(strict=True)` and its
//! checkpoints load here by name.

use super::model::{LayerKind, Model};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which names a model's tensors get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Names {
    /// `i.weight`, `i.running_mean`, … by layer number i.
    #[default]
    Index,
    /// torchvision's ResNets: `conv1`, `bn1`, `layerS.B.convK`, `layerS.B.bnK`,
    /// `layerS.B.downsample.0/1`, `fc`.
    TorchvisionResnet,
    /// timm's `VisionTransformer`: `patch_embed.proj`, `cls_token`, `pos_embed`,
    /// `blocks.B.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`, `head`.
    TimmVit,
    /// The TWA code's `VGG` (models/vgg.py): `features.N` before the flatten,
    /// `classifier.N` after it, numbered as its `nn.Sequential`s.
    TwaVgg,
    /// The TWA code's `PreResNet` (models/preresnet.py): `conv1`,
    /// `layerS.B.{bnK, convK, downsample.0}`, `bn`, `fc`.
    TwaPreresnet,
    /// The TWA code's `WideResNet` (models/wide_resnet.py, the class in force):
    /// `f.0_convolution`, `f.S_block.block.U.…`, `f.4_normalization`,
    /// `f.8_classification`.
    TwaWideResnet,
}

/// `model` with its tensors named as `names` says; an error where its layers do not
/// follow that reference network's pattern.
pub fn rename(mut model: Model, names: Names) -> Result<Model> {
    let prefixes = match names {
        Names::Index => return Ok(model),
        Names::TorchvisionResnet => resnet(&model)?,
        Names::TimmVit => vit(&model)?,
        Names::TwaVgg => vgg(&model)?,
        Names::TwaPreresnet => preresnet(&model)?,
        Names::TwaWideResnet => wide_resnet(&model)?,
    };
    for table in [&mut model.params, &mut model.state] {
        for e in &mut table.entries {
            let (layer, suffix) = e.name.split_once('.').expect("`layer.tensor`");
            let layer: usize = layer.parse().expect("a layer number");
            let prefix = prefixes[layer]
                .as_deref()
                .expect("a layer with tensors is named");
            e.name = match (prefix, suffix) {
                ("", suffix) => suffix.to_string(),
                (prefix, suffix) => format!("{prefix}.{suffix}"),
            };
        }
    }
    Ok(model)
}

/// The layers that have tensors, cut after each residual sum: the first part holds
/// the stem and the first block, the last what follows the last sum.
fn residual_blocks(model: &Model) -> Vec<Vec<usize>> {
    let mut blocks: Vec<Vec<usize>> = vec![Vec::new()];
    for (i, layer) in model.layers.iter().enumerate() {
        match layer.kind {
            LayerKind::Add { .. } => blocks.push(Vec::new()),
            kind if kind.has_params() => blocks.last_mut().expect("a block").push(i),
            _ => {}
        }
    }
    blocks
}

/// A name for a layer and the test its kind must pass.
type Named = (String, fn(&LayerKind) -> bool);

/// Names the layers of `layers` with `names` in order, each checked by its test; an
/// error where one does not fit or the counts differ.
fn assign(
    model: &Model,
    what: &str,
    prefixes: &mut [Option<String>],
    layers: &[usize],
    names: Vec<Named>,
) -> Result<()> {
    for (k, &i) in layers.iter().enumerate() {
        match names.get(k) {
            Some((name, fits)) if fits(&model.layers[i].kind) => prefixes[i] = Some(name.clone()),
            _ => return Err(not_like(model, what, i)),
        }
    }
    if names.len() != layers.len() {
        let at = layers.last().copied().unwrap_or(0);
        return Err(not_like(model, what, at));
    }
    Ok(())
}

fn conv(k: &LayerKind) -> bool {
    matches!(k, LayerKind::Conv { .. })
}

fn bn(k: &LayerKind) -> bool {
    matches!(k, LayerKind::BatchNorm { .. })
}

fn linear(k: &LayerKind) -> bool {
    matches!(k, LayerKind::Linear { .. })
}

/// The TWA code's VGG: the Sequential `features` up to the flatten, `classifier` after.
fn vgg(model: &Model) -> Result<Vec<Option<String>>> {
    let flatten = (model.layers.iter())
        .position(|l| matches!(l.kind, LayerKind::Flatten { .. }))
        .ok_or_else(|| Error::Config("model: `names = \"twa-vgg\"` needs a flatten".into()))?;
    let prefixes = (0..model.layers.len())
        .map(|i| match i {
            i if i < flatten => Some(format!("features.{i}")),
            i => Some(format!("classifier.{}", i - flatten - 1)),
        })
        .collect();
    Ok(prefixes)
}

/// The TWA code's PreResNet: the stem `conv1`; blocks of (BatchNorm, conv) pairs, the
/// first of each stage with a 1×1 convolution of the block's input as `downsample.0`;
/// then `bn` and `fc`.
fn preresnet(model: &Model) -> Result<Vec<Option<String>>> {
    let what = "twa-preresnet";
    let mut prefixes = vec![None; model.layers.len()];
    let mut blocks = residual_blocks(model);
    let tail = blocks.pop().unwrap_or_default();
    assign(
        model,
        what,
        &mut prefixes,
        &tail,
        vec![("bn".into(), bn), ("fc".into(), linear)],
    )?;
    let Some(first) = blocks.first_mut().filter(|b| !b.is_empty()) else {
        return Err(not_like(model, what, 0));
    };
    let stem = first.remove(0);
    assign(
        model,
        what,
        &mut prefixes,
        &[stem],
        vec![("conv1".into(), conv)],
    )?;
    let (mut stage, mut index) = (0, 0);
    for block in &blocks {
        let shortcut = block.len() % 2 == 1;
        if shortcut {
            (stage, index) = (stage + 1, 0);
        }
        let at = format!("layer{stage}.{index}");
        let mut names: Vec<Named> = Vec::new();
        for k in 1..=block.len() / 2 {
            names.push((format!("{at}.bn{k}"), bn));
            names.push((format!("{at}.conv{k}"), conv));
        }
        if shortcut {
            names.push((format!("{at}.downsample.0"), conv));
        }
        assign(model, what, &mut prefixes, block, names)?;
        index += 1;
    }
    Ok(prefixes)
}

/// The TWA code's WideResNet: the stem `f.0_convolution`; per stage a
/// `DownsampleUnit` (the block with a shortcut) and `BasicUnit`s; then
/// `f.4_normalization` and `f.8_classification`.
fn wide_resnet(model: &Model) -> Result<Vec<Option<String>>> {
    let what = "twa-wide-resnet";
    let mut prefixes = vec![None; model.layers.len()];
    let mut blocks = residual_blocks(model);
    let tail = blocks.pop().unwrap_or_default();
    let tail_names = vec![
        ("f.4_normalization".into(), bn as fn(&LayerKind) -> bool),
        ("f.8_classification".into(), linear),
    ];
    assign(model, what, &mut prefixes, &tail, tail_names)?;
    let Some(first) = blocks.first_mut().filter(|b| !b.is_empty()) else {
        return Err(not_like(model, what, 0));
    };
    let stem = first.remove(0);
    assign(
        model,
        what,
        &mut prefixes,
        &[stem],
        vec![("f.0_convolution".into(), conv)],
    )?;
    let (mut stage, mut unit) = (0, 0);
    for block in &blocks {
        let downsample = block.len() == 5;
        if downsample {
            (stage, unit) = (stage + 1, 0);
        }
        let at = format!("f.{stage}_block.block.{unit}");
        let names: Vec<Named> = if downsample {
            vec![
                (format!("{at}.norm_act.0_normalization"), bn),
                (format!("{at}.block.0_convolution"), conv),
                (format!("{at}.block.1_normalization"), bn),
                (format!("{at}.block.4_convolution"), conv),
                (format!("{at}.downsample"), conv),
            ]
        } else {
            vec![
                (format!("{at}.block.0_normalization"), bn),
                (format!("{at}.block.2_convolution"), conv),
                (format!("{at}.block.3_normalization"), bn),
                (format!("{at}.block.6_convolution"), conv),
            ]
        };
        assign(model, what, &mut prefixes, block, names)?;
        unit += 1;
    }
    Ok(prefixes)
}

/// The layers that have tensors, in order.
fn with_tensors(model: &Model) -> Vec<usize> {
    (model.layers.iter().enumerate())
        .filter(|(_, l)| l.kind.has_params())
        .map(|(i, _)| i)
        .collect()
}

fn not_like(model: &Model, what: &str, layer: usize) -> Error {
    Error::Config(format!(
        "model: `names = \"{what}\"` does not fit layer {layer} ({})",
        model.layers[layer].kind.describe()
    ))
}

/// torchvision's names: a conv + BatchNorm stem, blocks ending at each residual sum
/// (basic blocks open with a 3×3 convolution, bottlenecks with a 1×1; convolutions past
/// the body's are the downsampling shortcut), a new stage at every block with a
/// shortcut but the first, and the Linear `fc`.
fn resnet(model: &Model) -> Result<Vec<Option<String>>> {
    let what = "torchvision-resnet";
    let mut prefixes = vec![None; model.layers.len()];
    let mut blocks = residual_blocks(model);
    let fc = blocks.pop().unwrap_or_default();
    let stem: Vec<usize> = blocks
        .first_mut()
        .map(|b| b.drain(..2.min(b.len())).collect())
        .unwrap_or_default();
    let kind = |i: usize| model.layers[i].kind;
    let is_conv = |i: usize| matches!(kind(i), LayerKind::Conv { .. });
    let is_bn = |i: usize| matches!(kind(i), LayerKind::BatchNorm { .. });
    match (&stem[..], &fc[..]) {
        (&[c, b], &[f])
            if is_conv(c) && is_bn(b) && matches!(kind(f), LayerKind::Linear { .. }) =>
        {
            prefixes[c] = Some("conv1".into());
            prefixes[b] = Some("bn1".into());
            prefixes[f] = Some("fc".into());
        }
        _ => {
            return Err(not_like(
                model,
                what,
                stem.first().or(fc.first()).copied().unwrap_or(0),
            ))
        }
    }
    let (mut stage, mut index) = (1, 0);
    for (n, block) in blocks.iter().enumerate() {
        let Some(&first) = block.first() else {
            return Err(Error::Config(format!(
                "model: `names = \"{what}\"`: a residual block without layers"
            )));
        };
        let body_convs = match kind(first) {
            LayerKind::Conv { window, .. } if window.kernel.0 == 1 => 3,
            _ => 2,
        };
        let shortcut = block.len() > 2 * body_convs;
        if shortcut && n > 0 {
            (stage, index) = (stage + 1, 0);
        }
        for (k, pair) in block.chunks(2).enumerate() {
            let &[c, b] = pair else {
                return Err(not_like(model, what, pair[0]));
            };
            if !is_conv(c) || !is_bn(b) || k > body_convs {
                return Err(not_like(model, what, c));
            }
            let at = format!("layer{stage}.{index}");
            let (conv, bn) = if k < body_convs {
                (format!("{at}.conv{}", k + 1), format!("{at}.bn{}", k + 1))
            } else {
                (format!("{at}.downsample.0"), format!("{at}.downsample.1"))
            };
            prefixes[c] = Some(conv);
            prefixes[b] = Some(bn);
        }
        index += 1;
    }
    Ok(prefixes)
}

/// timm's names: the patch embedding, class token and position embedding, blocks of
/// (LayerNorm, qkv, proj, LayerNorm, fc1, fc2), the final LayerNorm and the head.
fn vit(model: &Model) -> Result<Vec<Option<String>>> {
    let what = "timm-vit";
    let mut prefixes = vec![None; model.layers.len()];
    let layers = with_tensors(model);
    let blocks = layers.len().saturating_sub(5) / 6;
    let norm: fn(&LayerKind) -> bool = |k| matches!(k, LayerKind::LayerNorm { .. });
    let mut names: Vec<Named> = vec![
        ("patch_embed.proj".into(), conv),
        (String::new(), |k| matches!(k, LayerKind::ClassToken { .. })),
        (String::new(), |k| {
            matches!(k, LayerKind::PositionEmbedding { .. })
        }),
    ];
    for b in 0..blocks {
        for (part, test) in [
            ("norm1", norm),
            ("attn.qkv", linear),
            ("attn.proj", linear),
            ("norm2", norm),
            ("mlp.fc1", linear),
            ("mlp.fc2", linear),
        ] {
            names.push((format!("blocks.{b}.{part}"), test));
        }
    }
    names.push(("norm".into(), norm));
    names.push(("head".into(), linear));
    assign(model, what, &mut prefixes, &layers, names)?;
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::architecture::preset_model;
    use crate::nn::model::Shape;
    use crate::nn::ModelConfig;

    fn preset(name: &str, input: Shape, classes: usize) -> Result<Model> {
        Model::build(&preset_model(name), input, classes)
    }

    /// Asserts that `names` holds each (name, shape).
    fn has(names: &[(String, Vec<usize>)], want: &[(&str, Vec<usize>)]) {
        for (name, shape) in want {
            let entry = (name.to_string(), shape.clone());
            assert!(names.contains(&entry), "{name} {shape:?}");
        }
    }

    fn named(model: &Model) -> Vec<(String, Vec<usize>)> {
        (model.params.entries.iter().chain(&model.state.entries))
            .map(|e| (e.name.clone(), e.shape.clone()))
            .collect()
    }

    /// torchvision's `resnet18().state_dict()` has 122 tensors, 20 of them the
    /// `num_batches_tracked` counters that PyTorch fills in when they are absent; the
    /// names below are from it (checked against torchvision 0.29 with
    /// `load_state_dict(strict=True)`, see docs/networks.md).
    #[test]
    fn resnet_tensors_carry_torchvision_names() {
        let model = preset("resnet-18", Shape::image(224, 224, 3), 1000).unwrap();
        let names = named(&model);
        assert_eq!(names.len(), 122 - 20);
        has(
            &names,
            &[
                ("conv1.weight", vec![64, 3, 7, 7]),
                ("bn1.running_var", vec![64]),
                ("layer1.0.conv1.weight", vec![64, 64, 3, 3]),
                ("layer1.1.bn2.bias", vec![64]),
                ("layer2.0.downsample.0.weight", vec![128, 64, 1, 1]),
                ("layer2.0.downsample.1.running_mean", vec![128]),
                ("layer4.1.conv2.weight", vec![512, 512, 3, 3]),
                ("fc.weight", vec![1000, 512]),
            ],
        );
        // ResNet-50: bottlenecks, the first block's shortcut in stage 1.
        let names = named(&preset("resnet-50", Shape::image(224, 224, 3), 1000).unwrap());
        assert_eq!(names.len(), 320 - 53);
        for name in [
            "layer1.0.downsample.0.weight",
            "layer1.2.conv3.weight",
            "layer3.5.bn3.running_var",
            "layer4.0.downsample.1.weight",
        ] {
            assert!(names.iter().any(|(n, _)| n == name), "{name}");
        }
    }

    #[test]
    fn vit_tensors_carry_timm_names() {
        let names = named(&preset("vit", Shape::image(32, 32, 3), 100).unwrap());
        assert_eq!(names.len(), 4 + 6 * 12 + 4);
        has(
            &names,
            &[
                ("patch_embed.proj.weight", vec![192, 3, 4, 4]),
                ("cls_token", vec![1, 1, 192]),
                ("pos_embed", vec![1, 65, 192]),
                ("blocks.0.attn.qkv.weight", vec![576, 192]),
                ("blocks.5.mlp.fc2.bias", vec![192]),
                ("norm.weight", vec![192]),
                ("head.weight", vec![100, 192]),
            ],
        );
    }

    /// The TWA code's module trees (models/vgg.py, preresnet.py, wide_resnet.py),
    /// checked by hand against them with `load_state_dict(strict=True)`.
    #[test]
    fn the_twa_code_networks_carry_its_names() {
        let image = Shape::image(32, 32, 3);
        let names = named(&preset("vgg16-bn", image, 10).unwrap());
        assert_eq!(names.len(), 13 * 2 + 13 * 4 + 3 * 2);
        has(
            &names,
            &[
                ("features.0.weight", vec![64, 3, 3, 3]),
                ("features.1.running_mean", vec![64]),
                ("features.3.bias", vec![64]),
                ("features.41.weight", vec![512]),
                ("classifier.1.weight", vec![512, 512]),
                ("classifier.6.weight", vec![10, 512]),
            ],
        );
        let names = named(&preset("preresnet-110", image, 100).unwrap());
        has(
            &names,
            &[
                ("conv1.weight", vec![16, 3, 3, 3]),
                ("layer1.0.bn1.weight", vec![16]),
                ("layer1.0.downsample.0.weight", vec![64, 16, 1, 1]),
                ("layer2.0.conv2.weight", vec![32, 32, 3, 3]),
                ("layer3.11.conv3.weight", vec![256, 64, 1, 1]),
                ("bn.running_var", vec![256]),
                ("fc.weight", vec![100, 256]),
            ],
        );
        let names = named(&preset("wrn-28-10", image, 100).unwrap());
        has(
            &names,
            &[
                ("f.0_convolution.weight", vec![16, 3, 3, 3]),
                (
                    "f.1_block.block.0.norm_act.0_normalization.weight",
                    vec![16],
                ),
                ("f.1_block.block.0.downsample.weight", vec![160, 16, 1, 1]),
                (
                    "f.1_block.block.4.block.6_convolution.weight",
                    vec![160, 160, 3, 3],
                ),
                (
                    "f.3_block.block.0.block.1_normalization.running_var",
                    vec![640],
                ),
                ("f.4_normalization.weight", vec![640]),
                ("f.8_classification.weight", vec![100, 640]),
            ],
        );
    }

    #[test]
    fn a_network_that_does_not_fit_the_names_is_refused() {
        let config = ModelConfig {
            names: Names::TimmVit,
            ..preset_model("lenet5")
        };
        let err = Model::build(&config, Shape::image(28, 28, 1), 10).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not fit layer 3 (Conv2d 6→16"),
            "{err}"
        );
        let config = ModelConfig {
            names: Names::TorchvisionResnet,
            ..preset_model("vit")
        };
        let err = Model::build(&config, Shape::image(32, 32, 3), 10).unwrap_err();
        assert!(err.to_string().contains("does not fit layer"), "{err}");
    }
}
