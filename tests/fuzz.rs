//! Property tests of every reader of user files: valid IDX, CIFAR, history, model,
//! checkpoint and TOML inputs mutated (truncated, bytes flipped, header fields
//! replaced by huge counts and shapes) must give a value or one clear error line —
//! never a panic, never an allocation the file's size does not justify.

use proptest::prelude::*;
use std::path::Path;
use twa::data::cifar::{parse_records, Variant};
use twa::data::idx::{encode_idx, parse_idx, IdxArray};
use twa::data::{Dataset, Split};
use twa::nn::model::Shape;
use twa::nn::{Model, ModelConfig};
use twa::run::checkpoint::Checkpoint;
use twa::run::config::RunConfig;
use twa::run::model_file::{load_table, ModelInfo};
use twa::run::History;
use twa::train::SampleInfo;

const CASES: u32 = 10_000;

/// One change to a valid file.
#[derive(Clone, Debug)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    /// A little-endian u64 (safetensors' header length) at a position.
    Put64(usize, u64),
    /// A big-endian u32 (IDX dimensions) at a position.
    Put32(usize, u32),
    /// Bytes inserted at a position.
    Insert(usize, Vec<u8>),
}

fn huge() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(u64::MAX),
        Just(u64::MAX / 2),
        Just(1 << 40),
        Just(u32::MAX as u64),
        0u64..4096,
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (0usize..64, huge()).prop_map(|(i, v)| Mutation::Put64(i, v)),
        (0usize..64, huge()).prop_map(|(i, v)| Mutation::Put32(i, v as u32)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn mutate(valid: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for m in mutations {
        let n = bytes.len().max(1);
        match m {
            Mutation::Truncate(at) => bytes.truncate(at % n),
            Mutation::Flip(at, b) if !bytes.is_empty() => bytes[at % n] ^= b | 1,
            Mutation::Put64(at, v) if at + 8 <= bytes.len() => {
                bytes[*at..at + 8].copy_from_slice(&v.to_le_bytes())
            }
            Mutation::Put32(at, v) if at + 4 <= bytes.len() => {
                bytes[*at..at + 4].copy_from_slice(&v.to_be_bytes())
            }
            Mutation::Insert(at, b) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            _ => {}
        }
    }
    bytes
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// An error is one line of text.
fn one_line<T>(result: Result<T, impl std::fmt::Display>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        let text = e.to_string();
        prop_assert!(!text.contains('\n') && !text.is_empty(), "{text}");
    }
    Ok(())
}

fn toy_data() -> Dataset {
    let split = |n: usize| Split {
        pixels: (0..n * 16).map(|i| (i * 7 % 256) as u8).collect(),
        labels: (0..n).map(|i| (i % 3) as u32).collect(),
        count: n,
        shape: Shape::image(4, 4, 1),
        labels_file: "toy".into(),
        encoding: twa::data::Encoding::U8,
    };
    Dataset::from_splits(split(12), split(6), "toy".into(), twa::data::Classes::Infer).unwrap()
}

fn toy_config() -> RunConfig {
    RunConfig {
        model: ModelConfig {
            hidden: vec![5],
            batchnorm: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn toy_model() -> Model {
    Model::build(&toy_config().model, Shape::image(4, 4, 1), 3).unwrap()
}

fn valid_model_file() -> Vec<u8> {
    let model = toy_model();
    let params = model.init_params(1);
    let state = model.init_state();
    let meta = twa::run::model_file::describe(&toy_config(), &toy_data());
    twa::run::model_file::encode(&model, &params, &state, meta).unwrap()
}

/// The bytes `save` writes to a file (made once per test binary: `cell`).
fn saved(
    cell: &'static std::sync::OnceLock<Vec<u8>>,
    name: &str,
    save: impl FnOnce(&Path),
) -> Vec<u8> {
    cell.get_or_init(|| saved_once(name, save)).clone()
}

fn saved_once(name: &str, save: impl FnOnce(&Path)) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("twa-fuzz-{name}-{}", std::process::id()));
    save(&path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

fn valid_history() -> Vec<u8> {
    let model = toy_model();
    let d = model.num_params();
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    saved(&BYTES, "history", |path| {
        History {
            table: model.params.clone(),
            samples: (0..3 * d).map(|i| i as f32 * 1e-3).collect(),
            infos: (0..3)
                .map(|i| SampleInfo {
                    epoch: i as f64,
                    step: i as u64 * 10,
                })
                .collect(),
            config: toy_config(),
        }
        .save(path)
        .unwrap()
    })
}

fn valid_checkpoint() -> Vec<u8> {
    let model = toy_model();
    let d = model.num_params();
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    saved(&BYTES, "checkpoint", |path| {
        Checkpoint {
            command: "train".into(),
            config: toy_config(),
            options: Default::default(),
            trainer: twa::train::TrainerState {
                epoch: 1,
                step: 3,
                global_step: 7,
                rng: 99,
                params: vec![0.5; d],
                velocity: vec![0.25; d],
                state: model.init_state(),
                train_totals: [1.0, 2.0, 3.0, 0.0],
                samples: vec![0.1; 2 * d],
                sample_infos: vec![
                    SampleInfo {
                        epoch: 0.0,
                        step: 0
                    };
                    2
                ],
            },
            progress: Default::default(),
            metrics: vec![],
        }
        .save(path)
        .unwrap()
    })
}

fn cifar_records() -> Vec<u8> {
    (0..3)
        .flat_map(|i| std::iter::once(i as u8).chain((0..3072).map(move |p| ((p + i) % 251) as u8)))
        .collect()
}

#[test]
fn the_valid_inputs_read_back() {
    let path = Path::new("valid");
    let model = toy_model();
    assert!(parse_idx(&encode_idx(&IdxArray {
        dims: vec![2, 3],
        data: vec![1; 6]
    }))
    .is_ok());
    let bytes = valid_model_file();
    assert!(load_table(path, &bytes, &model.params).is_ok());
    assert_eq!(ModelInfo::read(path, &bytes).unwrap().classes, 3);
    assert_eq!(History::decode(path, &valid_history()).unwrap().len(), 3);
    assert_eq!(
        Checkpoint::decode(path, &valid_checkpoint())
            .unwrap()
            .trainer
            .step,
        3
    );
    let mut split = Split {
        pixels: vec![],
        labels: vec![],
        count: 0,
        shape: Shape::image(32, 32, 3),
        labels_file: "cifar".into(),
        encoding: twa::data::Encoding::U8,
    };
    parse_records(path, &cifar_records(), Variant::Cifar10, &mut split).unwrap();
    assert_eq!(split.count, 3);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn idx_reader(m in mutations()) {
        let valid = encode_idx(&IdxArray { dims: vec![3, 4, 5], data: (0..60).collect() });
        let bytes = mutate(&valid, &m);
        let result = parse_idx(&bytes);
        if let Ok(a) = &result {
            prop_assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
        one_line(result)?;
    }

    #[test]
    fn cifar_reader(m in mutations(), hundred in any::<bool>()) {
        let variant = if hundred { Variant::Cifar100 } else { Variant::Cifar10 };
        let mut split = Split {
            pixels: vec![],
            labels: vec![],
            count: 0,
            shape: Shape::image(32, 32, 3),
            labels_file: "cifar".into(),
            encoding: twa::data::Encoding::U8,
        };
        let bytes = mutate(&cifar_records(), &m);
        one_line(parse_records(Path::new("data_batch_1.bin"), &bytes, variant, &mut split))?;
        prop_assert_eq!(split.pixels.len(), split.count * 3072);
    }

    #[test]
    fn history_reader(m in mutations()) {
        let bytes = mutate(&valid_history(), &m);
        let result = History::decode(Path::new("history.safetensors"), &bytes);
        if let Ok(h) = &result {
            prop_assert_eq!(h.samples.len(), h.len() * h.dim());
        }
        one_line(result)?;
    }

    #[test]
    fn model_reader(m in mutations()) {
        let bytes = mutate(&valid_model_file(), &m);
        let path = Path::new("model.safetensors");
        one_line(load_table(path, &bytes, &toy_model().params))?;
        one_line(ModelInfo::read(path, &bytes))?;
    }

    #[test]
    fn checkpoint_reader(m in mutations()) {
        let bytes = mutate(&valid_checkpoint(), &m);
        let result = Checkpoint::decode(Path::new("checkpoint.safetensors"), &bytes);
        if let Ok(c) = &result {
            let words = c.config.train.optimizer.state_words();
            prop_assert_eq!(c.trainer.velocity.len(), words * c.trainer.params.len());
            prop_assert_eq!(c.trainer.samples.len(), c.trainer.sample_infos.len() * c.trainer.params.len());
        }
        one_line(result)?;
    }

    #[test]
    fn toml_reader(m in mutations(), preset in 0usize..8) {
        let (name, text) = twa::run::config::PRESETS[preset];
        let bytes = mutate(text.as_bytes(), &m);
        let text = String::from_utf8_lossy(&bytes);
        let result = RunConfig::from_toml(&text, name);
        if let Ok(config) = &result {
            one_line(config.train.validate())?;
            one_line(config.twa.validate())?;
        }
        one_line(result)?;
    }
}

#[test]
fn a_header_claiming_terabytes_is_refused_without_allocating_them() {
    let path = Path::new("lying.safetensors");
    let bytes = valid_history();
    // The history's n × D shape rewritten to claim 10^12 samples.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let shape = text.find("\"shape\":[3,").unwrap();
    let lie = "\"shape\":[999999999999,";
    let mut lied = Vec::new();
    lied.extend_from_slice(&bytes[..shape]);
    lied.extend_from_slice(lie.as_bytes());
    lied.extend_from_slice(&bytes[shape + "\"shape\":[3,".len()..]);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) + (lie.len() - 11) as u64;
    lied[..8].copy_from_slice(&n.to_le_bytes());
    let err = History::decode(path, &lied).unwrap_err().to_string();
    assert!(err.contains("lying.safetensors"), "{err}");
    let idx = encode_idx(&IdxArray {
        dims: vec![u32::MAX as usize, u32::MAX as usize, 2],
        data: vec![0; 8],
    });
    assert!(parse_idx(&idx).unwrap_err().contains("IDX dimensions"));
}
