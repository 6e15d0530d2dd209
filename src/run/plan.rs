//! `twa plan`: what a run needs per device before anything runs — parameters,
//! gradients, momentum, activations at the batch size, the TWA subspace's share at b
//! bits over R ranks — and the bytes each rank exchanges per step, for the presets and
//! for the paper's models (their presets' networks at the paper's input sizes), every
//! size counted from the built model.

use super::config::RunConfig;
use crate::error::{Error, Result};
use crate::nn::model::{LayerKind, Model, Shape};
use serde::Serialize;

/// A network's sizes: trainable parameters, values per sample of every activation
/// (the input and each layer's output, kept for the backward pass) and of the
/// gradient buffers, and the largest im2col buffer per sample; and for the storage-binding limit, the widest single
/// activation per sample and the most parameters of one layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sizes {
    pub params: usize,
    pub activations: usize,
    /// The buffers that hold the activations' gradients during backward (shared where
    /// their lifetimes do not overlap).
    pub gradients: usize,
    pub im2col: usize,
    pub widest: usize,
    pub largest_layer: usize,
}

impl Sizes {
    /// What of a run at `batch` per rank with `bits`-bit TWA directions exceeds one
    /// storage binding of `binding` bytes, and what the engine does about it: stores
    /// bound a layer's window at a time, or buffers it refuses.
    pub fn beyond_binding(&self, batch: usize, bits: u32, binding: u64) -> Vec<String> {
        let over = |words: usize| words as u64 * 4 > binding;
        let mut notes = Vec::new();
        if over(self.params) {
            notes.push(
                "parameter, gradient and optimiser stores: bound a layer's window at a time"
                    .to_string(),
            );
            notes.push(if bits == 32 {
                "TWA's orthonormal basis and the vectors it projects: bound a segment of D \
                 at a time (explicit coefficients: refused, they bind the whole model)"
                    .to_string()
            } else {
                format!(
                    "{bits}-bit TWA directions: refused (explicit coefficients bind the whole \
                     model); 32-bit orthonormal TWA is cut into segments"
                )
            });
        }
        if over(self.largest_layer) {
            notes.push(format!(
                "one layer's {} parameters: refused (more than one binding)",
                self.largest_layer
            ));
        }
        if over(batch * self.widest) {
            let fits = binding as usize / 4 / self.widest.max(1);
            notes.push(format!(
                "an activation at batch {batch}: refused; batch {fits} fits"
            ));
        }
        if over(batch * self.im2col) {
            let per = (binding as usize / 4 / self.im2col.max(1)).max(1);
            notes.push(format!(
                "the largest im2col matrix: taken {per} sample{} at a time",
                if per == 1 { "" } else { "s" }
            ));
        }
        notes
    }
}

/// A model of the paper for `twa plan --model`: its preset, what it is, and the
/// image side and classes of the paper's data for it.
struct PaperModel {
    preset: &'static str,
    label: &'static str,
    side: usize,
    classes: usize,
}

const fn paper(
    preset: &'static str,
    label: &'static str,
    side: usize,
    classes: usize,
) -> PaperModel {
    PaperModel {
        preset,
        label,
        side,
        classes,
    }
}

const PAPER: [PaperModel; 6] = [
    paper("vgg16-bn", "VGG16-BN, CIFAR-10", 32, 10),
    paper("preresnet-164", "PreResNet-164, CIFAR-100", 32, 100),
    paper("wrn-28-10", "WRN-28-10, CIFAR-100", 32, 100),
    paper("resnet-18", "ResNet-18, ImageNet", 224, 1000),
    paper("resnet-50", "ResNet-50, ImageNet", 224, 1000),
    paper("vit", "ViT (192 wide, 6 blocks), CIFAR-100", 32, 100),
];

/// Names for `twa plan --model`.
pub const PAPER_MODELS: [&str; 6] = [
    PAPER[0].preset,
    PAPER[1].preset,
    PAPER[2].preset,
    PAPER[3].preset,
    PAPER[4].preset,
    PAPER[5].preset,
];

/// A paper model's description and sizes: its preset's network built for the paper's
/// data (colour images of its side).
pub fn paper_model(name: &str) -> Result<(&'static str, Sizes)> {
    let m = PAPER.iter().find(|m| m.preset == name).ok_or_else(|| {
        Error::Config(format!(
            "unknown model `{name}` (known: {})",
            PAPER_MODELS.join(", ")
        ))
    })?;
    let config = RunConfig::preset(name)?;
    let model = Model::build(&config.model, Shape::image(m.side, m.side, 3), m.classes)?;
    Ok((m.label, model_sizes(&model)))
}

/// The sizes of a built model of this engine.
pub fn model_sizes(model: &Model) -> Sizes {
    let mut sizes = Sizes {
        params: model.num_params(),
        activations: crate::nn::network::stored_activations_len(model),
        gradients: crate::nn::network::gradient_pool_len(model),
        im2col: 0,
        widest: model.input.len(),
        largest_layer: 0,
    };
    for layer in &model.layers {
        sizes.widest = sizes.widest.max(layer.outputs());
        sizes.largest_layer = sizes.largest_layer.max(layer.kind.param_len());
        if let LayerKind::Conv { window, .. } = layer.kind {
            let (oh, ow) = window.out_hw();
            let taps = window.input.channels * window.kernel.0 * window.kernel.1;
            sizes.im2col = sizes.im2col.max(oh * ow * taps);
        }
    }
    sizes
}

