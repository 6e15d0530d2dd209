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
}

/// `model` with its tensors named as `names` says; an error where its layers do not
/// follow that reference network's pattern.
pub fn rename(mut model: Model, names: Names) -> Result<Model> {
    let prefixes = match names {
        Names::Index => return Ok(model),
        Names::TorchvisionResnet => resnet(&model)?,
        Names::TimmVit => vit(&model)?,
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
    // Layers with tensors, cut after each residual sum.
    let mut blocks: Vec<Vec<usize>> = vec![Vec::new()];
    for (i, layer) in model.layers.iter().enumerate() {
        match layer.kind {
            LayerKind::Add { .. } => blocks.push(Vec::new()),
            kind if kind.has_params() => blocks.last_mut().expect("a block").push(i),
            _ => {}
        }
    }
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
    if layers.len() < 5 || (layers.len() - 5) % 6 != 0 {
        return Err(Error::Config(format!(
            "model: `names = \"{what}\"` needs a patch embedding, class token, position embedding, blocks of 6 layers with tensors, a LayerNorm and a head; this model has {} layers with tensors",
            layers.len()
        )));
    }
    let blocks = (layers.len() - 5) / 6;
    let mut names: Vec<(String, fn(&LayerKind) -> bool)> = vec![
        ("patch_embed.proj".into(), |k| {
            matches!(k, LayerKind::Conv { .. })
        }),
        (String::new(), |k| matches!(k, LayerKind::ClassToken { .. })),
        (String::new(), |k| {
            matches!(k, LayerKind::PositionEmbedding { .. })
        }),
    ];
    let norm = |k: &LayerKind| matches!(k, LayerKind::LayerNorm { .. });
    let linear = |k: &LayerKind| matches!(k, LayerKind::Linear { .. });
    for b in 0..blocks {
        for (part, test) in [
            ("norm1", norm as fn(&LayerKind) -> bool),
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
    for (&i, (name, fits)) in layers.iter().zip(names) {
        if !fits(&model.layers[i].kind) {
            return Err(not_like(model, what, i));
        }
        prefixes[i] = Some(name);
    }
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::model::Shape;
    use crate::nn::ModelConfig;

    fn preset(name: &str, input: Shape, classes: usize) -> Result<Model> {
        let config = crate::run::config::RunConfig::preset(name)?.model;
        Model::build(&config, input, classes)
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
        for (name, shape) in [
            ("conv1.weight", vec![64, 3, 7, 7]),
            ("bn1.running_var", vec![64]),
            ("layer1.0.conv1.weight", vec![64, 64, 3, 3]),
            ("layer1.1.bn2.bias", vec![64]),
            ("layer2.0.downsample.0.weight", vec![128, 64, 1, 1]),
            ("layer2.0.downsample.1.running_mean", vec![128]),
            ("layer4.1.conv2.weight", vec![512, 512, 3, 3]),
            ("fc.weight", vec![1000, 512]),
        ] {
            assert!(
                names.contains(&(name.to_string(), shape.clone())),
                "{name} {shape:?}"
            );
        }
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
        for (name, shape) in [
            ("patch_embed.proj.weight", vec![192, 3, 4, 4]),
            ("cls_token", vec![1, 1, 192]),
            ("pos_embed", vec![1, 65, 192]),
            ("blocks.0.attn.qkv.weight", vec![576, 192]),
            ("blocks.5.mlp.fc2.bias", vec![192]),
            ("norm.weight", vec![192]),
            ("head.weight", vec![100, 192]),
        ] {
            assert!(
                names.contains(&(name.to_string(), shape.clone())),
                "{name} {shape:?}"
            );
        }
    }

    #[test]
    fn a_network_that_does_not_fit_the_names_is_refused() {
        let config = ModelConfig {
            names: Names::TimmVit,
            ..crate::run::config::RunConfig::preset("lenet5")
                .unwrap()
                .model
        };
        let err = Model::build(&config, Shape::image(28, 28, 1), 10).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not fit layer 3 (Conv2d 6→16"),
            "{err}"
        );
        let config = ModelConfig {
            names: Names::TorchvisionResnet,
            ..crate::run::config::RunConfig::preset("vit").unwrap().model
        };
        let err = Model::build(&config, Shape::image(32, 32, 3), 10).unwrap_err();
        assert!(err.to_string().contains("does not fit layer"), "{err}");
    }
}
