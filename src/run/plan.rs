//! `twa plan`: what a run needs per device before anything runs — parameters,
//! gradients, momentum, activations at the batch size, the TWA subspace's share at b
//! bits over R ranks — and the bytes each rank exchanges per step, for the presets and
//! for the paper's models, whose sizes are computed here from their architectures.

use super::config::RunConfig;
use crate::error::{Error, Result};
use crate::nn::architecture::Arch;
use crate::nn::model::{LayerKind, Model, Shape};
use serde::Serialize;

/// A network's sizes: trainable parameters, values per sample of every activation
/// (the input and each layer's output, kept for the backward pass), and the largest
/// im2col buffer per sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sizes {
    pub params: usize,
    pub activations: usize,
    pub im2col: usize,
}

/// A residual block's projection shortcut.
struct Shortcut {
    channels: usize,
    stride: usize,
    bias: bool,
    bn: bool,
}

/// Layer-by-layer counting of a network described in code (the paper's models).
struct Counter {
    /// Height, width, channels of the current activation.
    shape: (usize, usize, usize),
    sizes: Sizes,
}

impl Counter {
    fn new(h: usize, w: usize, c: usize) -> Counter {
        Counter {
            shape: (h, w, c),
            sizes: Sizes {
                activations: h * w * c,
                ..Sizes::default()
            },
        }
    }

    fn output(&mut self, shape: (usize, usize, usize)) {
        self.shape = shape;
        self.sizes.activations += shape.0 * shape.1 * shape.2;
    }

    fn conv(&mut self, out: usize, k: usize, stride: usize, pad: usize, bias: bool) {
        let (h, w, c) = self.shape;
        let (oh, ow) = (
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
        );
        self.sizes.params += out * c * k * k + if bias { out } else { 0 };
        self.sizes.im2col = self.sizes.im2col.max(oh * ow * c * k * k);
        self.output((oh, ow, out));
    }

    fn bn(&mut self) {
        self.sizes.params += 2 * self.shape.2;
        self.output(self.shape);
    }

    /// An element-wise layer (ReLU, dropout, a residual addition): same shape, no
    /// parameters.
    fn elementwise(&mut self) {
        self.output(self.shape);
    }

    fn max_pool(&mut self, k: usize, stride: usize, pad: usize) {
        let (h, w, c) = self.shape;
        self.output((
            (h + 2 * pad - k) / stride + 1,
            (w + 2 * pad - k) / stride + 1,
            c,
        ));
    }

    fn global_pool(&mut self) {
        self.output((1, 1, self.shape.2));
    }

    /// A residual block: `branch` from the current activation, the shortcut where
    /// given (a 1×1 convolution to `channels` with `stride`, with a bias if `bias`,
    /// BatchNorm after it if `bn`), then their sum.
    fn residual(&mut self, branch: impl FnOnce(&mut Counter), shortcut: Option<Shortcut>) {
        let input = self.shape;
        branch(self);
        let out = self.shape;
        if let Some(s) = shortcut {
            self.shape = input;
            self.conv(s.channels, 1, s.stride, 0, s.bias);
            if s.bn {
                self.bn();
            }
        }
        self.shape = out;
        self.elementwise();
    }

    fn linear(&mut self, out: usize) {
        let inputs = self.shape.0 * self.shape.1 * self.shape.2;
        self.sizes.params += inputs * out + out;
        self.output((1, 1, out));
    }
}

/// VGG16 with BatchNorm for 32×32 images, as in the SWA/TWA code: 13 conv 3×3 (bias)
/// + BN + ReLU, five max-pools, classifier 512 → 512 → 512 → classes with dropout.
fn vgg16_bn(classes: usize) -> Sizes {
    let mut n = Counter::new(32, 32, 3);
    for stage in [
        &[64, 64][..],
        &[128, 128],
        &[256, 256, 256],
        &[512, 512, 512],
        &[512, 512, 512],
    ] {
        for &channels in stage {
            n.conv(channels, 3, 1, 1, true);
            n.bn();
            n.elementwise();
        }
        n.max_pool(2, 2, 0);
    }
    for _ in 0..2 {
        n.elementwise();
        n.linear(512);
        n.elementwise();
    }
    n.linear(classes);
    n.sizes
}

/// Pre-activation ResNet with bottleneck blocks for 32×32 images (depth 9n + 2, e.g.
/// PreResNet-164: n = 18), as in the SWA/TWA code: 1×1 strided shortcut convolutions.
fn preresnet_bottleneck(depth: usize, classes: usize) -> Sizes {
    let blocks = (depth - 2) / 9;
    let mut n = Counter::new(32, 32, 3);
    n.conv(16, 3, 1, 1, false);
    for (stage, planes) in [16, 32, 64].into_iter().enumerate() {
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let shortcut = (block == 0).then_some(Shortcut {
                channels: 4 * planes,
                stride,
                bias: false,
                bn: false,
            });
            n.residual(
                |n| {
                    n.bn();
                    n.elementwise();
                    n.conv(planes, 1, 1, 0, false);
                    n.bn();
                    n.elementwise();
                    n.conv(planes, 3, stride, 1, false);
                    n.bn();
                    n.elementwise();
                    n.conv(4 * planes, 1, 1, 0, false);
                },
                shortcut,
            );
        }
    }
    n.bn();
    n.elementwise();
    n.global_pool();
    n.linear(classes);
    n.sizes
}

