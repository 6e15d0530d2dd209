//! Run configuration as TOML: model, optimisation and data sections, with presets
//! shipped in `assets/presets/` (embedded in the binary) and every default written out.

use crate::error::{Error, Result};
use crate::nn::architecture::Arch;
use crate::nn::model::Shape;
use crate::nn::ModelConfig;
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// An IDX directory (`train-images-idx3-ubyte[.gz]`, ...), a CIFAR binary one, an
    /// image folder (`train/CLASS/*.png|jpg`, `val/` or `test/`), NumPy arrays (a
    /// `.npz` file or a directory of `.npy` files), or CSV tables (`train.csv`,
    /// `test.csv`); empty: the shipped subset.
    pub dir: String,
    /// A data set generated in code instead (`spirals`); empty: read `dir`.
    pub generated: String,
    /// The number of classes; 0: one more than the largest label (CIFAR: 10 or 100).
    pub classes: usize,
    /// CSV tables: the column holding the labels.
    pub label_column: String,
    /// NumPy images stored as [N, C, H, W] (PyTorch's order) instead of [N, H, W, C].
    pub channels_first: bool,
    /// Image folders: resize every image (shorter side, then a centre crop) to this
    /// size; 0: every image must have the first one's size.
    pub image_size: usize,
    /// Image folders: leave out (and count) images that cannot be decoded instead of
    /// stopping at the first.
    pub skip_bad: bool,
    /// Training samples held out as a validation split (stratified by class): SGD
    /// never trains on them, TWA-v trains its coefficients on them, the greedy soup
    /// picks by them. 0: none.
    pub holdout: usize,
    /// Seed of the held-out draw; not the training seed, so that runs with different
    /// seeds (a soup's ingredients) hold out the same samples.
    pub holdout_seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: String::new(),
            generated: String::new(),
            classes: 0,
            label_column: "label".into(),
            channels_first: false,
            image_size: 0,
            skip_bad: false,
            holdout: 0,
            holdout_seed: 0,
        }
    }
}

impl DataConfig {
    /// State the class count (`--classes`).
    pub fn state_classes(&mut self, classes: usize) -> Result<()> {
        if classes == 0 {
            return Err(Error::Config(
                "--classes: the class count must be at least 1".into(),
            ));
        }
        self.classes = classes;
        Ok(())
    }

    /// The stated class count, if any.
    pub fn declared_classes(&self) -> Option<usize> {
        (self.classes > 0).then_some(self.classes)
    }
}

/// Which stage of training `twa run` averages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Sample the first `head_epochs` epochs of the SGD schedule and average those.
    Head,
    /// Run the whole SGD schedule, then an SWA phase at a constant LR with sampling.
    Tail,
}

/// The `twa run` pipeline (sampling and the averaging phase).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub stage: Stage,
    /// Head: SGD epochs sampled (of `train.epochs`).
    pub head_epochs: usize,
    /// Samples per epoch (head: of the head epochs; tail: of the SWA phase).
    pub samples_per_epoch: usize,
    /// Head: also finish the full SGD schedule for comparison.
    pub full: bool,
    /// Tail: epochs of the SWA phase and its constant LR.
    pub swa_epochs: usize,
    pub swa_lr: f64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            stage: Stage::Head,
            head_epochs: 10,
            samples_per_epoch: 5,
            full: true,
            swa_epochs: 10,
            swa_lr: 0.05,
        }
    }
}

/// Everything a `twa train` run needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub data: DataConfig,
    pub pipeline: PipelineConfig,
    pub twa: crate::twa::config::TwaConfig,
}