/// A preset's model, for the input its data presumably has
/// ([`RunConfig::presumed_input`]).
pub fn preset_sizes(config: &RunConfig) -> Result<Sizes> {
    let (input, classes) = config.presumed_input();
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
/// rows, on an adapter binding `binding` bytes at most. Activations count each layer's
/// output, the gradient buffers, and the largest im2col buffer (as many samples as
/// one binding holds), as this engine keeps them. Every product is checked: sizes past
/// what a machine can address are an error, never a wrapped-around number.
pub fn plan(
    model: &str,
    sizes: Sizes,
    batch: usize,
    samples: usize,
    ranks: usize,
    bits: u32,
    binding: u64,
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
    let kept = add(sizes.activations, sizes.gradients)?;
    let sliced = (binding as usize / 4 / sizes.im2col.max(1)).clamp(1, per_rank);
    let im2col = mul(sizes.im2col, sliced)?;
    let activation_bytes = floats(add(mul(per_rank, kept)?, im2col)?)?;
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
        let params = |name| paper_model(name).unwrap().1.params;
        // torchvision's resnet18 and resnet50.
        assert_eq!(params("resnet-18"), 11_689_512);
        assert_eq!(params("resnet-50"), 25_557_032);
        // The TWA code's VGG16BN on CIFAR-10 and PreResNet164 on CIFAR-100.
        assert_eq!(params("vgg16-bn"), 15_253_578);
        assert_eq!(params("preresnet-164"), 1_726_388);
        // Its WideResNet28x10 as the module in force counts it (bias-free
        // convolutions; a downsampling and 4 plain units per stage), CIFAR-100.
        assert_eq!(params("wrn-28-10"), 46_218_164);
        // The ViT, counted by hand: patch embedding 3·4·4·192 + 192, class token 192,
        // position embedding 65·192, 6 blocks of (2 LayerNorms 2·384, qkv
        // 192·576 + 576, proj 192·192 + 192, MLP 192·768 + 768 + 768·192 + 192),
        // LayerNorm 384, head 192·100 + 100.
        let block =
            2 * 384 + (192 * 576 + 576) + (192 * 192 + 192) + (192 * 768 + 768) + (768 * 192 + 192);
        assert_eq!(
            params("vit"),
            9_408 + 192 + 12_480 + 6 * block + 384 + 19_300
        );
        assert_eq!(params("vit"), 2_710_948);
    }

    #[test]
    fn the_plan_says_what_exceeds_one_storage_binding() {
        let binding = 128 << 20;
        let has = |notes: &[String], text: &str| notes.iter().any(|n| n.contains(text));
        let (_, wrn) = paper_model("wrn-28-10").unwrap();
        let notes = wrn.beyond_binding(128, 32, binding);
        assert!(
            has(&notes, "optimiser stores: bound a layer's window"),
            "{notes:?}"
        );
        // A 1440-wide im2col row per pixel of 32×32: 22 samples per binding.
        assert!(
            has(&notes, "im2col matrix: taken 22 samples at a time"),
            "{notes:?}"
        );
        assert!(
            has(
                &notes,
                "orthonormal basis and the vectors it projects: bound a segment"
            ),
            "{notes:?}"
        );
        assert!(!has(&notes, "refused; batch"), "{notes:?}");
        let notes = wrn.beyond_binding(16, 1, binding);
        assert!(has(&notes, "1-bit TWA directions: refused"), "{notes:?}");
        assert_eq!(notes.len(), 2, "{notes:?}");
        // 112×112×64 activations after ResNet-18's stem: 3.2 MB a sample.
        let (_, resnet) = paper_model("resnet-18").unwrap();
        let notes = resnet.beyond_binding(128, 32, binding);
        assert!(
            has(&notes, "an activation at batch 128: refused; batch 41 fits"),
            "{notes:?}"
        );
        let (_, vit) = paper_model("vit").unwrap();
        assert!(vit.beyond_binding(128, 32, binding).is_empty());
    }

    #[test]
    fn a_subspace_share_halves_over_two_ranks_and_bits_divide_it() {
        let sizes = Sizes {
            params: 1000,
            activations: 10,
            ..Sizes::default()
        };
        let one = plan("m", sizes, 128, 50, 1, 32, 128 << 20).unwrap();
        let two = plan("m", sizes, 128, 50, 2, 32, 128 << 20).unwrap();
        assert_eq!(one.subspace_bytes, 50 * 1000 * 4);
        assert_eq!(two.subspace_bytes, 25 * 1000 * 4);
        assert_eq!(one.gradient_exchange_bytes, 0);
        assert_eq!(two.gradient_exchange_bytes, 4000);
        let eight = plan("m", sizes, 128, 50, 1, 8, 128 << 20).unwrap();
        assert_eq!(eight.subspace_bytes, 50 * 250 * 4 + 8 * 50);
        assert_eq!(two.batch_per_rank, 64);
        let err = plan("m", sizes, 128, usize::MAX, 1, 32, 128 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("more bytes than a machine can address"),
            "{err}"
        );
        assert!(plan("m", sizes, usize::MAX, 50, 1, 32, 128 << 20).is_err());
    }
}