/// Wide ResNet (depth 6n + 4, widening k) for 32×32 images, as in the SWA/TWA code:
/// pre-activation basic blocks with dropout, convolutions with bias, 1×1 shortcuts.
fn wide_resnet(depth: usize, widen: usize, classes: usize) -> Sizes {
    let blocks = (depth - 4) / 6;
    let mut n = Counter::new(32, 32, 3);
    n.conv(16, 3, 1, 1, true);
    for (stage, width) in [16 * widen, 32 * widen, 64 * widen].into_iter().enumerate() {
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let shortcut = (stride != 1 || n.shape.2 != width).then_some(Shortcut {
                channels: width,
                stride,
                bias: true,
                bn: false,
            });
            n.residual(
                |n| {
                    n.bn();
                    n.elementwise();
                    n.conv(width, 3, 1, 1, true);
                    n.elementwise();
                    n.bn();
                    n.elementwise();
                    n.conv(width, 3, stride, 1, true);
                },
                shortcut,
            );
        }
    }
    n.bn();
    n.elementwise();
    n.global_pool();
    n.linear(classes);
    n.sizes
}

/// ResNet-50 for 224×224 ImageNet images (torchvision's v1.5: the stride on the 3×3).
fn resnet50(classes: usize) -> Sizes {
    let mut n = Counter::new(224, 224, 3);
    n.conv(64, 7, 2, 3, false);
    n.bn();
    n.elementwise();
    n.max_pool(3, 2, 1);
    for (stage, (planes, blocks)) in [(64, 3), (128, 4), (256, 6), (512, 3)]
        .into_iter()
        .enumerate()
    {
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let shortcut = (block == 0).then_some(Shortcut {
                channels: 4 * planes,
                stride,
                bias: false,
                bn: true,
            });
            n.residual(
                |n| {
                    n.conv(planes, 1, 1, 0, false);
                    n.bn();
                    n.elementwise();
                    n.conv(planes, 3, stride, 1, false);
                    n.bn();
                    n.elementwise();
                    n.conv(4 * planes, 1, 1, 0, false);
                    n.bn();
                },
                shortcut,
            );
            n.elementwise();
        }
    }
    n.global_pool();
    n.linear(classes);
    n.sizes
}

/// The paper's models `twa plan --model` knows: name, what it is, its sizes.
pub fn paper_model(name: &str) -> Result<(&'static str, Sizes)> {
    Ok(match name {
        "vgg16-bn" => ("VGG16-BN, CIFAR-10", vgg16_bn(10)),
        "preresnet-164" => ("PreResNet-164, CIFAR-100", preresnet_bottleneck(164, 100)),
        "wrn-28-10" => ("WRN-28-10, CIFAR-100", wide_resnet(28, 10, 100)),
        "resnet-50" => ("ResNet-50, ImageNet", resnet50(1000)),
        _ => {
            return Err(Error::Config(format!(
                "unknown model `{name}` (known: {})",
                PAPER_MODELS.join(", ")
            )))
        }
    })
}

/// Names for `twa plan --model`.
pub const PAPER_MODELS: [&str; 4] = ["vgg16-bn", "preresnet-164", "wrn-28-10", "resnet-50"];

/// The sizes of a built model of this engine.
pub fn model_sizes(model: &Model) -> Sizes {
    let mut sizes = Sizes {
        params: model.num_params(),
        activations: model.input.len(),
        im2col: 0,
    };
    for layer in &model.layers {
        sizes.activations += layer.outputs();
        if let LayerKind::Conv { window, .. } = layer.kind {
            let (oh, ow) = window.out_hw();
            let taps = window.input.channels * window.kernel.0 * window.kernel.1;
            sizes.im2col = sizes.im2col.max(oh * ow * taps);
        }
    }
    sizes
}

/// A preset's model, for the input its data has (without reading the data): the
/// generated spirals, CIFAR images for the ResNets, 28×28 images otherwise.
pub fn preset_sizes(config: &RunConfig) -> Result<Sizes> {
    let (input, classes) = match (config.data.generated.as_str(), config.model.arch) {
        ("spirals", _) => (Shape::flat(2), 3),
        (_, Arch::Resnet) => (Shape::image(32, 32, 3), 10),
        _ => (Shape::image(28, 28, 1), 10),
    };
    let classes = config.data.declared_classes().unwrap_or(classes);
    Ok(model_sizes(&Model::build(&config.model, input, classes)?))
}