/// Presets shipped with twa: (name, TOML).
pub const PRESETS: &[(&str, &str)] = &[
    ("quick", include_str!("../../assets/presets/quick.toml")),
    (
        "fashion-mnist",
        include_str!("../../assets/presets/fashion-mnist.toml"),
    ),
    ("head", include_str!("../../assets/presets/head.toml")),
    ("tail", include_str!("../../assets/presets/tail.toml")),
    ("spirals", include_str!("../../assets/presets/spirals.toml")),
    ("cnn", include_str!("../../assets/presets/cnn.toml")),
    (
        "head-cnn",
        include_str!("../../assets/presets/head-cnn.toml"),
    ),
    ("resnet", include_str!("../../assets/presets/resnet.toml")),
    ("lenet5", include_str!("../../assets/presets/lenet5.toml")),
    (
        "vgg16-bn",
        include_str!("../../assets/presets/vgg16-bn.toml"),
    ),
    (
        "preresnet-110",
        include_str!("../../assets/presets/preresnet-110.toml"),
    ),
    (
        "preresnet-164",
        include_str!("../../assets/presets/preresnet-164.toml"),
    ),
    (
        "wrn-28-10",
        include_str!("../../assets/presets/wrn-28-10.toml"),
    ),
    (
        "resnet-18",
        include_str!("../../assets/presets/resnet-18.toml"),
    ),
    (
        "resnet-50",
        include_str!("../../assets/presets/resnet-50.toml"),
    ),
    ("vit", include_str!("../../assets/presets/vit.toml")),
];

/// The shipped Fashion-MNIST subset (see `assets/fashion-mnist-subset/README.md`).
pub fn shipped_data_dir() -> PathBuf {
    let here = PathBuf::from("assets/fashion-mnist-subset");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-subset")
}

impl RunConfig {
    /// Parse TOML; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RunConfig> {
        toml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().replace('\n', " "))))
    }

    /// A shipped preset by name.
    pub fn preset(name: &str) -> Result<RunConfig> {
        let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
            Error::Config(format!(
                "unknown preset `{name}` (known: {})",
                names.join(", ")
            ))
        })?;
        RunConfig::from_toml(text, &format!("preset {name}"))
    }

    /// A config file.
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RunConfig::from_toml(&text, &path.display().to_string())
    }

    /// The input shape and classes this config's data presumably has, without reading
    /// it: the generated spirals; CIFAR images for a `cifar…` directory (100 classes
    /// for `cifar-100…`, or those stated) or the `resnet` architecture; 28×28 grey
    /// images otherwise.
    pub fn presumed_input(&self) -> (Shape, usize) {
        let dir = &self.data.dir;
        let (input, classes) = if self.data.generated == "spirals" {
            (Shape::flat(2), 3)
        } else if dir.contains("cifar-100") {
            (Shape::image(32, 32, 3), 100)
        } else if dir.contains("cifar") || self.model.arch == Arch::Resnet {
            (Shape::image(32, 32, 3), 10)
        } else {
            (Shape::image(28, 28, 1), 10)
        };
        (input, self.data.declared_classes().unwrap_or(classes))
    }

    /// Read the data from `dir` instead of what the config names.
    pub fn set_data_dir(&mut self, dir: &Path) {
        self.data.dir = dir.display().to_string();
        self.data.generated.clear();
    }

    /// The data directory to read.
    pub fn data_dir(&self) -> PathBuf {
        if self.data.dir.is_empty() {
            shipped_data_dir()
        } else {
            PathBuf::from(&self.data.dir)
        }
    }

    /// Load the data this config names (generated, a CIFAR binary directory, or an
    /// IDX directory) and check that the model fits its images, before any GPU work.
    pub fn load_data(&self) -> Result<crate::data::Dataset> {
        let data = self.read_data()?;
        crate::nn::Model::build(&self.model, data.train.shape, data.classes)?;
        Ok(data)
    }

    /// [`RunConfig::load_data`] for IDX data already read (a browser fetches the
    /// files): `read(name)` gives the contents of the data directory's file `name`.
    pub fn load_idx_data(
        &self,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>>,
    ) -> Result<crate::data::Dataset> {
        let classes = crate::data::Classes::stated_or(
            self.data.declared_classes(),
            crate::data::Classes::Infer,
        );
        let data = crate::data::Dataset::from_idx_files(&self.data_dir(), read, classes)?;
        crate::nn::Model::build(&self.model, data.train.shape, data.classes)?;
        Ok(data)
    }

    /// `data` without the `[data] holdout` validation samples, and those samples as a
    /// data set of their own (its training split; the same test split).
    pub fn training_split(
        &self,
        data: crate::data::Dataset,
    ) -> Result<(crate::data::Dataset, Option<crate::data::Dataset>)> {
        if self.data.holdout == 0 {
            return Ok((data, None));
        }
        let (rest, val) =
            crate::data::holdout::hold_out(&data, self.data.holdout, self.data.holdout_seed)?;
        Ok((rest, Some(val)))
    }

    fn read_data(&self) -> Result<crate::data::Dataset> {
        use crate::data::{cifar, folder, numpy, shards, table, Classes, Dataset};
        let dir = self.data_dir();
        let stated = self.data.declared_classes();
        let or_infer = Classes::stated_or(stated, Classes::Infer);
        let images = crate::data::images::ImageOptions {
            size: (self.data.image_size > 0).then_some(self.data.image_size),
            skip_bad: self.data.skip_bad,
        };
        match self.data.generated.as_str() {
            "" if folder::is_image_folder(&dir) => folder::load_image_folder(&dir, stated, images),
            "" if shards::is_shards(&dir) => shards::load_shards(&dir, stated, images),
            "" if table::is_table(&dir) => {
                table::load_table(&dir, &self.data.label_column, or_infer)
            }
            "" if numpy::is_numpy(&dir) => {
                numpy::load_numpy(&dir, or_infer, self.data.channels_first)
            }
            "" if cifar::is_cifar_dir(&dir) => cifar::load_cifar_dir(&dir, stated),
            "" => Dataset::load_idx_dir(&dir, or_infer),
            "spirals" => crate::data::spirals::spirals(3000, 1500, 3, self.train.seed),
            other => Err(Error::Config(format!(
                "unknown generated data set `{other}` (known: spirals)"
            ))),
        }
    }

    /// TOML with every field written out; a network given as a layer list is written
    /// one layer per line (`[model]` holds only `arch` and `layers` then).
    pub fn to_toml(&self) -> String {
        if self.model.arch != Arch::Layers {
            return toml::to_string_pretty(self).expect("config serialises");
        }
        let rest = RunConfig {
            model: ModelConfig::default(),
            ..self.clone()
        };
        let text = toml::to_string_pretty(&rest).expect("config serialises");
        let after_model = text
            .find("\n[train]")
            .expect("the model section comes first");
        // `init` and `names` where not the defaults, as serde writes them.
        let model = ModelConfig {
            layers: Vec::new(),
            ..self.model.clone()
        };
        let fields = toml::to_string(&model).expect("model serialises");
        let extra: String = fields
            .lines()
            .filter(|l| l.starts_with("init =") || l.starts_with("names ="))
            .map(|l| format!("{l}\n"))
            .collect();
        format!(
            "[model]\narch = \"layers\"\n{extra}layers = {}\n{}",
            crate::nn::spec::to_toml(&self.model.layers),
            &text[after_model..]
        )
    }

    /// This config with its network written as a layer list (`twa config --layers`).
    pub fn with_layer_list(&self) -> Result<RunConfig> {
        let layers = self.model.layer_list()?;
        Ok(RunConfig {
            model: ModelConfig {
                arch: Arch::Layers,
                layers,
                init: self.model.init,
                names: self.model.names,
                ..ModelConfig::default()
            },
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Model;

    #[test]
    fn every_preset_parses_validates_and_round_trips() {
        for (name, _) in PRESETS {
            let config = RunConfig::preset(name).unwrap();
            config.train.validate().unwrap();
            config.twa.validate().unwrap();
            assert_eq!(
                RunConfig::from_toml(&config.to_toml(), name).unwrap(),
                config,
                "{name}"
            );
        }
        for (name, _) in PRESETS {
            // Written as a layer list, read back: the same network, layer for layer.
            let config = RunConfig::preset(name).unwrap();
            let listed = config.with_layer_list().unwrap();
            let text = listed.to_toml();
            let read = RunConfig::from_toml(&text, name).unwrap();
            assert_eq!(read, listed, "{name}:\n{text}");
            let (input, classes) = config.presumed_input();
            let built = |c: &RunConfig| Model::build(&c.model, input, classes).unwrap();
            let (a, b) = (built(&config), built(&read));
            assert_eq!(
                (a.layers, a.params, a.state),
                (b.layers, b.params, b.state),
                "{name}"
            );
        }
        assert_eq!(
            RunConfig::preset("head").unwrap().pipeline.stage,
            Stage::Head
        );
        assert_eq!(
            RunConfig::preset("tail").unwrap().pipeline.stage,
            Stage::Tail
        );
    }
}