/// Memory per device and traffic per step of one configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub model: String,
    pub params: usize,
    pub ranks: usize,
    pub batch_per_rank: usize,
    pub samples: usize,
    pub bits: u32,
    /// Bytes on each device.
    pub parameter_bytes: usize,
    pub gradient_bytes: usize,
    pub momentum_bytes: usize,
    pub activation_bytes: usize,
    pub subspace_bytes: usize,
    pub total_bytes: usize,
    /// Bytes each rank sends per step (ring all-reduce: 2(R − 1)/R of the vector):
    /// the gradient, and during TWA the sum of the ranks' projections P_rᵀ(P_r g) (or,
    /// with explicit coefficients, of their parts of the rebuilt parameters): another
    /// D-vector.
    pub gradient_exchange_bytes: usize,
    pub projection_exchange_bytes: usize,
}

/// The plan for `sizes` with `samples` TWA samples stored at `bits` bits, `ranks`
/// ranks sharing a global batch of `batch` and each keeping ⌈n/R⌉ of the subspace's
/// rows. Activations count each layer's output and its gradient, plus the largest
/// im2col buffer, as this engine keeps them. Every product is checked: sizes past
/// what a machine can address are an error, never a wrapped-around number.
pub fn plan(
    model: &str,
    sizes: Sizes,
    batch: usize,
    samples: usize,
    ranks: usize,
    bits: u32,
) -> Result<Plan> {
    let too_large = || {
        Error::Config(format!(
            "{model}: {samples} samples of {} parameters at batch {batch} need more bytes than a machine can address",
            sizes.params
        ))
    };
    let mul = |a: usize, b: usize| a.checked_mul(b).ok_or_else(too_large);
    let add = |a: usize, b: usize| a.checked_add(b).ok_or_else(too_large);
    let d = sizes.params;
    let per_rank = batch.div_ceil(ranks);
    let rows = samples.div_ceil(ranks);
    let floats = |n: usize| mul(4, n);
    let subspace_bytes = if bits == 32 {
        floats(mul(rows, d)?)?
    } else {
        let words = mul(d, bits as usize)?.div_ceil(32);
        add(mul(mul(rows, words)?, 4)?, mul(8, rows)?)?
    };
    let per_sample = add(mul(2, sizes.activations)?, sizes.im2col)?;
    let activation_bytes = floats(mul(per_rank, per_sample)?)?;
    let parameter_bytes = floats(d)?;
    let ring = |bytes: usize| mul(bytes, 2 * (ranks - 1)).map(|b| b / ranks);
    Ok(Plan {
        model: model.to_string(),
        params: d,
        ranks,
        batch_per_rank: per_rank,
        samples,
        bits,
        parameter_bytes,
        gradient_bytes: parameter_bytes,
        momentum_bytes: parameter_bytes,
        activation_bytes,
        subspace_bytes,
        total_bytes: add(
            add(mul(3, parameter_bytes)?, activation_bytes)?,
            subspace_bytes,
        )?,
        gradient_exchange_bytes: ring(parameter_bytes)?,
        projection_exchange_bytes: ring(parameter_bytes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_models_have_their_published_sizes() {
        // torchvision's resnet50: 25,557,032 parameters.
        assert_eq!(resnet50(1000).params, 25_557_032);
        // WRN-28-10 on CIFAR-10: the original's 36,479,194 (36.5 M in the paper) plus
        // the 10,096 convolution biases of the SWA/TWA code; CIFAR-100's classifier
        // adds 90 × 641.
        assert_eq!(wide_resnet(28, 10, 10).params, 36_479_194 + 10_096);
        assert_eq!(
            wide_resnet(28, 10, 100).params,
            36_479_194 + 10_096 + 90 * 641
        );
        // PreResNet-164 on CIFAR-10: 1.70 M; VGG16-BN on CIFAR-10: 15.3 M.
        assert!((1_690_000..1_710_000).contains(&preresnet_bottleneck(164, 10).params));
        assert!((15_200_000..15_300_000).contains(&vgg16_bn(10).params));
    }

    #[test]
    fn a_subspace_share_halves_over_two_ranks_and_bits_divide_it() {
        let sizes = Sizes {
            params: 1000,
            activations: 10,
            im2col: 0,
        };
        let one = plan("m", sizes, 128, 50, 1, 32).unwrap();
        let two = plan("m", sizes, 128, 50, 2, 32).unwrap();
        assert_eq!(one.subspace_bytes, 50 * 1000 * 4);
        assert_eq!(two.subspace_bytes, 25 * 1000 * 4);
        assert_eq!(one.gradient_exchange_bytes, 0);
        assert_eq!(two.gradient_exchange_bytes, 4000);
        let eight = plan("m", sizes, 128, 50, 1, 8).unwrap();
        assert_eq!(eight.subspace_bytes, 50 * 250 * 4 + 8 * 50);
        assert_eq!(two.batch_per_rank, 64);
        let err = plan("m", sizes, 128, usize::MAX, 1, 32)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("more bytes than a machine can address"),
            "{err}"
        );
        assert!(plan("m", sizes, usize::MAX, 50, 1, 32).is_err());
    }
}
